//! What every controller gets: the client it acts with, who it is, and where it counts.

use kube::Client;

use crate::metrics::Metrics;

#[derive(Clone)]
pub struct Context {
    pub client: Client,
    /// Lease holder identity; also the `reportingInstance` of events.
    pub identity: String,
    pub metrics: Metrics,
}

impl Context {
    /// An events recorder reporting as upstream's controller of that name (e.g.
    /// `replicaset-controller`).
    pub fn recorder(&self, controller: &str) -> kube::runtime::events::Recorder {
        let reporter = kube::runtime::events::Reporter {
            controller: controller.to_string(),
            instance: Some(self.identity.clone()),
        };
        kube::runtime::events::Recorder::new(self.client.clone(), reporter)
    }
}
