//! Probes and lifecycle hooks: liveness, readiness and startup probes (exec over CRI ExecSync,
//! httpGet, tcpSocket, grpc) run by one worker per container and probe with upstream's timing
//! (initialDelaySeconds, periodSeconds, timeoutSeconds, success and failure thresholds, startup
//! gating the other two, readiness false until its first success), and postStart / preStop
//! handlers (exec, httpGet, sleep).
//!
//! Contract for the pod workers: `ProbeManager::new(Cri) -> (ProbeManager, Receiver<ProbeEvent>)`;
//! `add(pod, container name, container id, pod ip)` after the container started (again for each
//! new container: a failed liveness or startup probe holds its workers), `remove(container id)`
//! when it stopped, `remove_pod(pod uid)`; `ready(container id) -> bool` (true without a
//! readiness probe once started), `started(container id) -> bool` (true without a startup
//! probe); events say a liveness or startup probe failed (restart the container; the message is
//! upstream's "Liveness probe failed: …") or that a pod's readiness or started state changed
//! (write status). `run_handler(&Cri, &LifecycleHandler, Target) -> Result<(), String>` for
//! hooks; `run_probe(&Cri, &Probe, Target) -> Outcome` runs one probe once.

mod action;
mod grpc_health;
mod handler;
mod httpget;
mod worker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use tokio::sync::{mpsc, Notify};
use tokio::task::AbortHandle;

pub use action::{run as run_probe, Outcome, Target};
pub use handler::run_handler;
use worker::{Kind, Worker};

use crate::cri::Cri;

/// What the pod workers hear from the probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeEvent {
    /// The liveness probe failed failureThreshold times in a row: restart the container.
    LivenessFailed {
        pod_uid: String,
        container: String,
        container_id: String,
        message: String,
    },
    /// The startup probe failed failureThreshold times in a row: restart the container.
    StartupFailed {
        pod_uid: String,
        container: String,
        container_id: String,
        message: String,
    },
    /// A container of the pod became ready or unready, or started: write the pod's status.
    ReadinessChanged { pod_uid: String },
}

/// What the workers of one container know.
#[derive(Debug)]
struct Shared {
    /// None without a readiness probe.
    readiness: Option<bool>,
    started: bool,
}

struct Entry {
    pod_uid: String,
    shared: Arc<Mutex<Shared>>,
    tasks: Vec<AbortHandle>,
}

/// The probe workers of every container. Cloning is cheap: clones share the workers.
#[derive(Clone)]
pub struct ProbeManager {
    cri: Cri,
    events: mpsc::UnboundedSender<ProbeEvent>,
    containers: Arc<Mutex<HashMap<String, Entry>>>,
}

impl ProbeManager {
    pub fn new(cri: Cri) -> (ProbeManager, mpsc::UnboundedReceiver<ProbeEvent>) {
        let (events, rx) = mpsc::unbounded_channel();
        let manager = ProbeManager {
            cri,
            events,
            containers: Arc::default(),
        };
        (manager, rx)
    }

    /// Starts the workers for the probes of `container` (a container or init container of the
    /// pod) running as `container_id`. Adding a container already added changes nothing.
    /// The workers are tasks of the current Tokio runtime.
    pub fn add(&self, pod: Arc<Pod>, container: &str, container_id: &str, pod_ip: Option<String>) {
        let mut containers = self.containers.lock().unwrap();
        if containers.contains_key(container_id) {
            return;
        }
        let pod_uid = pod.metadata.uid.clone().unwrap_or_default();
        let spec = find_container(&pod, container).unwrap_or_else(|| {
            tracing::warn!(pod = %pod_uid, container, "probes: no such container in the pod spec");
            Container {
                name: container.to_string(),
                ..Default::default()
            }
        });
        let shared = Arc::new(Mutex::new(Shared {
            readiness: spec.readiness_probe.as_ref().map(|_| false),
            started: spec.startup_probe.is_none(),
        }));
        let started = Arc::new(Notify::new());
        let probes = [
            (Kind::Startup, spec.startup_probe.clone()),
            (Kind::Liveness, spec.liveness_probe.clone()),
            (Kind::Readiness, spec.readiness_probe.clone()),
        ];
        let tasks = probes
            .into_iter()
            .filter_map(|(kind, probe)| Some((kind, probe?)))
            .map(|(kind, probe): (Kind, Probe)| {
                let worker = Worker {
                    kind,
                    probe,
                    pod_uid: pod_uid.clone(),
                    container: spec.clone(),
                    container_id: container_id.to_string(),
                    pod_ip: pod_ip.clone(),
                    cri: self.cri.clone(),
                    shared: shared.clone(),
                    started: started.clone(),
                    events: self.events.clone(),
                };
                tokio::spawn(worker.run()).abort_handle()
            })
            .collect();
        containers.insert(
            container_id.to_string(),
            Entry {
                pod_uid,
                shared,
                tasks,
            },
        );
    }

    /// Stops the workers of a container (it stopped or is being restarted).
    pub fn remove(&self, container_id: &str) {
        if let Some(entry) = self.containers.lock().unwrap().remove(container_id) {
            entry.tasks.iter().for_each(AbortHandle::abort);
        }
    }

    /// Stops the workers of every container of a pod.
    pub fn remove_pod(&self, pod_uid: &str) {
        self.containers.lock().unwrap().retain(|_, entry| {
            let keep = entry.pod_uid != pod_uid;
            if !keep {
                entry.tasks.iter().for_each(AbortHandle::abort);
            }
            keep
        });
    }

    /// Whether the container is ready: started, and its readiness probe (if any) succeeded last.
    pub fn ready(&self, container_id: &str) -> bool {
        self.with(container_id, |s| s.started && s.readiness.unwrap_or(true))
    }

    /// Whether the container's startup probe (if any) succeeded.
    pub fn started(&self, container_id: &str) -> bool {
        self.with(container_id, |s| s.started)
    }

    fn with(&self, container_id: &str, f: impl FnOnce(&Shared) -> bool) -> bool {
        let containers = self.containers.lock().unwrap();
        containers
            .get(container_id)
            .is_some_and(|e| f(&e.shared.lock().unwrap()))
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.tasks.iter().for_each(AbortHandle::abort);
    }
}

/// The container or init container named `name` in the pod's spec.
fn find_container(pod: &Pod, name: &str) -> Option<Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
        .cloned()
}
