//! Unknown fields in JSON bodies, found with the same field table the protobuf decoder uses.
//! Upstream decodes into typed structs, so fields it does not know never reach storage; with
//! `fieldValidation=Strict` (kubectl's default) they are a 400, otherwise a warning.

use serde_json::Value;

use super::{message_name, schema};

/// Removes fields `group/version/kind` does not have from `obj`; returns their paths
/// (`spec.template.spec.containers[0].imagee`), in document order.
pub fn prune_unknown(obj: &mut Value, group: &str, version: &str, kind: &str) -> Vec<String> {
    let mut unknown = Vec::new();
    let name = message_name(group, version, kind);
    if schema().is_ok_and(|s| s.contains_key(&name)) {
        walk(obj, &name, "", true, &mut unknown);
    }
    unknown
}

fn is_opaque(message: &str) -> bool {
    let short = message.rsplit('.').next().unwrap_or("");
    message.starts_with("apimachinery/")
        && matches!(
            short,
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
fn find_field<'a>(fields: &'a [super::FieldRow], key: &str) -> Option<&'a super::FieldRow> {
    if let Some(f) = fields.iter().find(|f| f.1 == key && f.4 != "inline") {
        return Some(f);
    }
    let schema = schema().ok()?;
    fields
        .iter()
        .filter(|f| f.4 == "inline")
        .find_map(|f| schema.get(&f.3).and_then(|inner| find_field(inner, key)))
}

fn walk(v: &mut Value, message: &str, path: &str, top: bool, unknown: &mut Vec<String>) {
    if is_opaque(message) {
        return;
    }
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
            unknown.push(join(path, &key));
            continue;
        };
        let (kind, msg, card) = (f.2.as_str(), f.3.as_str(), f.4.as_str());
        let child_path = join(path, &key);
        let Some(child) = map.get_mut(&key) else {
            continue;
        };
        match (card, kind) {
            ("repeated", "message") => {
                for (i, item) in child.as_array_mut().into_iter().flatten().enumerate() {
                    walk(item, msg, &format!("{child_path}[{i}]"), false, unknown);
                }
            }
            ("map", "map:message") => {
                for (k, item) in child.as_object_mut().into_iter().flatten() {
                    walk(item, msg, &format!("{child_path}.{k}"), false, unknown);
                }
            }
            (_, "message") => walk(child, msg, &child_path, false, unknown),
            _ => {}
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
        assert!(prune_unknown(&mut pv, "", "v1", "PersistentVolume").is_empty());
        let mut pod = json!({"spec": {"volumes": [{"name": "v", "configMap": {"name": "c"}}],
            "containers": [{"name": "c", "livenessProbe": {"httpGet": {"port": 80}}}]}});
        assert!(prune_unknown(&mut pod, "", "v1", "Pod").is_empty());
    }

    #[test]
    fn finds_and_prunes_nested_unknown_fields() {
        let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "labels": {"x": "y"}},
            "specc": 1,
            "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "c", "image": "i", "imagee": "j",
                "resources": {"limits": {"cpu": "1"}}}]}}}});
        let mut unknown = prune_unknown(&mut d, "apps", "v1", "Deployment");
        unknown.sort();
        assert_eq!(
            unknown,
            vec!["spec.template.spec.containers[0].imagee", "specc"]
        );
        assert!(d.get("specc").is_none());
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"],
            "1"
        );
        assert_eq!(d["metadata"]["labels"]["x"], "y");
    }
}
