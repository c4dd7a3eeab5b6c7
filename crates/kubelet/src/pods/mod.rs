//! The pod lifecycle: the pods bound to this node, each synced by its own worker against the
//! runtime over CRI — sandbox, init containers in order, containers, restarts with back-off,
//! termination with grace — and their status written back to the API, as upstream's kubelet.
//!
//! Contract for the rest of the agent: [`spawn`]`(Arc<NodeContext>) -> Pods` starts it;
//! [`Pods::stop`] stops syncing without touching running containers (a restarted agent adopts
//! them: it finds its sandboxes and containers by their [`labels`](crate::labels), and restart
//! counts carry on from the containers' annotations). Logs go where
//! [`Layout`](crate::layout::Layout) says.
//!
//! - [`mod@self`]: the dispatcher: a watch of `spec.nodeName=<node>` pods feeding one worker per
//!   pod UID, a relist of the runtime's containers every second that wakes the worker of a pod
//!   whose container changed state (upstream's PLEG), static pods from the manifests directory,
//!   and the removal of sandboxes no pod owns any more;
//! - `worker`: one pod's sync (upstream's `SyncPod`/`computePodActions`) and termination:
//!   [`Volumes::setup`](crate::volumes::Volumes::setup) on every sync and its mounts for each
//!   container, the [`ProbeManager`](crate::probes::ProbeManager) told of every started container
//!   (a failed liveness or startup probe kills it, readiness makes it ready), postStart after the
//!   start and preStop within the grace period before a stop, volumes torn down at the end;
//! - `events`: Pulled/Created/Started/Killing/BackOff/Failed/Unhealthy events as the kubelet;
//! - `sandbox`, `container`, `env`, `expand`, `hosts`: the CRI configs from the pod spec and the
//!   pod's managed `/etc/hosts`;
//! - `image`: pull policy, pulls and their back-off, with `pull_secrets`' credentials; `backoff`: crash-loop back-off;
//! - `status`: the pod status from the runtime's state (`generateAPIPodStatus`);
//! - `runtime`: what the runtime holds for one pod; `static_pods`: manifests and mirror pods.

mod backoff;
mod container;
mod env;
mod events;
mod expand;
mod hosts;
mod image;
mod phases;
mod pull_secrets;
mod runtime;
mod sandbox;
mod static_pods;
mod status;
mod worker;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Api;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::context::NodeContext;
use crate::cri::api;
use crate::labels;
use crate::probes::{ProbeEvent, ProbeManager};
use crate::volumes::Volumes;
use worker::Update;

pub use static_pods::MIRROR_ANNOTATION;

/// How a pod is ended on the kubelet's own decision (eviction, an active deadline, a node
/// shutdown), as upstream's `killPodNow` with a status function: phase Failed with this reason
/// and message.
#[derive(Debug, Clone)]
pub struct Termination {
    /// `Evicted`, `DeadlineExceeded`, `Terminated`.
    pub reason: String,
    pub message: String,
    /// The containers' grace period; the pod's own when `None`.
    pub grace_seconds: Option<i64>,
    /// A Warning event of the reason and message (else a Normal one).
    pub warning_event: bool,
    /// The pod gets the `DisruptionTarget` condition (reason `TerminationByKubelet`).
    pub disruption_target: bool,
}

type KillRequest = (String, Termination, tokio::sync::oneshot::Sender<()>);

/// Ends pods by UID through their workers (for the eviction and shutdown managers).
#[derive(Clone)]
pub struct Killer(tokio::sync::mpsc::UnboundedSender<KillRequest>);

impl Killer {
    /// Ends the pod of `uid`; true once its containers are stopped and its status written,
    /// false when no worker runs it.
    pub async fn kill(&self, uid: &str, termination: Termination) -> bool {
        let (done, finished) = tokio::sync::oneshot::channel();
        if self.0.send((uid.to_string(), termination, done)).is_err() {
            return false;
        }
        finished.await.is_ok()
    }
}

