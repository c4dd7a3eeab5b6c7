//! The pod's status from what the runtime holds, with upstream's field semantics
//! (`generateAPIPodStatus`, `getPhase`, `convertToAPIContainerStatuses`): container states with
//! reasons, exit codes and times, restart counts, phase, the five conditions, IPs, QoS class.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::container::{termination_message_file, TERMINATION_MESSAGE_POLICY};
use super::runtime::{attempt, is_exited, is_running, PodRuntime};
use crate::cri::api;
use crate::layout::Layout;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }
}

/// Upstream's `GetPodQOS`: no requests or limits anywhere is BestEffort; cpu and memory limits
/// on every container, equal to the requests, is Guaranteed; anything else Burstable.
pub fn qos_class(pod: &Pod) -> QosClass {
    use component_base::quantity::milli_value;
    let Some(spec) = pod.spec.as_ref() else {
        return QosClass::BestEffort;
    };
    let all: Vec<&Container> = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in all {
        let res = c.resources.as_ref();
        let requests = res.and_then(|r| r.requests.clone()).unwrap_or_default();
        let limits = res.and_then(|r| r.limits.clone()).unwrap_or_default();
        let counted = |m: &BTreeMap<_, _>| {
            ["cpu", "memory"]
                .iter()
                .any(|k| m.get(*k).is_some_and(|q| milli_value(q) != 0))
        };
        any |= counted(&requests) || counted(&limits);
        for r in ["cpu", "memory"] {
            let limit = limits.get(r).map(milli_value);
            let request = requests.get(r).map(milli_value).or(limit);
            if limit.is_none() || limit != request {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => QosClass::BestEffort,
        (true, true) => QosClass::Guaranteed,
        (true, false) => QosClass::Burstable,
    }
}

/// Why a container is waiting, remembered by the worker between syncs (image pull failures,
/// crash-loop back-off, config errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub reason: String,
    pub message: String,
}

/// What the status is made from.
pub struct Observed<'a> {
    pub pod: &'a Pod,
    pub runtime: &'a PodRuntime,
    pub layout: &'a Layout,
    pub pod_ips: Vec<String>,
    pub host_ip: Option<String>,
    pub sandbox_ready: bool,
    pub waiting: &'a HashMap<String, Waiting>,
    /// Whether a running container (by ID) passed its readiness checks.
    pub ready: &'a (dyn Fn(&str) -> bool + Sync),
    pub started: &'a (dyn Fn(&str) -> bool + Sync),
    /// Set once the pod ended (Succeeded / Failed): it does not go back.
    pub terminal: Option<&'a str>,
    pub start_time: Option<Time>,
}

pub fn time_of(nanos: i64) -> Option<Time> {
    (nanos > 0)
        .then(|| Timestamp::from_second(nanos / 1_000_000_000).ok())
        .flatten()
        .map(Time)
}

pub fn now() -> Time {
    Time(Timestamp::from_second(Timestamp::now().as_second()).unwrap_or(Timestamp::UNIX_EPOCH))
}

pub fn container_id(id: &str) -> String {
    format!("containerd://{id}")
}

fn terminated(
    c: &api::ContainerStatus,
    layout: &Layout,
    pod_uid: &str,
) -> ContainerStateTerminated {
    let reason = if c.reason.is_empty() {
        if c.exit_code == 0 {
            "Completed"
        } else {
            "Error"
        }
        .to_string()
    } else {
        c.reason.clone()
    };
    ContainerStateTerminated {
        exit_code: c.exit_code,
        reason: Some(reason),
        message: termination_message(c, layout, pod_uid),
        started_at: time_of(c.started_at),
        finished_at: time_of(c.finished_at),
        container_id: Some(container_id(&c.id)),
        signal: None,
    }
}

/// The termination message file's content (at most 4 KiB), else, with the
/// FallbackToLogsOnError policy and a failure, the end of the log.
fn termination_message(c: &api::ContainerStatus, layout: &Layout, pod_uid: &str) -> Option<String> {
    let name = super::runtime::container_name(c);
    let file = termination_message_file(layout, pod_uid, name, attempt(c));
    let mut message = std::fs::read(&file).unwrap_or_default();
    message.truncate(4096);
    let message = String::from_utf8_lossy(&message).into_owned();
    if !message.is_empty() {
        return Some(message);
    }
    let fallback = c
        .annotations
        .get(TERMINATION_MESSAGE_POLICY)
        .map(String::as_str)
        == Some("FallbackToLogsOnError");
    if fallback && c.exit_code != 0 && !c.log_path.is_empty() {
        let tail = log_tail(Path::new(&c.log_path), 80, 2048);
        return (!tail.is_empty()).then_some(tail);
    }
    None
}

