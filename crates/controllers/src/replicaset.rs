//! The ReplicaSet controller (upstream's pkg/controller/replicaset): keeps `spec.replicas`
//! active pods matching each ReplicaSet's selector, adopting orphans and releasing pods that no
//! longer match, and reports what it sees in the status.
//!
//! One pod reflector is both the cache the reconcile reads and the trigger that wakes the
//! ReplicaSets a pod belongs to (or could be adopted by). Because that cache lags behind the
//! controller's own writes, every pod it creates or deletes is an expectation; until all are
//! seen, a reconcile only updates status, so a stale cache never creates or deletes twice.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use component_base::label_selector;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::events;
use crate::expectations::{Expect, Expectations};
use crate::ownership::{self, Claim};
use crate::pods;

const NAME: &str = "replicaset";
const ACCOUNT: &str = "replicaset-controller";

/// Upstream's BurstReplicas: at most this many pods created or deleted per sync.
const BURST_REPLICAS: usize = 500;

/// Upstream's pod-deletion-cost annotation: cheaper pods go first.
const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

struct State {
    client: Client,
    pods: Store<Pod>,
    sets: Store<ReplicaSet>,
    expectations: Expectations,
    /// Events get a recorder each: kube-rs's folds events of one reason into a series that
    /// keeps the first note, where upstream keeps each distinct message.
    ctx: Context,
}

pub async fn run(ctx: Context) -> Result<()> {
    let client = ctx.client_for(ACCOUNT).await?;
    let (pods, writer) = reflector::store();
    let pod_events = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .touched_objects();
    let controller = Controller::new(
        Api::<ReplicaSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let sets = controller.store();
    let state = Arc::new(State {
        client,
        pods,
        sets: sets.clone(),
        expectations: Expectations::default(),
        ctx: ctx.clone(),
    });
    let seen = state.clone();
    controller
        .watches_stream(pod_events, move |pod| {
            observe(&seen, &pod);
            sets_for_pod(&sets, &pod)
        })
        .run(reconcile, error_policy, state)
        .for_each(|result| {
            ctx.metrics.reconciled(NAME, &result);
            std::future::ready(())
        })
        .await;
    Ok(())
}

/// The ReplicaSet controlling the pod, or, for an orphan, every ReplicaSet that could adopt it.
fn sets_for_pod(sets: &Store<ReplicaSet>, pod: &Pod) -> Vec<ObjectRef<ReplicaSet>> {
    let ns = pod.namespace().unwrap_or_default();
    if let Some(owner) = ownership::controller_of(&pod.metadata) {
        return match owner.kind == "ReplicaSet" && owner.api_version == "apps/v1" {
            true => vec![ObjectRef::new(&owner.name).within(&ns)],
            false => Vec::new(),
        };
    }
    sets.state_filter(|rs| {
        rs.metadata.namespace.as_deref() == Some(ns.as_str())
            && rs
                .spec
                .as_ref()
                .is_some_and(|s| label_selector::matches(&s.selector, pod.metadata.labels.as_ref()))
    })
    .iter()
    .map(|rs| ObjectRef::from_obj(rs.as_ref()))
    .collect()
}

/// A conflict (a write from a stale cache) is retried at once, as upstream's rate limiter
/// starts at 5 ms; anything else after a pause.
/// Counts a pod the watch shows as seen by the expectations of its ReplicaSet.
fn observe(state: &State, pod: &Pod) {
    let Some(owner) = ownership::controller_of(&pod.metadata).filter(|o| o.kind == "ReplicaSet")
    else {
        return;
    };
    let ns = pod.namespace().unwrap_or_default();
    state
        .expectations
        .observed(&format!("{ns}/{}", owner.name), &ns, &pod.name_any());
}

fn error_policy(_rs: Arc<ReplicaSet>, error: &Error, _state: Arc<State>) -> Action {
    tracing::debug!(%error, "replicaset: retrying");
    match error {
        Error::Kube(kube::Error::Api(s)) if s.code == 409 => {
            Action::requeue(Duration::from_millis(100))
        }
        _ => Action::requeue(Duration::from_secs(1)),
    }
}

fn key(rs: &ReplicaSet) -> String {
    format!("{}/{}", rs.namespace().unwrap_or_default(), rs.name_any())
}

async fn reconcile(rs: Arc<ReplicaSet>, state: Arc<State>) -> Result<Action> {
    let _ = state.pods.wait_until_ready().await;
    let ns = rs.namespace().unwrap_or_default();
    let key = key(&rs);
    let spec = rs.spec.clone().unwrap_or_default();
    let pods_api: Api<Pod> = Api::namespaced(state.client.clone(), &ns);
    // Expectations are checked before the cache is read, as upstream: what the check saw is at
    // least as fresh as the pods listed after it.
    let satisfied = state.expectations.satisfied(&key, &state.pods);
    let owned = claim_pods(&rs, &pods_api, &state).await?;
    let manage = match satisfied && rs.metadata.deletion_timestamp.is_none() {
        true => manage_replicas(&rs, &owned, &pods_api, &state).await,
        false => Ok(()),
    };
    let status = calculate_status(&rs, &owned, manage.as_ref().err());
    let updated = update_status(&rs, status, &state).await?;
    manage?;
    let status = updated.status.unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1);
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    // Pods become available minReadySeconds after turning ready, with no event to say so.
    if min_ready > 0
        && status.ready_replicas.unwrap_or(0) == replicas
        && status.available_replicas.unwrap_or(0) != replicas
    {
        return Ok(Action::requeue(Duration::from_secs(min_ready as u64)));
    }
    Ok(Action::await_change())
}

