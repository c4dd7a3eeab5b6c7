//! The scheduler's main loop: watches feed the cache and the queue, one cycle at a time takes a
//! pod from the queue, places it, assumes it and binds it in the background.
//!
//! With leader election the whole session (watches, queue, bindings in flight) lives only while
//! this process holds the lease and is dropped the moment it does not, so two schedulers never
//! act at once.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio::time::Instant;

use component_base::leader_election::{self, default_identity, LeaseConfig};

use crate::binder;
use crate::cache::{bound_node, is_terminal, pod_key, Cache};
use crate::events::{self, Recorder};
use crate::metrics::Metrics;
use crate::placement;
use crate::preemption;
use crate::queue::Queue;

/// The scheduler's settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Pods whose `spec.schedulerName` is this are ours (`default-scheduler`).
    pub scheduler_name: String,
    /// Schedule only while holding the `kube-system/kube-scheduler` Lease.
    pub leader_election: bool,
    /// Lease holder identity and event `reportingInstance`; `None` = `<hostname>_<random>`.
    pub identity: Option<String>,
    /// Lease location and timings; `None` = upstream's (`kube-system/kube-scheduler`, 15 s/10 s/2 s).
    pub lease: Option<LeaseConfig>,
    pub metrics: Metrics,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            scheduler_name: "default-scheduler".into(),
            leader_election: true,
            identity: None,
            lease: None,
            metrics: Metrics::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("invalid scheduler configuration: {0}")]
    Config(String),
}

/// Runs the scheduler until `shutdown` completes; a held lease is released on the way out.
pub async fn run(
    client: Client,
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), SchedulerError> {
    if config.scheduler_name.is_empty() {
        return Err(SchedulerError::Config("the scheduler name is empty".into()));
    }
    let identity = config.identity.clone().unwrap_or_else(default_identity);
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let work = async {
        if config.leader_election {
            elected(client, &config, &identity, &stopped).await;
        } else {
            config.metrics.leader(true);
            tokio::select! {
                _ = session(client, &config, &identity) => {}
                _ = stopped() => {}
            }
        }
    };
    tokio::pin!(work);
    tokio::select! {
        _ = &mut work => {}
        _ = shutdown => {
            stop_tx.send_replace(true);
            work.await;
        }
    }
    tracing::info!(scheduler = %config.scheduler_name, "scheduler stopped");
    Ok(())
}

/// Campaigns for the lease and runs a session while leading.
async fn elected<F, Fut>(client: Client, config: &Config, identity: &str, stopped: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    let lease = config
        .lease
        .clone()
        .map(|l| LeaseConfig {
            identity: identity.to_string(),
            ..l
        })
        .unwrap_or_else(|| LeaseConfig::kube_system("kube-scheduler", identity));
    let session = || session(client.clone(), config, identity);
    let on_change = |leading| config.metrics.leader(leading);
    leader_election::run_while_leading(client.clone(), lease, on_change, session, stopped()).await;
}

/// What the watches and the scheduling loop share.
#[derive(Default)]
struct State {
    cache: Cache,
    queue: Queue,
    nodes_synced: bool,
    pods_synced: bool,
    /// Buffers for a relist in progress.
    node_relist: Option<Vec<Node>>,
    pod_relist: Option<Vec<Pod>>,
}

struct Shared {
    state: Mutex<State>,
    wake: Notify,
    client: Client,
    recorder: Recorder,
    metrics: Metrics,
    scheduler_name: String,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the queue half-updated in a way that
        // matters more than stopping; keep scheduling with what is there.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_ours(&self, pod: &Pod) -> bool {
        pending_for(pod, &self.scheduler_name)
    }
}

/// Whether `pod` waits for the scheduler named `scheduler_name`: not bound, not being deleted,
/// not finished, and without scheduling gates (upstream's PodSchedulingReadiness).
fn pending_for(pod: &Pod, scheduler_name: &str) -> bool {
    let spec = pod.spec.as_ref();
    let name = spec
        .and_then(|s| s.scheduler_name.as_deref())
        .unwrap_or("default-scheduler");
    let gated = spec
        .and_then(|s| s.scheduling_gates.as_ref())
        .is_some_and(|g| !g.is_empty());
    name == scheduler_name
        && !gated
        && bound_node(pod).is_none()
        && pod.metadata.deletion_timestamp.is_none()
        && !is_terminal(pod)
}

/// Watches, queue and scheduling loop, until dropped.
async fn session(client: Client, config: &Config, identity: &str) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        wake: Notify::new(),
        recorder: Recorder::new(client.clone(), &config.scheduler_name, identity),
        client: client.clone(),
        metrics: config.metrics.clone(),
        scheduler_name: config.scheduler_name.clone(),
    });
    tokio::select! {
        _ = watch_all(&shared, on_node) => {}
        _ = watch_all(&shared, on_pod) => {}
        _ = schedule_loop(&shared) => {}
    }
}

