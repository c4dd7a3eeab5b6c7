//! `x-kubernetes-validations`: CEL rules of a CRD's schema, compiled once per established
//! version with the `kube-cel` crate (upstream's Kubernetes CEL libraries), evaluated on every
//! write with `self` (and `oldSelf` on update, for transition rules), and reported as upstream's
//! field errors: `spec: Invalid value: "object": <message>`, or Forbidden/Required/Duplicate when
//! the rule names that `reason`.

use std::sync::Arc;

use kube_cel::cel::Program;
use kube_cel::{CompiledSchema, ErrorKind};
use serde_json::Value;

use crate::kinds::Cause;
use crate::status::cause;

/// The compiled rules of one schema.
pub struct Rules {
    compiled: Arc<CompiledSchema>,
}

fn has_rules(schema: &Value) -> bool {
    match schema {
        Value::Object(m) => {
            m.get("x-kubernetes-validations")
                .and_then(Value::as_array)
                .is_some_and(|r| !r.is_empty())
                || m.values().any(has_rules)
        }
        Value::Array(a) => a.iter().any(has_rules),
        _ => false,
    }
}

impl Rules {
    /// None when the schema has no rules (nothing to evaluate).
    pub fn compile(schema: &Value) -> Option<Rules> {
        has_rules(schema).then(|| Rules {
            compiled: Arc::new(kube_cel::compile_schema(schema)),
        })
    }

    /// Evaluates every rule; `old` (the stored object) binds `oldSelf` where it has the field.
    pub fn validate(&self, schema: &Value, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let Err(errors) = kube_cel::validate_compiled(&self.compiled, obj, old) else {
            return Vec::new();
        };
        errors
            .into_iter()
            .map(|e| {
                let field = e.field_path.clone();
                let message = match e.kind {
                    ErrorKind::ValidationFailure => e.message.clone(),
                    _ => e.message.clone(),
                };
                match e.reason.as_deref() {
                    Some("FieldValueForbidden") => cause(
                        "FieldValueForbidden",
                        &field,
                        format!("Forbidden: {message}"),
                    ),
                    Some("FieldValueRequired") => cause(
                        "FieldValueRequired",
                        &field,
                        format!("Required value: {message}"),
                    ),
                    Some("FieldValueDuplicate") => cause(
                        "FieldValueDuplicate",
                        &field,
                        format!("Duplicate value: {}", quote(&message)),
                    ),
                    _ => cause(
                        "FieldValueInvalid",
                        &field,
                        format!("Invalid value: \"{}\": {message}", type_at(schema, &field)),
                    ),
                }
            })
            .collect()
    }
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// The schema type of the node at `spec.items[0].name` (what upstream shows as the value).
fn type_at(schema: &Value, path: &str) -> String {
    let mut node = schema;
    for segment in path.split('.').filter(|s| !s.is_empty()) {
        let (name, indexes) = match segment.find('[') {
            Some(i) => (&segment[..i], segment[i..].matches('[').count()),
            None => (segment, 0),
        };
        if !name.is_empty() {
            node = match node["properties"].get(name) {
                Some(n) => n,
                None => &node["additionalProperties"],
            };
        }
        for _ in 0..indexes {
            node = &node["items"];
        }
    }
    match node["type"].as_str() {
        Some(t) => t.to_string(),
        None if node["x-kubernetes-int-or-string"] == true => "string".into(),
        None => "object".into(),
    }
}

/// At CRD validation: every rule (and messageExpression) must compile, as upstream refuses
/// CRDs whose rules do not.
pub fn check_rules(schema: &Value, path: &str, out: &mut Vec<Cause>) {
    for (i, rule) in schema["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let p = format!("{path}.x-kubernetes-validations[{i}]");
        let text = rule["rule"].as_str().unwrap_or("");
        if text.is_empty() {
            out.push(cause(
                "FieldValueRequired",
                &format!("{p}.rule"),
                "Required value".into(),
            ));
            continue;
        }
        let shown = format!(
            "apiextensions.ValidationRule{{Rule:{}, Message:{}, MessageExpression:{}, Reason:(*apiextensions.FieldValueErrorReason)(nil), FieldPath:{}, OptionalOldSelf:(*bool)(nil)}}",
            quote(text),
            quote(rule["message"].as_str().unwrap_or("")),
            quote(rule["messageExpression"].as_str().unwrap_or("")),
            quote(rule["fieldPath"].as_str().unwrap_or("")),
        );
        if let Err(e) = Program::compile(text) {
            out.push(cause(
                "FieldValueInvalid",
                &format!("{p}.rule"),
                format!("Invalid value: {shown}: compilation failed: {e}"),
            ));
        }
        if let Some(me) = rule["messageExpression"].as_str().filter(|m| !m.is_empty()) {
            if let Err(e) = Program::compile(me) {
                out.push(cause(
                    "FieldValueInvalid",
                    &format!("{p}.messageExpression"),
                    format!(
                        "Invalid value: {}: messageExpression compilation failed: {e}",
                        quote(me)
                    ),
                ));
            }
        }
        if let Some(reason) = rule["reason"].as_str() {
            const REASONS: &[&str] = &[
                "FieldValueInvalid",
                "FieldValueForbidden",
                "FieldValueRequired",
                "FieldValueDuplicate",
            ];
            if !REASONS.contains(&reason) {
                let list: Vec<String> = REASONS.iter().map(|r| quote(r)).collect();
                out.push(cause(
                    "FieldValueNotSupported",
                    &format!("{p}.reason"),
                    format!(
                        "Unsupported value: {}: supported values: {}",
                        quote(reason),
                        list.join(", ")
                    ),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {"spec": {"type": "object",
            "x-kubernetes-validations": [
                {"rule": "self.replicas <= self.max", "message": "replicas must not exceed max"},
                {"rule": "self.replicas >= oldSelf.replicas", "messageExpression": "'cannot shrink from ' + string(oldSelf.replicas)"},
                {"rule": "self.name == oldSelf.name", "message": "name is immutable", "reason": "FieldValueForbidden", "fieldPath": ".name"},
            ],
            "properties": {"replicas": {"type": "integer"}, "max": {"type": "integer"}, "name": {"type": "string"}}}}})
    }

    fn run(obj: Value, old: Option<Value>) -> Vec<String> {
        let s = schema();
        Rules::compile(&s)
            .expect("rules")
            .validate(&s, &obj, old.as_ref())
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn rules_messages_and_transitions() {
        assert_eq!(
            run(
                json!({"spec": {"replicas": 5, "max": 3, "name": "a"}}),
                None
            ),
            [r#"spec: Invalid value: "object": replicas must not exceed max"#]
        );
        assert_eq!(
            run(
                json!({"spec": {"replicas": 1, "max": 3, "name": "b"}}),
                Some(json!({"spec": {"replicas": 2, "max": 3, "name": "a"}}))
            ),
            [
                r#"spec: Invalid value: "object": cannot shrink from 2"#,
                "spec.name: Forbidden: name is immutable"
            ]
        );
        assert!(run(
            json!({"spec": {"replicas": 1, "max": 3, "name": "a"}}),
            None
        )
        .is_empty());
    }

    #[test]
    fn compile_errors_are_reported() {
        let mut out = Vec::new();
        check_rules(
            &json!({"x-kubernetes-validations": [{"rule": "self.replicas >"}]}),
            "spec.versions[0].schema.openAPIV3Schema",
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert!(
            out[0].message.contains("compilation failed"),
            "{:?}",
            out[0]
        );
    }
}