/// Active pods of the namespace that are this ReplicaSet's after adopting matching orphans and
/// releasing owned pods that no longer match (upstream's claimPods).
async fn claim_pods(rs: &ReplicaSet, api: &Api<Pod>, state: &State) -> Result<Vec<Arc<Pod>>> {
    let ns = rs.namespace().unwrap_or_default();
    let uid = rs.uid().unwrap_or_default();
    let selector = rs
        .spec
        .as_ref()
        .map(|s| s.selector.clone())
        .unwrap_or_default();
    let deleting = rs.metadata.deletion_timestamp.is_some();
    let candidates = state.pods.state_filter(|p| {
        p.metadata.namespace.as_deref() == Some(ns.as_str()) && pods::is_active(p)
    });
    let mut owned = Vec::new();
    let mut fresh_checked = false;
    for pod in candidates {
        match ownership::claim(&uid, deleting, &selector, &pod.metadata) {
            Claim::Owned => owned.push(pod),
            Claim::Adopt => {
                // Upstream re-reads the owner before adopting: a cached ReplicaSet may already
                // be gone or being deleted.
                if !fresh_checked {
                    let sets: Api<ReplicaSet> = Api::namespaced(state.client.clone(), &ns);
                    let fresh = sets.get(&rs.name_any()).await?;
                    if fresh.uid() != rs.uid() || fresh.metadata.deletion_timestamp.is_some() {
                        return Err(Error::Invalid(format!(
                            "replicaset {} changed; not adopting",
                            key(rs)
                        )));
                    }
                    fresh_checked = true;
                }
                match ownership::adopt(api, &pod.metadata, ownership::controller_ref(rs)).await {
                    Ok(adopted) => owned.push(Arc::new(adopted)),
                    Err(Error::Kube(kube::Error::Api(e))) if e.code == 404 || e.code == 409 => {}
                    Err(e) => return Err(e),
                }
            }
            Claim::Release => match ownership::release(api, &pod.metadata, &uid).await {
                Ok(_) => {}
                Err(Error::Kube(kube::Error::Api(e))) if e.code == 404 || e.code == 409 => {}
                Err(e) => return Err(e),
            },
            Claim::Ignore => {}
        }
    }
    Ok(owned)
}

/// Creates or deletes pods so that `spec.replicas` are active (upstream's manageReplicas).
async fn manage_replicas(
    rs: &ReplicaSet,
    owned: &[Arc<Pod>],
    api: &Api<Pod>,
    state: &State,
) -> Result<()> {
    let wanted = rs
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0) as usize;
    match owned.len().cmp(&wanted) {
        Ordering::Less => {
            create_pods(rs, (wanted - owned.len()).min(BURST_REPLICAS), api, state).await
        }
        Ordering::Greater => {
            let surplus = (owned.len() - wanted).min(BURST_REPLICAS);
            let related = related_pods(rs, state);
            let doomed = pods_to_delete(owned, &related, surplus);
            delete_pods(rs, doomed, api, state).await
        }
        Ordering::Equal => Ok(()),
    }
}

