//! The taints the node lifecycle controller owns and how it changes them: read the node, swap
//! the taints, write with the read resourceVersion, retry on conflict (upstream's
//! SwapNodeControllerTaint).

use k8s_openapi::api::core::v1::{Node, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

use crate::error::Result;

pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// Upstream's nodeConditionToTaintKeyStatusMap: (condition, status) → NoSchedule taint key.
const CONDITION_TAINTS: &[(&str, &str, &str)] = &[
    ("Ready", "False", NOT_READY),
    ("Ready", "Unknown", UNREACHABLE),
    (
        "MemoryPressure",
        "True",
        "node.kubernetes.io/memory-pressure",
    ),
    ("DiskPressure", "True", "node.kubernetes.io/disk-pressure"),
    (
        "NetworkUnavailable",
        "True",
        "node.kubernetes.io/network-unavailable",
    ),
    ("PIDPressure", "True", "node.kubernetes.io/pid-pressure"),
];

fn taint(key: &str, effect: &str) -> Taint {
    Taint {
        key: key.into(),
        effect: effect.into(),
        value: None,
        time_added: None,
    }
}

/// The NoExecute taint for a Ready status that is not True, and the one it replaces.
pub fn no_execute_for(ready: &str) -> (Taint, Taint) {
    match ready {
        "False" => (
            taint(NOT_READY, "NoExecute"),
            taint(UNREACHABLE, "NoExecute"),
        ),
        _ => (
            taint(UNREACHABLE, "NoExecute"),
            taint(NOT_READY, "NoExecute"),
        ),
    }
}

pub fn no_execute_templates() -> Vec<Taint> {
    vec![
        taint(NOT_READY, "NoExecute"),
        taint(UNREACHABLE, "NoExecute"),
    ]
}

fn node_taints(node: &Node) -> &[Taint] {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default()
}

fn same(a: &Taint, b: &Taint) -> bool {
    a.key == b.key && a.effect == b.effect
}

pub fn has(node: &Node, wanted: &Taint) -> bool {
    node_taints(node).iter().any(|t| same(t, wanted))
}

/// Upstream's doNoScheduleTaintingPass: (taints to add, taints to remove) so that the node's
/// controller-owned NoSchedule taints match its conditions and `spec.unschedulable`.
pub fn no_schedule_diff(node: &Node) -> (Vec<Taint>, Vec<Taint>) {
    let conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let mut wanted: Vec<Taint> = conditions
        .iter()
        .filter_map(|c| {
            CONDITION_TAINTS
                .iter()
                .find(|(t, s, _)| *t == c.type_ && *s == c.status)
        })
        .map(|(_, _, key)| taint(key, "NoSchedule"))
        .collect();
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        wanted.push(taint(UNSCHEDULABLE, "NoSchedule"));
    }
    let owned = |t: &&Taint| {
        t.effect == "NoSchedule"
            && (t.key == UNSCHEDULABLE || CONDITION_TAINTS.iter().any(|(_, _, k)| *k == t.key))
    };
    let current: Vec<&Taint> = node_taints(node).iter().filter(owned).collect();
    let add = wanted
        .iter()
        .filter(|w| !current.iter().any(|c| same(c, w)))
        .cloned()
        .collect();
    let remove = current
        .into_iter()
        .filter(|c| !wanted.iter().any(|w| same(c, w)))
        .cloned()
        .collect();
    (add, remove)
}

/// Adds `add` (stamped with the time, as upstream) and removes `remove` on the current node.
pub async fn swap(client: &Client, name: &str, add: &[Taint], remove: &[Taint]) -> Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    let mut attempts = 0;
    loop {
        let node = api.get(name).await?;
        let old = node_taints(&node);
        let mut taints: Vec<Taint> = old
            .iter()
            .filter(|t| !remove.iter().any(|r| same(t, r)))
            .cloned()
            .collect();
        for t in add {
            if !taints.iter().any(|c| same(c, t)) {
                taints.push(Taint {
                    time_added: Some(Time(Timestamp::now())),
                    ..t.clone()
                });
            }
        }
        if taints.as_slice() == old {
            return Ok(());
        }
        let patch = json!({
            "metadata": {"resourceVersion": node.metadata.resource_version},
            "spec": {"taints": taints},
        });
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 && attempts < 5 => attempts += 1,
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_schedule_taints_follow_conditions_and_cordon() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n"},
            "spec": {"unschedulable": true, "taints": [
                {"key": NOT_READY, "effect": "NoSchedule"},
                {"key": "mine", "effect": "NoSchedule"},
                {"key": UNREACHABLE, "effect": "NoExecute"}
            ]},
            "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}
        }))
        .unwrap();
        let (add, remove) = no_schedule_diff(&node);
        let keys = |ts: Vec<Taint>| ts.into_iter().map(|t| t.key).collect::<Vec<_>>();
        assert_eq!(keys(add), [UNREACHABLE, UNSCHEDULABLE]);
        assert_eq!(keys(remove), [NOT_READY]);
    }
}
