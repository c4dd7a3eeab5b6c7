//! Starts the enabled controllers while leading and keeps them running: one that fails is
//! restarted with backoff, alone, as a crashed goroutine would not stop upstream's others.

use std::future::Future;
use std::time::Duration;

use component_base::leader_election::{self, default_identity, LeaseConfig};
use futures::future::BoxFuture;
use kube::Client;

use crate::context::Context;
use crate::error::Result;
use crate::metrics::Metrics;

type Start = fn(Context) -> BoxFuture<'static, Result<()>>;

/// Every controller, by upstream's `--controllers` name.
pub const CONTROLLERS: &[(&str, Start)] = &[
    ("replicaset", |c| Box::pin(crate::replicaset::run(c))),
    ("deployment", |c| Box::pin(crate::deployment::run(c))),
    ("daemonset", |c| Box::pin(crate::daemonset::run(c))),
    ("statefulset", |c| Box::pin(crate::statefulset::run(c))),
    ("job", |c| Box::pin(crate::job::run(c))),
    ("cronjob", |c| Box::pin(crate::cronjob::run(c))),
    ("ttl-after-finished", |c| {
        Box::pin(crate::ttl_after_finished::run(c))
    }),
    ("endpoints", |c| Box::pin(crate::endpoints::run(c))),
    ("endpointslice", |c| Box::pin(crate::endpointslice::run(c))),
    ("namespace", |c| Box::pin(crate::namespace::run(c))),
    ("serviceaccount", |c| {
        Box::pin(crate::serviceaccount::run(c))
    }),
    ("serviceaccount-token", |c| {
        Box::pin(crate::serviceaccount_token::run(c))
    }),
    ("root-ca-cert-publisher", |c| {
        Box::pin(crate::root_ca_cert_publisher::run(c))
    }),
    ("garbagecollector", |c| {
        Box::pin(crate::garbage_collector::run(c))
    }),
    ("nodeipam", |c| Box::pin(crate::node_ipam::run(c))),
    ("nodelifecycle", |c| Box::pin(crate::node_lifecycle::run(c))),
    ("taint-eviction-controller", |c| {
        Box::pin(crate::node_lifecycle::taint_eviction::run(c))
    }),
    ("disruption", |c| Box::pin(crate::disruption::run(c))),
    ("resourcequota", |c| Box::pin(crate::resourcequota::run(c))),
    ("persistentvolume-binder", |c| {
        Box::pin(crate::persistentvolume::run_binder(c))
    }),
    // krust's own: provisions the default StorageClass's volumes under the data dir.
    ("local-path-provisioner", |c| {
        Box::pin(crate::persistentvolume::run_local_path(c))
    }),
    ("csrapproving", |c| {
        Box::pin(crate::certificates::run_approver(c))
    }),
    ("csrsigning", |c| {
        Box::pin(crate::certificates::run_signer(c))
    }),
    ("tokencleaner", |c| {
        Box::pin(crate::bootstrap_tokens::run(c))
    }),
];

/// The controller manager's settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// As upstream's `--controllers`: `*` enables all, `NAME` one, `-NAME` disables one.
    pub controllers: Vec<String>,
    /// Act only while holding the `kube-system/kube-controller-manager` Lease.
    pub leader_election: bool,
    /// Lease holder identity; `None` = `<hostname>_<random>`.
    pub identity: Option<String>,
    /// Lease location and timings; `None` = upstream's.
    pub lease: Option<LeaseConfig>,
    pub metrics: Metrics,
    /// Node health timings and eviction rates (upstream's `--node-monitor-*` flags).
    pub node_lifecycle: crate::node_lifecycle::Settings,
    /// Pod CIDRs for nodes (upstream's `--allocate-node-cidrs`, `--cluster-cidr`,
    /// `--node-cidr-mask-size`); off unless a cluster CIDR is given.
    pub node_ipam: crate::node_ipam::Settings,
    /// How often every ResourceQuota's usage is recalculated in full (upstream's
    /// `--resource-quota-sync-period`).
    pub resource_quota_sync_period: Duration,
    /// The service-account signing key (`credentials/serviceaccount.key`) legacy token secrets
    /// are signed with (upstream's `--service-account-private-key-file`); `None` leaves them
    /// empty.
    pub service_account_key: Option<std::path::PathBuf>,
    /// The local-path provisioner's storage directory and default class name.
    pub local_path: crate::persistentvolume::local_path::Settings,
    /// The CA csrsigning signs with (upstream's `--cluster-signing-cert-file`/`-key-file`);
    /// `None` leaves certificate requests unsigned.
    pub cluster_signing: Option<crate::certificates::SigningCa>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            controllers: vec!["*".into()],
            leader_election: true,
            identity: None,
            lease: None,
            metrics: Metrics::default(),
            node_lifecycle: Default::default(),
            node_ipam: Default::default(),
            resource_quota_sync_period: Duration::from_secs(300),
            service_account_key: None,
            local_path: Default::default(),
            cluster_signing: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControllersError {
    #[error("unknown controller {0:?} in the controller list; known: {1}")]
    Unknown(String, String),
    #[error("cannot set up the controller manager's client: {0}")]
    Client(String),
}