/// Feeds every event of a cluster-wide watch of `K` to `handle`, retrying with backoff.
async fn watch_all<K, H>(shared: &Shared, handle: H)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
    H: Fn(&Shared, Event<K>),
{
    let api: Api<K> = Api::all(shared.client.clone());
    let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
    let mut stream = std::pin::pin!(stream.into_stream());
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(ev) => handle(shared, ev),
            Err(e) => tracing::warn!(error = %e, kind = %K::kind(&()), "watch failed; retrying"),
        }
    }
}

fn on_node(shared: &Shared, ev: Event<Node>) {
    let mut s = shared.lock();
    let now = Instant::now();
    match ev {
        Event::Apply(node) => {
            s.cache.set_node(node);
            s.queue.move_all(now);
        }
        Event::Delete(node) => s
            .cache
            .remove_node(node.metadata.name.as_deref().unwrap_or_default()),
        Event::Init => s.node_relist = Some(Vec::new()),
        Event::InitApply(node) => s.node_relist.get_or_insert_with(Vec::new).push(node),
        Event::InitDone => {
            let nodes = s.node_relist.take().unwrap_or_default();
            s.cache.replace_nodes(nodes);
            s.nodes_synced = true;
            s.queue.move_all(now);
        }
    }
    drop(s);
    shared.wake.notify_one();
}

fn on_pod(shared: &Shared, ev: Event<Pod>) {
    let mut s = shared.lock();
    let now = Instant::now();
    match ev {
        Event::Apply(pod) => apply_pod(shared, &mut s, pod, now),
        Event::Delete(pod) => {
            let key = pod_key(&pod);
            let was_placed = s.cache.is_placed(&pod);
            s.cache.remove_pod(&key);
            s.queue.remove(&key);
            if was_placed {
                // Its resources, ports and affinity are free now.
                s.queue.move_all(now);
            }
        }
        Event::Init => s.pod_relist = Some(Vec::new()),
        Event::InitApply(pod) => s.pod_relist.get_or_insert_with(Vec::new).push(pod),
        Event::InitDone => {
            let pods = s.pod_relist.take().unwrap_or_default();
            let pods: Vec<Arc<Pod>> = pods.into_iter().map(Arc::new).collect();
            s.cache.replace_pods(pods.clone());
            for pod in pods {
                queue_if_pending(shared, &mut s, pod, now);
            }
            s.pods_synced = true;
            s.queue.move_all(now);
        }
    }
    drop(s);
    shared.wake.notify_one();
}

fn apply_pod(shared: &Shared, s: &mut State, pod: Pod, now: Instant) {
    let pod = Arc::new(pod);
    let newly_bound = bound_node(&pod).is_some() && !s.cache.is_placed(&pod);
    s.cache.apply_pod(pod.clone());
    queue_if_pending(shared, s, pod, now);
    if newly_bound {
        // A pod another actor placed may satisfy a waiting pod's affinity.
        s.queue.move_all(now);
    }
}

fn queue_if_pending(shared: &Shared, s: &mut State, pod: Arc<Pod>, now: Instant) {
    if shared.is_ours(&pod) && !s.cache.is_placed(&pod) {
        s.queue.add_or_update(pod, now);
    } else {
        s.queue.remove(&pod_key(&pod));
    }
}

/// Takes pods from the queue one at a time; bindings run concurrently in `binds`.
async fn schedule_loop(shared: &Arc<Shared>) {
    let mut binds = JoinSet::new();
    let mut next_start = 0usize;
    let mut last_metrics = Instant::now();
    loop {
        while binds.try_join_next().is_some() {}
        let (pod, wakeup) = {
            let mut s = shared.lock();
            let now = Instant::now();
            if now.duration_since(last_metrics) > Duration::from_secs(1) {
                shared.metrics.queue(s.queue.lengths());
                last_metrics = now;
            }
            if s.nodes_synced && s.pods_synced {
                (s.queue.pop(now), s.queue.next_wakeup())
            } else {
                (None, None)
            }
        };
        let Some(pod) = pod else {
            let sleep = wakeup.unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
            tokio::select! {
                _ = shared.wake.notified() => {}
                _ = tokio::time::sleep_until(sleep) => {}
                Some(_) = binds.join_next(), if !binds.is_empty() => {}
            }
            continue;
        };
        schedule_one(shared, pod, &mut next_start, &mut binds);
        // Let the watches and bindings run between cycles.
        tokio::task::yield_now().await;
    }
}

