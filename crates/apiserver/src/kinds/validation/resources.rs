//! Container resource requirements (`ValidateResourceRequirements`): resource names, quantities
//! that parse and are not negative, and requests within limits.

use super::errors::{invalid, quote, required};
use super::names::qualified_name;
use super::pod::name_errors;
use crate::kinds::json::obj_at;
use crate::kinds::quantity::nanos;
use crate::kinds::Cause;
use serde_json::Value;

const QUANTITY_SYNTAX: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// Names without a domain must be one of the standard container resources.
fn resource_name(errs: &mut Vec<Cause>, field: &str, name: &str) {
    if name.contains('/') {
        name_errors(errs, field, name, qualified_name);
    } else if !matches!(name, "cpu" | "memory" | "ephemeral-storage")
        && !name.starts_with("hugepages-")
    {
        errs.push(invalid(
            field,
            &quote(name),
            "must be a standard resource for containers",
        ));
    }
}

/// Huge pages and extended (domain-qualified, non-kubernetes.io) resources cannot be
/// overcommitted: their request must equal their limit.
fn overcommit_allowed(name: &str) -> bool {
    let native = !name.contains('/') || name.contains("kubernetes.io/");
    native && !name.starts_with("hugepages-")
}

/// Each quantity of a resource list, checked (names with `check_name`); returns the parsed ones.
fn quantities<'a>(
    errs: &mut Vec<Cause>,
    list: Option<&'a serde_json::Map<String, Value>>,
    path: &str,
    check_name: fn(&mut Vec<Cause>, &str, &str),
) -> Vec<(&'a str, String, i128)> {
    let mut parsed = Vec::new();
    for (name, q) in list.into_iter().flatten() {
        let field = format!("{path}[{name}]");
        check_name(errs, &field, name);
        let text = q
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| q.to_string());
        match nanos(&text) {
            None => errs.push(invalid(&field, &quote(&text), QUANTITY_SYNTAX)),
            Some(n) if n < 0 => errs.push(invalid(
                &field,
                &quote(&text),
                "must be greater than or equal to 0",
            )),
            Some(n) => parsed.push((name.as_str(), text, n)),
        }
    }
    parsed
}

/// Quota names: standard ones or domain-qualified (`requests.cpu`, `count/deployments.apps`).
fn quota_name(errs: &mut Vec<Cause>, field: &str, name: &str) {
    if name.contains('/') || !name.contains('.') {
        name_errors(errs, field, name, qualified_name);
    }
}

/// A ResourceQuota's `spec.hard`: parseable, non-negative quantities.
pub fn quota(obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
    let mut errs = Vec::new();
    quantities(&mut errs, obj_at(obj, "spec.hard"), "spec.hard", quota_name);
    errs
}

/// Validates `resources` of a container at `path` (e.g. `spec.containers[0].resources`).
pub fn requirements(errs: &mut Vec<Cause>, resources: &Value, path: &str) {
    let (lim_path, req_path) = (format!("{path}.limits"), format!("{path}.requests"));
    let limits = quantities(errs, obj_at(resources, "limits"), &lim_path, resource_name);
    for (name, text, request) in quantities(
        errs,
        obj_at(resources, "requests"),
        &req_path,
        resource_name,
    ) {
        match limits.iter().find(|(n, _, _)| *n == name) {
            Some((_, limit, l)) if !overcommit_allowed(name) && request != *l => {
                errs.push(invalid(
                    &req_path,
                    &quote(&text),
                    &format!("must be equal to {name} limit of {limit}"),
                ))
            }
            Some((_, limit, l)) if request > *l => errs.push(invalid(
                &req_path,
                &quote(&text),
                &format!("must be less than or equal to {name} limit of {limit}"),
            )),
            Some(_) => {}
            None if !overcommit_allowed(name) => errs.push(required(
                &lim_path,
                "Limit must be set for non overcommitable resources",
            )),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::validation::fields_of as fields;
    use serde_json::json;

    fn check(resources: Value) -> Vec<Cause> {
        let mut errs = Vec::new();
        requirements(&mut errs, &resources, "spec.containers[0].resources");
        errs
    }

    #[test]
    fn requests_within_limits() {
        assert_eq!(
            check(
                json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m", "memory": "1Gi"}})
            ),
            []
        );
        let errs = check(json!({"limits": {"cpu": "500m"}, "requests": {"cpu": "1"}}));
        assert_eq!(fields(&errs), ["spec.containers[0].resources.requests"]);
        assert_eq!(
            errs[0].message,
            "Invalid value: \"1\": must be less than or equal to cpu limit of 500m"
        );
        let errs = check(
            json!({"limits": {"hugepages-2Mi": "4Mi"}, "requests": {"hugepages-2Mi": "2Mi", "example.com/gpu": "1"}}),
        );
        assert_eq!(
            errs.iter().map(|c| c.message.as_str()).collect::<Vec<_>>(),
            [
                "Required value: Limit must be set for non overcommitable resources",
                "Invalid value: \"2Mi\": must be equal to hugepages-2Mi limit of 4Mi"
            ]
        );
    }

    #[test]
    fn quotas() {
        assert_eq!(
            quota(
                &json!({"spec": {"hard": {"pods": "10", "requests.cpu": "4", "count/deployments.apps": "2"}}}),
                None
            ),
            []
        );
        assert_eq!(
            fields(&quota(
                &json!({"spec": {"hard": {"pods": "-1", "cpu": "x"}}}),
                None
            )),
            ["spec.hard[cpu]", "spec.hard[pods]"]
        );
    }

    #[test]
    fn names_and_quantities() {
        let errs = check(json!({"limits": {"gpu": "1", "memory": "lots", "cpu": "-1"}}));
        assert_eq!(
            fields(&errs),
            [
                "spec.containers[0].resources.limits[cpu]",
                "spec.containers[0].resources.limits[gpu]",
                "spec.containers[0].resources.limits[memory]"
            ]
        );
        assert_eq!(
            errs[1].message,
            "Invalid value: \"gpu\": must be a standard resource for containers"
        );
        assert!(errs[2]
            .message
            .starts_with("Invalid value: \"lots\": quantities must match"));
    }
}
