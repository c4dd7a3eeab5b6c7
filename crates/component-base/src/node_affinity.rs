//! Node selectors and required node affinity as upstream's `nodeaffinity` helper: which node a
//! pod may run on. The scheduler filters with it, the DaemonSet controller decides which nodes
//! get a daemon pod with it.
//!
//! Terms are ORed, the requirements inside a term ANDed; a term with no requirements matches no
//! node. `matchFields` supports `metadata.name` only, as upstream.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, NodeSelectorRequirement, NodeSelectorTerm, Pod};

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
