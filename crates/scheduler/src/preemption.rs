//! DefaultPreemption: when a pod fits nowhere, find a node where evicting pods of lower
//! priority would make room, with as few and as unimportant victims as possible.
//!
//! As upstream: only nodes rejected with a resolvable reason are tried; on each, every lower
//! priority pod is removed and the pod must then pass all filters; victims are then reprieved
//! one by one, most important first, while the pod still fits. Among candidate nodes the one
//! whose most important victim has the lowest priority wins, then the lowest sum of victim
//! priorities, then the fewest victims. The scheduler deletes the victims and records the node
//! in the pod's `status.nominatedNodeName`; the pod itself is retried when the victims are gone.
//!
//! Not done: PodDisruptionBudgets are not consulted, and nominated pods are not counted against
//! their node when other pods are filtered (upstream's `RunFilterPluginsWithNominatedPods`).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use crate::cache::{pod_key, NodeInfo, PodInfo, Snapshot};
use crate::placement::{FitError, PodContext};
use crate::plugins::Code;

/// Upstream's reason for nodes where evicting cannot help.
pub const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";

/// A node where evicting `victims` lets the pod fit.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub node: String,
    pub victims: Vec<Arc<Pod>>,
}

/// The outcome of preemption for a pod that fit nowhere.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Evict these pods; the pod is nominated to the node.
    Preempt(Candidate),
    /// Nothing to do; the text goes after `preemption: ` in the FailedScheduling message.
    NotPossible(String),
}

fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// Upstream's `PodEligibleToPreemptOthers`: not with `preemptionPolicy: Never`, and not again
/// while victims of an earlier preemption are still terminating on the nominated node.
fn eligible(pod: &Pod, snapshot: &Snapshot) -> Result<(), String> {
    let policy = pod
        .spec
        .as_ref()
        .and_then(|s| s.preemption_policy.as_deref());
    if policy == Some("Never") {
        return Err("not eligible due to preemptionPolicy=Never".into());
    }
    let nominated = pod
        .status
        .as_ref()
        .and_then(|s| s.nominated_node_name.as_deref())
        .and_then(|n| snapshot.get(n));
    let waiting_for_victims = nominated.is_some_and(|node| {
        node.pods.iter().any(|p| {
            p.pod.metadata.deletion_timestamp.is_some() && priority(&p.pod) < priority(pod)
        })
    });
    if waiting_for_victims {
        return Err("not eligible due to a terminating pod on the nominated node".into());
    }
    Ok(())
}

/// Decides whether and whom to preempt for `pod`.
pub fn preempt(pod: &Pod, fit: &FitError, snapshot: &Snapshot) -> Outcome {
    if let Err(msg) = eligible(pod, snapshot) {
        return Outcome::NotPossible(msg);
    }
    let mut candidates = Vec::new();
    let mut reasons: Vec<(String, Vec<String>)> = Vec::new();
    for (name, rejection) in &fit.rejections {
        // Only where evicting pods could help (looked up per rejection: a scan of every
        // rejection for each would be quadratic on thousands of nodes).
        let evaluated = rejection.code == Code::Unschedulable;
        let result = match (evaluated, snapshot.get(name)) {
            (true, Some(node)) => victims_on(pod, node, snapshot),
            _ => Err(vec![NOT_HELPFUL.to_string()]),
        };
        match result {
            Ok(victims) => candidates.push(Candidate {
                node: name.clone(),
                victims,
            }),
            Err(r) => reasons.push((name.clone(), r)),
        }
    }
    if let Some(best) = pick(candidates) {
        return Outcome::Preempt(best);
    }
    let mut counts = BTreeMap::new();
    for (_, rs) in &reasons {
        for r in rs {
            *counts.entry(r.clone()).or_insert(0usize) += 1;
        }
    }
    let unlisted = fit.num_nodes.saturating_sub(reasons.len());
    if unlisted > 0 {
        *counts.entry(NOT_HELPFUL.to_string()).or_insert(0) += unlisted;
    }
    Outcome::NotPossible(format!(
        "0/{} nodes are available: {}.",
        fit.num_nodes,
        FitError::histogram(&counts)
    ))
}

/// The `FailedScheduling` message: the FitError, then (when nobody is evicted) why preemption
/// could not help, as upstream's postFilter message (whose own final period gives the `..`).
pub fn failed_message(fit: &FitError, outcome: &Outcome) -> String {
    match outcome {
        Outcome::Preempt(_) => fit.to_string(),
        Outcome::NotPossible(msg) => format!("{fit} preemption: {msg}."),
    }
}