/// The last `lines` lines of a CRI-format log (`<time> <stream> <F|P> <text>`), at most
/// `max_bytes` from the end.
fn log_tail(path: &Path, lines: usize, max_bytes: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let content: Vec<&str> = text
        .lines()
        .map(|l| l.splitn(4, ' ').nth(3).unwrap_or(""))
        .collect();
    let joined = content[content.len().saturating_sub(lines)..].join("\n");
    let start = joined.len().saturating_sub(max_bytes);
    let start = (start..=joined.len())
        .find(|i| joined.is_char_boundary(*i))
        .unwrap_or(joined.len());
    joined[start..].to_string()
}

fn waiting(reason: &str, message: Option<&str>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_string()),
            message: message.filter(|m| !m.is_empty()).map(str::to_string),
        }),
        ..Default::default()
    }
}

fn container_status(
    obs: &Observed<'_>,
    spec: &Container,
    default_waiting: &str,
) -> ContainerStatus {
    let (_, _, uid) = super::sandbox::ids(obs.pod);
    let (latest, previous) = obs.runtime.latest(&spec.name);
    let image = spec.image.clone().unwrap_or_default();
    let remembered = obs.waiting.get(&spec.name);
    let mut status = ContainerStatus {
        name: spec.name.clone(),
        image: image.clone(),
        image_id: String::new(),
        ..Default::default()
    };
    let Some(c) = latest else {
        let w = remembered.map_or((default_waiting, None), |w| {
            (w.reason.as_str(), Some(w.message.as_str()))
        });
        status.state = Some(waiting(w.0, w.1));
        status.started = Some(false);
        return status;
    };
    status.restart_count = attempt(c) as i32;
    status.image_id = c.image_ref.clone();
    status.container_id = Some(container_id(&c.id));
    let terminated_state = |c: &api::ContainerStatus| ContainerState {
        terminated: Some(terminated(c, obs.layout, uid)),
        ..Default::default()
    };
    if is_running(c) {
        status.state = Some(ContainerState {
            running: Some(ContainerStateRunning {
                started_at: time_of(c.started_at),
            }),
            ..Default::default()
        });
        status.ready = (obs.ready)(&c.id);
        status.started = Some((obs.started)(&c.id));
        status.last_state = previous.filter(|p| is_exited(p)).map(terminated_state);
    } else if is_exited(c) {
        match remembered {
            // Waiting to restart: the exited container is the last state.
            Some(w) if obs.terminal.is_none() => {
                status.state = Some(waiting(&w.reason, Some(&w.message)));
                status.last_state = Some(terminated_state(c));
            }
            _ => {
                status.state = Some(terminated_state(c));
                status.last_state = previous.filter(|p| is_exited(p)).map(terminated_state);
            }
        }
        status.started = Some(false);
    } else {
        let reason = remembered.map_or("ContainerCreating", |w| w.reason.as_str());
        status.state = Some(waiting(reason, remembered.map(|w| w.message.as_str())));
        status.started = Some(false);
        status.last_state = previous.filter(|p| is_exited(p)).map(terminated_state);
    }
    if status.last_state.is_none() {
        status.last_state = Some(ContainerState::default());
    }
    status
}

/// How many containers are in each situation, for the phase.
#[derive(Default)]
struct Counts {
    pending: usize,
    running: usize,
    stopped: usize,
    succeeded: usize,
}

fn count(statuses: &[ContainerStatus]) -> Counts {
    let mut n = Counts::default();
    for s in statuses {
        let state = s.state.as_ref();
        if state.and_then(|s| s.running.as_ref()).is_some() {
            n.running += 1;
        } else if let Some(t) = state.and_then(|s| s.terminated.as_ref()) {
            n.stopped += 1;
            if t.exit_code == 0 {
                n.succeeded += 1;
            }
        } else if s
            .last_state
            .as_ref()
            .and_then(|l| l.terminated.as_ref())
            .is_some()
        {
            // Waiting to restart after having run: counts as stopped, as upstream.
            n.stopped += 1;
        } else {
            n.pending += 1;
        }
    }
    n
}

/// Upstream's `getPhase`.
fn phase(
    restart_policy: &str,
    init_done: bool,
    init_failed: bool,
    c: &[ContainerStatus],
) -> &'static str {
    if init_failed {
        return "Failed";
    }
    if !init_done {
        return "Pending";
    }
    let n = count(c);
    if n.pending > 0 {
        return "Pending";
    }
    if n.running > 0 {
        return "Running";
    }
    if n.stopped > 0 {
        if restart_policy == "Always" {
            return "Running";
        }
        if n.stopped == n.succeeded {
            return "Succeeded";
        }
        if restart_policy == "Never" {
            return "Failed";
        }
        return "Running";
    }
    "Pending"
}

