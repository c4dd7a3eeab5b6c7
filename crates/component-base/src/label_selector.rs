//! Label selectors (`matchLabels` + `matchExpressions`) over label maps, for every component
//! that selects objects (scheduler affinity and spread, workload controllers).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

type Labels = BTreeMap<String, String>;

/// Whether `labels` satisfy `selector`; an empty selector matches everything. Affinity terms
/// and spread constraints treat a missing selector as matching nothing: callers decide that.
pub fn matches(selector: &LabelSelector, labels: Option<&Labels>) -> bool {
    let empty = Labels::new();
    let labels = labels.unwrap_or(&empty);
    let by_label = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    by_label
        && selector
            .match_expressions
            .iter()
            .flatten()
            .all(|r| requirement(r, labels))
}

fn requirement(r: &LabelSelectorRequirement, labels: &Labels) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let value = labels.get(&r.key);
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        // The API server rejects other operators; an unknown one matches nothing.
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn operators() {
        let labels: Labels = [("app".to_string(), "web".to_string())].into();
        let sel = |r| LabelSelector {
            match_expressions: Some(vec![r]),
            ..Default::default()
        };
        assert!(matches(
            &sel(req("app", "In", &["web", "db"])),
            Some(&labels)
        ));
        assert!(!matches(&sel(req("app", "NotIn", &["web"])), Some(&labels)));
        assert!(matches(&sel(req("tier", "NotIn", &["x"])), Some(&labels)));
        assert!(matches(&sel(req("app", "Exists", &[])), Some(&labels)));
        assert!(matches(
            &sel(req("tier", "DoesNotExist", &[])),
            Some(&labels)
        ));
        assert!(matches(&LabelSelector::default(), None));
        let ml = LabelSelector {
            match_labels: Some([("app".to_string(), "db".to_string())].into()),
            ..Default::default()
        };
        assert!(!matches(&ml, Some(&labels)));
    }
}
