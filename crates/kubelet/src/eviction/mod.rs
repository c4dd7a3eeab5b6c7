//! Node-pressure eviction, as upstream's eviction manager (pkg/kubelet/eviction): every
//! monitoring interval the signals (memory.available, nodefs.available, nodefs.inodesFree,
//! imagefs.available, imagefs.inodesFree, pid.available) are read from [`stats`](crate::stats)
//! and compared with the hard and soft thresholds; a met threshold sets its node condition
//! (MemoryPressure, DiskPressure, PIDPressure, kept for the pressure transition period after it
//! clears, published as [`Pressure`] for the node status); disk pressure first removes unused
//! images; then at most one pod per interval is evicted, chosen by [`rank`]: phase Failed,
//! reason `Evicted`, upstream's message, an `Evicted` event, its containers stopped.
//!
//! Contract: [`spawn`]`(ctx, Config, Killer) -> EvictionManager`; [`EvictionManager::pressure`]
//! is what the node reports; [`EvictionManager::stop`] ends the loop. Critical pods (static
//! and mirror pods, priority ≥ 2000000000) are never evicted, as upstream. Not done: the
//! admission of new pods under pressure (upstream refuses BestEffort pods under memory
//! pressure), minimum reclaim, allocatable thresholds, memcg notifications.

mod local_volumes;
mod processes;
pub mod rank;
pub mod reclaim;
pub mod signals;
pub mod thresholds;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Taint};
use kube::api::{Api, ListParams};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::context::NodeContext;
use crate::pods::{Killer, Termination, MIRROR_ANNOTATION};
use signals::Observations;
pub use thresholds::{Condition, Signal, Threshold, ThresholdError, Value};

/// Upstream's `SystemCriticalPriority`: pods at or above it are never evicted.
const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;
/// Upstream's `immediateEvictionGracePeriodSeconds` for hard thresholds.
const IMMEDIATE_GRACE: i64 = 1;
/// How long an eviction may take before the next interval's (upstream's podCleanupTimeout).
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The eviction manager's settings (upstream's kubelet configuration of the same names).
#[derive(Debug, Clone)]
pub struct Config {
    /// `--eviction-hard` and `--eviction-soft` (with their grace periods).
    pub thresholds: Vec<Threshold>,
    /// How often the signals are read (upstream's housekeeping interval, 10 s).
    pub monitoring_interval: Duration,
    /// `evictionPressureTransitionPeriod`: how long a condition stays after its pressure ends.
    pub pressure_transition_period: Duration,
    /// `evictionMaxPodGracePeriod`: the grace period of a pod evicted for a soft threshold.
    pub max_pod_grace_period: i64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            // krust's defaults (k3s's 5% of disk rather than upstream's 10%, and no imagefs
            // threshold: the image filesystem is the data dir's on a single machine).
            thresholds: thresholds::statements("memory.available<100Mi,nodefs.available<5%")
                .unwrap_or_default(),
            monitoring_interval: Duration::from_secs(10),
            pressure_transition_period: Duration::from_secs(300),
            max_pod_grace_period: 0,
        }
    }
}

/// The pressure conditions the node reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pressure {
    pub memory: bool,
    pub disk: bool,
    pub pid: bool,
}

/// The running eviction manager.
pub struct EvictionManager {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    pressure: watch::Receiver<Pressure>,
}