fn schedule_one(
    shared: &Arc<Shared>,
    pod: Arc<Pod>,
    next_start: &mut usize,
    binds: &mut JoinSet<()>,
) {
    let started = Instant::now();
    let key = pod_key(&pod);
    let snapshot = {
        let s = shared.lock();
        if s.cache.is_placed(&pod) {
            drop(s);
            shared.lock().queue.done(&key);
            return;
        }
        s.cache.snapshot()
    };
    match placement::schedule(&pod, &snapshot, next_start) {
        Ok(chosen) => {
            // Unshared, the cache updates its nodes in place instead of copying them.
            drop(snapshot);
            shared.lock().cache.assume(&pod, &chosen.node);
            tracing::debug!(pod = %key, node = %chosen.node, feasible = chosen.feasible, "assumed");
            let shared = shared.clone();
            binds.spawn(async move { bind(&shared, &pod, &chosen.node, started).await });
        }
        Err(fit) => {
            let outcome = preemption::preempt(&pod, &fit, &snapshot);
            let message = preemption::failed_message(&fit, &outcome);
            tracing::debug!(pod = %key, %message, "unschedulable");
            shared.lock().queue.unschedulable(&key, Instant::now());
            shared.metrics.attempt(
                "unschedulable",
                &shared.scheduler_name,
                started.elapsed().as_secs_f64(),
            );
            let shared = shared.clone();
            binds.spawn(async move { report_unschedulable(&shared, &pod, message, outcome).await });
        }
    }
}

async fn bind(shared: &Shared, pod: &Pod, node: &str, started: Instant) {
    let key = pod_key(pod);
    match binder::bind(&shared.client, pod, node).await {
        Ok(()) => {
            shared.lock().queue.done(&key);
            shared.metrics.attempt(
                "scheduled",
                &shared.scheduler_name,
                started.elapsed().as_secs_f64(),
            );
            tracing::info!(pod = %key, node, "bound");
            shared.recorder.publish(pod, events::scheduled(pod, node));
        }
        Err(e) => {
            let gone = matches!(&e, kube::Error::Api(s) if s.code == 404 || s.code == 409);
            {
                let mut s = shared.lock();
                s.cache.forget(pod);
                if gone {
                    // Deleted, recreated or bound by someone else: the watch tells the rest.
                    s.queue.done(&key);
                } else {
                    // An update seen while the pod was assumed took it out of the queue.
                    let now = Instant::now();
                    s.queue.add_or_update(Arc::new(pod.clone()), now);
                    s.queue.retry(&key, now);
                }
            }
            shared.wake.notify_one();
            shared.metrics.attempt(
                "error",
                &shared.scheduler_name,
                started.elapsed().as_secs_f64(),
            );
            tracing::warn!(pod = %key, node, error = %e, "binding failed");
            let note = events::failed_scheduling(format!("Binding rejected: {e}"));
            shared.recorder.publish(pod, note);
        }
    }
}

async fn report_unschedulable(
    shared: &Shared,
    pod: &Pod,
    message: String,
    outcome: preemption::Outcome,
) {
    shared
        .recorder
        .publish(pod, events::failed_scheduling(message.clone()));
    let nominated = match &outcome {
        preemption::Outcome::Preempt(c) => {
            evict(shared, pod, c).await;
            Some(c.node.as_str())
        }
        preemption::Outcome::NotPossible(_) => None,
    };
    if let Err(e) = binder::mark_unschedulable(
        &shared.client,
        pod,
        binder::UNSCHEDULABLE,
        &message,
        nominated,
    )
    .await
    {
        tracing::warn!(pod = ?pod.metadata.name, error = %e, "could not set PodScheduled=False");
    }
}

/// Deletes the victims; the pod is retried when their deletions arrive through the watch.
async fn evict(shared: &Shared, pod: &Pod, c: &preemption::Candidate) {
    tracing::info!(pod = %pod_key(pod), node = %c.node, victims = ?preemption::victim_keys(c), "preempting");
    for victim in &c.victims {
        shared
            .recorder
            .publish(victim, events::preempted(pod, &c.node));
        if let Err(e) = binder::evict(&shared.client, victim).await {
            tracing::warn!(victim = ?victim.metadata.name, error = %e, "could not evict");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::{pod, PodExt};

    #[test]
    fn pending_pods_are_unbound_ungated_and_ours() {
        let p = pod("p", "", "");
        assert!(pending_for(&p, "default-scheduler"));
        assert!(!pending_for(&p, "other"));
        assert!(!pending_for(&p.clone().on("n1"), "default-scheduler"));
        let mut gated = p.clone();
        gated.spec_mut().scheduling_gates = Some(vec![Default::default()]);
        assert!(!pending_for(&gated, "default-scheduler"));
        let mut mine = p.clone();
        mine.spec_mut().scheduler_name = Some("other".into());
        assert!(pending_for(&mine, "other"));
    }

    #[test]
    fn identities_are_unique() {
        assert_ne!(default_identity(), default_identity());
    }
}
