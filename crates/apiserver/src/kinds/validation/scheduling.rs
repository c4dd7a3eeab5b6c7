//! Taints and tolerations (`validateNodeTaints`, `ValidateTolerations`).

use super::errors::{duplicate, invalid, not_supported, quote, required};
use super::meta::labels;
use super::names::{label_value, qualified_name};
use super::pod::name_errors;
use crate::kinds::json::{arr_at, at, str_at};
use crate::kinds::Cause;
use serde_json::Value;
use std::collections::HashSet;

const EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];

fn effect(errs: &mut Vec<Cause>, field: &str, value: &str, allow_empty: bool) {
    match value {
        "" if allow_empty => {}
        "" => errs.push(required(field, "")),
        v if !EFFECTS.contains(&v) => errs.push(not_supported(field, v, EFFECTS)),
        _ => {}
    }
}

/// A label value check reported as one cause with the messages joined by ";".
fn joined_label_value(errs: &mut Vec<Cause>, field: &str, value: &str) {
    let msgs = label_value(value);
    if !msgs.is_empty() {
        errs.push(invalid(field, &quote(value), &msgs.join(";")));
    }
}

/// A node's `spec.taints`.
pub fn taints(obj: &Value) -> Vec<Cause> {
    let mut errs = Vec::new();
    let mut seen = HashSet::new();
    for (i, t) in arr_at(obj, "spec.taints").iter().enumerate() {
        let path = format!("spec.taints[{i}]");
        let (key, eff) = (str_at(t, "key"), str_at(t, "effect"));
        name_errors(&mut errs, &format!("{path}.key"), key, qualified_name);
        joined_label_value(&mut errs, &format!("{path}.value"), str_at(t, "value"));
        effect(&mut errs, &format!("{path}.effect"), eff, false);
        if !seen.insert((key, eff)) {
            let mut dup = duplicate(&path, &t.to_string());
            dup.message = format!(
                "Duplicate value: {}: taints must be unique by key and effect pair",
                t
            );
            errs.push(dup);
        }
    }
    errs
}

/// A pod spec's `tolerations` at `path`.
pub fn tolerations(errs: &mut Vec<Cause>, spec: &Value, path: &str) {
    for (i, t) in arr_at(spec, "tolerations").iter().enumerate() {
        let path = format!("{path}.tolerations[{i}]");
        let (key, op, eff) = (str_at(t, "key"), str_at(t, "operator"), str_at(t, "effect"));
        if !key.is_empty() {
            name_errors(errs, &format!("{path}.key"), key, qualified_name);
        }
        let op_field = format!("{path}.operator");
        if key.is_empty() && op != "Exists" {
            errs.push(invalid(&op_field, &quote(op), "operator must be Exists when `key` is empty, which means \"match all values and all keys\""));
        }
        if !at(t, "tolerationSeconds").is_null() && eff != "NoExecute" {
            errs.push(invalid(
                &format!("{path}.effect"),
                &quote(eff),
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match op {
            "" | "Equal" => joined_label_value(errs, &op_field, str_at(t, "value")),
            "Exists" if !str_at(t, "value").is_empty() => errs.push(invalid(
                &op_field,
                &t.to_string(),
                "value must be empty when `operator` is 'Exists'",
            )),
            "Exists" => {}
            other => errs.push(not_supported(&op_field, other, &["Equal", "Exists"])),
        }
        effect(errs, &format!("{path}.effect"), eff, true);
    }
    errs.extend(labels(
        at(spec, "nodeSelector"),
        &format!("{path}.nodeSelector"),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::validation::fields_of as fields;
    use serde_json::json;

    #[test]
    fn node_taints() {
        let n = json!({"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}, {"key": "b", "effect": "Sometimes"}, {"key": "a", "effect": "NoSchedule"}]}});
        let errs = taints(&n);
        assert_eq!(fields(&errs), ["spec.taints[1].effect", "spec.taints[2]"]);
        assert_eq!(errs[0].message, "Unsupported value: \"Sometimes\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"");
        assert!(errs[1]
            .message
            .ends_with("taints must be unique by key and effect pair"));
        assert_eq!(
            fields(&taints(
                &json!({"spec": {"taints": [{"effect": "NoSchedule"}]}})
            )),
            ["spec.taints[0].key", "spec.taints[0].key"]
        );
    }

    #[test]
    fn pod_tolerations() {
        let check = |t: Value| {
            let mut errs = Vec::new();
            tolerations(&mut errs, &json!({"tolerations": [t]}), "spec");
            errs
        };
        assert_eq!(
            check(json!({"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"})),
            []
        );
        assert_eq!(check(json!({"operator": "Exists"})), []);
        assert_eq!(
            fields(&check(json!({"value": "v"}))),
            ["spec.tolerations[0].operator"]
        );
        assert_eq!(
            fields(&check(json!({"key": "k", "operator": "Maybe"}))),
            ["spec.tolerations[0].operator"]
        );
        assert_eq!(
            fields(&check(
                json!({"key": "k", "tolerationSeconds": 5, "effect": "NoSchedule"})
            )),
            ["spec.tolerations[0].effect"]
        );
    }
}