/// The fewest and least important pods to evict from `node` so that `pod` fits, or the reasons
/// it cannot.
fn victims_on(
    pod: &Pod,
    node: &NodeInfo,
    snapshot: &Snapshot,
) -> Result<Vec<Arc<Pod>>, Vec<String>> {
    let mine = priority(pod);
    let (mut lower, keep): (Vec<PodInfo>, Vec<PodInfo>) = node
        .pods
        .iter()
        .cloned()
        .partition(|p| priority(&p.pod) < mine);
    if lower.is_empty() {
        return Err(vec![NO_VICTIMS.to_string()]);
    }
    let fits = |remaining: &[PodInfo]| -> Result<(), Vec<String>> {
        let trial = with_pods(node, remaining);
        let view = replace_node(snapshot, &trial);
        PodContext::new(pod, &view)
            .filter(&trial)
            .map_err(|r| r.reasons)
    };
    fits(&keep)?;
    // Reprieve the most important victims first.
    lower.sort_by_key(|p| std::cmp::Reverse(priority(&p.pod)));
    let mut kept = keep;
    let mut victims = Vec::new();
    for candidate in lower {
        kept.push(candidate.clone());
        if fits(&kept).is_err() {
            kept.pop();
            victims.push(candidate.pod);
        }
    }
    Ok(victims)
}

fn with_pods(node: &NodeInfo, pods: &[PodInfo]) -> NodeInfo {
    let mut trial = match &node.node {
        Some(n) => NodeInfo::new((**n).clone(), []),
        None => NodeInfo::default(),
    };
    for p in pods {
        trial.add_pod(p.clone());
    }
    trial
}

fn replace_node(snapshot: &Snapshot, node: &NodeInfo) -> Snapshot {
    let nodes = snapshot
        .nodes
        .iter()
        .map(|n| {
            if n.name() == node.name() {
                Arc::new(node.clone())
            } else {
                n.clone()
            }
        })
        .collect();
    Snapshot {
        nodes: Arc::new(nodes),
    }
}

/// Upstream's `pickOneNodeForPreemption`, first three criteria.
fn pick(mut candidates: Vec<Candidate>) -> Option<Candidate> {
    candidates.sort_by_key(|c| {
        let top = c
            .victims
            .iter()
            .map(|v| priority(v))
            .max()
            .unwrap_or(i32::MIN);
        let sum: i64 = c.victims.iter().map(|v| i64::from(priority(v))).sum();
        (top, sum, c.victims.len(), c.node.clone())
    });
    candidates.into_iter().next()
}

/// Keys of the victims, for logs.
pub fn victim_keys(c: &Candidate) -> Vec<String> {
    c.victims.iter().map(|v| pod_key(v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::schedule;
    use crate::testing::{node, pod, NodeExt, PodExt};

    fn prio(p: Pod, v: i32) -> Pod {
        let mut p = p;
        p.spec_mut().priority = Some(v);
        p
    }

    #[test]
    fn evicts_the_least_important_pods_that_make_room() {
        let snap = Snapshot::new(vec![
            NodeInfo::new(
                node("a", "4", "8Gi"),
                [
                    prio(pod("low", "2", ""), 1).on("a"),
                    prio(pod("mid", "2", ""), 5).on("a"),
                ],
            ),
            NodeInfo::new(
                node("b", "4", "8Gi"),
                [prio(pod("high", "4", ""), 100).on("b")],
            ),
        ]);
        let p = prio(pod("new", "2", ""), 10);
        let fit = schedule(&p, &snap, &mut 0).unwrap_err();
        let Outcome::Preempt(c) = preempt(&p, &fit, &snap) else {
            panic!("expected preemption")
        };
        assert_eq!(c.node, "a");
        let names: Vec<_> = c
            .victims
            .iter()
            .map(|v| v.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, vec!["low"]);
    }

    #[test]
    fn messages_as_upstream_when_preemption_cannot_help() {
        let snap = Snapshot::new(vec![
            NodeInfo::new(
                node("a", "1", "8Gi"),
                [prio(pod("x", "1", ""), 100).on("a")],
            ),
            NodeInfo::new(node("b", "8", "8Gi").taint("k", "v", "NoSchedule"), []),
        ]);
        let p = prio(pod("new", "1", ""), 10);
        let fit = schedule(&p, &snap, &mut 0).unwrap_err();
        assert_eq!(
            failed_message(&fit, &preempt(&p, &fit, &snap)),
            "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {k: v}. \
             preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, \
             1 Preemption is not helpful for scheduling.."
        );
        let mut never = p.clone();
        never.spec_mut().preemption_policy = Some("Never".into());
        assert!(failed_message(&fit, &preempt(&never, &fit, &snap))
            .ends_with(". preemption: not eligible due to preemptionPolicy=Never."));
    }
}
