//! NodeAffinity: `spec.nodeSelector` and `requiredDuringSchedulingIgnoredDuringExecution` node
//! affinity filter; `preferredDuringScheduling...` terms add their weights to the score.
//!
//! Terms are ORed, the requirements inside a term ANDed; a term with no requirements matches no
//! node. `matchFields` supports `metadata.name` only, as upstream.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, NodeSelectorRequirement, NodeSelectorTerm, Pod};

use super::{normalize, Filtered, Rejection};
use crate::cache::NodeInfo;

pub const REASON: &str = "node(s) didn't match Pod's node affinity/selector";

/// Whether the node satisfies the pod's node selector and required node affinity.
pub fn required_matches(pod: &Pod, node: &Node) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    let labels = node.metadata.labels.as_ref();
    let selector_ok = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    selector_ok
        && required.is_none_or(|r| r.node_selector_terms.iter().any(|t| term_matches(t, node)))
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

pub fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let name = node.metadata.name.clone().unwrap_or_default();
    let field_map: BTreeMap<String, String> = [("metadata.name".to_string(), name)].into();
    exprs.iter().all(|r| requirement(r, labels, true))
        && fields.iter().all(|r| requirement(r, &field_map, false))
}

/// One requirement; fields allow only `In` and `NotIn`.
fn requirement(
    r: &NodeSelectorRequirement,
    labels: &BTreeMap<String, String>,
    is_label: bool,
) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let value = labels.get(&r.key);
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" if is_label => value.is_some(),
        "DoesNotExist" if is_label => value.is_none(),
        "Gt" | "Lt" if is_label => compare(r.operator.as_str(), value, values),
        _ => false,
    }
}

/// `Gt`/`Lt`: exactly one integer value, compared with the label parsed as an integer.
fn compare(op: &str, label: Option<&String>, values: &[String]) -> bool {
    let (Some(label), [bound]) = (label, values) else {
        return false;
    };
    match (label.parse::<i64>(), bound.parse::<i64>()) {
        (Ok(l), Ok(b)) if op == "Gt" => l > b,
        (Ok(l), Ok(b)) => l < b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{node, pod, NodeExt, PodExt};
    use k8s_openapi::api::core::v1::{
        Affinity, NodeAffinity, NodeSelector, PreferredSchedulingTerm,
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
