//! ClusterRole aggregation: a ClusterRole with `aggregationRule.clusterRoleSelectors` has its
//! rules replaced by the union of the rules of every other ClusterRole whose labels match.
//!
//! [`aggregated_rules`] is one sync of upstream's clusterrole-aggregation controller;
//! [`aggregate_all`] repeats it until nothing changes, which is where the controller converges
//! (`admin` aggregates `edit`, which aggregates `view`), and returns the writes to make.

use std::collections::BTreeMap;

use super::objects::{LabelSelector, PolicyRule, Role, SelectorRequirement};

/// One sync of upstream's controller: the rules `target` should have, or `None` if it does not
/// aggregate. Roles are visited by name per selector and rules de-duplicated, as upstream.
pub fn aggregated_rules<'a>(
    target: &Role,
    all: impl IntoIterator<Item = &'a Role>,
) -> Option<Vec<PolicyRule>> {
    let rule = target.aggregation_rule.as_ref()?;
    let mut sorted: Vec<&Role> = all.into_iter().collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut rules: Vec<PolicyRule> = Vec::new();
    for selector in &rule.cluster_role_selectors {
        let matching = sorted.iter().filter(|r| {
            r.metadata.name != target.metadata.name
                && selector_matches(selector, &r.metadata.labels)
        });
        for role in matching {
            for r in &role.rules {
                if !rules.contains(r) {
                    rules.push(r.clone());
                }
            }
        }
    }
    Some(rules)
}

/// Runs [`aggregated_rules`] over all cluster roles until a fixed point and returns the new
/// rules of every aggregating role that changed (name → rules). Bounded by the number of roles
/// so a pathological cycle of selectors cannot loop forever.
pub fn aggregate_all(cluster_roles: &[Role]) -> BTreeMap<String, Vec<PolicyRule>> {
    let mut current: Vec<Role> = cluster_roles.to_vec();
    let mut changed = BTreeMap::new();
    for _ in 0..=current.len() {
        let mut progress = false;
        for i in 0..current.len() {
            let Some(rules) = aggregated_rules(&current[i], current.iter()) else {
                continue;
            };
            if rules != current[i].rules {
                changed.insert(current[i].metadata.name.clone(), rules.clone());
                current[i].rules = rules;
                progress = true;
            }
        }
        if !progress {
            break;
        }
    }
    changed
}

/// `metav1.LabelSelectorAsSelector(...).Matches(labels)`. An empty selector matches everything;
/// a requirement with an unknown operator matches nothing (upstream refuses such a selector).
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    selector
        .match_labels
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
        && selector
            .match_expressions
            .iter()
            .all(|req| requirement_matches(req, labels))
}

fn requirement_matches(req: &SelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let value = labels.get(&req.key);
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| req.values.contains(v)),
        "NotIn" => value.is_none_or(|v| !req.values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors() {
        let l = labels(&[("a", "1"), ("b", "2")]);
        let mut s = LabelSelector::default();
        assert!(selector_matches(&s, &l), "empty selects everything");
        s.match_labels = labels(&[("a", "1")]);
        assert!(selector_matches(&s, &l));
        let req = |op: &str, values: &[&str]| SelectorRequirement {
            key: "b".into(),
            operator: op.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        };
        s.match_expressions = vec![req("In", &["2", "3"])];
        assert!(selector_matches(&s, &l));
        s.match_expressions = vec![req("NotIn", &["2"])];
        assert!(!selector_matches(&s, &l));
        s.match_expressions = vec![req("Exists", &[])];
        assert!(selector_matches(&s, &l));
        s.match_expressions = vec![req("DoesNotExist", &[])];
        assert!(!selector_matches(&s, &l));
        s.match_expressions = vec![req("Bogus", &[])];
        assert!(!selector_matches(&s, &l));
    }
}
