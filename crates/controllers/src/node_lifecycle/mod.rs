//! Node lifecycle, as upstream's pkg/controller/nodelifecycle: a node whose kubelet neither
//! renews its Lease in `kube-node-lease` nor posts status for the grace period gets its
//! conditions set to `Unknown`; nodes get the NoSchedule taints their conditions and
//! `spec.unschedulable` call for, and the NoExecute `not-ready`/`unreachable` taints (rate
//! limited per zone, none at all when every zone is down) that make [`taint_eviction`] evict
//! their pods.

mod health;
pub mod taint_eviction;
mod taints;
mod zones;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use tokio::time::Instant;

use crate::context::Context;
use crate::error::Result;
use crate::informer;
use health::HealthMap;
use zones::Zones;

const NAME: &str = "nodelifecycle";

/// Upstream's node lifecycle flags.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How often node health is checked (`--node-monitor-period`).
    pub monitor_period: Duration,
    /// How long a node that has posted status may go silent before it is `Unknown`
    /// (`--node-monitor-grace-period`).
    pub monitor_grace_period: Duration,
    /// The same for a node that never posted a Ready condition (`--node-startup-grace-period`).
    pub startup_grace_period: Duration,
    /// Nodes NoExecute-tainted per second in a healthy zone (`--node-eviction-rate`).
    pub eviction_rate: f64,
    /// The same in a partly disrupted zone larger than `large_cluster_threshold`
    /// (`--secondary-node-eviction-rate`); smaller zones stop tainting.
    pub secondary_eviction_rate: f64,
    pub large_cluster_threshold: usize,
    /// Share of not-ready nodes (with more than 2) that makes a zone partly disrupted
    /// (`--unhealthy-zone-threshold`).
    pub unhealthy_zone_threshold: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            monitor_period: Duration::from_secs(5),
            monitor_grace_period: Duration::from_secs(40),
            startup_grace_period: Duration::from_secs(60),
            eviction_rate: 0.1,
            secondary_eviction_rate: 0.01,
            large_cluster_threshold: 50,
            unhealthy_zone_threshold: 0.55,
        }
    }
}

/// Upstream's doNoExecuteTaintingPass period: how often the zones' taint queues are served.
const TAINT_PASS: Duration = Duration::from_millis(100);

pub async fn run(ctx: Context) -> Result<()> {
    let client = ctx.client_for("node-controller").await?;
    let (nodes, mut node_changes) =
        informer::start(Api::<Node>::all(ctx.client.clone()), Default::default());
    let (leases, mut lease_changes) = informer::start(
        Api::<Lease>::namespaced(ctx.client.clone(), "kube-node-lease"),
        Default::default(),
    );
    let (pods, mut pod_changes) = informer::start(
        Api::<Pod>::all(ctx.client.clone()),
        watcher::Config::default(),
    );
    let mut controller = Controller {
        client: client.clone(),
        recorder: ctx.recorder(client, "node-controller"),
        settings: ctx.settings.node_lifecycle.clone(),
        nodes,
        leases,
        pods,
        health: HealthMap::default(),
        zones: Zones::new(ctx.settings.node_lifecycle.eviction_rate),
        retry_pods: HashSet::new(),
        ctx,
    };
    let mut monitor = tokio::time::interval(controller.settings.monitor_period);
    let mut taint_pass = tokio::time::interval(TAINT_PASS);
    let mut synced = false;
    loop {
        tokio::select! {
            Some(node) = node_changes.next() => {
                if synced {
                    controller.no_schedule_pass(&node.name_any()).await;
                }
            }
            Some(_) = lease_changes.next() => {}
            Some(_) = pod_changes.next() => {}
            _ = monitor.tick() => {
                if !synced {
                    synced = controller.synced();
                    if !synced {
                        continue;
                    }
                    for node in controller.nodes.state() {
                        controller.no_schedule_pass(&node.name_any()).await;
                    }
                }
                controller.monitor_health().await;
            }
            _ = taint_pass.tick(), if synced => controller.no_execute_pass().await,
        }
    }
}

struct Controller {
    ctx: Context,
    client: Client,
    recorder: Recorder,
    settings: Settings,
    nodes: Store<Node>,
    leases: Store<Lease>,
    pods: Store<Pod>,
    health: HealthMap,
    zones: Zones,
    /// Nodes whose pods could not all be marked not ready; tried again on the next pass.
    retry_pods: HashSet<String>,
}