/// How often the runtime's containers are listed for changes.
const RELIST: Duration = Duration::from_secs(1);
/// How often static pods, orphaned sandboxes and the node's address are looked at.
const HOUSEKEEPING: Duration = Duration::from_secs(10);
/// How long [`Pods::stop`] lets workers finish what they are doing.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// What the workers share.
pub(crate) struct Shared {
    ctx: Arc<NodeContext>,
    volumes: Volumes,
    probes: ProbeManager,
    /// The eviction manager's pressure conditions, for admitting new pods.
    pressure: watch::Receiver<crate::eviction::Pressure>,
    node: NodeInfo,
    host_ip: RwLock<Option<String>>,
}

/// The node's allocatable resources, for `resourceFieldRef` limits that are not set.
pub(crate) struct NodeInfo {
    cpu_millis: i64,
    memory: i64,
}

impl Shared {
    fn host_ip(&self) -> Option<String> {
        self.host_ip.read().ok().and_then(|ip| ip.clone())
    }

    /// Upstream's service environment variables (`FOO_SERVICE_HOST`, `FOO_PORT_80_TCP`, ...)
    /// for the services of the pod's namespace (with `enableServiceLinks`, the default) and the
    /// `kubernetes` service in `default`.
    async fn service_env(&self, pod: &Pod) -> Vec<(String, String)> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let links = pod
            .spec
            .as_ref()
            .and_then(|s| s.enable_service_links)
            .unwrap_or(true);
        let mut services = Vec::new();
        if links {
            let api: Api<Service> = Api::namespaced(self.ctx.client.clone(), ns);
            match api.list(&Default::default()).await {
                Ok(list) => services.extend(list.items),
                Err(e) => tracing::debug!(error = %e, "listing services for env failed"),
            }
        }
        if ns != "default" || !links {
            let api: Api<Service> = Api::namespaced(self.ctx.client.clone(), "default");
            if let Ok(Some(svc)) = api.get_opt("kubernetes").await {
                services.push(svc);
            }
        }
        service_env(&services)
    }
}

fn service_env(services: &[Service]) -> Vec<(String, String)> {
    let mut services: Vec<&Service> = services.iter().collect();
    services.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut out = Vec::new();
    for svc in services {
        let Some(spec) = &svc.spec else { continue };
        let Some(ip) = spec
            .cluster_ip
            .as_deref()
            .filter(|ip| !ip.is_empty() && *ip != "None")
        else {
            continue;
        };
        let ports = spec.ports.clone().unwrap_or_default();
        let Some(first) = ports.first() else { continue };
        let name = svc
            .metadata
            .name
            .as_deref()
            .unwrap_or("")
            .to_uppercase()
            .replace('-', "_");
        let url_ip = if ip.contains(':') {
            format!("[{ip}]")
        } else {
            ip.to_string()
        };
        out.push((format!("{name}_SERVICE_HOST"), ip.to_string()));
        out.push((format!("{name}_SERVICE_PORT"), first.port.to_string()));
        for p in &ports {
            if let Some(pn) = p.name.as_deref().filter(|n| !n.is_empty()) {
                out.push((
                    format!(
                        "{name}_SERVICE_PORT_{}",
                        pn.to_uppercase().replace('-', "_")
                    ),
                    p.port.to_string(),
                ));
            }
        }
        let proto = |p: &k8s_openapi::api::core::v1::ServicePort| {
            p.protocol.clone().unwrap_or_else(|| "TCP".into())
        };
        out.push((
            format!("{name}_PORT"),
            format!("{}://{url_ip}:{}", proto(first).to_lowercase(), first.port),
        ));
        for p in &ports {
            let prefix = format!("{name}_PORT_{}_{}", p.port, proto(p).to_uppercase());
            out.push((
                prefix.clone(),
                format!("{}://{url_ip}:{}", proto(p).to_lowercase(), p.port),
            ));
            out.push((format!("{prefix}_PROTO"), proto(p).to_lowercase()));
            out.push((format!("{prefix}_PORT"), p.port.to_string()));
            out.push((format!("{prefix}_ADDR"), ip.to_string()));
        }
    }
    out
}

/// The running pod lifecycle; [`Pods::stop`] ends it.
pub struct Pods {
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
    killer: Killer,
    pressure: watch::Sender<crate::eviction::Pressure>,
}

impl Pods {
    /// What ends pods on the kubelet's own decision.
    pub fn killer(&self) -> Killer {
        self.killer.clone()
    }

    /// Where the eviction manager publishes the node's pressure: new pods are admitted by it.
    pub fn pressure(&self) -> watch::Sender<crate::eviction::Pressure> {
        self.pressure.clone()
    }

