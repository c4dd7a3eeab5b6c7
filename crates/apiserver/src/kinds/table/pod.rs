//! The pod row: READY, the STATUS reason and RESTARTS exactly as upstream's `printPod` derives
//! them from container statuses (init containers, sidecars, waiting/terminated reasons,
//! Terminating).

use super::{age, cells, col, name, wide, Column, NAME};
use crate::kinds::duration::{human_duration, parse_rfc3339};
use crate::kinds::json::{arr_at, at, bool_at, int_at, str_at};
use serde_json::Value;
use std::collections::HashSet;

pub(super) const COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
    col("Status", "string", "The aggregate status of the containers in this pod."),
    col("Restarts", "string", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
    super::AGE,
    wide("IP", "string", "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated."),
    wide("Node", "string", "NodeName indicates in which node this pod is scheduled."),
    wide("Nominated Node", "string", "nominatedNodeName is set only when this pod preempts other pods on the node."),
    wide("Readiness Gates", "string", "If specified, all readiness gates will be evaluated for pod readiness."),
];

pub(super) fn row(pod: &Value, now: i64) -> Vec<Value> {
    let s = summarize(pod);
    let restarts = match s.last_restart {
        Some(t) if s.restarts != 0 => format!("{} ({} ago)", s.restarts, human_duration(now - t)),
        _ => s.restarts.to_string(),
    };
    cells![
        name(pod),
        format!("{}/{}", s.ready, s.total),
        s.reason,
        restarts,
        age(pod, now),
        or_none(pod_ip(pod)),
        or_none(str_at(pod, "spec.nodeName")),
        or_none(str_at(pod, "status.nominatedNodeName")),
        readiness_gates(pod),
    ]
}

/// The pod's first IP: `status.podIPs[0].ip`, falling back to the legacy `status.podIP`.
pub(crate) fn pod_ip(pod: &Value) -> &str {
    match arr_at(pod, "status.podIPs").first() {
        Some(ip) => str_at(ip, "ip"),
        None => str_at(pod, "status.podIP"),
    }
}

fn or_none(s: &str) -> &str {
    if s.is_empty() {
        "<none>"
    } else {
        s
    }
}

/// What `printPod` derives from the statuses.
struct Summary {
    ready: usize,
    total: usize,
    reason: String,
    restarts: i64,
    last_restart: Option<i64>,
}

/// Restart count and last restart time, accumulated over container statuses.
#[derive(Default, Clone, Copy)]
struct Restarts {
    count: i64,
    last: Option<i64>,
}

impl Restarts {
    fn add(&mut self, status: &Value) {
        self.count += int_at(status, "restartCount");
        let finished = at(status, "lastState.terminated.finishedAt")
            .as_str()
            .and_then(parse_rfc3339);
        self.last = self.last.max(finished);
    }
}

fn summarize(pod: &Value) -> Summary {
    let init_specs = arr_at(pod, "spec.initContainers");
    // Sidecars (restartable init containers) count as regular containers.
    let sidecars: HashSet<&str> = init_specs
        .iter()
        .filter(|c| str_at(c, "restartPolicy") == "Always")
        .map(|c| str_at(c, "name"))
        .collect();
    let phase = str_at(pod, "status.phase");
    let mut s = Summary {
        ready: 0,
        total: arr_at(pod, "spec.containers").len() + sidecars.len(),
        reason: match str_at(pod, "status.reason") {
            "" => phase.to_string(),
            r => r.to_string(),
        },
        restarts: 0,
        last_restart: None,
    };
    if conditions(pod)
        .any(|c| str_at(c, "type") == "PodScheduled" && str_at(c, "reason") == "SchedulingGated")
    {
        s.reason = "SchedulingGated".into();
    }
    let (all, sidecar_restarts, initializing) =
        init_containers(pod, init_specs.len(), &sidecars, &mut s);
    let mut restarts = all;
    if !initializing || condition_true(pod, "Initialized") {
        restarts = sidecar_restarts;
        main_containers(pod, &mut s, &mut restarts);
    }
    s.restarts = restarts.count;
    s.last_restart = restarts.last;
    if !at(pod, "metadata.deletionTimestamp").is_null() {
        if str_at(pod, "status.reason") == "NodeLost" {
            s.reason = "Unknown".into();
        } else if !matches!(phase, "Succeeded" | "Failed") {
            s.reason = "Terminating".into();
        }
    }
    s
}

