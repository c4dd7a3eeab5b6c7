//! The controller manager's Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabel {
    pub controller: String,
}

#[derive(Clone, Debug, Default)]
pub struct Metrics {
    leader: Gauge,
    syncs: Family<ControllerLabel, Counter>,
    errors: Family<ControllerLabel, Counter>,
    restarts: Family<ControllerLabel, Counter>,
}

impl Metrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("controller_manager");
        r.register(
            "leader",
            "1 while this controller manager holds the leader lease (or runs without election).",
            self.leader.clone(),
        );
        r.register(
            "syncs",
            "Reconciliations done, by controller.",
            self.syncs.clone(),
        );
        r.register(
            "sync_errors",
            "Reconciliations that failed and were retried, by controller.",
            self.errors.clone(),
        );
        r.register(
            "controller_restarts",
            "Times a controller ended with an error and was started again.",
            self.restarts.clone(),
        );
    }

    pub fn leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    pub fn synced(&self, controller: &str) {
        self.syncs.get_or_create(&label(controller)).inc();
    }

    pub fn sync_failed(&self, controller: &str) {
        self.errors.get_or_create(&label(controller)).inc();
    }

    /// Counts one outcome of a kube-runtime `Controller::run` stream: a sync, or a failure to be
    /// retried (logged at debug, as the error policy decides what follows).
    pub fn reconciled<T, E: std::fmt::Display>(&self, controller: &str, result: &Result<T, E>) {
        match result {
            Ok(_) => self.synced(controller),
            Err(e) => {
                self.sync_failed(controller);
                tracing::debug!(controller, error = %e, "sync failed");
            }
        }
    }

    pub fn restarted(&self, controller: &str) {
        self.restarts.get_or_create(&label(controller)).inc();
    }
}

fn label(controller: &str) -> ControllerLabel {
    ControllerLabel {
        controller: controller.to_string(),
    }
}