impl EvictionManager {
    /// The pressure conditions now, changing as the manager observes.
    pub fn pressure(&self) -> watch::Receiver<Pressure> {
        self.pressure.clone()
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Starts the monitoring loop.
/// `pressure` is where the conditions are published (the pod lifecycle's, for admission).
pub fn spawn(
    ctx: Arc<NodeContext>,
    config: Config,
    killer: Killer,
    pressure_tx: watch::Sender<Pressure>,
) -> EvictionManager {
    let (stop, mut stopped) = watch::channel(false);
    let pressure = pressure_tx.subscribe();
    let task = tokio::spawn(async move {
        let mut manager = Manager {
            ctx,
            config,
            killer,
            first_observed: HashMap::new(),
            last_observed: BTreeMap::new(),
            pressure: pressure_tx,
            last_event: HashMap::new(),
        };
        loop {
            manager.synchronize().await;
            tokio::select! {
                _ = tokio::time::sleep(manager.config.monitoring_interval) => {}
                _ = stopped.wait_for(|s| *s) => return,
            }
        }
    });
    EvictionManager {
        stop,
        task,
        pressure,
    }
}

struct Manager {
    ctx: Arc<NodeContext>,
    config: Config,
    killer: Killer,
    /// When each met threshold (by index) was first seen met, for soft grace periods.
    first_observed: HashMap<usize, Instant>,
    /// When each condition's pressure was last seen, for the transition period.
    last_observed: BTreeMap<u8, Instant>,
    pressure: watch::Sender<Pressure>,
    /// When the node's EvictionThresholdMet event was last written, by resource.
    last_event: HashMap<&'static str, Instant>,
}

/// A threshold met now: its signal, the amount it stands for and what is available.
#[derive(Debug, Clone, Copy)]
struct Met {
    threshold: Threshold,
    amount: u64,
    available: u64,
}

impl Manager {
    /// One round (upstream's `synchronize`).
    async fn synchronize(&mut self) {
        let Some((summary, observations)) = self.observe().await else {
            return;
        };
        let met = self.met(&observations);
        self.update_conditions(&met);
        let now = Instant::now();
        let mut due: Vec<Met> = met
            .iter()
            .filter(|(i, m)| {
                let grace = m.threshold.grace_period.unwrap_or_default();
                self.first_observed
                    .get(i)
                    .is_some_and(|t| now.duration_since(*t) >= grace)
            })
            .map(|(_, m)| *m)
            .collect();
        if due.is_empty() {
            return;
        }
        // Memory first, as upstream's byEvictionPriority.
        due.sort_by_key(|m| m.threshold.signal != Signal::MemoryAvailable);
        let target = due[0];
        tracing::warn!(
            signal = target.threshold.signal.name(),
            threshold = target.amount,
            available = target.available,
            "eviction threshold met"
        );
        self.threshold_event(target.threshold.signal.resource());
        if target.threshold.signal.condition() == Condition::DiskPressure
            && self.reclaim_disk(target.threshold.signal).await
        {
            return;
        }
        let mut stats: HashMap<String, crate::stats::PodStats> = summary
            .pods
            .into_iter()
            .map(|p| (p.pod_ref.uid.clone(), p))
            .collect();
        if target.threshold.signal.condition() == Condition::DiskPressure {
            stats = with_local_volumes(&self.ctx.layout, stats).await;
        }
        if target.threshold.signal == Signal::PidAvailable {
            with_process_counts(&self.ctx.cri, &mut stats).await;
        }
        self.evict_one(target, &stats).await;
    }

    async fn observe(&self) -> Option<(crate::stats::Summary, Observations)> {
        match crate::stats::summary(&self.ctx).await {
            Ok(summary) => {
                let observations = signals::observe(&summary);
                Some((summary, observations))
            }
            Err(e) => {
                tracing::warn!("eviction manager: no stats: {e}");
                None
            }
        }
    }

    /// The thresholds met now, by index; first-observed times kept for them only.
    fn met(&mut self, observations: &Observations) -> Vec<(usize, Met)> {
        let met: Vec<(usize, Met)> = self
            .config
            .thresholds
            .iter()
            .enumerate()
            .filter_map(|(i, t)| {
                let o = observations.get(&t.signal)?;
                let amount = t.value.amount(o.capacity);
                (o.available < amount).then_some((
                    i,
                    Met {
                        threshold: *t,
                        amount,
                        available: o.available,
                    },
                ))
            })
            .collect();
        let now = Instant::now();
        self.first_observed
            .retain(|i, _| met.iter().any(|(j, _)| j == i));
        for (i, _) in &met {
            self.first_observed.entry(*i).or_insert(now);
        }
        met
    }

    /// Node conditions from every met threshold (soft ones before their grace period too), each
    /// kept for the transition period after it was last seen.
    fn update_conditions(&mut self, met: &[(usize, Met)]) {
        let now = Instant::now();
        for (_, m) in met {
            self.last_observed
                .insert(m.threshold.signal.condition() as u8, now);
        }
        let period = self.config.pressure_transition_period;
        let on = |c: Condition| {
            self.last_observed
                .get(&(c as u8))
                .is_some_and(|t| now.duration_since(*t) < period)
        };
        let pressure = Pressure {
            memory: on(Condition::MemoryPressure),
            disk: on(Condition::DiskPressure),
            pid: on(Condition::PidPressure),
        };
        self.pressure.send_if_modified(|p| {
            let changed = *p != pressure;
            if changed {
                tracing::info!(?pressure, "node pressure changed");
            }
            *p = pressure;
            changed
        });
    }

    /// Upstream's node event "Attempting to reclaim <resource>", written at most once a minute
    /// per resource (upstream's recorder folds the repeats into a count).
    fn threshold_event(&mut self, resource: &'static str) {
        let now = Instant::now();
        if self
            .last_event
            .get(resource)
            .is_some_and(|t| now.duration_since(*t) < Duration::from_secs(60))
        {
            return;
        }
        self.last_event.insert(resource, now);
        let message = format!("Attempting to reclaim {resource}");
        node_event(&self.ctx, true, "EvictionThresholdMet", &message);
    }

    /// Removes unused images; true when that resolved every disk threshold.
    async fn reclaim_disk(&mut self, signal: Signal) -> bool {
        let freed = reclaim::delete_unused_images(&self.ctx.cri).await;
        tracing::info!(
            signal = signal.name(),
            freed,
            "tried to reclaim disk by removing unused images"
        );
        let Some((_, observations)) = self.observe().await else {
            return false;
        };
        let still = self.config.thresholds.iter().any(|t| {
            t.signal.condition() == Condition::DiskPressure
                && observations
                    .get(&t.signal)
                    .is_some_and(|o| o.available < t.value.amount(o.capacity))
        });
        !still
    }

    /// Evicts the first pod in rank order; one per interval.
    async fn evict_one(&mut self, target: Met, stats: &HashMap<String, crate::stats::PodStats>) {
        let pods = match self.active_pods().await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("eviction manager: cannot list the node's pods: {e}");
                return;
            }
        };
        let signal = target.threshold.signal;
        for pod in rank::rank(&pods, stats, signal) {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let message = rank::message(
                signal,
                target.amount,
                target.available,
                pod,
                stats.get(&uid),
            );
            let grace = if target.threshold.is_hard() {
                IMMEDIATE_GRACE
            } else {
                let spec = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
                    .unwrap_or(30);
                spec.min(self.config.max_pod_grace_period)
            };
            let name = format!(
                "{}/{}",
                pod.metadata.namespace.as_deref().unwrap_or(""),
                pod.metadata.name.as_deref().unwrap_or("")
            );
            tracing::warn!(pod = %name, "evicting: {message}");
            let termination = Termination {
                reason: "Evicted".into(),
                message,
                grace_seconds: Some(grace),
                warning_event: true,
                disruption_target: true,
            };
            match tokio::time::timeout(CLEANUP_TIMEOUT, self.killer.kill(&uid, termination)).await {
                Ok(true) => return,
                Ok(false) => tracing::info!(pod = %name, "no worker runs the pod; trying the next"),
                Err(_) => {
                    tracing::warn!(pod = %name, "the evicted pod is not cleaned up yet");
                    return;
                }
            }
        }
        tracing::warn!(signal = signal.name(), "eviction manager: no pod to evict");
    }

