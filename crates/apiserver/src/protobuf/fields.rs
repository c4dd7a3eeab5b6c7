//! JSON bodies checked against the same field table the protobuf decoder uses. Upstream decodes
//! into typed structs: fields it does not know never reach storage (with `fieldValidation=Strict`,
//! kubectl's default, they are a 400, otherwise a warning), and a value of the wrong JSON type is
//! a 400 whatever the validation mode. Checking types here also means nothing later ever finds a
//! string where an object belongs.

use serde_json::Value;

use super::{message_name, schema, FieldRow};

/// What a body holds that its kind does not allow.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Findings {
    /// Paths of fields the kind does not have (removed from the object), e.g.
    /// `spec.template.spec.containers[0].imagee`.
    pub unknown: Vec<String>,
    /// The first value of the wrong JSON type, in Go's words: `cannot unmarshal string into Go
    /// struct field PodSpec.spec.containers of type []v1.Container`.
    pub mistyped: Option<String>,
}

/// Checks `obj` against `group/version/kind`, removing unknown fields.
pub fn check(obj: &mut Value, group: &str, version: &str, kind: &str) -> Findings {
    let mut findings = Findings::default();
    let name = message_name(group, version, kind);
    if schema().is_ok_and(|s| s.contains_key(&name)) {
        walk(obj, &name, "", true, &mut findings);
    }
    findings
}

fn short(message: &str) -> &str {
    message.rsplit('.').next().unwrap_or("")
}

fn is_opaque(message: &str) -> bool {
    message.starts_with("apimachinery/")
        && matches!(
            short(message),
            "Time"
                | "MicroTime"
                | "Quantity"
                | "IntOrString"
                | "RawExtension"
                | "FieldsV1"
                | "Duration"
        )
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The field a JSON key names, looking through inline (embedded) messages too.
fn find_field<'a>(fields: &'a [FieldRow], key: &str) -> Option<&'a FieldRow> {
    if let Some(f) = fields.iter().find(|f| f.1 == key && f.4 != "inline") {
        return Some(f);
    }
    let schema = schema().ok()?;
    fields
        .iter()
        .filter(|f| f.4 == "inline")
        .find_map(|f| schema.get(&f.3).and_then(|inner| find_field(inner, key)))
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        Value::Null => "null",
    }
}

/// Whether `v` may hold a single value of `kind` (`msg` for messages); null always may.
fn fits(v: &Value, kind: &str, msg: &str) -> bool {
    match (kind, v) {
        (_, Value::Null) => true,
        ("string" | "bytes", Value::String(_)) => true,
        ("int32" | "int64", Value::Number(n)) => n.is_i64() || n.is_u64(),
        ("double" | "float", Value::Number(_)) => true,
        ("bool", Value::Bool(_)) => true,
        ("message", v) if is_opaque(msg) => match short(msg) {
            "Quantity" | "IntOrString" => matches!(v, Value::String(_) | Value::Number(_)),
            "Time" | "MicroTime" | "Duration" => v.is_string(),
            _ => true,
        },
        ("message", Value::Object(_)) => true,
        _ => false,
    }
}

/// Go's name of the expected type, for the error message.
fn go_type(kind: &str, msg: &str, card: &str) -> String {
    let single = match kind {
        "message" => format!("v1.{}", short(msg)),
        "bytes" => "[]uint8".into(),
        k if k.starts_with("map:") => format!(
            "map[string]{}",
            if msg.is_empty() {
                "string".into()
            } else {
                format!("v1.{}", short(msg))
            }
        ),
        k => k.to_string(),
    };
    match card {
        "repeated" => format!("[]{single}"),
        _ => single,
    }
}

fn walk(v: &mut Value, message: &str, path: &str, top: bool, out: &mut Findings) {
    let (Some(map), Ok(schema)) = (v.as_object_mut(), schema()) else {
        return;
    };
    let Some(fields) = schema.get(message) else {
        return;
    };
    let keys: Vec<String> = map.keys().cloned().collect();
    for key in keys {
        if top && (key == "apiVersion" || key == "kind") {
            continue;
        }
        let Some(f) = find_field(fields, &key) else {
            map.remove(&key);
            out.unknown.push(join(path, &key));
            continue;
        };
        let child_path = join(path, &key);
        if let Some(child) = map.get_mut(&key) {
            check_value(child, f, message, &child_path, out);
        }
    }
}

