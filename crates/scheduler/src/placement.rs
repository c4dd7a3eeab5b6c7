//! One scheduling cycle for one pod over a snapshot: filter, score, pick (upstream's
//! `schedulePod`), and the `FitError` message when no node fits.
//!
//! Filters run in upstream's default-profile order and stop at a node's first rejection, so
//! each node contributes one plugin's reasons to the message. On large clusters only enough
//! nodes to find upstream's adaptive `percentageOfNodesToScore` are filtered, starting where the
//! previous cycle stopped so every node gets its turn. Ties between the best nodes are broken at
//! random, as upstream's `selectHost` does.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use rand::Rng;

use crate::cache::{self, NodeInfo, Snapshot};
use crate::plugins::{
    interpod, node_affinity, node_name, ports, resources, spread, taints, unschedulable, Code,
    Filtered, Rejection,
};
use crate::requests::Resources;

/// Score weights of upstream's default profile.
const WEIGHT_TAINTS: i64 = 3;
const WEIGHT_NODE_AFFINITY: i64 = 2;
const WEIGHT_SPREAD: i64 = 2;
const WEIGHT_INTERPOD: i64 = 2;
const WEIGHT_FIT: i64 = 1;
const WEIGHT_BALANCED: i64 = 1;

/// Below this many nodes every node is filtered (upstream's `minFeasibleNodesToFind`).
const MIN_FEASIBLE_NODES: usize = 100;
const MIN_FEASIBLE_PERCENTAGE: usize = 5;

/// Everything about the incoming pod the plugins need, computed once per cycle.
pub struct PodContext<'a> {
    pub pod: &'a Pod,
    request: Resources,
    non_zero: Resources,
    ports: Vec<ports::HostPort>,
    interpod: interpod::PreState,
    spread: spread::PreState,
}

impl<'a> PodContext<'a> {
    pub fn new(pod: &'a Pod, snapshot: &Snapshot) -> PodContext<'a> {
        let (request, non_zero, host_ports) = cache::amounts(pod);
        PodContext {
            pod,
            request,
            non_zero,
            ports: host_ports,
            interpod: interpod::PreState::compute(pod, snapshot),
            spread: spread::PreState::compute(pod, snapshot),
        }
    }

    /// Every filter in upstream's order; the first rejection wins.
    pub fn filter(&self, node: &NodeInfo) -> Filtered {
        unschedulable::filter(self.pod, node)?;
        node_name::filter(self.pod, node)?;
        taints::filter(self.pod, node)?;
        node_affinity::filter(self.pod, node)?;
        ports::filter(&self.ports, node)?;
        resources::fit(&self.request, node)?;
        self.spread.filter(node)?;
        self.interpod.filter(node)
    }

    /// Weighted, normalised total score of each node.
    pub fn score(&self, nodes: &[&Arc<NodeInfo>]) -> Vec<i64> {
        let mut total = vec![0i64; nodes.len()];
        let mut add = |weight: i64, scores: Vec<i64>| {
            for (t, s) in total.iter_mut().zip(scores) {
                *t += weight * s;
            }
        };
        let each = |f: &dyn Fn(&NodeInfo) -> i64| nodes.iter().map(|n| f(n)).collect::<Vec<_>>();

        add(
            WEIGHT_FIT,
            each(&|n| resources::least_allocated(&self.non_zero, n)),
        );
        add(
            WEIGHT_BALANCED,
            each(&|n| resources::balanced_allocation(&self.non_zero, n)),
        );

        let mut s = each(&|n| taints::score(self.pod, n));
        taints::normalize_scores(&mut s);
        add(WEIGHT_TAINTS, s);

        let mut s = each(&|n| node_affinity::score(self.pod, n));
        node_affinity::normalize_scores(&mut s);
        add(WEIGHT_NODE_AFFINITY, s);

        let mut s = each(&|n| self.interpod.score(n));
        interpod::normalize_scores(&mut s);
        add(WEIGHT_INTERPOD, s);

        if self.spread.has_soft() {
            let raw: Vec<_> = nodes.iter().map(|n| self.spread.score(n)).collect();
            add(WEIGHT_SPREAD, spread::normalize_scores(&raw));
        }
        total
    }
}

/// No node fits: each rejected node's reasons (upstream's `FitError`).
#[derive(Clone, Debug)]
pub struct FitError {
    pub num_nodes: usize,
    pub rejections: Vec<(String, Rejection)>,
    /// Nodes the NodeAffinity PreFilter left out (the pod names other nodes): counted under
    /// [`node_affinity::PREFILTER_REASON`], never preemption candidates.
    pub prefiltered: usize,
}

impl FitError {
    /// `"1 Insufficient cpu, 2 node(s) had untolerated taint {k: v}"`: counts per reason,
    /// sorted as strings, as upstream's `sortReasonsHistogram`.
    pub fn histogram(counts: &BTreeMap<String, usize>) -> String {
        let mut parts: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
        parts.sort();
        parts.join(", ")
    }

