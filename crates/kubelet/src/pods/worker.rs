//! One pod's worker: syncs the runtime towards the pod's spec on every change of the pod, every
//! change the runtime reports for its containers, and periodically (upstream's `SyncPod` driven by
//! `computePodActions`), and writes the pod's status back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::PodCondition;
use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::Api;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::time::Instant;

use super::backoff::Backoff;
use super::container;
use super::env::{container_env, EnvInputs, Objects};
use super::events::{self, EventType, EventType::Normal, EventType::Warning};
use super::hosts;
use super::image::{self, Ensured};
use super::phases::Phases;
use super::pull_secrets;
use super::runtime::{attempt, container_name, is_exited, is_running, PodRuntime};
use super::sandbox::{self, ids};
use super::status::{self, qos_class, Observed, Waiting};
use super::{Shared, Termination};
use crate::cri::api;
use crate::layout::Layout;
use crate::volumes::PodVolumes;

/// How often a pod is synced when nothing happens.
const RESYNC: Duration = Duration::from_secs(10);
/// A container that ran this long starts its back-off again from the beginning.
const RESET_AFTER: Duration = Duration::from_secs(600);
/// Upstream's floor for a kill's grace period.
const MIN_GRACE: i64 = 2;

/// What wakes a worker besides the clock.
pub struct Inputs {
    pub updates: watch::Receiver<Update>,
    /// The runtime or the probes saw something change.
    pub poke: Arc<Notify>,
    /// Containers to kill (failed liveness or startup probes) and pods to end.
    pub kills: mpsc::UnboundedReceiver<Order>,
    pub shutdown: watch::Receiver<bool>,
}

/// A container to kill so that it restarts.
pub struct Kill {
    pub container: String,
    pub container_id: String,
    /// The probe's own message ("Liveness probe failed: ...").
    pub probe_message: String,
    /// Upstream's Killing message ("Container main failed liveness probe, will be restarted").
    pub message: String,
}

/// What the worker is told to kill.
pub enum Order {
    Container(Kill),
    /// End the pod as Failed; `done` is answered once its containers stopped.
    Pod(Termination, oneshot::Sender<()>),
}

/// What the worker knows of its pod from the API.
#[derive(Clone)]
pub enum Update {
    Pod(Arc<Pod>),
    /// The pod is no longer bound here (deleted, or no longer in the watch).
    Gone,
}

pub struct Worker {
    shared: Arc<Shared>,
    pod: Arc<Pod>,
    gone: bool,
    crash_backoff: Backoff,
    image_backoff: Backoff,
    waiting: HashMap<String, Waiting>,
    terminal: Option<String>,
    /// Why the kubelet ended the pod (its status reason and message).
    ended: Option<Termination>,
    start_time: Option<Time>,
    /// The status last written and the pod's resourceVersion then.
    written: Option<(serde_json::Value, Option<String>)>,
    /// The sandbox config of the current sandbox (containers are created with it).
    sandbox_config: Option<(String, api::PodSandboxConfig)>,
    /// The pod's volumes as the last sync set them up.
    volumes: Option<PodVolumes>,
    /// Events written recently (reason and message), so repeats are not written every sync.
    recent_events: HashMap<(String, String), std::time::Instant>,
    /// The current sync's phases and their durations.
    phases: Phases,
}

enum Next {
    /// Sync again after this long at the latest.
    After(Duration),
    /// The pod is finished on this node; the worker ends.
    Done,
}

pub async fn run(shared: Arc<Shared>, pod: Arc<Pod>, inputs: Inputs) {
    let Inputs {
        mut updates,
        poke,
        mut kills,
        mut shutdown,
    } = inputs;
    let terminal = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .filter(|p| p == "Succeeded" || p == "Failed");
    let mut worker = Worker {
        shared,
        pod,
        gone: false,
        crash_backoff: Backoff::default(),
        image_backoff: Backoff::default(),
        waiting: HashMap::new(),
        terminal,
        ended: None,
        start_time: None,
        written: None,
        sandbox_config: None,
        volumes: None,
        recent_events: HashMap::new(),
        phases: Phases::new(),
    };
    let mut wake = Instant::now();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            changed = updates.changed() => if changed.is_err() { return },
            _ = poke.notified() => {}
            Some(order) = kills.recv() => match order {
                Order::Container(kill) => worker.kill(kill).await,
                Order::Pod(termination, done) => {
                    worker.end(termination).await;
                    let _ = done.send(());
                }
            },
            _ = tokio::time::sleep_until(wake) => {}
        }
        if *shutdown.borrow() {
            return;
        }
        match updates.borrow_and_update().clone() {
            Update::Pod(p) => worker.pod = p,
            Update::Gone => worker.gone = true,
        }
        let next = worker.sync().await;
        match next {
            Next::Done => return,
            Next::After(d) => wake = Instant::now() + d,
        }
    }
}

