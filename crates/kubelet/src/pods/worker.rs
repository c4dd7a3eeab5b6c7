//! One pod's worker: syncs the runtime towards the pod's spec on every change of the pod, every
//! change the runtime reports for its containers, and periodically (upstream's `SyncPod` driven by
//! `computePodActions`), and writes the pod's status back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::Api;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::backoff::Backoff;
use super::container;
use super::env::{container_env, EnvInputs, Objects};
use super::image::{self, Ensured};
use super::runtime::{attempt, container_name, is_exited, is_running, PodRuntime};
use super::sandbox::{self, ids};
use super::status::{self, qos_class, Observed, Waiting};
use super::Shared;
use crate::cri::api;
use crate::layout::Layout;

/// How often a pod is synced when nothing happens.
const RESYNC: Duration = Duration::from_secs(10);
/// A container that ran this long starts its back-off again from the beginning.
const RESET_AFTER: Duration = Duration::from_secs(600);
/// Upstream's floor for a kill's grace period.
const MIN_GRACE: i64 = 2;

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
    start_time: Option<Time>,
    /// The status last written and the pod's resourceVersion then.
    written: Option<(serde_json::Value, Option<String>)>,
    /// The sandbox config of the current sandbox (containers are created with it).
    sandbox_config: Option<(String, api::PodSandboxConfig)>,
}

enum Next {
    /// Sync again after this long at the latest.
    After(Duration),
    /// The pod is finished on this node; the worker ends.
    Done,
}

pub async fn run(
    shared: Arc<Shared>,
    pod: Arc<Pod>,
    mut updates: watch::Receiver<Update>,
    poke: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
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
        start_time: None,
        written: None,
        sandbox_config: None,
    };
    let mut wake = Instant::now();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            changed = updates.changed() => if changed.is_err() { return },
            _ = poke.notified() => {}
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
        let mut runtime = PodRuntime::read(&ctx.cri, &uid).await?;
        let mut next = RESYNC;
        if self.terminal.is_some() {
            self.stop_sandboxes(&runtime).await;
            self.write_status(&runtime, None, false).await?;
            return Ok(RESYNC);
        }
        let (sandbox_id, pod_ips) = match runtime.ready_sandbox() {
            Some(s) => (s.id.clone(), self.sandbox_ips(&s.id).await?),
            None => {
                let id = self.create_sandbox(&runtime).await?;
                runtime = PodRuntime::read(&ctx.cri, &uid).await?;
                (id.clone(), self.sandbox_ips(&id).await?)
            }
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

        // Init containers, one at a time, in order; each must succeed before the next starts.
        let mut init_done = true;
        for c in spec.init_containers.iter().flatten() {
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
        }
        self.write_status(&runtime, Some(pod_ips), true).await?;
        if self.terminal.is_some() {
            self.stop_sandboxes(&runtime).await;
        }
        Ok(next)
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
                tracing::info!(pod = %self.name(), container = %c.name, reason = %w.reason, message = %w.message, "container not started");
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
        match image::ensure(
            &ctx.cri,
            c,
            &sandbox_config,
            &[],
            &mut self.image_backoff,
            &key,
        )
        .await
        {
            Ensured::Ready => {}
            Ensured::Waiting(w) => return Err(w),
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
        let env = container_env(&inputs, objects, &self.pod, c, &service_env)
            .await
            .map_err(|e| config_error(e.0))?;
        let restart_count = runtime.next_attempt(&c.name);
        let log_dir = ctx.layout.pod_log_dir(ns, name, uid).join(&c.name);
        let message_file =
            container::termination_message_file(&ctx.layout, uid, &c.name, restart_count);
        prepare_files(&log_dir, &message_file).map_err(|e| config_error(e.to_string()))?;
        let mounts = Vec::new();
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
        if let Err(e) = ctx.cri.start_container(&id).await {
            return Err(Waiting {
                reason: "RunContainerError".into(),
                message: format!("{e:#}"),
            });
        }
        tracing::info!(pod = %self.name(), container = %c.name, id = %id, restart_count, "container started");
        self.remove_old(runtime, &c.name).await;
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
        let stops = runtime.running().map(|c| {
            let cri = ctx.cri.clone();
            let id = c.id.clone();
            async move {
                if let Err(e) = cri.stop_container(&id, grace).await {
                    tracing::warn!(container = %id, error = %e, "stopping a container failed");
                }
            }
        });
        futures::future::join_all(stops).await;
        if runtime.running().next().is_some() {
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
        let _ = std::fs::remove_dir_all(ctx.layout.pod_dir(&uid).join("containers"));
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
        let ready = |_: &str| true;
        let started = |_: &str| true;
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
        let generated = status::generate(&obs, old.as_ref());
        drop(obs);
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