fn mistyped(out: &mut Findings, got: &Value, message: &str, path: &str, f: &FieldRow) {
    if out.mistyped.is_none() {
        out.mistyped = Some(format!(
            "cannot unmarshal {} into Go struct field {}.{path} of type {}",
            json_type(got),
            short(message),
            go_type(&f.2, &f.3, &f.4)
        ));
    }
}

fn check_value(child: &mut Value, f: &FieldRow, message: &str, path: &str, out: &mut Findings) {
    let (kind, msg, card) = (f.2.as_str(), f.3.as_str(), f.4.as_str());
    match card {
        "repeated" => match child {
            Value::Null => {}
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    if !fits(item, kind, msg) {
                        return mistyped(out, item, message, path, f);
                    }
                    if kind == "message" && !is_opaque(msg) {
                        walk(item, msg, &format!("{path}[{i}]"), false, out);
                    }
                }
            }
            other => mistyped(out, other, message, path, f),
        },
        "map" => match child {
            Value::Null => {}
            Value::Object(entries) => {
                let value_kind = kind.trim_start_matches("map:");
                for (k, item) in entries.iter_mut() {
                    if !fits(item, value_kind, msg) {
                        return mistyped(out, item, message, path, f);
                    }
                    if value_kind == "message" && !is_opaque(msg) {
                        walk(item, msg, &format!("{path}.{k}"), false, out);
                    }
                }
            }
            other => mistyped(out, other, message, path, f),
        },
        _ => {
            if !fits(child, kind, msg) {
                return mistyped(out, child, message, path, f);
            }
            if kind == "message" && !is_opaque(msg) {
                walk(child, msg, path, false, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn inline_fields_are_known() {
        let mut pv = json!({"metadata": {"name": "pv"}, "spec": {"hostPath": {"path": "/x"}, "capacity": {"storage": "1Gi"}}});
        assert_eq!(
            check(&mut pv, "", "v1", "PersistentVolume"),
            Findings::default()
        );
        let mut pod = json!({"spec": {"volumes": [{"name": "v", "configMap": {"name": "c"}}],
            "containers": [{"name": "c", "livenessProbe": {"httpGet": {"port": 80}}}]}});
        assert_eq!(check(&mut pod, "", "v1", "Pod"), Findings::default());
    }

    #[test]
    fn finds_and_prunes_nested_unknown_fields() {
        let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "labels": {"x": "y"}},
            "specc": 1,
            "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "c", "image": "i", "imagee": "j",
                "resources": {"limits": {"cpu": "1"}}}]}}}});
        let mut f = check(&mut d, "apps", "v1", "Deployment");
        f.unknown.sort();
        assert_eq!(
            f.unknown,
            vec!["spec.template.spec.containers[0].imagee", "specc"]
        );
        assert!(f.mistyped.is_none());
        assert!(d.get("specc").is_none());
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"],
            "1"
        );
    }

    #[test]
    fn wrong_types_are_reported_like_go() {
        let mut svc = json!({"spec": "oops"});
        let f = check(&mut svc, "", "v1", "Service");
        assert_eq!(
            f.mistyped.as_deref(),
            Some(
                "cannot unmarshal string into Go struct field Service.spec of type v1.ServiceSpec"
            )
        );
        let mut svc = json!({"spec": {"ports": ["x"]}});
        assert!(check(&mut svc, "", "v1", "Service")
            .mistyped
            .unwrap()
            .contains("of type []v1.ServicePort"));
        let mut pod =
            json!({"spec": {"containers": [{"name": "c", "ports": [{"containerPort": "80"}]}]}});
        assert!(check(&mut pod, "", "v1", "Pod").mistyped.is_some());
        let mut cm = json!({"data": {"k": 1}});
        assert!(check(&mut cm, "", "v1", "ConfigMap").mistyped.is_some());
    }
}