fn condition(
    kind: &str,
    ok: bool,
    reason: Option<String>,
    message: Option<String>,
) -> PodCondition {
    PodCondition {
        type_: kind.to_string(),
        status: if ok { "True" } else { "False" }.to_string(),
        reason: if ok { None } else { reason },
        message: if ok { None } else { message },
        ..Default::default()
    }
}

fn names_where(statuses: &[ContainerStatus], f: impl Fn(&ContainerStatus) -> bool) -> Vec<String> {
    statuses
        .iter()
        .filter(|s| f(s))
        .map(|s| s.name.clone())
        .collect()
}

fn init_succeeded(s: &ContainerStatus) -> bool {
    s.state
        .as_ref()
        .and_then(|st| st.terminated.as_ref())
        .is_some_and(|t| t.exit_code == 0)
}

const KUBELET_CONDITIONS: &[&str] = &[
    "PodReadyToStartContainers",
    "Initialized",
    "Ready",
    "ContainersReady",
];

/// Ready: the containers are, and every readiness gate's condition is True (upstream's
/// `GeneratePodReadyCondition`).
fn ready_condition(
    spec: &k8s_openapi::api::core::v1::PodSpec,
    old: Option<&PodStatus>,
    containers_ready: bool,
    reason: String,
    message: Option<String>,
) -> PodCondition {
    if !containers_ready {
        return condition("Ready", false, Some(reason), message);
    }
    let conditions = old.and_then(|o| o.conditions.as_ref());
    let mut missing = Vec::new();
    let mut not_true = Vec::new();
    for gate in spec.readiness_gates.iter().flatten() {
        let kind = &gate.condition_type;
        match conditions.and_then(|cs| cs.iter().find(|c| &c.type_ == kind)) {
            None => missing.push(format!(
                "corresponding condition of pod readiness gate \"{kind}\" does not exist."
            )),
            Some(c) if c.status != "True" => not_true.push(format!(
                "the status of pod readiness gate \"{kind}\" is not \"True\", but {}.",
                c.status
            )),
            Some(_) => {}
        }
    }
    if missing.is_empty() && not_true.is_empty() {
        return condition("Ready", true, None, None);
    }
    missing.extend(not_true);
    condition(
        "Ready",
        false,
        Some("ReadinessGatesNotReady".into()),
        Some(missing.join(", ")),
    )
}

