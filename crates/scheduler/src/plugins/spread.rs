//! PodTopologySpread: `whenUnsatisfiable: DoNotSchedule` constraints filter (the skew after
//! placing the pod may not exceed `maxSkew`), `ScheduleAnyway` constraints score (fewer matching
//! pods in the node's domain is better).
//!
//! Counting follows upstream: only nodes that pass the pod's node selector/affinity
//! (`nodeAffinityPolicy: Honor`, the default) and carry every constraint's topology key are
//! domains; `nodeTaintsPolicy: Honor` also drops nodes with untolerated taints; `minDomains`
//! makes the global minimum 0 while there are fewer domains; `matchLabelKeys` are ANDed into the
//! selector with the incoming pod's values.
//!
//! Not done: upstream's system default constraints for pods without any (they need the pod's
//! Services and ReplicaSets).

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Node, Pod, TopologySpreadConstraint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use super::{node_affinity, taints, Filtered, Rejection, MAX_NODE_SCORE};
use crate::cache::{NodeInfo, Snapshot};
use component_base::label_selector as selector;

pub const REASON: &str = "node(s) didn't match pod topology spread constraints";
pub const MISSING_LABEL_REASON: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

/// One constraint with its selector completed by `matchLabelKeys`.
#[derive(Debug)]
struct Constraint {
    max_skew: i64,
    key: String,
    selector: Option<LabelSelector>,
    min_domains: i64,
    honor_affinity: bool,
    honor_taints: bool,
    /// Matching pods per domain value.
    counts: HashMap<String, i64>,
}

impl Constraint {
    fn new(c: &TopologySpreadConstraint, pod: &Pod) -> Constraint {
        let mut selector = c.label_selector.clone();
        let labels = pod.metadata.labels.as_ref();
        if let Some(sel) = selector.as_mut() {
            for key in c.match_label_keys.iter().flatten() {
                if let Some(v) = labels.and_then(|l| l.get(key)) {
                    sel.match_expressions.get_or_insert_with(Vec::new).push(
                        LabelSelectorRequirement {
                            key: key.clone(),
                            operator: "In".into(),
                            values: Some(vec![v.clone()]),
                        },
                    );
                }
            }
        }
        Constraint {
            max_skew: i64::from(c.max_skew),
            key: c.topology_key.clone(),
            selector,
            min_domains: c.min_domains.map(i64::from).unwrap_or(1),
            honor_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
            honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
            counts: HashMap::new(),
        }
    }

    fn selects(&self, pod: &Pod) -> bool {
        self.selector
            .as_ref()
            .is_some_and(|s| selector::matches(s, pod.metadata.labels.as_ref()))
    }

    /// Whether `node` is one of the domains this constraint counts.
    fn counts_node(&self, pod: &Pod, node: &NodeInfo, all_keys: &[String]) -> bool {
        let Some(n) = node.node.as_deref() else {
            return false;
        };
        all_keys.iter().all(|k| value(n, k).is_some())
            && (!self.honor_affinity || node_affinity::required_matches(pod, n))
            && (!self.honor_taints || taints::filter(pod, node).is_ok())
    }

    fn count(&mut self, pod: &Pod, snapshot: &Snapshot, all_keys: &[String]) {
        let ns = pod.metadata.namespace.as_deref();
        for node in snapshot.nodes.iter() {
            if !self.counts_node(pod, node, all_keys) {
                continue;
            }
            let Some(domain) = node.node.as_deref().and_then(|n| value(n, &self.key)) else {
                continue;
            };
            let matching = node
                .pods
                .iter()
                .filter(|p| {
                    p.pod.metadata.namespace.as_deref() == ns
                        && p.pod.metadata.deletion_timestamp.is_none()
                        && self.selects(&p.pod)
                })
                .count() as i64;
            *self.counts.entry(domain.clone()).or_default() += matching;
        }
    }

    fn min_count(&self) -> i64 {
        if (self.counts.len() as i64) < self.min_domains {
            return 0;
        }
        self.counts.values().copied().min().unwrap_or(0)
    }
}

fn value<'a>(node: &'a Node, key: &str) -> Option<&'a String> {
    node.metadata.labels.as_ref().and_then(|l| l.get(key))
}

/// The pod's constraints with counts, computed once per scheduling cycle.
#[derive(Debug, Default)]
pub struct PreState {
    hard: Vec<Constraint>,
    hard_keys: Vec<String>,
    soft: Vec<Constraint>,
    soft_keys: Vec<String>,
    soft_weights: Vec<f64>,
    self_hard: Vec<bool>,
}

impl PreState {
    pub fn compute(pod: &Pod, snapshot: &Snapshot) -> PreState {
        let all = pod
            .spec
            .as_ref()
            .and_then(|s| s.topology_spread_constraints.as_deref())
            .unwrap_or_default();
        let pick = |mode: &str| -> Vec<Constraint> {
            all.iter()
                .filter(|c| c.when_unsatisfiable == mode)
                .map(|c| Constraint::new(c, pod))
                .collect()
        };
        let mut state = PreState {
            hard: pick("DoNotSchedule"),
            soft: pick("ScheduleAnyway"),
            ..Default::default()
        };
        state.hard_keys = state.hard.iter().map(|c| c.key.clone()).collect();
        state.soft_keys = state.soft.iter().map(|c| c.key.clone()).collect();
        for c in &mut state.hard {
            c.count(pod, snapshot, &state.hard_keys);
        }
        for c in &mut state.soft {
            c.count(pod, snapshot, &state.soft_keys);
        }
        state.self_hard = state.hard.iter().map(|c| c.selects(pod)).collect();
        // Upstream weighs each soft constraint by log(domains + 2) so wide topologies count more.
        state.soft_weights = state
            .soft
            .iter()
            .map(|c| ((c.counts.len() + 2) as f64).ln())
            .collect();
        state
    }