/// Walks init container statuses until the first one still initializing; returns the restarts of
/// all of them, of the sidecars alone, and whether the pod is still initializing.
fn init_containers(
    pod: &Value,
    n_init: usize,
    sidecars: &HashSet<&str>,
    s: &mut Summary,
) -> (Restarts, Restarts, bool) {
    let (mut all, mut side) = (Restarts::default(), Restarts::default());
    for (i, c) in arr_at(pod, "status.initContainerStatuses")
        .iter()
        .enumerate()
    {
        all.add(c);
        let is_sidecar = sidecars.contains(str_at(c, "name"));
        if is_sidecar {
            side.add(c);
        }
        let terminated = at(c, "state.terminated");
        let waiting_reason = str_at(c, "state.waiting.reason");
        if terminated.is_object() && int_at(terminated, "exitCode") == 0 {
            continue;
        }
        if is_sidecar && bool_at(c, "started") {
            s.ready += usize::from(bool_at(c, "ready"));
            continue;
        }
        s.reason = if terminated.is_object() {
            format!("Init:{}", terminated_reason(terminated))
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{i}/{n_init}")
        };
        return (all, side, true);
    }
    (all, side, false)
}

/// Regular containers, walked last to first like upstream so the first container's reason wins.
fn main_containers(pod: &Value, s: &mut Summary, restarts: &mut Restarts) {
    let mut has_running = false;
    for c in arr_at(pod, "status.containerStatuses").iter().rev() {
        restarts.add(c);
        let terminated = at(c, "state.terminated");
        let waiting_reason = str_at(c, "state.waiting.reason");
        if !waiting_reason.is_empty() {
            s.reason = waiting_reason.to_string();
        } else if terminated.is_object() {
            s.reason = terminated_reason(terminated);
        } else if bool_at(c, "ready") && at(c, "state.running").is_object() {
            has_running = true;
            s.ready += 1;
        }
    }
    if s.reason == "Completed" && has_running {
        s.reason = if condition_true(pod, "Ready") {
            "Running"
        } else {
            "NotReady"
        }
        .into();
    }
}

/// A terminated state's reason, or `Signal:N` / `ExitCode:N` when it has none.
fn terminated_reason(t: &Value) -> String {
    match (str_at(t, "reason"), int_at(t, "signal")) {
        ("", 0) => format!("ExitCode:{}", int_at(t, "exitCode")),
        ("", sig) => format!("Signal:{sig}"),
        (r, _) => r.to_string(),
    }
}

fn conditions(pod: &Value) -> impl Iterator<Item = &Value> {
    arr_at(pod, "status.conditions").iter()
}

fn condition_true(pod: &Value, type_: &str) -> bool {
    conditions(pod).any(|c| str_at(c, "type") == type_ && str_at(c, "status") == "True")
}

