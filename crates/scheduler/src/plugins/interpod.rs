//! InterPodAffinity: required pod affinity and anti-affinity (of the incoming pod, and of the
//! pods already placed, which is symmetric), and the preferred terms as a score.
//!
//! Everything is counted per topology pair (`topologyKey`, the value of that label on the node
//! the existing pod runs on) once per cycle in [`PreState`], so each node is then checked by
//! looking up its own labels, as upstream's PreFilter/Filter split does.
//!
//! Not done: `namespaceSelector` with requirements (it needs namespace labels); an empty
//! `namespaceSelector` (all namespaces) and `namespaces` lists work.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Node, Pod, PodAffinityTerm};

use super::{Code, Filtered, Rejection, MAX_NODE_SCORE};
use crate::cache::{NodeInfo, Snapshot};
use component_base::label_selector as selector;

pub const AFFINITY_REASON: &str = "node(s) didn't match pod affinity rules";
pub const ANTI_AFFINITY_REASON: &str = "node(s) didn't match pod anti-affinity rules";
pub const EXISTING_ANTI_AFFINITY_REASON: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

/// Weight of an existing pod's *required* affinity towards the incoming pod in the score
/// (upstream's default `hardPodAffinityWeight`).
const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

type Pair = (String, String);

/// Whether a pod has any pod affinity or anti-affinity.
pub fn has_pod_affinity(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .is_some_and(|a| a.pod_affinity.is_some() || a.pod_anti_affinity.is_some())
}

/// The pod's affinity terms by kind.
#[derive(Default)]
struct Terms<'a> {
    required_affinity: Vec<&'a PodAffinityTerm>,
    required_anti: Vec<&'a PodAffinityTerm>,
    /// (weight, term); negative weights are anti-affinity.
    preferred: Vec<(i64, &'a PodAffinityTerm)>,
}

fn terms(pod: &Pod) -> Terms<'_> {
    let mut t = Terms::default();
    let Some(a) = pod.spec.as_ref().and_then(|s| s.affinity.as_ref()) else {
        return t;
    };
    if let Some(pa) = &a.pod_affinity {
        t.required_affinity.extend(
            pa.required_during_scheduling_ignored_during_execution
                .iter()
                .flatten(),
        );
        t.preferred.extend(
            pa.preferred_during_scheduling_ignored_during_execution
                .iter()
                .flatten()
                .map(|w| (i64::from(w.weight), &w.pod_affinity_term)),
        );
    }
    if let Some(anti) = &a.pod_anti_affinity {
        t.required_anti.extend(
            anti.required_during_scheduling_ignored_during_execution
                .iter()
                .flatten(),
        );
        t.preferred.extend(
            anti.preferred_during_scheduling_ignored_during_execution
                .iter()
                .flatten()
                .map(|w| (-i64::from(w.weight), &w.pod_affinity_term)),
        );
    }
    t
}

/// Whether `term`, declared by a pod in `owner_ns`, selects `target`.
fn term_selects(term: &PodAffinityTerm, owner_ns: &str, target: &Pod) -> bool {
    let Some(sel) = &term.label_selector else {
        // A term without a selector selects no pod.
        return false;
    };
    let target_ns = target.metadata.namespace.as_deref().unwrap_or_default();
    let listed = term.namespaces.as_deref().unwrap_or_default();
    let all_namespaces = term.namespace_selector.as_ref().is_some_and(|s| {
        s.match_labels.as_ref().is_none_or(|m| m.is_empty())
            && s.match_expressions.as_ref().is_none_or(|e| e.is_empty())
    });
    let ns_ok = if all_namespaces {
        true
    } else if listed.is_empty() && term.namespace_selector.is_none() {
        target_ns == owner_ns
    } else {
        listed.iter().any(|n| n == target_ns)
    };
    ns_ok && selector::matches(sel, target.metadata.labels.as_ref())
}

fn namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or_default()
}