    pub fn filter(&self, node: &NodeInfo) -> Filtered {
        let Some(n) = node.node.as_deref() else {
            return Ok(());
        };
        for (c, self_match) in self.hard.iter().zip(&self.self_hard) {
            let Some(domain) = value(n, &c.key) else {
                return Err(Rejection::unresolvable(MISSING_LABEL_REASON));
            };
            let count = c.counts.get(domain).copied().unwrap_or(0);
            let skew = count + i64::from(*self_match) - c.min_count();
            if skew > c.max_skew {
                return Err(Rejection::unschedulable(REASON));
            }
        }
        Ok(())
    }

    pub fn has_soft(&self) -> bool {
        !self.soft.is_empty()
    }

    /// Raw score (lower is better), or `None` for a node that lacks a topology key (it scores 0).
    pub fn score(&self, node: &NodeInfo) -> Option<i64> {
        let n = node.node.as_deref()?;
        let mut total = 0.0;
        for (c, weight) in self.soft.iter().zip(&self.soft_weights) {
            let domain = value(n, &c.key)?;
            let count = c.counts.get(domain).copied().unwrap_or(0);
            total += (count + c.max_skew - 1) as f64 * weight;
        }
        Some(total.round() as i64)
    }
}

/// Upstream's NormalizeScore: the fewest matching pods gets 100; nodes without the keys get 0.
pub fn normalize_scores(raw: &[Option<i64>]) -> Vec<i64> {
    let present = raw.iter().flatten().copied();
    let max = present.clone().max().unwrap_or(0);
    let min = present.min().unwrap_or(0);
    raw.iter()
        .map(|s| match s {
            None => 0,
            Some(_) if max == 0 => MAX_NODE_SCORE,
            Some(s) => MAX_NODE_SCORE * (max + min - s) / max,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{node, pod, NodeExt, PodExt};

    fn spread(p: Pod, key: &str, max_skew: i32, mode: &str) -> Pod {
        let mut p = p.label("app", "web");
        p.spec_mut()
            .topology_spread_constraints
            .get_or_insert_with(Vec::new)
            .push(TopologySpreadConstraint {
                max_skew,
                topology_key: key.into(),
                when_unsatisfiable: mode.into(),
                label_selector: Some(LabelSelector {
                    match_labels: Some([("app".to_string(), "web".to_string())].into()),
                    ..Default::default()
                }),
                ..Default::default()
            });
        p
    }

    fn web(name: &str, on: &str) -> Pod {
        pod(name, "", "").label("app", "web").on(on)
    }

    fn snapshot() -> Snapshot {
        Snapshot::new(vec![
            NodeInfo::new(
                node("a", "4", "4Gi").label("zone", "z1"),
                [web("w1", "a"), web("w2", "a")],
            ),
            NodeInfo::new(node("b", "4", "4Gi").label("zone", "z1"), [web("w3", "b")]),
            NodeInfo::new(node("c", "4", "4Gi").label("zone", "z2"), []),
            NodeInfo::new(node("d", "4", "4Gi"), []),
        ])
    }

    #[test]
    fn do_not_schedule_respects_max_skew() {
        let snap = snapshot();
        let p = spread(pod("new", "", ""), "zone", 1, "DoNotSchedule");
        let state = PreState::compute(&p, &snap);
        let v: Vec<_> = snap.nodes.iter().map(|n| state.filter(n)).collect();
        // z1 has 3, z2 has 0: only z2 keeps the skew within 1.
        assert_eq!(v[0].as_ref().unwrap_err().reasons, vec![REASON]);
        assert!(v[1].is_err());
        assert!(v[2].is_ok());
        assert_eq!(
            v[3].as_ref().unwrap_err().reasons,
            vec![MISSING_LABEL_REASON]
        );
    }

    #[test]
    fn hostname_spread_allows_the_emptiest_nodes() {
        let snap = snapshot();
        let p = spread(
            pod("new", "", ""),
            "kubernetes.io/hostname",
            1,
            "DoNotSchedule",
        );
        let state = PreState::compute(&p, &snap);
        let ok: Vec<bool> = snap.nodes.iter().map(|n| state.filter(n).is_ok()).collect();
        // a has 2 and b has 1 while c and d have none: only c and d keep the skew within 1.
        assert_eq!(ok, vec![false, false, true, true]);
    }

    #[test]
    fn min_domains_forces_new_domains() {
        let snap = Snapshot::new(vec![NodeInfo::new(
            node("a", "4", "4Gi").label("zone", "z1"),
            [web("w1", "a")],
        )]);
        let mut p = spread(pod("new", "", ""), "zone", 1, "DoNotSchedule");
        p.spec_mut().topology_spread_constraints.as_mut().unwrap()[0].min_domains = Some(2);
        let state = PreState::compute(&p, &snap);
        assert!(state.filter(&snap.nodes[0]).is_err());
    }

    #[test]
    fn schedule_anyway_scores_emptier_domains_higher() {
        let snap = snapshot();
        let p = spread(
            pod("new", "", ""),
            "kubernetes.io/hostname",
            1,
            "ScheduleAnyway",
        );
        let state = PreState::compute(&p, &snap);
        assert!(state.filter(&snap.nodes[0]).is_ok());
        let raw: Vec<_> = snap.nodes.iter().map(|n| state.score(n)).collect();
        let scores = normalize_scores(&raw);
        assert!(scores[2] > scores[1] && scores[1] > scores[0], "{scores:?}");
        assert_eq!(scores[2], scores[3]);
    }
}