impl Worker {
    fn name(&self) -> String {
        let (ns, name, _) = ids(&self.pod);
        format!("{ns}/{name}")
    }

    fn event(&self, kind: EventType, reason: &str, message: &str) {
        events::record(&self.shared.ctx, &self.pod, kind, reason, message);
    }

    /// An event not written again for the same reason and message within a minute (upstream's
    /// recorder folds repeats into a count).
    fn event_once(&mut self, kind: EventType, reason: &str, message: &str) {
        let key = (reason.to_string(), message.to_string());
        let now = std::time::Instant::now();
        self.recent_events
            .retain(|_, at| now.duration_since(*at) < Duration::from_secs(60));
        if self.recent_events.insert(key, now).is_none() {
            self.event(kind, reason, message);
        }
    }

    async fn sync(&mut self) -> Next {
        let deleting = self.pod.metadata.deletion_timestamp.is_some();
        if self.gone || deleting {
            return match self.terminate().await {
                Ok(()) => Next::Done,
                Err(e) => {
                    tracing::warn!(pod = %self.name(), error = %e, "terminating the pod failed; retrying");
                    Next::After(Duration::from_secs(1))
                }
            };
        }
        match self.sync_running().await {
            Ok(next) => Next::After(next.min(RESYNC)),
            Err(e) => {
                tracing::warn!(pod = %self.name(), error = %format!("{e:#}"), "pod sync failed; retrying");
                Next::After(Duration::from_secs(2))
            }
        }
    }

    /// Brings a live pod's sandbox and containers to what its spec asks; returns when to sync
    /// again at the latest.
    async fn sync_running(&mut self) -> anyhow::Result<Duration> {
        let ctx = self.shared.ctx.clone();
        let (_, _, uid) = ids(&self.pod);
        let uid = uid.to_string();
        self.phases = Phases::new();
        let mut runtime = PodRuntime::read(&ctx.cri, &uid).await?;
        self.phases.mark("runtime");
        let mut next = RESYNC;
        if let Some(rejected) = self.admission(&runtime) {
            self.end(rejected).await;
            return Ok(RESYNC);
        }
        if self.terminal.is_none() {
            match self.active_deadline() {
                Some(Err(deadline)) => {
                    self.end(deadline).await;
                    return Ok(RESYNC);
                }
                Some(Ok(left)) => next = next.min(left),
                None => {}
            }
        }
        if self.terminal.is_some() {
            self.stop_sandboxes(&runtime).await;
            self.write_status(&runtime, None, false).await?;
            return Ok(RESYNC);
        }
        let (sandbox_id, pod_ips) = match runtime.ready_sandbox() {
            Some(s) => (s.id.clone(), self.sandbox_ips(&s.id).await?),
            None => match self.create_sandbox(&runtime).await {
                Ok(id) => {
                    self.phases.mark("sandbox");
                    runtime = PodRuntime::read(&ctx.cri, &uid).await?;
                    let ips = self.sandbox_ips(&id).await?;
                    self.phases.mark("sandbox_status");
                    (id.clone(), ips)
                }
                Err(e) => {
                    // The pod stays Pending with its containers ContainerCreating, as upstream.
                    let message = format!("Failed to create pod sandbox: {e:#}");
                    tracing::warn!(pod = %self.name(), "{message}");
                    self.event_once(Warning, "FailedCreatePodSandBox", &message);
                    self.write_status(&runtime, Some(Vec::new()), false).await?;
                    return Ok(Duration::from_secs(5));
                }
            },
        };
        let pod_ip = pod_ips.first().cloned().unwrap_or_default();
        if self.sandbox_config.as_ref().map(|(id, _)| id) != Some(&sandbox_id) {
            let attempt = runtime
                .sandboxes
                .first()
                .and_then(|s| s.metadata.as_ref())
                .map_or(0, |m| m.attempt);
            self.sandbox_config = Some((
                sandbox_id.clone(),
                sandbox::config(&self.pod, &ctx.layout, attempt),
            ));
        }
        let mut objects = Objects::default();
        let spec = self.pod.spec.clone().unwrap_or_default();
        let policy = spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into());
        let mut changed = false;

        // Volumes first (every sync: configMap and secret contents follow their objects).
        let volumes_ok = match self.shared.volumes.setup(&self.pod).await {
            Ok(v) => {
                self.volumes = Some(v);
                self.phases.mark("volumes");
                true
            }
            Err(e) => {
                tracing::info!(pod = %self.name(), error = %e, "volumes not ready");
                self.event_once(Warning, e.reason(), &e.to_string());
                next = next.min(Duration::from_secs(2));
                false
            }
        };