fn label<'a>(node: Option<&'a Node>, key: &str) -> Option<&'a String> {
    node.and_then(|n| n.metadata.labels.as_ref())
        .and_then(|l| l.get(key))
}

fn pair(key: &str, node: Option<&Node>) -> Option<Pair> {
    label(node, key).map(|v| (key.to_string(), v.clone()))
}

/// Counts per topology pair, computed once per scheduling cycle.
#[derive(Debug, Default)]
pub struct PreState {
    /// Existing pods matching all the incoming pod's required affinity terms.
    affinity: HashMap<Pair, i64>,
    /// Existing pods matching one of the incoming pod's required anti-affinity terms.
    anti_affinity: HashMap<Pair, i64>,
    /// Existing pods whose required anti-affinity selects the incoming pod.
    existing_anti_affinity: HashMap<Pair, i64>,
    /// Preferred terms (both directions) and existing required affinity, weighted.
    score: HashMap<Pair, i64>,
    /// The incoming pod matches all its own affinity terms (the first pod of a group may go anywhere).
    self_affinity: bool,
    required_affinity_keys: Vec<String>,
    required_anti_affinity_keys: Vec<String>,
    skip: bool,
}

impl PreState {
    pub fn compute(pod: &Pod, snapshot: &Snapshot) -> PreState {
        let own = terms(pod);
        let ns = namespace(pod);
        let incoming_has_terms = !own.required_affinity.is_empty()
            || !own.required_anti.is_empty()
            || !own.preferred.is_empty();
        let mut state = PreState {
            self_affinity: own
                .required_affinity
                .iter()
                .all(|t| term_selects(t, ns, pod)),
            required_affinity_keys: own
                .required_affinity
                .iter()
                .map(|t| t.topology_key.clone())
                .collect(),
            required_anti_affinity_keys: own
                .required_anti
                .iter()
                .map(|t| t.topology_key.clone())
                .collect(),
            ..Default::default()
        };
        for info in snapshot.nodes.iter() {
            if !incoming_has_terms && info.affinity_pods == 0 {
                continue;
            }
            let node = info.node.as_deref();
            for existing in &info.pods {
                state.count_existing(pod, &own, &existing.pod, node);
            }
        }
        state.skip = !incoming_has_terms
            && state.existing_anti_affinity.is_empty()
            && state.score.is_empty();
        state
    }

    fn count_existing(&mut self, pod: &Pod, own: &Terms<'_>, existing: &Pod, node: Option<&Node>) {
        let ns = namespace(pod);
        let bump = |map: &mut HashMap<Pair, i64>, key: &str, by: i64| {
            if let Some(p) = pair(key, node) {
                *map.entry(p).or_default() += by;
            }
        };
        if !own.required_affinity.is_empty()
            && own
                .required_affinity
                .iter()
                .all(|t| term_selects(t, ns, existing))
        {
            for t in &own.required_affinity {
                bump(&mut self.affinity, &t.topology_key, 1);
            }
        }
        for t in own
            .required_anti
            .iter()
            .filter(|t| term_selects(t, ns, existing))
        {
            bump(&mut self.anti_affinity, &t.topology_key, 1);
        }
        for (weight, t) in own
            .preferred
            .iter()
            .filter(|(_, t)| term_selects(t, ns, existing))
        {
            bump(&mut self.score, &t.topology_key, *weight);
        }
        if !has_pod_affinity(existing) {
            return;
        }
        let theirs = terms(existing);
        let their_ns = namespace(existing);
        for t in theirs
            .required_anti
            .iter()
            .filter(|t| term_selects(t, their_ns, pod))
        {
            bump(&mut self.existing_anti_affinity, &t.topology_key, 1);
        }
        for t in theirs
            .required_affinity
            .iter()
            .filter(|t| term_selects(t, their_ns, pod))
        {
            bump(&mut self.score, &t.topology_key, HARD_POD_AFFINITY_WEIGHT);
        }
        for (weight, t) in theirs
            .preferred
            .iter()
            .filter(|(_, t)| term_selects(t, their_ns, pod))
        {
            bump(&mut self.score, &t.topology_key, *weight);
        }
    }