    /// Nodes where evicting pods might help (for preemption).
    pub fn resolvable(&self) -> impl Iterator<Item = &str> {
        self.rejections
            .iter()
            .filter(|(_, r)| r.code == Code::Unschedulable)
            .map(|(n, _)| n.as_str())
    }
}

impl fmt::Display for FitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut counts = BTreeMap::new();
        for (_, r) in &self.rejections {
            for reason in &r.reasons {
                *counts.entry(reason.clone()).or_insert(0usize) += 1;
            }
        }
        if self.prefiltered > 0 {
            counts.insert(
                node_affinity::PREFILTER_REASON.to_string(),
                self.prefiltered,
            );
        }
        write!(f, "0/{} nodes are available", self.num_nodes)?;
        if counts.is_empty() {
            return f.write_str(".");
        }
        write!(f, ": {}.", FitError::histogram(&counts))
    }
}

/// How many feasible nodes to look for before scoring (upstream's `numFeasibleNodesToFind`
/// with the adaptive percentage).
pub fn feasible_nodes_to_find(all: usize) -> usize {
    if all < MIN_FEASIBLE_NODES {
        return all;
    }
    let percentage = 50usize
        .saturating_sub(all / 125)
        .max(MIN_FEASIBLE_PERCENTAGE);
    (all * percentage / 100).max(MIN_FEASIBLE_NODES)
}

/// The chosen node and how many nodes were feasible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    pub node: String,
    pub feasible: usize,
}

/// Finds a node for the pod. `next_start` is where filtering begins and is advanced past the
/// nodes looked at.
pub fn schedule(
    pod: &Pod,
    snapshot: &Snapshot,
    next_start: &mut usize,
) -> Result<Chosen, FitError> {
    let all = snapshot.nodes.len();
    let ctx = PodContext::new(pod, snapshot);
    let pinned: Option<Vec<Arc<NodeInfo>>> = node_affinity::pinned_nodes(pod).map(|names| {
        names
            .into_iter()
            .filter_map(|n| snapshot.get(n).cloned())
            .collect()
    });
    let (feasible, rejections, candidates) = match &pinned {
        Some(nodes) => {
            let want = feasible_nodes_to_find(nodes.len());
            let (feasible, rejections) = find_feasible(&ctx, nodes, 0, want);
            (feasible, rejections, nodes.len())
        }
        None => {
            let start = if all == 0 { 0 } else { *next_start % all };
            let want = feasible_nodes_to_find(all);
            let (feasible, rejections) = find_feasible(&ctx, &snapshot.nodes, start, want);
            let looked = feasible.len() + rejections.len();
            *next_start = if all == 0 { 0 } else { (start + looked) % all };
            (feasible, rejections, all)
        }
    };
    if feasible.is_empty() {
        return Err(FitError {
            num_nodes: all,
            rejections,
            prefiltered: all - candidates,
        });
    }
    let count = feasible.len();
    if count == 1 {
        return Ok(Chosen {
            node: feasible[0].name().to_string(),
            feasible: 1,
        });
    }
    let scores = ctx.score(&feasible);
    let best = pick_best(&scores, &mut rand::rng());
    Ok(Chosen {
        node: feasible[best].name().to_string(),
        feasible: count,
    })
}

/// Filters `nodes` from `start` round the ring until `want` feasible nodes are found (or every
/// node was looked at); returns the feasible nodes and the rejections of the others.
fn find_feasible<'n>(
    ctx: &PodContext<'_>,
    nodes: &'n [Arc<NodeInfo>],
    start: usize,
    want: usize,
) -> (Vec<&'n Arc<NodeInfo>>, Vec<(String, Rejection)>) {
    let mut feasible = Vec::with_capacity(want.min(nodes.len()));
    let mut rejections = Vec::new();
    for i in 0..nodes.len() {
        let node = &nodes[(start + i) % nodes.len()];
        match ctx.filter(node) {
            Ok(()) => feasible.push(node),
            Err(r) => rejections.push((node.name().to_string(), r)),
        }
        if feasible.len() >= want {
            break;
        }
    }
    (feasible, rejections)
}

