//! The DaemonSet controller (upstream's pkg/controller/daemon): one pod on every node the
//! DaemonSet's pods fit (node selector, required node affinity, taints against tolerations),
//! pinned there by a required node affinity on `metadata.name` so the default scheduler binds
//! it; RollingUpdate (maxUnavailable, maxSurge) or OnDelete; ControllerRevisions for history.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use component_base::{node_affinity, taints};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    Toleration,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::events;
use crate::expectations::{Expect, Expectations};
use crate::history;
use crate::ownership::{self, Claim};
use crate::pods;

const NAME: &str = "daemon-set-controller";
const TEMPLATE_GENERATION: &str = "pod-template-generation";
/// At most this many pods are created (or deleted) per sync; the rest wait for the watch to
/// show these (upstream's BurstReplicas).
const BURST_REPLICAS: usize = 250;
/// The first create batch of a sync (upstream's SlowStartInitialBatchSize); each next doubles.
const SLOW_START_INITIAL_BATCH: usize = 1;

struct State {
    client: Client,
    pods: Store<Pod>,
    nodes: Store<Node>,
    recorder: Recorder,
    expectations: Expectations,
    metrics: crate::Metrics,
}

pub async fn run(ctx: Context) -> Result<()> {
    let client = ctx.client_for(NAME).await?;
    let (pods, pod_writer) = reflector::store();
    let pod_events = reflector::reflector(
        pod_writer,
        watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .touched_objects();
    let (nodes, node_writer) = reflector::store();
    let node_events = reflector::reflector(
        node_writer,
        watcher(Api::<Node>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .touched_objects();
    let state = Arc::new(State {
        client: client.clone(),
        pods,
        nodes,
        recorder: ctx.recorder(client.clone(), NAME),
        expectations: Expectations::default(),
        metrics: ctx.metrics.clone(),
    });
    let controller = Controller::new(Api::<DaemonSet>::all(client), watcher::Config::default());
    let daemonsets = controller.store();
    // A node that appears, changes labels or taints may change every DaemonSet's placement.
    let every_daemonset = move |_node: Node| {
        daemonsets
            .state()
            .iter()
            .map(|ds| ObjectRef::from_obj(ds.as_ref()))
            .collect::<Vec<_>>()
    };
    controller
        .owns_stream(pod_events)
        .watches_stream(node_events, every_daemonset)
        .run(reconcile, error_policy, state)
        .for_each(|_| std::future::ready(()))
        .await;
    Ok(())
}

fn error_policy(_ds: Arc<DaemonSet>, error: &Error, state: Arc<State>) -> Action {
    state.metrics.sync_failed("daemonset");
    tracing::debug!(%error, "daemonset sync failed");
    Action::requeue(Duration::from_secs(1))
}

async fn reconcile(ds: Arc<DaemonSet>, state: Arc<State>) -> Result<Action> {
    state.pods.wait_until_ready().await.ok();
    state.nodes.wait_until_ready().await.ok();
    let ns = ds.namespace().unwrap_or_default();
    let api: Api<DaemonSet> = Api::namespaced(state.client.clone(), &ns);
    let Some(ds) = api.get_opt(&ds.name_any()).await? else {
        return Ok(Action::await_change());
    };
    let requeue = Sync::new(&state, ds, &ns).await?.run().await?;
    state.metrics.synced("daemonset");
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

/// What a DaemonSet's pods must tolerate anyway (upstream's AddOrUpdateDaemonPodTolerations).
fn daemon_tolerations(host_network: bool) -> Vec<Toleration> {
    let mut list = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        list.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    list.into_iter()
        .map(|(key, effect)| Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(effect.into()),
            ..Default::default()
        })
        .collect()
}

/// The node a daemon pod is for: its `nodeName`, or the name its node affinity pins.
fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(n.clone());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|r| r.key == "metadata.name" && r.operator == "In")
        .and_then(|r| r.values.as_ref()?.first().cloned())
}

/// Upstream's ReplaceDaemonSetPodNodeNameNodeAffinity: every required term also asks for the
/// node by name.
fn pin_to_node(pod: &mut Pod, node: &str) {
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    let by_name = NodeSelectorRequirement {
        key: "metadata.name".into(),
        operator: "In".into(),
        values: Some(vec![node.into()]),
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    let required = node_affinity
        .required_during_scheduling_ignored_during_execution
        .get_or_insert_with(NodeSelector::default);
    if required.node_selector_terms.is_empty() {
        required
            .node_selector_terms
            .push(NodeSelectorTerm::default());
    }
    for term in &mut required.node_selector_terms {
        term.match_fields = Some(vec![by_name.clone()]);
    }
}

/// Whether a daemon pod should be placed on the node, and whether one already there may stay
/// (upstream's NodeShouldRunDaemonPod: NoSchedule taints stop placing, NoExecute also evict).
fn should_run(pod: &Pod, node: &Node) -> (bool, bool) {
    if !node_affinity::required_matches(pod, node) {
        return (false, false);
    }
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    let mut run = true;
    let mut stay = true;
    for taint in node.spec.iter().flat_map(|s| s.taints.iter().flatten()) {
        if taint.effect == "PreferNoSchedule" || taints::tolerated_by(&tolerations, taint) {
            continue;
        }
        run = false;
        if taint.effect == "NoExecute" {
            stay = false;
        }
    }
    (run, stay)
}

struct Sync<'a> {
    state: &'a State,
    ds: DaemonSet,
    key: String,
    pods_api: Api<Pod>,
    revisions_api: Api<ControllerRevision>,
    /// The DaemonSet's pods by target node.
    by_node: BTreeMap<String, Vec<Arc<Pod>>>,
    /// Per node: whether a daemon pod should run there and whether one there may stay.
    placements: BTreeMap<String, (bool, bool)>,
    now: Timestamp,
}

impl<'a> Sync<'a> {
    async fn new(state: &'a State, ds: DaemonSet, ns: &str) -> Result<Sync<'a>> {
        let pods_api: Api<Pod> = Api::namespaced(state.client.clone(), ns);
        let key = ds.uid().unwrap_or_default();
        let selector = ds
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        let deleting = ds.metadata.deletion_timestamp.is_some();
        let mut by_node: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
        for pod in state.pods.state() {
            if pod.namespace().as_deref() != Some(ns) {
                continue;
            }
            let pod = match ownership::claim(&key, deleting, &selector, &pod.metadata) {
                Claim::Owned => pod,
                Claim::Adopt => Arc::new(
                    ownership::adopt(&pods_api, &pod.metadata, ownership::controller_ref(&ds))
                        .await?,
                ),
                Claim::Release => {
                    ownership::release(&pods_api, &pod.metadata, &key).await?;
                    continue;
                }
                Claim::Ignore => continue,
            };
            if let Some(node) = target_node(&pod) {
                by_node.entry(node).or_default().push(pod);
            }
        }
        let mut sync = Sync {
            state,
            key,
            pods_api,
            revisions_api: Api::namespaced(state.client.clone(), ns),
            by_node,
            placements: BTreeMap::new(),
            ds,
            now: Timestamp::now(),
        };
        sync.placements = sync.placements();
        Ok(sync)
    }

    /// Upstream's NodeShouldRunDaemonPod for every node, with one template pod re-pinned per
    /// node (building the pod from the template once per node costs more than the sync on
    /// thousands of nodes). The revision labels do not matter for placement.
    fn placements(&self) -> BTreeMap<String, (bool, bool)> {
        let mut pod = self.pod_for("", "");
        self.state
            .nodes
            .state()
            .iter()
            .map(|node| {
                let name = node.name_any();
                pin_to_node(&mut pod, &name);
                let fit = should_run(&pod, node);
                (name, fit)
            })
            .collect()
    }

    fn spec(&self) -> &k8s_openapi::api::apps::v1::DaemonSetSpec {
        self.ds
            .spec
            .as_ref()
            .expect("a stored DaemonSet has a spec")
    }

    async fn run(mut self) -> Result<Option<Duration>> {
        let mut collisions = self
            .ds
            .status
            .as_ref()
            .and_then(|s| s.collision_count)
            .unwrap_or(0);
        let template = self.spec().template.clone();
        let (current, revisions) =
            history::current(&self.revisions_api, &self.ds, &template, &mut collisions).await?;
        let hash = history::hash_of(&current);
        let mut requeue = None;
        if self.ds.metadata.deletion_timestamp.is_none()
            && self
                .state
                .expectations
                .satisfied(&self.key, &self.state.pods)
        {
            self.manage(&hash).await?;
            if self.rolling() {
                requeue = self.rolling_update(&hash).await?;
            }
        }
        let live: BTreeSet<String> = self
            .by_node
            .values()
            .flatten()
            .filter_map(|p| p.labels().get(history::REVISION_HASH).cloned())
            .collect();
        let limit = self.spec().revision_history_limit.unwrap_or(10);
        history::truncate(
            &self.revisions_api,
            &revisions,
            &live,
            &[current.name_any().as_str()],
            limit,
        )
        .await?;
        self.update_status(&hash, collisions).await?;
        Ok(requeue)
    }

    fn rolling(&self) -> bool {
        self.spec()
            .update_strategy
            .as_ref()
            .and_then(|s| s.type_.as_deref())
            .unwrap_or("RollingUpdate")
            == "RollingUpdate"
    }

    /// The template as it would run on `node` (for the placement predicates).
    fn pod_for(&self, node: &str, hash: &str) -> Pod {
        let template = &self.spec().template;
        let mut pod = pods::from_template(
            template,
            &self.ds.namespace().unwrap_or_default(),
            &format!("{}-", self.ds.name_any()),
            ownership::controller_ref(&self.ds),
        );
        let labels = pod.metadata.labels.get_or_insert_with(Default::default);
        labels.insert(history::REVISION_HASH.into(), hash.into());
        labels.insert(
            TEMPLATE_GENERATION.into(),
            self.ds.metadata.generation.unwrap_or(0).to_string(),
        );
        if let Some(spec) = pod.spec.as_mut() {
            let host_network = spec.host_network == Some(true);
            let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
            for t in daemon_tolerations(host_network) {
                if !tolerations.contains(&t) {
                    tolerations.push(t);
                }
            }
        }
        pin_to_node(&mut pod, node);
        pod
    }

    /// Per node: create the missing pod, delete extras, failed pods and pods on nodes they no
    /// longer fit.
    async fn manage(&mut self, hash: &str) -> Result<()> {
        let nodes = self.state.nodes.state();
        let mut create = Vec::new();
        let mut delete = Vec::new();
        for node in &nodes {
            let name = node.name_any();
            let (run, stay) = self.placement(&name);
            let pods = self.by_node.get(&name).cloned().unwrap_or_default();
            let (failed, alive): (Vec<_>, Vec<_>) = pods
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .cloned()
                .partition(|p| pods::phase(p) == "Failed");
            delete.extend(failed.iter().cloned());
            if run && alive.is_empty() {
                create.push(name);
            } else if !stay || (!run && alive.is_empty()) {
                delete.extend(alive);
            } else if alive.len() > 1 && !self.surging(hash, &alive) {
                // Keep the oldest; the rest are duplicates.
                let mut alive = alive;
                alive.sort_by_key(|p| p.creation_timestamp().map(|t| t.0));
                delete.extend(alive.into_iter().skip(1));
            }
        }
        // Pods for nodes that no longer exist.
        let known: BTreeSet<String> = nodes.iter().map(|n| n.name_any()).collect();
        for (node, pods) in &self.by_node {
            if !known.contains(node) {
                delete.extend(
                    pods.iter()
                        .filter(|p| p.metadata.deletion_timestamp.is_none())
                        .cloned(),
                );
            }
        }
        create.truncate(BURST_REPLICAS);
        delete.truncate(BURST_REPLICAS);
        let created = self.create_all(&create, hash).await;
        self.delete_all(&delete).await?;
        created
    }

    /// Creates the nodes' pods in slow-start batches of 1, 2, 4, ... (upstream's
    /// slowStartBatch), each batch in parallel; the first batch with a failure stops the rest,
    /// so an admission or quota error costs a few requests rather than thousands.
    async fn create_all(&self, nodes: &[String], hash: &str) -> Result<()> {
        let mut rest = nodes;
        let mut batch = SLOW_START_INITIAL_BATCH;
        while !rest.is_empty() {
            let (now, later) = rest.split_at(batch.min(rest.len()));
            let results =
                futures::future::join_all(now.iter().map(|node| self.create(node, hash))).await;
            results.into_iter().collect::<Result<Vec<()>>>()?;
            rest = later;
            batch *= 2;
        }
        Ok(())
    }

    /// Deletes the pods in parallel, as upstream does.
    async fn delete_all(&self, pods: &[Arc<Pod>]) -> Result<()> {
        let results = futures::future::join_all(pods.iter().map(|p| self.delete(p))).await;
        results.into_iter().collect::<Result<Vec<()>>>()?;
        Ok(())
    }

    /// (should run, may stay) on the node, computed once per sync (see [`Sync::placements`]).
    fn placement(&self, node: &str) -> (bool, bool) {
        self.placements.get(node).copied().unwrap_or((false, false))
    }

    /// Two pods on a node during a surge: one old, one new.
    fn surging(&self, hash: &str, pods: &[Arc<Pod>]) -> bool {
        self.max_surge() > 0
            && pods.len() == 2
            && pods.iter().filter(|p| is_current(p, hash)).count() == 1
    }

    /// The nodes a daemon pod should run on, by name.
    fn desired_nodes(&self) -> Vec<String> {
        self.placements
            .iter()
            .filter(|(_, (run, _))| *run)
            .map(|(n, _)| n.clone())
            .collect()
    }

    fn rolling_param(&self, surge: bool) -> i32 {
        let ru = self
            .spec()
            .update_strategy
            .as_ref()
            .and_then(|s| s.rolling_update.as_ref());
        let value = ru.and_then(|r| {
            if surge {
                r.max_surge.clone()
            } else {
                r.max_unavailable.clone()
            }
        });
        let desired = self.desired_nodes().len() as i32;
        match value {
            None if surge => 0,
            None => 1,
            Some(IntOrString::Int(n)) => n,
            Some(IntOrString::String(p)) => {
                let pct: i32 = p.trim_end_matches('%').parse().unwrap_or(0);
                // maxSurge rounds up, maxUnavailable down (then at least one if no surge).
                if surge {
                    (desired * pct + 99) / 100
                } else {
                    desired * pct / 100
                }
            }
        }
    }

    fn max_surge(&self) -> i32 {
        self.rolling_param(true)
    }

    fn max_unavailable(&self) -> i32 {
        let unavailable = self.rolling_param(false);
        if unavailable == 0 && self.max_surge() == 0 {
            1
        } else {
            unavailable
        }
    }

    /// Upstream's rollingUpdate: replace old pods within the unavailability (or surge) budget.
    async fn rolling_update(&mut self, hash: &str) -> Result<Option<Duration>> {
        let min_ready =
            Duration::from_secs(self.spec().min_ready_seconds.unwrap_or(0).max(0) as u64);
        let available = |p: &Pod| pods::is_available(p, min_ready, self.now);
        let desired = self.desired_nodes();
        let surge = self.max_surge();
        let mut unavailable_budget = self.max_unavailable();
        let mut delete = Vec::new();
        let mut surge_nodes = Vec::new();
        let mut old_available = Vec::new();
        let mut requeue = None;
        for node in &desired {
            let pods: Vec<_> = self
                .by_node
                .get(node)
                .into_iter()
                .flatten()
                .filter(|p| p.metadata.deletion_timestamp.is_none() && pods::phase(p) != "Failed")
                .cloned()
                .collect();
            let new = pods.iter().find(|p| is_current(p, hash));
            let old: Vec<_> = pods
                .iter()
                .filter(|p| !is_current(p, hash))
                .cloned()
                .collect();
            match (new, old.is_empty()) {
                (Some(n), false) if available(n) => delete.extend(old),
                (Some(_), false) => {
                    unavailable_budget -= 1;
                    requeue = Some(Duration::from_secs(1));
                }
                (Some(n), true) => {
                    if !available(n) {
                        unavailable_budget -= 1;
                    }
                }
                (None, false) => {
                    if old.iter().any(|p| available(p)) {
                        old_available.push((node.clone(), old));
                    } else {
                        // Not serving anyway: replace at once.
                        delete.extend(old);
                    }
                }
                (None, true) => unavailable_budget -= 1,
            }
        }
        for (node, old) in old_available {
            if surge > 0 {
                if (surge_nodes.len() as i32) < surge {
                    surge_nodes.push(node);
                }
            } else if unavailable_budget > 0 {
                unavailable_budget -= 1;
                delete.extend(old);
            }
        }
        self.create_all(&surge_nodes, hash).await?;
        self.delete_all(&delete).await?;
        if min_ready > Duration::ZERO {
            requeue = requeue.or(Some(min_ready));
        }
        Ok(requeue)
    }

    async fn create(&self, node: &str, hash: &str) -> Result<()> {
        let pod = self.pod_for(node, hash);
        let ns = self.ds.namespace().unwrap_or_default();
        match self.pods_api.create(&PostParams::default(), &pod).await {
            Ok(created) => {
                self.state
                    .expectations
                    .expect(&self.key, &ns, &created.name_any(), Expect::Exists);
                self.event(
                    EventType::Normal,
                    "SuccessfulCreate",
                    &format!("Created pod: {}", created.name_any()),
                )
                .await;
                Ok(())
            }
            Err(e) => {
                self.event(
                    EventType::Warning,
                    "FailedCreate",
                    &format!("Error creating: {e}"),
                )
                .await;
                Err(e.into())
            }
        }
    }

    async fn delete(&self, pod: &Pod) -> Result<()> {
        let name = pod.name_any();
        let ns = self.ds.namespace().unwrap_or_default();
        match self.pods_api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        self.state
            .expectations
            .expect(&self.key, &ns, &name, Expect::Gone);
        self.event(
            EventType::Normal,
            "SuccessfulDelete",
            &format!("Deleted pod: {name}"),
        )
        .await;
        Ok(())
    }

    async fn update_status(&mut self, hash: &str, collisions: i32) -> Result<()> {
        let min_ready =
            Duration::from_secs(self.spec().min_ready_seconds.unwrap_or(0).max(0) as u64);
        let desired_nodes: BTreeSet<String> = self.desired_nodes().into_iter().collect();
        let mut status = DaemonSetStatus {
            desired_number_scheduled: desired_nodes.len() as i32,
            observed_generation: self.ds.metadata.generation,
            collision_count: Some(collisions).filter(|c| *c > 0),
            ..Default::default()
        };
        let (mut ready, mut available, mut updated) = (0, 0, 0);
        for (node, pods) in &self.by_node {
            let alive: Vec<_> = pods.iter().filter(|p| pods::is_active(p)).collect();
            if alive.is_empty() {
                continue;
            }
            if !desired_nodes.contains(node) {
                status.number_misscheduled += 1;
                continue;
            }
            status.current_number_scheduled += 1;
            // The newest pod of the node speaks for it.
            let newest = alive
                .iter()
                .max_by_key(|p| p.creation_timestamp().map(|t| t.0))
                .expect("not empty");
            if pods::is_ready(newest) {
                ready += 1;
                if pods::is_available(newest, min_ready, self.now) {
                    available += 1;
                }
            }
            if is_current(newest, hash) {
                updated += 1;
            }
        }
        status.number_ready = ready;
        status.number_available = Some(available);
        status.updated_number_scheduled = Some(updated);
        status.number_unavailable = Some(status.desired_number_scheduled - available);
        if self.ds.status.as_ref() == Some(&status) {
            return Ok(());
        }
        let mut ds = self.ds.clone();
        ds.status = Some(status);
        let api: Api<DaemonSet> = Api::namespaced(
            self.state.client.clone(),
            &ds.namespace().unwrap_or_default(),
        );
        api.replace_status(&ds.name_any(), &PostParams::default(), &ds)
            .await?;
        Ok(())
    }

    /// Records an event without holding up the sync (a burst of creates is not serialised
    /// behind one event write each).
    async fn event(&self, type_: EventType, reason: &str, note: &str) {
        let regarding = self.ds.object_ref(&());
        let recorder = self.state.recorder.clone();
        let (reason, note) = (reason.to_string(), note.to_string());
        tokio::spawn(async move {
            events::record(&recorder, &regarding, type_, &reason, &note).await;
        });
    }
}

fn is_current(pod: &Pod, hash: &str) -> bool {
    pod.labels().get(history::REVISION_HASH).map(String::as_str) == Some(hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeSpec, PodSpec, Taint};

    fn node(name: &str, taint: Option<(&str, &str)>) -> Node {
        Node {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: taint.map(|(key, effect)| {
                    vec![Taint {
                        key: key.into(),
                        effect: effect.into(),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn daemon_pod(node_name: &str) -> Pod {
        let mut pod = Pod {
            spec: Some(PodSpec {
                tolerations: Some(daemon_tolerations(false)),
                ..Default::default()
            }),
            ..Default::default()
        };
        pin_to_node(&mut pod, node_name);
        pod
    }

    #[test]
    fn taints_stop_placement_and_no_execute_evicts() {
        assert_eq!(should_run(&daemon_pod("a"), &node("a", None)), (true, true));
        assert_eq!(
            should_run(&daemon_pod("a"), &node("b", None)),
            (false, false)
        );
        assert_eq!(
            should_run(
                &daemon_pod("a"),
                &node("a", Some(("dedicated", "NoSchedule")))
            ),
            (false, true)
        );
        assert_eq!(
            should_run(
                &daemon_pod("a"),
                &node("a", Some(("dedicated", "NoExecute")))
            ),
            (false, false)
        );
        // Daemon pods tolerate an unschedulable or not-ready node.
        assert_eq!(
            should_run(
                &daemon_pod("a"),
                &node(
                    "a",
                    Some(("node.kubernetes.io/unschedulable", "NoSchedule"))
                )
            ),
            (true, true)
        );
        assert_eq!(target_node(&daemon_pod("a")).as_deref(), Some("a"));
    }
}
