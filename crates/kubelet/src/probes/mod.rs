//! Probes and lifecycle hooks (owner: probes work in progress): liveness, readiness and startup
//! probes (exec over CRI ExecSync, httpGet, tcpSocket) run by one worker per container and probe
//! with upstream's timing (initialDelaySeconds, periodSeconds, timeoutSeconds, success and
//! failure thresholds), and postStart / preStop handlers.
//!
//! Contract for the pod workers: `ProbeManager::new(Cri) -> (ProbeManager, Receiver<ProbeEvent>)`;
//! `add(pod, container name, container id, pod ip)`, `remove(container id)`,
//! `ready(container id) -> bool`, `started(container id) -> bool`; events say a liveness or
//! startup probe failed (restart the container) or that readiness changed (write status).
//! `run_handler(&Cri, &LifecycleHandler, target) -> Result<(), String>` for hooks.