/// Index of the highest score; among equal ones a uniformly random one (reservoir sampling).
fn pick_best(scores: &[i64], rng: &mut impl Rng) -> usize {
    let mut best = 0;
    let mut ties = 0u32;
    for (i, s) in scores.iter().enumerate() {
        if *s > scores[best] {
            best = i;
            ties = 1;
        } else if *s == scores[best] {
            ties += 1;
            if rng.random_range(0..ties) == 0 {
                best = i;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{node, pod, NodeExt, PodExt};

    #[test]
    fn message_in_upstream_style() {
        let snap = Snapshot::new(vec![
            NodeInfo::new(node("a", "1", "1Gi"), []),
            NodeInfo::new(
                node("b", "8", "8Gi").taint("key", "value", "NoSchedule"),
                [],
            ),
            NodeInfo::new(node("c", "8", "8Gi").taint("key", "value", "NoExecute"), []),
        ]);
        let err = schedule(&pod("p", "2", ""), &snap, &mut 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {key: value}."
        );
        assert_eq!(err.resolvable().count(), 0);
        let empty = schedule(&pod("p", "", ""), &Snapshot::default(), &mut 0).unwrap_err();
        assert_eq!(empty.to_string(), "0/0 nodes are available.");
    }

    #[test]
    fn pinned_pods_look_at_their_nodes_only() {
        use k8s_openapi::api::core::v1::{
            Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
        };
        let snap = Snapshot::new(vec![
            NodeInfo::new(node("a", "4", "8Gi"), []),
            NodeInfo::new(node("b", "500m", "8Gi"), []),
            NodeInfo::new(node("c", "4", "8Gi"), []),
        ]);
        let pinned = |name: &str| {
            let mut p = pod("p", "1", "");
            p.spec_mut().affinity = Some(Affinity {
                node_affinity: Some(NodeAffinity {
                    required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                        node_selector_terms: vec![NodeSelectorTerm {
                            match_expressions: None,
                            match_fields: Some(vec![NodeSelectorRequirement {
                                key: "metadata.name".into(),
                                operator: "In".into(),
                                values: Some(vec![name.into()]),
                            }]),
                        }],
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            });
            p
        };
        let mut start = 0;
        assert_eq!(schedule(&pinned("c"), &snap, &mut start).unwrap().node, "c");
        let err = schedule(&pinned("b"), &snap, &mut start).unwrap_err();
        assert_eq!(
            err.to_string(),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't satisfy plugin(s) [NodeAffinity]."
        );
        let gone = schedule(&pinned("x"), &snap, &mut start).unwrap_err();
        assert_eq!(
            gone.to_string(),
            "0/3 nodes are available: 3 node(s) didn't satisfy plugin(s) [NodeAffinity]."
        );
    }

    #[test]
    fn picks_the_least_allocated_fitting_node() {
        let snap = Snapshot::new(vec![
            NodeInfo::new(node("busy", "4", "8Gi"), [pod("x", "3", "6Gi").on("busy")]),
            NodeInfo::new(node("free", "4", "8Gi"), []),
            NodeInfo::new(node("tiny", "500m", "8Gi"), []),
        ]);
        for _ in 0..10 {
            let chosen = schedule(&pod("p", "1", "1Gi"), &snap, &mut 0).unwrap();
            assert_eq!(chosen.node, "free");
            assert_eq!(chosen.feasible, 2);
        }
    }

    #[test]
    fn prefer_no_schedule_taints_weigh_in() {
        let snap = Snapshot::new(vec![
            NodeInfo::new(
                node("a", "4", "8Gi").taint("k", "v", "PreferNoSchedule"),
                [],
            ),
            NodeInfo::new(node("b", "4", "8Gi"), []),
        ]);
        assert_eq!(
            schedule(&pod("p", "", ""), &snap, &mut 0).unwrap().node,
            "b"
        );
    }

    #[test]
    fn feasible_node_counts_as_upstream() {
        assert_eq!(feasible_nodes_to_find(50), 50);
        assert_eq!(feasible_nodes_to_find(1000), 420);
        assert_eq!(feasible_nodes_to_find(5000), 500);
    }

    #[test]
    fn ties_are_random_but_only_among_the_best() {
        let mut rng = rand::rng();
        let mut seen = [false; 3];
        for _ in 0..200 {
            let i = pick_best(&[5, 9, 9], &mut rng);
            seen[i] = true;
        }
        assert_eq!(seen, [false, true, true]);
    }
}