/// Creates `count` pods in batches of 1, 2, 4, ... and stops at the first batch with a
/// failure, so that a quota or admission error costs one request rather than hundreds
/// (upstream's slowStartBatch).
async fn create_pods(rs: &ReplicaSet, count: usize, api: &Api<Pod>, state: &State) -> Result<()> {
    let Some(template) = rs.spec.as_ref().and_then(|s| s.template.clone()) else {
        return Err(Error::Invalid(format!(
            "replicaset {} has no template",
            key(rs)
        )));
    };
    let ns = rs.namespace().unwrap_or_default();
    let prefix = format!("{}-", rs.name_any());
    let pod = pods::from_template(&template, &ns, &prefix, ownership::controller_ref(rs));
    let key = key(rs);
    let mut remaining = count;
    let mut batch = 1;
    while remaining > 0 {
        let size = batch.min(remaining);
        let params = PostParams::default();
        let results = futures::future::join_all((0..size).map(|_| api.create(&params, &pod))).await;
        let mut failure = None;
        for result in results {
            match result {
                Ok(created) => {
                    let name = created.name_any();
                    state.expectations.expect(&key, &ns, &name, Expect::Exists);
                    record(
                        state,
                        rs,
                        EventType::Normal,
                        "SuccessfulCreate",
                        format!("Created pod: {name}"),
                    );
                }
                // Every create fails while the namespace is being deleted; upstream counts that
                // as no failure and says nothing.
                Err(kube::Error::Api(e)) if is_namespace_terminating(&e) => {}
                Err(e) => {
                    let message = match &e {
                        kube::Error::Api(s) => s.message.clone(),
                        other => other.to_string(),
                    };
                    record(
                        state,
                        rs,
                        EventType::Warning,
                        "FailedCreate",
                        format!("Error creating: {message}"),
                    );
                    failure.get_or_insert(Error::Invalid(message));
                }
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        remaining -= size;
        batch *= 2;
    }
    Ok(())
}

fn is_namespace_terminating(e: &kube::core::Status) -> bool {
    e.code == 403 && e.message.contains("because it is being terminated")
}

async fn delete_pods(
    rs: &ReplicaSet,
    doomed: Vec<Arc<Pod>>,
    api: &Api<Pod>,
    state: &State,
) -> Result<()> {
    let key = key(rs);
    let ns = rs.namespace().unwrap_or_default();
    for pod in &doomed {
        state
            .expectations
            .expect(&key, &ns, &pod.name_any(), Expect::Gone);
    }
    let results =
        futures::future::join_all(doomed.iter().map(|p| async move {
            (p, api.delete(&p.name_any(), &DeleteParams::default()).await)
        }))
        .await;
    let mut failure = None;
    for (pod, result) in results {
        let name = pod.name_any();
        match result {
            Ok(_) => record(
                state,
                rs,
                EventType::Normal,
                "SuccessfulDelete",
                format!("Deleted pod: {name}"),
            ),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                record(
                    state,
                    rs,
                    EventType::Warning,
                    "FailedDelete",
                    format!("Error deleting: {e}"),
                );
                failure.get_or_insert(Error::Kube(e));
            }
        }
    }
    failure.map_or(Ok(()), Err)
}

/// Active pods of every ReplicaSet with the same controller as this one (the Deployment's
/// other ReplicaSets), which count when ranking pods by how crowded their node is.
fn related_pods(rs: &ReplicaSet, state: &State) -> Vec<Arc<Pod>> {
    let ns = rs.namespace().unwrap_or_default();
    let mut uids = vec![rs.uid().unwrap_or_default()];
    if let Some(owner) = ownership::controller_of(&rs.metadata) {
        uids.extend(
            state
                .sets
                .state_filter(|s| {
                    s.metadata.namespace.as_deref() == Some(ns.as_str())
                        && ownership::controller_of(&s.metadata).is_some_and(|o| o.uid == owner.uid)
                })
                .iter()
                .filter_map(|s| s.uid()),
        );
    }
    state.pods.state_filter(|p| {
        p.metadata.namespace.as_deref() == Some(ns.as_str())
            && pods::is_active(p)
            && ownership::controller_of(&p.metadata).is_some_and(|o| uids.contains(&o.uid))
    })
}

/// The `count` pods to delete first, ranked as upstream's ActivePodsWithRanks.
fn pods_to_delete(owned: &[Arc<Pod>], related: &[Arc<Pod>], count: usize) -> Vec<Arc<Pod>> {
    let mut ranked = owned.to_vec();
    if count < ranked.len() {
        let mut on_node: HashMap<String, usize> = HashMap::new();
        for pod in related {
            *on_node.entry(node_of(pod).to_string()).or_default() += 1;
        }
        let now = Timestamp::now();
        ranked.sort_by(|a, b| {
            let rank = |p: &Pod| on_node.get(node_of(p)).copied().unwrap_or(0);
            delete_order(a, b, rank(a), rank(b), now)
        });
    }
    ranked.truncate(count);
    ranked
}

fn node_of(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

/// Which of two pods to delete first (Less means delete first), upstream's order: unassigned,
/// pending before unknown before running, not ready, lower deletion cost, more pods of the
/// same owner on its node, ready more recently (logarithmic buckets), more restarts, newer.
fn delete_order(a: &Pod, b: &Pod, rank_a: usize, rank_b: usize, now: Timestamp) -> Ordering {
    let assigned = |p: &Pod| !node_of(p).is_empty();
    let phase = |p: &Pod| match pods::phase(p) {
        "Unknown" => 1,
        "Running" => 2,
        _ => 0,
    };
    let cost = |p: &Pod| {
        p.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(DELETION_COST))
            .and_then(|v| v.parse::<i32>().ok())
            .unwrap_or(0)
    };
    if node_of(a) != node_of(b) && (!assigned(a) || !assigned(b)) {
        return assigned(a).cmp(&assigned(b));
    }
    phase(a)
        .cmp(&phase(b))
        .then_with(|| pods::is_ready(a).cmp(&pods::is_ready(b)))
        .then_with(|| cost(a).cmp(&cost(b)))
        .then_with(|| rank_b.cmp(&rank_a))
        .then_with(|| match (pods::is_ready(a), pods::is_ready(b)) {
            (true, true) => newer_first(ready_time(a), ready_time(b), now, a, b),
            _ => Ordering::Equal,
        })
        .then_with(|| max_restarts(b).cmp(&max_restarts(a)))
        .then_with(|| {
            let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            newer_first(created(a), created(b), now, a, b)
        })
}

/// Newer (or unknown) times first; with upstream's LogarithmicScaleDown, times in the same
/// power-of-two age bucket are equal and ordered by uid instead.
fn newer_first(
    ta: Option<Timestamp>,
    tb: Option<Timestamp>,
    now: Timestamp,
    a: &Pod,
    b: &Pod,
) -> Ordering {
    match (ta, tb) {
        (x, y) if x == y => Ordering::Equal,
        (None, _) => Ordering::Less,
        (_, None) => Ordering::Greater,
        (Some(x), Some(y)) => {
            let bucket = |t: Timestamp| {
                let age = now.as_nanosecond() - t.as_nanosecond();
                if age > 0 {
                    (age as f64).log2() as i64
                } else {
                    -1
                }
            };
            match bucket(x).cmp(&bucket(y)) {
                Ordering::Equal => a.metadata.uid.cmp(&b.metadata.uid),
                other => other,
            }
        }
    }
}

fn ready_time(pod: &Pod) -> Option<Timestamp> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?
        .last_transition_time
        .as_ref()
        .map(|t| t.0)
}