        // Init containers, one at a time, in order; each must succeed before the next starts.
        let mut init_done = volumes_ok;
        for c in spec.init_containers.iter().flatten().filter(|_| volumes_ok) {
            let current = runtime.current(&c.name, &sandbox_id).cloned();
            match current {
                Some(s) if is_exited(&s) && s.exit_code == 0 => continue,
                Some(s) if is_running(&s) => {}
                Some(s) if is_exited(&s) => {
                    if policy == "Never" {
                        self.terminal = Some("Failed".into());
                    } else if let Some(wait) = self.restart_after_backoff(c, &s) {
                        next = next.min(wait);
                    } else {
                        self.start(c, &runtime, &sandbox_id, &pod_ip, &mut objects)
                            .await;
                        changed = true;
                    }
                }
                Some(s) => {
                    self.start_created(&s).await;
                    changed = true;
                }
                None => {
                    self.start(c, &runtime, &sandbox_id, &pod_ip, &mut objects)
                        .await;
                    changed = true;
                }
            }
            init_done = false;
            break;
        }

        if init_done {
            for c in &spec.containers {
                let current = runtime.current(&c.name, &sandbox_id).cloned();
                match current {
                    Some(s) if is_running(&s) => {
                        if s.annotations.get(container::CONTAINER_HASH)
                            != Some(&container::spec_hash(c))
                        {
                            tracing::info!(pod = %self.name(), container = %c.name, "container spec changed; restarting");
                            let grace = self.grace_seconds(None);
                            let _ = ctx.cri.stop_container(&s.id, grace).await;
                            changed = true;
                        }
                    }
                    Some(s) if is_exited(&s) => {
                        let restart = match policy.as_str() {
                            "Never" => false,
                            "OnFailure" => s.exit_code != 0,
                            _ => true,
                        };
                        if !restart {
                            self.waiting.remove(&c.name);
                            continue;
                        }
                        if let Some(wait) = self.restart_after_backoff(c, &s) {
                            next = next.min(wait);
                        } else {
                            self.start(c, &runtime, &sandbox_id, &pod_ip, &mut objects)
                                .await;
                            changed = true;
                        }
                    }
                    Some(s) => {
                        self.start_created(&s).await;
                        changed = true;
                    }
                    None => {
                        // Under Never, a container that already ran (in an earlier sandbox) is
                        // not run again.
                        if policy == "Never" && runtime.latest(&c.name).0.is_some() {
                            continue;
                        }
                        self.start(c, &runtime, &sandbox_id, &pod_ip, &mut objects)
                            .await;
                        changed = true;
                    }
                }
                if self.waiting.contains_key(&c.name) {
                    next = next.min(Duration::from_secs(1));
                }
            }
        }
        if changed {
            runtime = PodRuntime::read(&ctx.cri, &uid).await?;
            self.phases.mark("runtime_again");
        }
        self.track_probes(&runtime, &sandbox_id, &pod_ip);
        self.write_status(&runtime, Some(pod_ips), true).await?;
        if changed {
            self.phases.mark("status");
            tracing::debug!(pod = %self.name(), phases = %self.phases.summary(), "pod sync phases");
        }
        if self.terminal.is_some() {
            self.stop_sandboxes(&runtime).await;
        }
        Ok(next)
    }

    /// Probes run for the running containers of the current sandbox (again after an agent
    /// restart) and stop for the others.
    fn track_probes(&self, runtime: &PodRuntime, sandbox_id: &str, pod_ip: &str) {
        let probes = &self.shared.probes;
        for c in &runtime.containers {
            let current = runtime.sandbox_of.get(&c.id).map(String::as_str) == Some(sandbox_id);
            if is_running(c) && current {
                let ip = (!pod_ip.is_empty()).then(|| pod_ip.to_string());
                probes.add(self.pod.clone(), container_name(c), &c.id, ip);
            } else {
                probes.remove(&c.id);
            }
        }
    }

    /// Kills a container whose liveness or startup probe failed; the next sync restarts it as
    /// the restart policy says.
    async fn kill(&mut self, kill: Kill) {
        tracing::info!(pod = %self.name(), container = %kill.container, probe = %kill.probe_message, "{}", kill.message);
        self.event(Warning, "Unhealthy", &kill.probe_message);
        self.event(Normal, "Killing", &kill.message);
        let grace = self.grace_seconds(None);
        let spec = self.container_spec(&kill.container);
        self.stop_container(&kill.container_id, spec.as_ref(), grace)
            .await;
        self.shared.probes.remove(&kill.container_id);
    }

    fn container_spec(&self, name: &str) -> Option<Container> {
        let spec = self.pod.spec.as_ref()?;
        spec.containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .find(|c| c.name == name)
            .cloned()
    }

    /// Runs the container's preStop hook (bounded by the grace period) and stops it with what
    /// is left of the grace period.
    async fn stop_container(&self, id: &str, spec: Option<&Container>, grace: i64) {
        let cri = &self.shared.ctx.cri;
        let started = std::time::Instant::now();
        let pre_stop = spec.and_then(|c| c.lifecycle.as_ref()?.pre_stop.clone());
        if let (Some(hook), Some(c)) = (pre_stop, spec) {
            let pod_ip = self.pod_ip();
            let target = crate::probes::Target {
                container_id: id,
                container: c,
                pod_ip: pod_ip.as_deref(),
            };
            let run = crate::probes::run_handler(cri, &hook, target);
            match tokio::time::timeout(Duration::from_secs(grace as u64), run).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    let message = format!("PreStopHook failed: {e}");
                    self.event(Warning, "FailedPreStopHook", &message);
                }
                Err(_) => {
                    tracing::info!(pod = %self.name(), container = %c.name, "preStop hook did not finish within the grace period")
                }
            }
        }
        let left = grace - started.elapsed().as_secs() as i64;
        if let Err(e) = cri.stop_container(id, left.max(MIN_GRACE)).await {
            tracing::warn!(pod = %self.name(), container = %id, error = %e, "stopping a container failed");
        }
    }

    fn pod_ip(&self) -> Option<String> {
        self.pod.status.as_ref().and_then(|s| s.pod_ip.clone())
    }

    /// `Some(wait)` while the container named by `c` is backing off from its exit `s`
    /// (and the status says CrashLoopBackOff), `None` when it may restart now.
    fn restart_after_backoff(
        &mut self,
        c: &Container,
        s: &api::ContainerStatus,
    ) -> Option<Duration> {
        let key = format!(
            "{}/{}",
            self.pod.metadata.uid.as_deref().unwrap_or(""),
            c.name
        );
        let finished = system_time(s.finished_at);
        let started = system_time(s.started_at);
        if finished.duration_since(started).unwrap_or_default() >= RESET_AFTER {
            self.crash_backoff.reset(&key);
        }
        let now = SystemTime::now();
        match self.crash_backoff.in_backoff_since(&key, finished, now) {
            Some(delay) => {
                let (ns, name, uid) = ids(&self.pod);
                self.waiting.insert(
                    c.name.clone(),
                    Waiting {
                        reason: "CrashLoopBackOff".into(),
                        message: format!(
                            "back-off {} restarting failed container={} pod={name}_{ns}({uid})",
                            go_duration(delay),
                            c.name
                        ),
                    },
                );
                let message = format!(
                    "Back-off restarting failed container {} in pod {name}_{ns}({uid})",
                    c.name
                );
                self.event_once(Warning, "BackOff", &message);
                let ends = finished + delay;
                Some(ends.duration_since(now).unwrap_or_default() + Duration::from_millis(50))
            }
            None => {
                self.crash_backoff.next(&key, now);
                None
            }
        }
    }

    async fn sandbox_ips(&self, sandbox_id: &str) -> anyhow::Result<Vec<String>> {
        if sandbox::host_network(&self.pod) {
            return Ok(self.shared.host_ip().into_iter().collect());
        }
        let status = self.shared.ctx.cri.pod_sandbox_status(sandbox_id).await?;
        let net = status.network.unwrap_or_default();
        let mut ips: Vec<String> = Vec::new();
        ips.extend(Some(net.ip).filter(|ip| !ip.is_empty()));
        ips.extend(net.additional_ips.into_iter().map(|p| p.ip));
        Ok(ips)
    }

    async fn create_sandbox(&mut self, runtime: &PodRuntime) -> anyhow::Result<String> {
        let ctx = &self.shared.ctx;
        let (ns, name, uid) = ids(&self.pod);
        // Containers of a dead sandbox go with it; their restart counts carry on.
        for c in runtime.running() {
            let _ = ctx.cri.stop_container(&c.id, MIN_GRACE).await;
        }
        for s in &runtime.sandboxes {
            let _ = ctx.cri.stop_pod_sandbox(&s.id).await;
        }
        let attempt = runtime
            .sandboxes
            .first()
            .and_then(|s| s.metadata.as_ref())
            .map_or(0, |m| m.attempt + 1);
        let config = sandbox::config(&self.pod, &ctx.layout, attempt);
        std::fs::create_dir_all(ctx.layout.pod_log_dir(ns, name, uid))?;
        std::fs::create_dir_all(ctx.layout.pod_dir(uid))?;
        let id = ctx.cri.run_pod_sandbox(config.clone(), "").await?;
        tracing::info!(pod = %self.name(), sandbox = %id, attempt, "sandbox started");
        self.sandbox_config = Some((id.clone(), config));
        Ok(id)
    }

    /// Creates and starts container `c`; a failure on the way is remembered as its waiting
    /// reason for the status.
    async fn start(
        &mut self,
        c: &Container,
        runtime: &PodRuntime,
        sandbox_id: &str,
        pod_ip: &str,
        objects: &mut Objects,
    ) {
        match self
            .try_start(c, runtime, sandbox_id, pod_ip, objects)
            .await
        {
            Ok(()) => {
                self.waiting.remove(&c.name);
            }
            Err(w) => {
                // Said once per reason: a container waiting on an image is tried every second.
                if self.waiting.get(&c.name).map(|o| &o.reason) != Some(&w.reason) {
                    tracing::info!(pod = %self.name(), container = %c.name, reason = %w.reason, message = %w.message, "container not started");
                } else {
                    tracing::debug!(pod = %self.name(), container = %c.name, reason = %w.reason, "container still not started");
                }
                self.waiting.insert(c.name.clone(), w);
            }
        }
    }

    async fn try_start(
        &mut self,
        c: &Container,
        runtime: &PodRuntime,
        sandbox_id: &str,
        pod_ip: &str,
        objects: &mut Objects,
    ) -> Result<(), Waiting> {
        let ctx = self.shared.ctx.clone();
        let (ns, name, uid) = ids(&self.pod);
        let sandbox_config = self
            .sandbox_config
            .as_ref()
            .map(|(_, c)| c.clone())
            .unwrap_or_default();
        let key = format!("{uid}/{}", c.name);
        let image = c.image.as_deref().unwrap_or("");
        self.phases.mark("before_start");
        let auth = pull_secrets::credentials(&ctx.client, objects, &self.pod, image).await;
        self.phases.mark("pull_secrets");
        match image::ensure(
            &ctx.cri,
            c,
            &sandbox_config,
            &auth,
            &mut self.image_backoff,
            &key,
        )
        .await
        {
            Ensured::Ready(how) => {
                self.phases.mark("image");
                self.event(Normal, "Pulled", &how)
            }
            Ensured::Waiting(w) => {
                let (kind, reason) = match w.reason.as_str() {
                    image::IMAGE_PULL_BACKOFF => (Normal, "BackOff"),
                    _ => (Warning, "Failed"),
                };
                self.event_once(kind, reason, &w.message);
                return Err(w);
            }
        }
        let config_error = |message: String| Waiting {
            reason: "CreateContainerConfigError".into(),
            message,
        };
        let host_ip = self.shared.host_ip().unwrap_or_default();
        let inputs = EnvInputs {
            client: &ctx.client,
            pod_ip: if pod_ip.is_empty() { &host_ip } else { pod_ip },
            host_ip: &host_ip,
            node_cpu_millis: self.shared.node.cpu_millis,
            node_memory: self.shared.node.memory,
        };
        let service_env = self.shared.service_env(&self.pod).await;
        self.phases.mark("service_env");
        let env = container_env(&inputs, objects, &self.pod, c, &service_env)
            .await
            .map_err(|e| config_error(e.0))?;
        self.phases.mark("env");
        let restart_count = runtime.next_attempt(&c.name);
        let log_dir = ctx.layout.pod_log_dir(ns, name, uid).join(&c.name);
        let message_file =
            container::termination_message_file(&ctx.layout, uid, &c.name, restart_count);
        prepare_files(&log_dir, &message_file).map_err(|e| config_error(e.to_string()))?;
        let mut mounts = match &self.volumes {
            Some(v) => v.mounts(c).map_err(|e| Waiting {
                reason: e.reason().into(),
                message: e.to_string(),
            })?,
            None => Vec::new(),
        };
        if !mounts.iter().any(|m| m.container_path == "/etc/hosts") {
            let path = ctx.layout.etc_hosts(uid);
            let ips: Vec<String> = Some(pod_ip.to_string())
                .filter(|ip| !ip.is_empty())
                .into_iter()
                .collect();
            let text = hosts::content(&self.pod, &ips, sandbox::host_network(&self.pod));
            hosts::write(&path, &text)
                .map_err(|e| config_error(format!("writing /etc/hosts: {e}")))?;
            mounts.push(api::Mount {
                container_path: "/etc/hosts".into(),
                host_path: path.to_string_lossy().into(),
                ..Default::default()
            });
        }
        self.phases.mark("files");
        let config = container::config(container::Inputs {
            pod: &self.pod,
            container: c,
            env: &env,
            restart_count,
            mounts,
            layout: &ctx.layout,
            qos: qos_class(&self.pod),
        });
        let id = ctx
            .cri
            .create_container(sandbox_id, config, sandbox_config)
            .await
            .map_err(|e| Waiting {
                reason: "CreateContainerError".into(),
                message: format!("{e:#}"),
            })?;
        self.phases.mark("create");
        self.event(Normal, "Created", &format!("Created container: {}", c.name));
        if let Err(e) = ctx.cri.start_container(&id).await {
            self.event(Warning, "Failed", &format!("Error: {e:#}"));
            return Err(Waiting {
                reason: "RunContainerError".into(),
                message: format!("{e:#}"),
            });
        }
        self.phases.mark("start");
        tracing::info!(pod = %self.name(), container = %c.name, id = %id, restart_count, "container started");
        self.event(Normal, "Started", &format!("Started container {}", c.name));
        self.remove_old(runtime, &c.name).await;
        let ip = (!pod_ip.is_empty()).then(|| pod_ip.to_string());
        self.shared.probes.add(self.pod.clone(), &c.name, &id, ip);
        if let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
            let target = crate::probes::Target {
                container_id: &id,
                container: c,
                pod_ip: (!pod_ip.is_empty()).then_some(pod_ip),
            };
            if let Err(e) = crate::probes::run_handler(&ctx.cri, hook, target).await {
                let message = format!("PostStartHook failed: {e}");
                self.event(Warning, "FailedPostStartHook", &message);
                let grace = self.grace_seconds(None);
                self.stop_container(&id, Some(c), grace).await;
                self.shared.probes.remove(&id);
                return Err(Waiting {
                    reason: "PostStartHookError".into(),
                    message,
                });
            }
        }
        Ok(())
    }

    /// A container created but never started (the agent stopped in between) is started now.
    async fn start_created(&self, s: &api::ContainerStatus) {
        if let Err(e) = self.shared.ctx.cri.start_container(&s.id).await {
            tracing::warn!(pod = %self.name(), container = %container_name(s), error = %e, "starting a created container failed; removing it");
            let _ = self.shared.ctx.cri.remove_container(&s.id).await;
        }
    }

    /// Keeps the newest exited container of `name` (the new one's previous: its status and
    /// log stay for `lastState` and `kubectl logs --previous`); older ones and their logs go.
    async fn remove_old(&self, runtime: &PodRuntime, name: &str) {
        let (ns, pod_name, uid) = ids(&self.pod);
        let cri = &self.shared.ctx.cri;
        let layout = &self.shared.ctx.layout;
        let of: Vec<&api::ContainerStatus> = runtime
            .containers
            .iter()
            .filter(|c| container_name(c) == name && !is_running(c))
            .collect();
        for old in of.iter().skip(1) {
            let _ = cri.remove_container(&old.id).await;
            let n = attempt(old);
            let log = layout
                .pod_log_dir(ns, pod_name, uid)
                .join(Layout::container_log(name, n));
            let _ = std::fs::remove_file(log);
            let _ = std::fs::remove_file(container::termination_message_file(layout, uid, name, n));
        }
    }

    async fn stop_sandboxes(&self, runtime: &PodRuntime) {
        for s in runtime
            .sandboxes
            .iter()
            .filter(|s| s.state == api::PodSandboxState::SandboxReady as i32)
        {
            for c in runtime.running() {
                let _ = self.shared.ctx.cri.stop_container(&c.id, MIN_GRACE).await;
            }
            if let Err(e) = self.shared.ctx.cri.stop_pod_sandbox(&s.id).await {
                tracing::warn!(pod = %self.name(), error = %e, "stopping the sandbox failed");
            }
        }
    }

    /// The grace period for killing: the deletion's when deleting, else the spec's.
    fn grace_seconds(&self, deletion: Option<i64>) -> i64 {
        deletion
            .or(self.pod.metadata.deletion_grace_period_seconds)
            .or(self
                .pod
                .spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds))
            .unwrap_or(30)
            .max(MIN_GRACE)
    }

    /// A pod new to this node (never started here) is refused under node pressure as upstream's
    /// eviction admit handler says: Failed, reason Evicted, "Pod was rejected: ...".
    fn admission(&self, runtime: &PodRuntime) -> Option<Termination> {
        let started = self.start_time.is_some()
            || self
                .pod
                .status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .is_some()
            || !runtime.sandboxes.is_empty();
        if self.terminal.is_some() || started {
            return None;
        }
        let pressure = *self.shared.pressure.borrow();
        let best_effort = qos_class(&self.pod) == status::QosClass::BestEffort;
        let message = crate::eviction::admit(&self.pod, best_effort, pressure)?;
        Some(Termination {
            reason: "Evicted".into(),
            message: format!("Pod was rejected: {message}"),
            grace_seconds: None,
            warning_event: true,
            disruption_target: false,
        })
    }

    /// Upstream's active deadline handler: how long the pod may still run, or its termination
    /// once `startTime + activeDeadlineSeconds` passed; `None` without a deadline or a start.
    fn active_deadline(&self) -> Option<Result<Duration, Termination>> {
        let seconds = self.pod.spec.as_ref()?.active_deadline_seconds?;
        let start = self
            .start_time
            .clone()
            .or_else(|| self.pod.status.as_ref()?.start_time.clone())?;
        let elapsed =
            k8s_openapi::jiff::Timestamp::now().as_millisecond() - start.0.as_millisecond();
        let left = seconds.saturating_mul(1000) - elapsed;
        if left >= 0 {
            // Woken just after the deadline rather than at the next resync.
            return Some(Ok(Duration::from_millis(left as u64 + 100)));
        }
        Some(Err(Termination {
            reason: "DeadlineExceeded".into(),
            message: "Pod was active on the node longer than the specified deadline".into(),
            grace_seconds: None,
            warning_event: false,
            disruption_target: false,
        }))
    }

    /// Ends the pod on the kubelet's decision (upstream's killPodNow with a status function):
    /// its event, its containers stopped within the grace period (preStop hooks run), its
    /// sandboxes stopped, and phase Failed with the termination's reason and message written.
    async fn end(&mut self, termination: Termination) {
        if self.terminal.is_some() || self.gone {
            return;
        }
        let kind = if termination.warning_event {
            Warning
        } else {
            Normal
        };
        self.event(kind, &termination.reason, &termination.message);
        tracing::info!(pod = %self.name(), reason = %termination.reason, "{}", termination.message);
        let grace = self.grace_seconds(termination.grace_seconds);
        let ctx = self.shared.ctx.clone();
        let uid = ids(&self.pod).2.to_string();
        self.terminal = Some("Failed".into());
        self.ended = Some(termination);
        let Ok(runtime) = PodRuntime::read(&ctx.cri, &uid).await else {
            return;
        };
        let specs: Vec<(String, Option<Container>)> = runtime
            .running()
            .map(|c| (c.id.clone(), self.container_spec(container_name(c))))
            .collect();
        let stops = specs
            .iter()
            .map(|(id, spec)| self.stop_container(id, spec.as_ref(), grace));
        futures::future::join_all(stops).await;
        self.shared.probes.remove_pod(&uid);
        if let Ok(runtime) = PodRuntime::read(&ctx.cri, &uid).await {
            self.stop_sandboxes(&runtime).await;
            if let Err(e) = self.write_status(&runtime, None, false).await {
                tracing::warn!(pod = %self.name(), error = %e, "writing the ended pod's status failed; retried at the next sync");
            }
        }
    }

    /// Stops the pod's containers within its grace period, removes its sandboxes, and deletes
    /// the pod object (grace 0, on its UID) when it still exists, as upstream's status manager.
    async fn terminate(&mut self) -> anyhow::Result<()> {
        let ctx = self.shared.ctx.clone();
        let (ns, name, uid) = ids(&self.pod);
        let (ns, name, uid) = (ns.to_string(), name.to_string(), uid.to_string());
        let runtime = PodRuntime::read(&ctx.cri, &uid).await?;
        let grace = if self.gone {
            self.grace_seconds(
                self.pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds),
            )
        } else {
            self.grace_seconds(None)
        };
        // Every container at once, each with its preStop hook, within the grace period.
        let specs: Vec<(String, Option<Container>)> = runtime
            .running()
            .map(|c| (c.id.clone(), self.container_spec(container_name(c))))
            .collect();
        for (_, spec) in &specs {
            if let Some(c) = spec {
                self.event(Normal, "Killing", &format!("Stopping container {}", c.name));
            }
        }
        let stops = specs
            .iter()
            .map(|(id, spec)| self.stop_container(id, spec.as_ref(), grace));
        futures::future::join_all(stops).await;
        self.shared.probes.remove_pod(&uid);
        if !specs.is_empty() {
            tracing::info!(pod = %format!("{ns}/{name}"), grace, "containers stopped");
        }
        for s in &runtime.sandboxes {
            ctx.cri.stop_pod_sandbox(&s.id).await?;
            ctx.cri.remove_pod_sandbox(&s.id).await?;
        }
        // Containers of removed sandboxes are gone with them; any left over go now.
        for c in &PodRuntime::read(&ctx.cri, &uid).await?.containers {
            let _ = ctx.cri.remove_container(&c.id).await;
        }
        // The pod's directory goes once its volumes are unmounted, never before.
        self.shared.volumes.teardown(&uid).await?;
        let _ = std::fs::remove_dir_all(ctx.layout.pod_dir(&uid));
        let _ = std::fs::remove_dir_all(ctx.layout.pod_log_dir(&ns, &name, &uid));
        if !self.gone {
            self.delete_object(&ns, &name, &uid).await?;
        }
        tracing::info!(pod = %format!("{ns}/{name}"), "pod terminated");
        Ok(())
    }

    async fn delete_object(&self, ns: &str, name: &str, uid: &str) -> anyhow::Result<()> {
        let api: Api<Pod> = Api::namespaced(self.shared.ctx.client.clone(), ns);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(name, &params).await {
            Ok(_) => Ok(()),
            // Already gone, or a new pod of the same name: this one is done either way.
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes the pod's status when it differs from what the API has.
    async fn write_status(
        &mut self,
        runtime: &PodRuntime,
        pod_ips: Option<Vec<String>>,
        sandbox_ready: bool,
    ) -> anyhow::Result<()> {
        let ctx = self.shared.ctx.clone();
        let old = self.pod.status.clone();
        let pod_ips = pod_ips.unwrap_or_else(|| {
            old.as_ref()
                .and_then(|s| s.pod_ips.clone())
                .unwrap_or_default()
                .into_iter()
                .map(|p| p.ip)
                .collect()
        });
        let probes = self.shared.probes.clone();
        let probes2 = probes.clone();
        let ready = move |id: &str| probes.ready(id);
        let started = move |id: &str| probes2.started(id);
        let terminal = self.terminal.clone();
        let obs = Observed {
            pod: &self.pod,
            runtime,
            layout: &ctx.layout,
            pod_ips,
            host_ip: self.shared.host_ip(),
            sandbox_ready,
            waiting: &self.waiting,
            ready: &ready,
            started: &started,
            terminal: terminal.as_deref(),
            start_time: self.start_time.clone(),
        };
        let mut generated = status::generate(&obs, old.as_ref());
        drop(obs);
        self.ended_status(&mut generated, old.as_ref());
        if terminal.is_none() {
            if let Some(p @ ("Succeeded" | "Failed")) = generated.phase.as_deref() {
                self.terminal = Some(p.to_string());
            }
        }
        self.start_time = generated.start_time.clone();
        let value = serde_json::to_value(&generated)?;
        let current = old.as_ref().map(serde_json::to_value).transpose()?;
        let rv = self.pod.metadata.resource_version.clone();
        if current.as_ref() == Some(&value) {
            return Ok(());
        }
        if let Some((written, at)) = &self.written {
            if *written == value && *at == rv {
                return Ok(());
            }
        }
        let (ns, name, _) = ids(&self.pod);
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
        let patch = serde_json::json!({ "status": value });
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        self.written = Some((value, rv));
        Ok(())
    }
}

impl Worker {
    /// The reason and message of a pod the kubelet ended (kept from the API's status after an
    /// agent restart), and its DisruptionTarget condition.
    fn ended_status(
        &self,
        generated: &mut k8s_openapi::api::core::v1::PodStatus,
        old: Option<&k8s_openapi::api::core::v1::PodStatus>,
    ) {
        let Some(t) = &self.ended else {
            if self.terminal.is_some() {
                generated.reason = old.and_then(|o| o.reason.clone());
                generated.message = old.and_then(|o| o.message.clone());
            }
            return;
        };
        generated.reason = Some(t.reason.clone());
        generated.message = Some(t.message.clone());
        let conditions = generated.conditions.get_or_insert_with(Vec::new);
        if t.disruption_target && !conditions.iter().any(|c| c.type_ == "DisruptionTarget") {
            conditions.push(PodCondition {
                type_: "DisruptionTarget".into(),
                status: "True".into(),
                reason: Some("TerminationByKubelet".into()),
                message: Some(t.message.clone()),
                last_transition_time: Some(status::now()),
                ..Default::default()
            });
        }
    }
}

fn prepare_files(log_dir: &std::path::Path, message_file: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(log_dir)?;
    if let Some(dir) = message_file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(message_file, b"")?;
    // Any user in the container may write its termination message.
    std::fs::set_permissions(message_file, std::fs::Permissions::from_mode(0o666))
}

fn system_time(nanos: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos.max(0) as u64)
}

/// A duration as Go prints it (`10s`, `5m0s`), for upstream's messages.
pub fn go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 {
        format!("{}m{}s", secs / 60, secs % 60)
    } else {
        format!("{secs}s")
    }
}