impl Config {
    /// The controllers this configuration enables, in table order.
    pub fn enabled(&self) -> Result<Vec<(&'static str, Start)>, ControllersError> {
        for entry in &self.controllers {
            let name = entry.trim_start_matches('-');
            if name != "*" && !CONTROLLERS.iter().any(|(n, _)| *n == name) {
                let known: Vec<_> = CONTROLLERS.iter().map(|(n, _)| *n).collect();
                return Err(ControllersError::Unknown(entry.clone(), known.join(", ")));
            }
        }
        let on = |name: &str| {
            let listed = |s: &str| self.controllers.iter().any(|c| c == s);
            !listed(&format!("-{name}")) && (listed(name) || listed("*"))
        };
        Ok(CONTROLLERS.iter().copied().filter(|(n, _)| on(n)).collect())
    }
}

/// Runs the controller manager until `shutdown` completes; a held lease is released on the way
/// out.
///
/// `kube_config` is the controller manager's own connection (its client certificate); the
/// controllers derive their service-account clients from it.
pub async fn run(
    kube_config: kube::Config,
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ControllersError> {
    let enabled = config.enabled()?;
    let identity = config.identity.clone().unwrap_or_else(default_identity);
    let client = Client::try_from(kube_config.clone())
        .map_err(|e| ControllersError::Client(e.to_string()))?;
    let ctx = Context::new(
        client.clone(),
        kube_config,
        identity.clone(),
        config.metrics.clone(),
    )
    .map_err(|e| ControllersError::Client(e.to_string()))?
    .with_settings(config.clone());
    let session = || all(ctx.clone(), enabled.clone());
    if config.leader_election {
        let lease = config
            .lease
            .clone()
            .map(|l| LeaseConfig {
                identity: identity.clone(),
                ..l
            })
            .unwrap_or_else(|| LeaseConfig::kube_system("kube-controller-manager", &identity));
        let on_change = |leading| config.metrics.leader(leading);
        leader_election::run_while_leading(client, lease, on_change, session, shutdown).await;
    } else {
        config.metrics.leader(true);
        tokio::select! {
            _ = session() => {}
            _ = shutdown => {}
        }
    }
    tracing::info!("controller manager stopped");
    Ok(())
}

/// Every enabled controller, concurrently, until dropped.
async fn all(ctx: Context, enabled: Vec<(&'static str, Start)>) {
    let runs = enabled
        .into_iter()
        .map(|(name, start)| supervise(ctx.clone(), name, start));
    futures::future::join_all(runs).await;
}

/// Restarts a controller that ends, waiting longer after each failure (1 s doubling to 60 s).
async fn supervise(ctx: Context, name: &'static str, start: Start) {
    let mut delay = Duration::from_secs(1);
    loop {
        tracing::debug!(controller = name, "controller starting");
        match start(ctx.clone()).await {
            Ok(()) => tracing::warn!(controller = name, "controller ended; starting it again"),
            Err(e) => {
                tracing::warn!(controller = name, error = %e, "controller failed; starting it again")
            }
        }
        ctx.metrics.restarted(name);
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(60));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<&'static str> {
        let config = Config {
            controllers: list.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        config
            .enabled()
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    }

    #[test]
    fn star_enables_all_and_minus_disables_one() {
        assert_eq!(names(&["*"]).len(), CONTROLLERS.len());
        let some = names(&["*", "-job"]);
        assert!(!some.contains(&"job") && some.contains(&"deployment"));
        assert_eq!(names(&["job"]), vec!["job"]);
    }

    #[test]
    fn an_unknown_name_is_refused() {
        let config = Config {
            controllers: vec!["jobs".into()],
            ..Default::default()
        };
        assert!(config.enabled().is_err());
    }
}