/// The highest restart count of the regular containers, then of restartable init containers.
fn max_restarts(pod: &Pod) -> (i32, i32) {
    let Some(status) = pod.status.as_ref() else {
        return (0, 0);
    };
    let regular = status
        .container_statuses
        .iter()
        .flatten()
        .map(|c| c.restart_count)
        .max()
        .unwrap_or(0);
    let sidecars: Vec<&str> = pod
        .spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .filter(|c| c.restart_policy.as_deref() == Some("Always"))
        .map(|c| c.name.as_str())
        .collect();
    let sidecar = status
        .init_container_statuses
        .iter()
        .flatten()
        .filter(|c| sidecars.contains(&c.name.as_str()))
        .map(|c| c.restart_count)
        .max()
        .unwrap_or(0);
    (regular, sidecar)
}

/// Upstream's calculateStatus: counts over the active owned pods, and the ReplicaFailure
/// condition while creating or deleting fails.
fn calculate_status(
    rs: &ReplicaSet,
    owned: &[Arc<Pod>],
    failure: Option<&Error>,
) -> ReplicaSetStatus {
    let spec = rs.spec.clone().unwrap_or_default();
    let template_labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let min_ready = Duration::from_secs(spec.min_ready_seconds.unwrap_or(0).max(0) as u64);
    let now = Timestamp::now();
    let count = |f: &dyn Fn(&Pod) -> bool| owned.iter().filter(|p| f(p)).count() as i32;
    let mut status = rs.status.clone().unwrap_or_default();
    status.replicas = owned.len() as i32;
    status.fully_labeled_replicas = Some(count(&|p| {
        let labels = p.metadata.labels.clone().unwrap_or_default();
        template_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
    }));
    status.ready_replicas = Some(count(&|p| pods::is_ready(p)));
    status.available_replicas = Some(count(&|p| pods::is_available(p, min_ready, now)));
    status.observed_generation = rs.metadata.generation;
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let has_failure = conditions.iter().any(|c| c.type_ == "ReplicaFailure");
    match failure {
        Some(e) if !has_failure => {
            let wanted = spec.replicas.unwrap_or(1) as usize;
            let reason = match owned.len().cmp(&wanted) {
                Ordering::Less => "FailedCreate",
                Ordering::Greater => "FailedDelete",
                Ordering::Equal => "",
            };
            conditions.push(ReplicaSetCondition {
                type_: "ReplicaFailure".into(),
                status: "True".into(),
                reason: Some(reason.into()),
                message: Some(e.to_string()),
                last_transition_time: Some(Time(
                    Timestamp::from_second(now.as_second()).unwrap_or(now),
                )),
            });
        }
        None if has_failure => conditions.retain(|c| c.type_ != "ReplicaFailure"),
        _ => {}
    }
    if conditions.is_empty() {
        status.conditions = None;
    }
    status
}

