//! When each node last showed a sign of life (upstream's nodeHealthMap): a new heartbeat in its
//! Ready condition or a newer `renewTime` on its Lease, as seen by this controller's clock, so
//! skewed node clocks do not matter.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use tokio::time::Instant;

use super::Settings;

/// The conditions the kubelet owns and the controller sets to Unknown when it goes silent.
const KUBELET_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

#[derive(Default)]
pub struct HealthMap {
    nodes: HashMap<String, Health>,
}

struct Health {
    /// Last sign of life, by our clock.
    probe: Instant,
    heartbeat: Option<Timestamp>,
    renewed: Option<Timestamp>,
    /// The Ready status seen on the previous pass.
    ready: Option<String>,
}

impl HealthMap {
    /// Records what the node and its Lease say now.
    pub fn observe(&mut self, node: &Node, lease: Option<&Lease>, now: Instant) {
        let heartbeat =
            ready_condition(node).and_then(|c| c.last_heartbeat_time.as_ref().map(|t| t.0));
        let renewed = lease
            .and_then(|l| l.spec.as_ref())
            .and_then(|s| s.renew_time.as_ref())
            .map(|t| t.0);
        let name = node.metadata.name.clone().unwrap_or_default();
        let health = self.nodes.entry(name).or_insert_with(|| Health {
            // A node that never posted status is given its startup grace from creation on.
            probe: match ready_condition(node) {
                None => since_creation(node, now),
                Some(_) => now,
            },
            heartbeat,
            renewed,
            ready: None,
        });
        if heartbeat != health.heartbeat {
            health.heartbeat = heartbeat;
            health.probe = now;
        }
        if renewed.is_some() && renewed > health.renewed {
            health.renewed = renewed;
            health.probe = now;
        }
    }

    /// No sign of life for longer than `grace`.
    pub fn silent(&self, name: &str, grace: Duration, now: Instant) -> bool {
        self.nodes
            .get(name)
            .is_some_and(|h| now.saturating_duration_since(h.probe) > grace)
    }

    /// Remembers this pass's Ready status; returns the previous pass's.
    pub fn swap_ready(&mut self, name: &str, ready: &str) -> Option<String> {
        let health = self.nodes.get_mut(name)?;
        health.ready.replace(ready.to_string())
    }

    /// Leaving full disruption, every node gets a fresh grace period, as upstream: they were
    /// probably cut off from us, not dead.
    pub fn reset_probes(&mut self, now: Instant) {
        self.nodes.values_mut().for_each(|h| h.probe = now);
    }

    pub fn forget_except(&mut self, names: HashSet<String>) {
        self.nodes.retain(|n, _| names.contains(n));
    }
}

/// The creation time as an instant of our clock (now if it is in the future or unknown).
fn since_creation(node: &Node, now: Instant) -> Instant {
    let age = node
        .metadata
        .creation_timestamp
        .as_ref()
        .and_then(|t| Duration::try_from(Timestamp::now().duration_since(t.0)).ok())
        .unwrap_or_default();
    now.checked_sub(age).unwrap_or(now)
}

pub fn grace_period(node: &Node, settings: &Settings) -> Duration {
    match ready_condition(node) {
        Some(_) => settings.monitor_grace_period,
        None => settings.startup_grace_period,
    }
}

fn ready_condition(node: &Node) -> Option<&NodeCondition> {
    conditions(node).iter().find(|c| c.type_ == "Ready")
}

fn conditions(node: &Node) -> &[NodeCondition] {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default()
}

/// `True`, `False` or `Unknown` (also when the node has no Ready condition).
pub fn ready_status(node: &Node) -> String {
    ready_condition(node)
        .map(|c| c.status.clone())
        .unwrap_or_else(|| "Unknown".into())
}

/// Sets the kubelet's conditions to Unknown with upstream's reasons; false if they already were.
pub fn set_unknown(node: &mut Node, now: Timestamp) -> bool {
    let created = node.metadata.creation_timestamp.clone();
    let conditions = node
        .status
        .get_or_insert_with(Default::default)
        .conditions
        .get_or_insert_with(Vec::new);
    let mut changed = false;
    for type_ in KUBELET_CONDITIONS {
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            None => {
                conditions.push(NodeCondition {
                    type_: type_.into(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_heartbeat_time: created.clone(),
                    last_transition_time: Some(Time(now)),
                });
                changed = true;
            }
            Some(c) if c.status != "Unknown" => {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(Time(now));
                changed = true;
            }
            Some(_) => {}
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silent_conditions_become_unknown_once() {
        let mut node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n"},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap();
        assert!(set_unknown(&mut node, Timestamp::now()));
        assert_eq!(ready_status(&node), "Unknown");
        let ready = ready_condition(&node).unwrap();
        assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(conditions(&node).len(), 4);
        assert!(!set_unknown(&mut node, Timestamp::now()));
    }

    #[tokio::test]
    async fn a_renewed_lease_is_a_sign_of_life() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n"},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap();
        let lease = |t: &str| -> Lease {
            serde_json::from_value(
                serde_json::json!({"metadata": {"name": "n"}, "spec": {"renewTime": t}}),
            )
            .unwrap()
        };
        let mut map = HealthMap::default();
        let start = Instant::now();
        let grace = Duration::from_secs(40);
        map.observe(&node, Some(&lease("2026-01-01T00:00:00.000000Z")), start);
        let later = start + Duration::from_secs(41);
        map.observe(&node, Some(&lease("2026-01-01T00:00:00.000000Z")), later);
        assert!(map.silent("n", grace, later));
        map.observe(&node, Some(&lease("2026-01-01T00:00:10.000000Z")), later);
        assert!(!map.silent("n", grace, later));
    }
}
