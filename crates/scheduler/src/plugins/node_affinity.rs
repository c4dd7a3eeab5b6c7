//! NodeAffinity: `spec.nodeSelector` and `requiredDuringSchedulingIgnoredDuringExecution` node
//! affinity filter; `preferredDuringScheduling...` terms add their weights to the score.
//!
//! Terms are ORed, the requirements inside a term ANDed; a term with no requirements matches no
//! node. `matchFields` supports `metadata.name` only, as upstream.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Pod;

use super::{normalize, Filtered, Rejection};
use crate::cache::NodeInfo;
pub use component_base::node_affinity::{required_matches, term_matches};

pub const REASON: &str = "node(s) didn't match Pod's node affinity/selector";
/// Why the nodes left out by [`pinned_nodes`] were not considered (upstream's message for the
/// nodes a PreFilter result excludes).
pub const PREFILTER_REASON: &str = "node(s) didn't satisfy plugin(s) [NodeAffinity]";

/// Upstream's NodeAffinity PreFilter: when every required term names its nodes with a
/// `metadata.name In [...]` match field (the DaemonSet controller pins its pods this way), only
/// those nodes can fit, so the cycle looks at them alone instead of filtering every node.
/// `None` means any node may fit. Within a term the name lists are intersected (ANDed
/// requirements), across terms united (ORed terms).
pub fn pinned_nodes(pod: &Pod) -> Option<BTreeSet<&str>> {
    let terms = &pod
        .spec
        .as_ref()?
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    if terms.is_empty() {
        return None;
    }
    let mut names = BTreeSet::new();
    for term in terms {
        let mut in_term: Option<BTreeSet<&str>> = None;
        let by_name = term
            .match_fields
            .iter()
            .flatten()
            .filter(|r| r.key == "metadata.name" && r.operator == "In");
        for r in by_name {
            let values: BTreeSet<&str> = r.values.iter().flatten().map(String::as_str).collect();
            in_term = Some(match in_term {
                None => values,
                Some(prev) => prev.intersection(&values).copied().collect(),
            });
        }
        // A term without a name requirement lets every node through (terms are ORed).
        names.extend(in_term?);
    }
    Some(names)
}

pub fn filter(pod: &Pod, node: &NodeInfo) -> Filtered {
    match &node.node {
        Some(n) if required_matches(pod, n) => Ok(()),
        _ => Err(Rejection::unresolvable(REASON)),
    }
}

/// Sum of the weights of the preferred terms the node matches.
pub fn score(pod: &Pod, node: &NodeInfo) -> i64 {
    let Some(n) = &node.node else { return 0 };
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .into_iter()
        .flatten()
        .filter(|p| p.weight != 0 && term_matches(&p.preference, n))
        .map(|p| i64::from(p.weight))
        .sum()
}

pub fn normalize_scores(scores: &mut [i64]) {
    normalize(scores, false);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{node, pod, NodeExt, PodExt};
    use k8s_openapi::api::core::v1::{
        Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
        PreferredSchedulingTerm,
    };

    fn expr(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn with_required(terms: Vec<NodeSelectorTerm>) -> Pod {
        let mut p = pod("p", "", "");
        p.spec_mut().affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: terms,
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        p
    }

    fn term(exprs: Vec<NodeSelectorRequirement>) -> NodeSelectorTerm {
        NodeSelectorTerm {
            match_expressions: Some(exprs),
            match_fields: None,
        }
    }

    fn by_name(names: &[&str]) -> NodeSelectorTerm {
        NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![expr("metadata.name", "In", names)]),
        }
    }

    #[test]
    fn pinned_nodes_as_upstreams_prefilter() {
        assert_eq!(pinned_nodes(&pod("p", "", "")), None);
        let one = with_required(vec![by_name(&["a"])]);
        assert_eq!(pinned_nodes(&one), Some(["a"].into()));
        // Terms are ORed: the union of their names.
        let two = with_required(vec![by_name(&["a"]), by_name(&["b", "c"])]);
        assert_eq!(pinned_nodes(&two), Some(["a", "b", "c"].into()));
        // A term naming no node lets every node through.
        let open = with_required(vec![
            by_name(&["a"]),
            term(vec![expr("zone", "In", &["x"])]),
        ]);
        assert_eq!(pinned_nodes(&open), None);
        // Requirements within a term are ANDed: the intersection.
        let mut both = by_name(&["a", "b"]);
        both.match_fields
            .as_mut()
            .unwrap()
            .push(expr("metadata.name", "In", &["b", "c"]));
        assert_eq!(pinned_nodes(&with_required(vec![both])), Some(["b"].into()));
    }

    #[test]
    fn node_selector_must_match_every_label() {
        let n = NodeInfo::new(node("n", "1", "1Gi").label("disk", "ssd"), []);
        let mut p = pod("p", "", "");
        p.spec_mut().node_selector = Some([("disk".to_string(), "ssd".to_string())].into());
        assert!(filter(&p, &n).is_ok());
        p.spec_mut().node_selector = Some([("disk".to_string(), "hdd".to_string())].into());
        assert_eq!(filter(&p, &n).unwrap_err().reasons, vec![REASON]);
    }

    #[test]
    fn required_affinity_operators() {
        let n = NodeInfo::new(
            node("n", "1", "1Gi").label("zone", "a").label("cores", "8"),
            [],
        );
        let ok =
            |e: NodeSelectorRequirement| filter(&with_required(vec![term(vec![e])]), &n).is_ok();
        assert!(ok(expr("zone", "In", &["a", "b"])));
        assert!(!ok(expr("zone", "NotIn", &["a"])));
        assert!(ok(expr("gpu", "DoesNotExist", &[])));
        assert!(ok(expr("zone", "Exists", &[])));
        assert!(ok(expr("cores", "Gt", &["4"])));
        assert!(!ok(expr("cores", "Lt", &["4"])));
        assert!(!ok(expr("zone", "Gt", &["4"])));
        // Terms are ORed; an empty term matches nothing.
        let p = with_required(vec![
            term(vec![expr("zone", "In", &["x"])]),
            term(vec![expr("zone", "In", &["a"])]),
        ]);
        assert!(filter(&p, &n).is_ok());
        assert!(filter(&with_required(vec![term(vec![])]), &n).is_err());
    }

    #[test]
    fn match_fields_by_node_name() {
        let n = NodeInfo::new(node("n1", "1", "1Gi"), []);
        let fields = |v: &str| NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![expr("metadata.name", "In", &[v])]),
        };
        assert!(filter(&with_required(vec![fields("n1")]), &n).is_ok());
        assert!(filter(&with_required(vec![fields("n2")]), &n).is_err());
    }

    #[test]
    fn preferred_terms_add_weights() {
        let n = NodeInfo::new(node("n", "1", "1Gi").label("zone", "a"), []);
        let mut p = pod("p", "", "");
        let pref = |w, v: &str| PreferredSchedulingTerm {
            weight: w,
            preference: term(vec![expr("zone", "In", &[v])]),
        };
        p.spec_mut().affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity {
                preferred_during_scheduling_ignored_during_execution: Some(vec![
                    pref(5, "a"),
                    pref(3, "b"),
                    pref(2, "a"),
                ]),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(score(&p, &n), 7);
    }
}