/// Writes the status if it changed, re-reading the ReplicaSet once on a conflict.
async fn update_status(
    rs: &ReplicaSet,
    status: ReplicaSetStatus,
    state: &State,
) -> Result<ReplicaSet> {
    let current = rs.status.clone().unwrap_or_default();
    if same_status(&current, &status) && current.observed_generation == rs.metadata.generation {
        return Ok(rs.clone());
    }
    let api: Api<ReplicaSet> =
        Api::namespaced(state.client.clone(), &rs.namespace().unwrap_or_default());
    let mut updated = rs.clone();
    updated.status = Some(status.clone());
    match api
        .replace_status(&rs.name_any(), &PostParams::default(), &updated)
        .await
    {
        Ok(rs) => Ok(rs),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let mut fresh = api.get(&rs.name_any()).await?;
            fresh.status = Some(ReplicaSetStatus {
                observed_generation: status.observed_generation.min(fresh.metadata.generation),
                ..status
            });
            Ok(api
                .replace_status(&rs.name_any(), &PostParams::default(), &fresh)
                .await?)
        }
        Err(e) => Err(e.into()),
    }
}

fn same_status(a: &ReplicaSetStatus, b: &ReplicaSetStatus) -> bool {
    let zero = |v: Option<i32>| v.unwrap_or(0);
    a.replicas == b.replicas
        && zero(a.fully_labeled_replicas) == zero(b.fully_labeled_replicas)
        && zero(a.ready_replicas) == zero(b.ready_replicas)
        && zero(a.available_replicas) == zero(b.available_replicas)
        && a.conditions.clone().unwrap_or_default() == b.conditions.clone().unwrap_or_default()
}

/// Publishes an event about the ReplicaSet off the sync path, with a recorder of its own so
/// that one note per pod is kept (kube-rs's recorder folds events of one reason into a series
/// that keeps the first note, where upstream keeps each distinct message).
fn record(state: &State, rs: &ReplicaSet, type_: EventType, reason: &'static str, note: String) {
    let recorder = state.ctx.recorder(state.client.clone(), ACCOUNT);
    let regarding = rs.object_ref(&());
    tokio::spawn(async move { events::record(&recorder, &regarding, type_, reason, &note).await });
}
