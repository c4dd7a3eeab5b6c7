//! Graceful node shutdown, as upstream's node shutdown manager (pkg/kubelet/nodeshutdown) does
//! it once the node is going down: the Node turns NotReady ("node is shutting down"), then the
//! pods are ended in two groups, regular pods within `shutdownGracePeriod` less
//! `shutdownGracePeriodCriticalPods`, then critical pods within
//! `shutdownGracePeriodCriticalPods`; each gets phase Failed, reason `Terminated`, upstream's
//! message and the DisruptionTarget condition.
//!
//! What triggers it differs from upstream: upstream takes a systemd-logind delay inhibitor lock
//! over D-Bus and acts on `PrepareForShutdown`; krust runs where no system bus need exist, so
//! the agent's owner calls [`Agent::shutdown`](crate::agent::Agent::shutdown) (krust server on
//! SIGTERM/SIGINT with `--shutdown-grace-period` set). Without it a stop leaves pods running.
//!
//! Contract: [`run`]`(ctx, killer, Config)` returns once every pod ended or its group's grace
//! period (plus a little) passed.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

use crate::context::NodeContext;
use crate::pods::{Killer, Termination};

/// Upstream's status for pods ended by a node shutdown.
pub const REASON: &str = "Terminated";
pub const MESSAGE: &str = "Pod was terminated in response to imminent node shutdown.";
/// The Ready condition's message while shutting down.
pub const NOT_READY_MESSAGE: &str = "node is shutting down";

/// `shutdownGracePeriod` and `shutdownGracePeriodCriticalPods`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Config {
    pub grace_period: Duration,
    pub critical_grace_period: Duration,
}

impl Config {
    /// Upstream's feature is on only with a non-zero grace period.
    pub fn enabled(&self) -> bool {
        !self.grace_period.is_zero()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ShutdownError {
    #[error(
        "shutdownGracePeriodCriticalPods ({critical:?}) exceeds shutdownGracePeriod ({total:?})"
    )]
    CriticalExceedsTotal { critical: Duration, total: Duration },
}

impl Config {
    pub fn new(grace_period: Duration, critical: Duration) -> Result<Config, ShutdownError> {
        if critical > grace_period {
            return Err(ShutdownError::CriticalExceedsTotal {
                critical,
                total: grace_period,
            });
        }
        Ok(Config {
            grace_period,
            critical_grace_period: critical,
        })
    }
}

/// Marks the node NotReady and ends its pods, regular ones first.
pub async fn run(ctx: &NodeContext, killer: &Killer, config: Config) {
    tracing::info!(?config, "node shutting down: ending pods");
    if let Err(e) = not_ready(ctx).await {
        tracing::warn!("cannot mark the node NotReady for the shutdown: {e}");
    }
    let pods = match active_pods(ctx).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!("cannot list the node's pods for the shutdown: {e}");
            return;
        }
    };
    let (critical, regular): (Vec<Pod>, Vec<Pod>) =
        pods.into_iter().partition(crate::eviction::critical);
    let regular_grace = config.grace_period - config.critical_grace_period;
    end_group(killer, &regular, regular_grace).await;
    end_group(killer, &critical, config.critical_grace_period).await;
    tracing::info!("node shutdown: pods ended");
}

/// Ends a group's pods at once, each within min(its own grace period, the group's).
async fn end_group(killer: &Killer, pods: &[Pod], grace: Duration) {
    if pods.is_empty() {
        return;
    }
    let kills = pods.iter().map(|pod| {
        let own = pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30);
        let termination = Termination {
            reason: REASON.into(),
            message: MESSAGE.into(),
            grace_seconds: Some(own.min(grace.as_secs() as i64)),
            warning_event: false,
            disruption_target: true,
        };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        async move { killer.kill(&uid, termination).await }
    });
    // Upstream waits the group's grace period at most; the stop itself takes up to 2 s more.
    let limit = grace + Duration::from_secs(3);
    if tokio::time::timeout(limit, futures::future::join_all(kills))
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "node shutdown: pods still ending after the grace period"
        );
    }
}

/// Ready=False with upstream's reason and message (the status loop is stopped by then).
async fn not_ready(ctx: &NodeContext) -> Result<(), kube::Error> {
    let api: Api<Node> = Api::all(ctx.client.clone());
    let now = k8s_openapi::jiff::Timestamp::now();
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now);
    let patch = json!({"status": {"conditions": [{
        "type": "Ready",
        "status": "False",
        "reason": "KubeletNotReady",
        "message": NOT_READY_MESSAGE,
        "lastHeartbeatTime": now,
        "lastTransitionTime": now,
    }]}});
    api.patch_status(
        &ctx.node_name,
        &PatchParams::default(),
        &Patch::Strategic(patch),
    )
    .await
    .map(|_| ())
}

async fn active_pods(ctx: &NodeContext) -> Result<Vec<Pod>, kube::Error> {
    let api: Api<Pod> = Api::all(ctx.client.clone());
    let params = ListParams::default().fields(&format!("spec.nodeName={}", ctx.node_name));
    Ok(api
        .list(&params)
        .await?
        .items
        .into_iter()
        .filter(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Succeeded" | "Failed"))
        })
        .collect())
}
