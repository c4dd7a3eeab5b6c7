//! The resources the API server serves right now (built-in and CRDs), from its discovery
//! documents: what the garbage collector watches and the namespace controller empties.

use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope};
use kube::Client;

use crate::error::Result;

/// One served resource (its preferred version) and what it supports.
#[derive(Clone, Debug)]
pub struct Served {
    pub resource: ApiResource,
    pub namespaced: bool,
    pub verbs: Vec<String>,
}

impl Served {
    pub fn supports(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }

    /// `<plural>.<group>` (just `<plural>` for the core group), as upstream's GroupResource.
    pub fn group_resource(&self) -> String {
        match self.resource.group.as_str() {
            "" => self.resource.plural.clone(),
            g => format!("{}.{g}", self.resource.plural),
        }
    }
}

/// Every served resource, at its group's preferred version, that supports all of `verbs`:
/// aggregated discovery (two requests), or the per-group documents where it is missing.
pub async fn served(client: &Client, verbs: &[&str]) -> Result<Vec<Served>> {
    let discovery = match Discovery::new(client.clone()).run_aggregated().await {
        Ok(d) => d,
        Err(_) => Discovery::new(client.clone()).run().await?,
    };
    Ok(discovery
        .groups()
        .flat_map(|g| g.recommended_resources())
        .map(|(resource, caps)| from_caps(resource, &caps))
        .filter(|s| verbs.iter().all(|v| s.supports(v)))
        .collect())
}

fn from_caps(resource: ApiResource, caps: &ApiCapabilities) -> Served {
    Served {
        resource,
        namespaced: caps.scope == Scope::Namespaced,
        verbs: caps.operations.clone(),
    }
}