    /// The node's pods that are neither finished nor critical.
    async fn active_pods(&self) -> Result<Vec<Pod>, kube::Error> {
        let api: Api<Pod> = Api::all(self.ctx.client.clone());
        let params = ListParams::default().fields(&format!("spec.nodeName={}", self.ctx.node_name));
        let pods = api.list(&params).await?.items;
        Ok(pods
            .into_iter()
            .filter(|p| {
                let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
                !matches!(phase, Some("Succeeded" | "Failed"))
                    && p.metadata.deletion_timestamp.is_none()
                    && !critical(p)
            })
            .collect())
    }
}

/// An event about the Node (upstream's nodeRef: the node's name as its UID), written from a
/// task of its own so the caller never waits on it.
pub(crate) fn node_event(ctx: &NodeContext, warning: bool, reason: &str, message: &str) {
    use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
    let node = ctx.node_name.clone();
    let now =
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let event = Event {
        metadata: kube::api::ObjectMeta {
            name: Some(format!("{node}.{nanos:x}")),
            namespace: Some("default".into()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            kind: Some("Node".into()),
            name: Some(node.clone()),
            uid: Some(node.clone()),
            ..Default::default()
        },
        reason: Some(reason.into()),
        message: Some(message.into()),
        type_: Some(if warning { "Warning" } else { "Normal" }.into()),
        source: Some(EventSource {
            component: Some("kubelet".into()),
            host: Some(node.clone()),
        }),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(1),
        reporting_component: Some("kubelet".into()),
        reporting_instance: Some(node),
        ..Default::default()
    };
    let api: Api<Event> = Api::namespaced(ctx.client.clone(), "default");
    tokio::spawn(async move {
        if let Err(e) = api.create(&Default::default(), &event).await {
            tracing::debug!(error = %e, "writing the node's eviction event failed");
        }
    });
}

/// Upstream's eviction admit handler for a pod new to the node: under pressure it is refused
/// unless critical, except that under memory pressure alone only BestEffort pods that do not
/// tolerate the memory-pressure taint are. Returns upstream's rejection message.
pub fn admit(pod: &Pod, best_effort: bool, pressure: Pressure) -> Option<String> {
    let conditions: Vec<&str> = [
        (pressure.memory, "MemoryPressure"),
        (pressure.disk, "DiskPressure"),
        (pressure.pid, "PIDPressure"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect();
    if conditions.is_empty() || critical(pod) {
        return None;
    }
    if conditions == ["MemoryPressure"] {
        if !best_effort {
            return None;
        }
        let taint = Taint {
            key: "node.kubernetes.io/memory-pressure".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        let tolerations = pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.clone())
            .unwrap_or_default();
        if component_base::taints::tolerated_by(&tolerations, &taint) {
            return None;
        }
    }
    // Go's %v of the condition list.
    Some(format!(
        "The node had condition: [{}]. ",
        conditions.join(" ")
    ))
}

/// Each pod's ephemeral storage with its disk-backed emptyDirs added, as upstream counts it.
async fn with_local_volumes(
    layout: &crate::layout::Layout,
    mut stats: HashMap<String, crate::stats::PodStats>,
) -> HashMap<String, crate::stats::PodStats> {
    let layout = layout.clone();
    let walked = tokio::task::spawn_blocking(move || {
        for (uid, s) in stats.iter_mut() {
            let (bytes, inodes) = local_volumes::usage(&layout, uid);
            if let Some(fs) = s.ephemeral_storage.as_mut() {
                fs.used_bytes = Some(fs.used_bytes.unwrap_or(0) + bytes);
                fs.inodes_used = Some(fs.inodes_used.unwrap_or(0) + inodes);
            }
        }
        stats
    })
    .await;
    walked.unwrap_or_default()
}

/// Each pod's process count where the runtime's stats have none.
async fn with_process_counts(
    cri: &crate::cri::Cri,
    stats: &mut HashMap<String, crate::stats::PodStats>,
) {
    let counts = processes::by_pod(cri).await;
    for (uid, s) in stats.iter_mut() {
        let known = s.process_stats.as_ref().and_then(|p| p.process_count);
        if known.is_none() {
            s.process_stats = Some(crate::stats::ProcessStats {
                process_count: Some(counts.get(uid).copied().unwrap_or(0)),
            });
        }
    }
}

/// Upstream's `IsCriticalPod`: static and mirror pods, and system-critical priorities.
pub(crate) fn critical(p: &Pod) -> bool {
    let annotations = p.metadata.annotations.as_ref();
    let static_or_mirror = annotations.is_some_and(|a| {
        a.contains_key(MIRROR_ANNOTATION)
            || a.get("kubernetes.io/config.source")
                .is_some_and(|s| s != "api")
    });
    static_or_mirror || rank::priority(p) >= SYSTEM_CRITICAL_PRIORITY
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
    }

    #[test]
    fn admission_under_pressure_is_upstreams() {
        let best_effort = pod(json!({"containers": [{"name": "c"}]}));
        let tolerating = pod(json!({"containers": [{"name": "c"}], "tolerations": [
            {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"}
        ]}));
        let critical = pod(json!({"containers": [{"name": "c"}], "priority": 2_000_000_000}));
        let memory = Pressure {
            memory: true,
            ..Default::default()
        };
        let disk = Pressure {
            disk: true,
            ..Default::default()
        };
        assert_eq!(admit(&best_effort, true, Pressure::default()), None);
        assert_eq!(
            admit(&best_effort, true, memory).as_deref(),
            Some("The node had condition: [MemoryPressure]. ")
        );
        assert_eq!(admit(&best_effort, false, memory), None, "not BestEffort");
        assert_eq!(admit(&tolerating, true, memory), None);
        assert_eq!(
            admit(
                &tolerating,
                false,
                Pressure {
                    memory: true,
                    disk: true,
                    pid: false
                }
            )
            .as_deref(),
            Some("The node had condition: [MemoryPressure DiskPressure]. ")
        );
        assert!(admit(&best_effort, false, disk).is_some());
        assert_eq!(admit(&critical, true, disk), None);
    }
}