    fn count(map: &HashMap<Pair, i64>, key: &str, node: Option<&Node>) -> i64 {
        pair(key, node)
            .and_then(|p| map.get(&p).copied())
            .unwrap_or(0)
    }

    pub fn filter(&self, node: &NodeInfo) -> Filtered {
        if self.skip {
            return Ok(());
        }
        let n = node.node.as_deref();
        let labels = n.and_then(|n| n.metadata.labels.as_ref());
        let existing_anti = labels.into_iter().flatten().any(|(k, v)| {
            self.existing_anti_affinity
                .get(&(k.clone(), v.clone()))
                .is_some_and(|c| *c > 0)
        });
        if existing_anti {
            return Err(Rejection::unschedulable(EXISTING_ANTI_AFFINITY_REASON));
        }
        if self
            .required_anti_affinity_keys
            .iter()
            .any(|k| Self::count(&self.anti_affinity, k, n) > 0)
        {
            return Err(Rejection::unschedulable(ANTI_AFFINITY_REASON));
        }
        let all_met = self
            .required_affinity_keys
            .iter()
            .all(|k| Self::count(&self.affinity, k, n) > 0);
        // The first pod of a group that selects itself may start the group anywhere the
        // topology keys exist.
        let first_of_group = self.affinity.is_empty()
            && self.self_affinity
            && self
                .required_affinity_keys
                .iter()
                .all(|k| label(n, k).is_some());
        if all_met || first_of_group {
            Ok(())
        } else {
            Err(Rejection {
                code: Code::UnschedulableAndUnresolvable,
                reasons: vec![AFFINITY_REASON.into()],
            })
        }
    }

    /// Raw score: the weights of the topology pairs the node is in.
    pub fn score(&self, node: &NodeInfo) -> i64 {
        if self.score.is_empty() {
            return 0;
        }
        node.labels()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| self.score.get(&(k.clone(), v.clone())))
            .sum()
    }
}