impl Controller {
    /// Upstream waits for its informers before the first pass: a node seen before its Lease
    /// would otherwise look silent.
    fn synced(&self) -> bool {
        use futures::FutureExt;
        [
            self.nodes.wait_until_ready().now_or_never(),
            self.leases.wait_until_ready().now_or_never(),
            self.pods.wait_until_ready().now_or_never(),
        ]
        .iter()
        .all(|r| matches!(r, Some(Ok(()))))
    }

    /// Upstream's monitorNodeHealth: updates each node's health, marks pods of nodes that just
    /// stopped being ready, queues NoExecute tainting, then adjusts the zones' rates.
    async fn monitor_health(&mut self) {
        let now = Instant::now();
        let nodes = self.nodes.state();
        self.health
            .forget_except(nodes.iter().map(|n| n.name_any()).collect());
        let mut zone_ready: HashMap<String, Vec<bool>> = HashMap::new();
        for node in &nodes {
            let name = node.name_any();
            let lease = self
                .leases
                .get(&ObjectRef::new(&name).within("kube-node-lease"));
            self.health.observe(node, lease.as_deref(), now);
            let observed = health::ready_status(node);
            let grace = health::grace_period(node, &self.settings);
            let mut node = Arc::clone(node);
            if self.health.silent(&name, grace, now) {
                match self.mark_unknown(&node).await {
                    Ok(Some(updated)) => node = Arc::new(updated),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(node = %name, error = %e, "cannot set node conditions to Unknown");
                        self.ctx.metrics.sync_failed(NAME);
                        continue;
                    }
                }
            }
            let ready = health::ready_status(&node);
            zone_ready
                .entry(zones::zone_key(&node))
                .or_default()
                .push(ready == "True");
            let previous = self.health.swap_ready(&name, &ready);
            let was_ready = observed == "True" || previous.as_deref() == Some("True");
            if ready != "True" && (was_ready || self.retry_pods.contains(&name)) {
                if was_ready {
                    self.node_event(&node, "NodeNotReady").await;
                }
                self.mark_pods_not_ready(&name).await;
            }
            self.taint_based_eviction(&node, &ready).await;
            self.ctx.metrics.synced(NAME);
        }
        let exiting = self.zones.handle_disruption(&zone_ready, &self.settings);
        match exiting {
            zones::Transition::EnteredFullDisruption => {
                tracing::warn!(
                    "all nodes are not ready: entering full disruption mode, no evictions"
                );
                for node in &nodes {
                    self.mark_reachable(node).await;
                }
            }
            zones::Transition::ExitedFullDisruption => {
                tracing::info!("some nodes are ready again: leaving full disruption mode");
                self.health.reset_probes(Instant::now());
            }
            zones::Transition::None => {}
        }
    }

    /// Upstream's processTaintBaseEviction.
    async fn taint_based_eviction(&mut self, node: &Node, ready: &str) {
        let name = node.name_any();
        match ready {
            "True" => {
                self.zones.cancel(&name);
                self.mark_reachable(node).await;
            }
            status => {
                let (wanted, opposite) = taints::no_execute_for(status);
                if taints::has(node, &opposite) {
                    // Already evicting: switching reason is not a new eviction.
                    let result = taints::swap(&self.client, &name, &[wanted], &[opposite]).await;
                    if let Err(e) = result {
                        tracing::warn!(node = %name, error = %e, "cannot swap NoExecute taints");
                    }
                } else if !taints::has(node, &wanted) {
                    self.zones.enqueue(&zones::zone_key(node), &name);
                }
            }
        }
    }

    /// Removes the not-ready and unreachable NoExecute taints.
    async fn mark_reachable(&self, node: &Node) {
        let remove = taints::no_execute_templates();
        if remove.iter().any(|t| taints::has(node, t)) {
            if let Err(e) = taints::swap(&self.client, &node.name_any(), &[], &remove).await {
                tracing::warn!(node = %node.name_any(), error = %e, "cannot remove NoExecute taints");
            }
        }
    }

    /// Upstream's doNoExecuteTaintingPass: each zone taints as many queued nodes as its rate
    /// allows.
    async fn no_execute_pass(&mut self) {
        for name in self.zones.due(Instant::now()) {
            let Some(node) = self.nodes.get(&ObjectRef::new(&name)) else {
                continue;
            };
            let status = health::ready_status(&node);
            if status == "True" {
                continue;
            }
            let (wanted, opposite) = taints::no_execute_for(&status);
            match taints::swap(&self.client, &name, &[wanted], &[opposite]).await {
                Ok(()) => {
                    tracing::info!(node = %name, "node NoExecute-tainted: its pods will be evicted")
                }
                Err(e) => {
                    tracing::warn!(node = %name, error = %e, "cannot taint node; retrying");
                    self.zones.enqueue(&zones::zone_key(&node), &name);
                }
            }
        }
    }

    /// Upstream's doNoScheduleTaintingPass: NoSchedule taints mirror conditions and
    /// `spec.unschedulable`.
    async fn no_schedule_pass(&self, name: &str) {
        let Some(node) = self.nodes.get(&ObjectRef::new(name)) else {
            return;
        };
        let (add, remove) = taints::no_schedule_diff(&node);
        if add.is_empty() && remove.is_empty() {
            return;
        }
        match taints::swap(&self.client, name, &add, &remove).await {
            Ok(()) => self.ctx.metrics.synced(NAME),
            Err(e) => {
                tracing::warn!(node = %name, error = %e, "cannot update NoSchedule taints");
                self.ctx.metrics.sync_failed(NAME);
            }
        }
    }

    /// Writes the Unknown conditions (if not already there); on a conflict reads the node
    /// again, as upstream retries.
    async fn mark_unknown(&self, cached: &Node) -> Result<Option<Node>> {
        let api: Api<Node> = Api::all(self.client.clone());
        let mut node = cached.clone();
        let mut attempts = 0;
        loop {
            if !health::set_unknown(&mut node, Timestamp::now()) {
                return Ok(None);
            }
            match api
                .replace_status(&node.name_any(), &Default::default(), &node)
                .await
            {
                Ok(n) => return Ok(Some(n)),
                Err(kube::Error::Api(e)) if e.code == 409 && attempts < 3 => {
                    attempts += 1;
                    node = api.get(&node.name_any()).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Upstream's MarkPodsNotReady: the node's pods stop counting as ready (endpoints, PDBs).
    async fn mark_pods_not_ready(&mut self, node: &str) {
        let api_for = |ns: &str| Api::<Pod>::namespaced(self.client.clone(), ns);
        let mut failed = false;
        for pod in self
            .pods
            .state_filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
        {
            if !crate::pods::is_ready(&pod) {
                continue;
            }
            let ns = pod.namespace().unwrap_or_default();
            let patch = serde_json::json!({"status": {"conditions": [{
                "type": "Ready", "status": "False",
                "lastTransitionTime": Timestamp::now().to_string(),
            }]}});
            let result = api_for(&ns)
                .patch_status(
                    &pod.name_any(),
                    &Default::default(),
                    &kube::api::Patch::Strategic(patch),
                )
                .await;
            match result {
                Ok(_) => {
                    let event = Event {
                        type_: EventType::Warning,
                        reason: "NodeNotReady".into(),
                        note: Some("Node is not ready".into()),
                        action: "MarkPodNotReady".into(),
                        secondary: None,
                    };
                    let _ = self.recorder.publish(&event, &pod.object_ref(&())).await;
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => {
                    tracing::warn!(pod = %pod.name_any(), error = %e, "cannot mark pod not ready");
                    failed = true;
                }
            }
        }
        if failed {
            self.retry_pods.insert(node.to_string());
        } else {
            self.retry_pods.remove(node);
        }
    }

    /// Upstream's RecordNodeStatusChange.
    async fn node_event(&self, node: &Node, status: &str) {
        let event = Event {
            type_: EventType::Normal,
            reason: status.into(),
            note: Some(format!("Node {} status is now: {status}", node.name_any())),
            action: "NodeStatusChange".into(),
            secondary: None,
        };
        // Events are best effort, as upstream's broadcaster drops them under pressure.
        let _ = self.recorder.publish(&event, &node.object_ref(&())).await;
    }
}