/// The pod's status now; `old` gives the conditions' transition times and PodScheduled.
pub fn generate(obs: &Observed<'_>, old: Option<&PodStatus>) -> PodStatus {
    let spec = obs.pod.spec.clone().unwrap_or_default();
    let restart_policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let init: Vec<ContainerStatus> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| container_status(obs, c, "PodInitializing"))
        .collect();
    let init_done = init.iter().all(init_succeeded);
    let init_failed = restart_policy == "Never"
        && init.iter().any(|s| {
            s.state
                .as_ref()
                .and_then(|st| st.terminated.as_ref())
                .is_some_and(|t| t.exit_code != 0)
        });
    let default_waiting = if init_done {
        "ContainerCreating"
    } else {
        "PodInitializing"
    };
    let containers: Vec<ContainerStatus> = spec
        .containers
        .iter()
        .map(|c| container_status(obs, c, default_waiting))
        .collect();
    let phase = obs
        .terminal
        .unwrap_or_else(|| phase(restart_policy, init_done, init_failed, &containers));
    let terminal = phase == "Succeeded" || phase == "Failed";

    let unready = names_where(&containers, |s| !s.ready);
    let not_init = names_where(&init, |s| !init_succeeded(s));
    let list = |v: &[String]| format!("[{}]", v.join(" "));
    let containers_ready = unready.is_empty();
    let (ready_reason, ready_message) = if terminal {
        ("PodCompleted".to_string(), None)
    } else {
        (
            "ContainersNotReady".to_string(),
            Some(format!(
                "containers with unready status: {}",
                list(&unready)
            )),
        )
    };
    let mut conditions = vec![
        condition(
            "PodReadyToStartContainers",
            obs.sandbox_ready && !terminal,
            None,
            None,
        ),
        condition(
            "Initialized",
            init_done || (terminal && !init_failed),
            Some(
                if terminal {
                    "PodCompleted"
                } else {
                    "ContainersNotInitialized"
                }
                .into(),
            ),
            (!terminal).then(|| format!("containers with incomplete status: {}", list(&not_init))),
        ),
        ready_condition(
            &spec,
            old,
            containers_ready && !terminal,
            ready_reason.clone(),
            ready_message.clone(),
        ),
        condition(
            "ContainersReady",
            containers_ready && !terminal,
            Some(ready_reason),
            ready_message,
        ),
    ];
    let old_conditions = old.and_then(|o| o.conditions.clone()).unwrap_or_default();
    // Conditions the kubelet does not own (PodScheduled, readiness gates', DisruptionTarget)
    // are kept as they are.
    for c in &old_conditions {
        if !KUBELET_CONDITIONS.contains(&c.type_.as_str()) {
            conditions.push(c.clone());
        }
    }
    let now = now();
    for c in conditions.iter_mut() {
        if c.last_transition_time.is_some() {
            continue;
        }
        let previous = old_conditions.iter().find(|o| o.type_ == c.type_);
        c.last_transition_time = match previous {
            Some(p) if p.status == c.status => p.last_transition_time.clone(),
            _ => Some(now.clone()),
        };
        c.last_probe_time = None;
    }
    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conditions),
        host_ip: obs.host_ip.clone(),
        host_ips: obs.host_ip.clone().map(|ip| vec![HostIP { ip }]),
        pod_ip: obs.pod_ips.first().cloned(),
        pod_ips: (!obs.pod_ips.is_empty()).then(|| {
            obs.pod_ips
                .iter()
                .map(|ip| PodIP { ip: ip.clone() })
                .collect()
        }),
        start_time: obs
            .start_time
            .clone()
            .or_else(|| old.and_then(|o| o.start_time.clone()))
            .or(Some(now)),
        qos_class: Some(qos_class(obs.pod).as_str().to_string()),
        init_container_statuses: (!init.is_empty()).then_some(init),
        container_statuses: Some(containers),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn status(state: serde_json::Value, last: serde_json::Value) -> ContainerStatus {
        serde_json::from_value(json!({
            "name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": state, "lastState": last
        }))
        .unwrap()
    }

    #[test]
    fn phases_as_upstream() {
        let running = status(json!({"running": {}}), json!({}));
        let ok = status(json!({"terminated": {"exitCode": 0}}), json!({}));
        let failed = status(json!({"terminated": {"exitCode": 1}}), json!({}));
        let creating = status(
            json!({"waiting": {"reason": "ContainerCreating"}}),
            json!({}),
        );
        let backing_off = status(
            json!({"waiting": {"reason": "CrashLoopBackOff"}}),
            json!({"terminated": {"exitCode": 1}}),
        );
        assert_eq!(
            phase("Always", false, false, std::slice::from_ref(&running)),
            "Pending"
        );
        assert_eq!(phase("Never", true, true, &[]), "Failed");
        assert_eq!(
            phase("Always", true, false, std::slice::from_ref(&creating)),
            "Pending"
        );
        assert_eq!(
            phase("Always", true, false, &[running.clone(), ok.clone()]),
            "Running"
        );
        assert_eq!(
            phase("Always", true, false, std::slice::from_ref(&backing_off)),
            "Running"
        );
        assert_eq!(
            phase("Always", true, false, std::slice::from_ref(&ok)),
            "Running"
        );
        assert_eq!(
            phase("Never", true, false, &[ok.clone(), ok.clone()]),
            "Succeeded"
        );
        assert_eq!(
            phase("OnFailure", true, false, std::slice::from_ref(&ok)),
            "Succeeded"
        );
        assert_eq!(
            phase("Never", true, false, &[ok.clone(), failed.clone()]),
            "Failed"
        );
        assert_eq!(phase("OnFailure", true, false, &[failed]), "Running");
        assert_eq!(phase("Never", true, false, &[creating, ok]), "Pending");
    }

    fn pod(resources: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "resources": resources}]}
        }))
        .unwrap()
    }

    #[test]
    fn qos_classes() {
        assert_eq!(qos_class(&pod(json!({}))), QosClass::BestEffort);
        let limits = json!({"limits": {"cpu": "1", "memory": "1Gi"}});
        assert_eq!(qos_class(&pod(limits)), QosClass::Guaranteed);
        let equal = json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1000m", "memory": "1Gi"}});
        assert_eq!(qos_class(&pod(equal)), QosClass::Guaranteed);
        let less = json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}});
        assert_eq!(qos_class(&pod(less)), QosClass::Burstable);
        assert_eq!(
            qos_class(&pod(json!({"requests": {"memory": "1Mi"}}))),
            QosClass::Burstable
        );
    }

    #[test]
    fn readiness_gates_hold_ready_back() {
        let spec: k8s_openapi::api::core::v1::PodSpec = serde_json::from_value(json!({
            "containers": [], "readinessGates": [{"conditionType": "example.com/lb"}]
        }))
        .unwrap();
        let missing = ready_condition(&spec, None, true, "r".into(), None);
        assert_eq!(missing.status, "False");
        assert_eq!(missing.reason.as_deref(), Some("ReadinessGatesNotReady"));
        let old: PodStatus = serde_json::from_value(json!({
            "conditions": [{"type": "example.com/lb", "status": "True"}]
        }))
        .unwrap();
        assert_eq!(
            ready_condition(&spec, Some(&old), true, "r".into(), None).status,
            "True"
        );
        assert_eq!(
            ready_condition(&spec, Some(&old), false, "r".into(), None).status,
            "False"
        );
    }
}