/// Min-max scaling to 0..=100, as upstream's InterPodAffinity NormalizeScore.
pub fn normalize_scores(scores: &mut [i64]) {
    let max = scores.iter().copied().max().unwrap_or(0);
    let min = scores.iter().copied().min().unwrap_or(0);
    let range = max - min;
    for s in scores.iter_mut() {
        *s = if range > 0 {
            MAX_NODE_SCORE * (*s - min) / range
        } else {
            0
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{node, pod, NodeExt, PodExt};
    use k8s_openapi::api::core::v1::{
        Affinity, PodAffinity, PodAntiAffinity, WeightedPodAffinityTerm,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    fn term(app: &str, key: &str) -> PodAffinityTerm {
        PodAffinityTerm {
            label_selector: Some(LabelSelector {
                match_labels: Some([("app".to_string(), app.to_string())].into()),
                ..Default::default()
            }),
            topology_key: key.into(),
            ..Default::default()
        }
    }

    fn anti(p: Pod, app: &str, key: &str) -> Pod {
        let mut p = p;
        p.spec_mut().affinity = Some(Affinity {
            pod_anti_affinity: Some(PodAntiAffinity {
                required_during_scheduling_ignored_during_execution: Some(vec![term(app, key)]),
                ..Default::default()
            }),
            ..Default::default()
        });
        p
    }

    fn affinity(p: Pod, app: &str, key: &str) -> Pod {
        let mut p = p;
        p.spec_mut().affinity = Some(Affinity {
            pod_affinity: Some(PodAffinity {
                required_during_scheduling_ignored_during_execution: Some(vec![term(app, key)]),
                ..Default::default()
            }),
            ..Default::default()
        });
        p
    }

    fn cluster(pods_on_a: Vec<Pod>) -> Snapshot {
        Snapshot::new(vec![
            NodeInfo::new(node("a", "4", "4Gi").label("zone", "z1"), pods_on_a),
            NodeInfo::new(node("b", "4", "4Gi").label("zone", "z1"), []),
            NodeInfo::new(node("c", "4", "4Gi").label("zone", "z2"), []),
        ])
    }

    fn verdicts(pod: &Pod, snap: &Snapshot) -> Vec<Filtered> {
        let state = PreState::compute(pod, snap);
        snap.nodes.iter().map(|n| state.filter(n)).collect()
    }

    #[test]
    fn anti_affinity_by_hostname_and_zone() {
        let snap = cluster(vec![pod("web-1", "", "").label("app", "web").on("a")]);
        let p = anti(
            pod("web-2", "", "").label("app", "web"),
            "web",
            "kubernetes.io/hostname",
        );
        let v = verdicts(&p, &snap);
        assert_eq!(
            v[0].as_ref().unwrap_err().reasons,
            vec![ANTI_AFFINITY_REASON]
        );
        assert!(v[1].is_ok() && v[2].is_ok());
        let p = anti(pod("web-2", "", "").label("app", "web"), "web", "zone");
        let v = verdicts(&p, &snap);
        assert!(v[0].is_err() && v[1].is_err() && v[2].is_ok());
    }

    #[test]
    fn existing_pods_anti_affinity_is_symmetric() {
        let guard = anti(pod("db-1", "", "").label("app", "db"), "web", "zone").on("a");
        let snap = cluster(vec![guard]);
        let v = verdicts(&pod("web", "", "").label("app", "web"), &snap);
        assert_eq!(
            v[0].as_ref().unwrap_err().reasons,
            vec![EXISTING_ANTI_AFFINITY_REASON]
        );
        assert!(v[1].is_err() && v[2].is_ok());
    }

    #[test]
    fn affinity_needs_a_matching_pod_in_the_domain() {
        let snap = cluster(vec![pod("db", "", "").label("app", "db").on("a")]);
        let p = affinity(pod("web", "", ""), "db", "zone");
        let v = verdicts(&p, &snap);
        assert!(v[0].is_ok() && v[1].is_ok());
        assert_eq!(
            v[2].as_ref().unwrap_err().code,
            Code::UnschedulableAndUnresolvable
        );
        // No db pod anywhere and the pod does not select itself: nowhere.
        let v = verdicts(&p, &cluster(vec![]));
        assert!(v.iter().all(|r| r.is_err()));
        // The first pod of a self-selecting group goes anywhere.
        let first = affinity(pod("db-0", "", "").label("app", "db"), "db", "zone");
        assert!(verdicts(&first, &cluster(vec![])).iter().all(|r| r.is_ok()));
    }

    #[test]
    fn preferred_affinity_scores_the_domain() {
        let snap = cluster(vec![pod("db", "", "").label("app", "db").on("a")]);
        let mut p = pod("web", "", "");
        p.spec_mut().affinity = Some(Affinity {
            pod_affinity: Some(PodAffinity {
                preferred_during_scheduling_ignored_during_execution: Some(vec![
                    WeightedPodAffinityTerm {
                        weight: 10,
                        pod_affinity_term: term("db", "zone"),
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        });
        let state = PreState::compute(&p, &snap);
        let mut scores: Vec<i64> = snap.nodes.iter().map(|n| state.score(n)).collect();
        normalize_scores(&mut scores);
        assert_eq!(scores, vec![100, 100, 0]);
    }

    #[test]
    fn other_namespaces_do_not_match_by_default() {
        let mut other = pod("web-1", "", "").label("app", "web").on("a");
        other.metadata.namespace = Some("other".into());
        let snap = cluster(vec![other]);
        let p = anti(
            pod("web-2", "", "").label("app", "web"),
            "web",
            "kubernetes.io/hostname",
        );
        assert!(verdicts(&p, &snap).iter().all(|r| r.is_ok()));
    }
}
