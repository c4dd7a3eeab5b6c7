//! NodeAffinity: `spec.nodeSelector` and `requiredDuringSchedulingIgnoredDuringExecution` node
//! affinity filter; `preferredDuringScheduling...` terms add their weights to the score.
//!
//! Terms are ORed, the requirements inside a term ANDed; a term with no requirements matches no
//! node. `matchFields` supports `metadata.name` only, as upstream.

use k8s_openapi::api::core::v1::Pod;

use super::{normalize, Filtered, Rejection};
use crate::cache::NodeInfo;
pub use component_base::node_affinity::{required_matches, term_matches};

pub const REASON: &str = "node(s) didn't match Pod's node affinity/selector";

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