    /// Stops watching and syncing; containers keep running.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// Starts the pod lifecycle for `ctx.node_name`.
pub fn spawn(ctx: Arc<NodeContext>) -> Pods {
    let (shutdown, stopped) = watch::channel(false);
    let (kill_tx, kill_rx) = tokio::sync::mpsc::unbounded_channel();
    let (pressure, pressure_rx) = watch::channel(crate::eviction::Pressure::default());
    let task = tokio::spawn(async move {
        let (probes, probe_events) = ProbeManager::new(ctx.cri.clone());
        let shared = Arc::new(Shared {
            volumes: Volumes::new(ctx.clone()),
            probes,
            pressure: pressure_rx,
            node: node_info(&ctx).await,
            host_ip: RwLock::new(None),
            ctx,
        });
        let mut dispatcher = Dispatcher {
            shared,
            workers: HashMap::new(),
            shutdown: stopped.clone(),
            seen: HashMap::new(),
            static_uids: HashSet::new(),
            mirrors: HashMap::new(),
        };
        dispatcher.run(stopped, probe_events, kill_rx).await;
    });
    Pods {
        shutdown,
        task,
        killer: Killer(kill_tx),
        pressure,
    }
}

async fn node_info(ctx: &NodeContext) -> NodeInfo {
    use component_base::quantity::{milli_value, value};
    let api: Api<Node> = Api::all(ctx.client.clone());
    let node = api.get_opt(&ctx.node_name).await.ok().flatten();
    let alloc = node
        .and_then(|n| n.status)
        .and_then(|s| s.allocatable)
        .unwrap_or_default();
    // SAFETY: sysconf has no preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1);
    NodeInfo {
        cpu_millis: alloc
            .get("cpu")
            .map(milli_value)
            .unwrap_or(cpus as i64 * 1000),
        memory: alloc
            .get("memory")
            .map(value)
            .unwrap_or_else(container::node_memory),
    }
}

/// The node's address for `hostIP`: its InternalIP, else its first address that is an IP.
fn node_ip(node: &Node) -> Option<String> {
    let addresses = node.status.as_ref()?.addresses.clone().unwrap_or_default();
    addresses
        .iter()
        .find(|a| a.type_ == "InternalIP")
        .or_else(|| {
            addresses
                .iter()
                .find(|a| a.address.parse::<std::net::IpAddr>().is_ok())
        })
        .map(|a| a.address.clone())
}

struct WorkerHandle {
    updates: watch::Sender<Update>,
    poke: Arc<Notify>,
    kills: tokio::sync::mpsc::UnboundedSender<worker::Order>,
    task: JoinHandle<()>,
}

struct Dispatcher {
    shared: Arc<Shared>,
    workers: HashMap<String, WorkerHandle>,
    shutdown: watch::Receiver<bool>,
    /// Container ID → (state, pod UID) at the last relist.
    seen: HashMap<String, (i32, String)>,
    /// UIDs of the static pods running now.
    static_uids: HashSet<String>,
    /// The mirror pods the watch shows, by namespace and name.
    mirrors: HashMap<(String, String), Pod>,
}

impl Dispatcher {
    async fn run(
        &mut self,
        mut stopped: watch::Receiver<bool>,
        mut probe_events: tokio::sync::mpsc::UnboundedReceiver<ProbeEvent>,
        mut pod_kills: tokio::sync::mpsc::UnboundedReceiver<KillRequest>,
    ) {
        let ctx = self.shared.ctx.clone();
        let api: Api<Pod> = Api::all(ctx.client.clone());
        let config = watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.node_name));
        let mut events = watcher::watcher(api, config).default_backoff().boxed();
        let mut relist = tokio::time::interval(RELIST);
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        relist.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut listed: Option<HashSet<String>> = None;
        let mut synced = false;
        self.refresh_host_ip().await;
        loop {
            tokio::select! {
                biased;
                _ = stopped.changed() => break,
                event = events.next() => match event {
                    Some(Ok(Event::Apply(pod))) => self.deliver(pod),
                    Some(Ok(Event::Delete(pod))) => {
                        if static_pods::is_mirror(&pod) {
                            self.mirrors.remove(&key(&pod));
                        } else {
                            self.gone(pod.metadata.uid.as_deref().unwrap_or(""));
                        }
                    }
                    Some(Ok(Event::Init)) => {
                        listed = Some(HashSet::new());
                        self.mirrors.clear();
                    }
                    Some(Ok(Event::InitApply(pod))) => {
                        if let Some(l) = listed.as_mut() {
                            l.extend(pod.metadata.uid.clone());
                        }
                        self.deliver(pod);
                    }
                    Some(Ok(Event::InitDone)) => {
                        // Pods deleted while the watch was down are gone.
                        let listed = listed.take().unwrap_or_default();
                        let stale: Vec<String> = self
                            .workers
                            .keys()
                            .filter(|uid| !listed.contains(*uid) && !self.static_uids.contains(*uid))
                            .cloned()
                            .collect();
                        for uid in stale {
                            self.gone(&uid);
                        }
                        if !synced {
                            synced = true;
                            self.housekeeping(true).await;
                        }
                    }
                    Some(Err(e)) => tracing::warn!(error = %e, "pod watch failed; retrying"),
                    None => break,
                },
                Some(event) = probe_events.recv() => self.probe_event(event),
                Some((uid, termination, done)) = pod_kills.recv() => {
                    // Without a worker the request (and `done`) is dropped: nothing to end.
                    if let Some(w) = self.workers.get(&uid) {
                        let _ = w.kills.send(worker::Order::Pod(termination, done));
                    }
                }
                _ = relist.tick() => self.relist().await,
                _ = housekeeping.tick() => self.housekeeping(synced).await,
            }
        }
        self.stop_workers().await;
    }

    fn deliver(&mut self, pod: Pod) {
        if static_pods::is_mirror(&pod) {
            self.mirrors.insert(key(&pod), pod);
            return;
        }
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        let pod = Arc::new(pod);
        if let Some(w) = self.workers.get(&uid) {
            if !w.task.is_finished() {
                let _ = w.updates.send(Update::Pod(pod));
                return;
            }
        }
        let (updates, rx) = watch::channel(Update::Pod(pod.clone()));
        let poke = Arc::new(Notify::new());
        let (kills, kill_rx) = tokio::sync::mpsc::unbounded_channel();
        let inputs = worker::Inputs {
            updates: rx,
            poke: poke.clone(),
            kills: kill_rx,
            shutdown: self.shutdown.clone(),
        };
        tracing::debug!(pod = %key(&pod).1, uid = %uid, "pod worker started");
        let task = tokio::spawn(worker::run(self.shared.clone(), pod, inputs));
        self.workers.insert(
            uid,
            WorkerHandle {
                updates,
                poke,
                kills,
                task,
            },
        );
    }

    /// A failed liveness or startup probe kills the container (the worker restarts it per the
    /// restart policy); a readiness change gets the pod's status written.
    fn probe_event(&mut self, event: ProbeEvent) {
        match event {
            ProbeEvent::LivenessFailed {
                pod_uid,
                container,
                container_id,
                message,
            } => self.kill(&pod_uid, &container, container_id, message, "liveness"),
            ProbeEvent::StartupFailed {
                pod_uid,
                container,
                container_id,
                message,
            } => self.kill(&pod_uid, &container, container_id, message, "startup"),
            ProbeEvent::ReadinessChanged { pod_uid } => {
                if let Some(w) = self.workers.get(&pod_uid) {
                    w.poke.notify_one();
                }
            }
        }
    }

    fn kill(&mut self, uid: &str, container: &str, id: String, probe_message: String, probe: &str) {
        if let Some(w) = self.workers.get(uid) {
            let _ = w.kills.send(worker::Order::Container(worker::Kill {
                container: container.to_string(),
                container_id: id,
                probe_message,
                message: format!("Container {container} failed {probe} probe, will be restarted"),
            }));
        }
    }

    fn gone(&mut self, uid: &str) {
        if let Some(w) = self.workers.get(uid) {
            let _ = w.updates.send(Update::Gone);
        }
    }

    /// Wakes the worker of every pod whose containers changed state since the last relist.
    async fn relist(&mut self) {
        let Ok(containers) = self.shared.ctx.cri.list_containers().await else {
            return;
        };
        let now: HashMap<String, (i32, String)> = containers
            .into_iter()
            .filter_map(|c| {
                let uid = c.labels.get(labels::POD_UID)?.clone();
                Some((c.id, (c.state, uid)))
            })
            .collect();
        let mut changed: HashSet<&str> = HashSet::new();
        for (id, (state, uid)) in &now {
            if self.seen.get(id).map(|s| s.0) != Some(*state) {
                changed.insert(uid);
            }
        }
        for (id, (_, uid)) in &self.seen {
            if !now.contains_key(id) {
                changed.insert(uid);
            }
        }
        for uid in changed {
            if let Some(w) = self.workers.get(uid) {
                w.poke.notify_one();
            }
        }
        self.seen = now;
    }

    async fn housekeeping(&mut self, synced: bool) {
        self.workers.retain(|_, w| !w.task.is_finished());
        self.refresh_host_ip().await;
        self.static_pods().await;
        if synced {
            self.remove_orphans().await;
        }
    }

    async fn refresh_host_ip(&self) {
        let api: Api<Node> = Api::all(self.shared.ctx.client.clone());
        if let Ok(Some(node)) = api.get_opt(&self.shared.ctx.node_name).await {
            if let Ok(mut ip) = self.shared.host_ip.write() {
                *ip = node_ip(&node);
            }
        }
    }

    /// Runs the manifests directory's pods and keeps their mirror pods.
    async fn static_pods(&mut self) {
        let ctx = self.shared.ctx.clone();
        let pods = static_pods::read_dir(&ctx.layout.manifests_dir(), &ctx.node_name);
        let uids: HashSet<String> = pods.iter().filter_map(|p| p.metadata.uid.clone()).collect();
        for removed in self
            .static_uids
            .difference(&uids)
            .cloned()
            .collect::<Vec<_>>()
        {
            self.gone(&removed);
        }
        for mirror in self.mirrors.values() {
            if !uids.contains(static_pods::mirror_hash(mirror)) {
                let ns = mirror.metadata.namespace.as_deref().unwrap_or("default");
                static_pods::delete_mirror(&Api::namespaced(ctx.client.clone(), ns), mirror).await;
            }
        }
        for pod in pods {
            let mirror = self.mirrors.get(&key(&pod)).cloned();
            static_pods::ensure_mirror(&ctx, &pod, mirror.as_ref()).await;
            self.deliver(static_pods::with_mirror_status(pod, mirror.as_ref()));
        }
        self.static_uids = uids;
    }

    /// Stops and removes sandboxes whose pod is not bound here any more.
    async fn remove_orphans(&self) {
        let cri = &self.shared.ctx.cri;
        let Ok(sandboxes) = cri.list_pod_sandboxes().await else {
            return;
        };
        for s in sandboxes {
            let Some(uid) = s.labels.get(labels::POD_UID) else {
                continue;
            };
            if self.workers.contains_key(uid) {
                continue;
            }
            tracing::info!(sandbox = %s.id, pod_uid = %uid, "removing the sandbox of a pod no longer bound here");
            remove_sandbox(cri, &s).await;
        }
    }

    async fn stop_workers(&mut self) {
        let deadline = tokio::time::Instant::now() + STOP_WAIT;
        for (_, w) in self.workers.drain() {
            let mut task = w.task;
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
            }
        }
    }
}

fn key(pod: &Pod) -> (String, String) {
    (
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
    )
}

async fn remove_sandbox(cri: &crate::cri::Cri, s: &api::PodSandbox) {
    let grace = s
        .annotations
        .get(labels::TERMINATION_GRACE_PERIOD)
        .and_then(|g| g.parse().ok())
        .unwrap_or(2);
    if let Ok(containers) = cri.list_containers().await {
        for c in containers.iter().filter(|c| c.pod_sandbox_id == s.id) {
            if c.state == api::ContainerState::ContainerRunning as i32 {
                let _ = cri.stop_container(&c.id, grace).await;
            }
        }
    }
    if let Err(e) = cri.stop_pod_sandbox(&s.id).await {
        tracing::warn!(sandbox = %s.id, error = %e, "stopping an orphaned sandbox failed");
        return;
    }
    if let Err(e) = cri.remove_pod_sandbox(&s.id).await {
        tracing::warn!(sandbox = %s.id, error = %e, "removing an orphaned sandbox failed");
    }
}