/// `true/total` of the readiness gates, `<none>` without gates.
fn readiness_gates(pod: &Value) -> String {
    let gates = arr_at(pod, "spec.readinessGates");
    if gates.is_empty() {
        return "<none>".into();
    }
    let met = gates
        .iter()
        .filter(|g| {
            let want = str_at(g, "conditionType");
            conditions(pod)
                .find(|c| str_at(c, "type") == want)
                .is_some_and(|c| str_at(c, "status") == "True")
        })
        .count();
    format!("{met}/{}", gates.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_700_000_000;

    fn pod(spec: Value, status: Value) -> Value {
        json!({"metadata": {"name": "p", "creationTimestamp": "2023-11-14T22:08:20Z"}, "spec": spec, "status": status})
    }

    fn status_of(p: &Value) -> (String, String, String) {
        let r = row(p, NOW);
        (
            r[1].as_str().unwrap().into(),
            r[2].as_str().unwrap().into(),
            r[3].as_str().unwrap().into(),
        )
    }

    fn two() -> Value {
        json!({"containers": [{"name": "a"}, {"name": "b"}]})
    }

    #[test]
    fn pending_and_creating() {
        let p = pod(two(), json!({"phase": "Pending"}));
        assert_eq!(status_of(&p), ("0/2".into(), "Pending".into(), "0".into()));
        let p = pod(
            two(),
            json!({"phase": "Pending", "containerStatuses": [
            {"name": "a", "state": {"waiting": {"reason": "ContainerCreating"}}},
            {"name": "b", "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
        );
        assert_eq!(status_of(&p).1, "ContainerCreating");
    }

    #[test]
    fn running_ready_and_crashloop_with_restart_age() {
        let p = pod(
            two(),
            json!({"phase": "Running", "containerStatuses": [
            {"name": "a", "ready": true, "restartCount": 0, "state": {"running": {}}},
            {"name": "b", "ready": false, "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
             "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2023-11-14T22:08:20Z"}}}]}),
        );
        // 1_700_000_000 - 1_699_999_700 = 300 s.
        assert_eq!(
            status_of(&p),
            ("1/2".into(), "CrashLoopBackOff".into(), "3 (5m ago)".into())
        );
        let p = pod(
            two(),
            json!({"phase": "Running", "containerStatuses": [
            {"name": "a", "ready": true, "state": {"running": {}}}, {"name": "b", "ready": true, "state": {"running": {}}}]}),
        );
        assert_eq!(status_of(&p), ("2/2".into(), "Running".into(), "0".into()));
    }

    #[test]
    fn completed_errors_and_signals() {
        let term = |reason: &str, code: i64, signal: i64| {
            pod(
                json!({"containers": [{"name": "a"}]}),
                json!({"phase": "Failed", "containerStatuses": [
                {"name": "a", "state": {"terminated": {"reason": reason, "exitCode": code, "signal": signal}}}]}),
            )
        };
        assert_eq!(status_of(&term("Completed", 0, 0)).1, "Completed");
        assert_eq!(status_of(&term("Error", 1, 0)).1, "Error");
        assert_eq!(status_of(&term("", 2, 0)).1, "ExitCode:2");
        assert_eq!(status_of(&term("", 0, 9)).1, "Signal:9");
        // A completed container next to a running one shows Running (or NotReady).
        let p = pod(
            two(),
            json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}], "containerStatuses": [
            {"name": "a", "state": {"terminated": {"reason": "Completed"}}}, {"name": "b", "ready": true, "state": {"running": {}}}]}),
        );
        assert_eq!(status_of(&p).1, "Running");
    }

    #[test]
    fn init_containers_progress() {
        let spec = json!({"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "a"}]});
        let p = pod(
            spec.clone(),
            json!({"phase": "Pending", "initContainerStatuses": [
            {"name": "i1", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
            {"name": "i2", "state": {"running": {}}}]}),
        );
        assert_eq!(status_of(&p).1, "Init:1/2");
        let p = pod(
            spec.clone(),
            json!({"phase": "Pending", "initContainerStatuses": [
            {"name": "i1", "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}),
        );
        assert_eq!(
            status_of(&p),
            ("0/1".into(), "Init:CrashLoopBackOff".into(), "2".into())
        );
        let p = pod(
            spec,
            json!({"phase": "Pending", "initContainerStatuses": [
            {"name": "i1", "state": {"terminated": {"exitCode": 3}}}]}),
        );
        assert_eq!(status_of(&p).1, "Init:ExitCode:3");
    }

    #[test]
    fn sidecars_count_as_containers() {
        let spec = json!({"initContainers": [{"name": "side", "restartPolicy": "Always"}], "containers": [{"name": "a"}]});
        let p = pod(
            spec,
            json!({"phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}],
            "initContainerStatuses": [{"name": "side", "started": true, "ready": true, "restartCount": 1, "state": {"running": {}}}],
            "containerStatuses": [{"name": "a", "ready": true, "state": {"running": {}}}]}),
        );
        assert_eq!(status_of(&p), ("2/2".into(), "Running".into(), "1".into()));
    }

    #[test]
    fn terminating_unknown_and_gated() {
        let mut p = pod(two(), json!({"phase": "Running"}));
        p["metadata"]["deletionTimestamp"] = json!("2023-11-14T22:10:00Z");
        assert_eq!(status_of(&p).1, "Terminating");
        p["status"]["reason"] = json!("NodeLost");
        assert_eq!(status_of(&p).1, "Unknown");
        let p = pod(
            two(),
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
        );
        assert_eq!(status_of(&p).1, "SchedulingGated");
        let p = pod(two(), json!({"phase": "Failed", "reason": "Evicted"}));
        assert_eq!(status_of(&p).1, "Evicted");
    }

    #[test]
    fn wide_cells() {
        let p = pod(
            json!({"nodeName": "n1", "readinessGates": [{"conditionType": "x"}, {"conditionType": "y"}], "containers": []}),
            json!({"podIPs": [{"ip": "10.1.0.5"}], "conditions": [{"type": "x", "status": "True"}]}),
        );
        let r = row(&p, NOW);
        assert_eq!(
            &r[4..],
            &cells!["5m", "10.1.0.5", "n1", "<none>", "1/2"][..]
        );
        let r = row(&json!({}), NOW);
        assert_eq!(
            r,
            cells![
                "",
                "0/0",
                "",
                "0",
                "<unknown>",
                "<none>",
                "<none>",
                "<none>",
                "<none>"
            ]
        );
    }
}
