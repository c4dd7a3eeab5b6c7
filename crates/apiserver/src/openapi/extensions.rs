//! Upstream's Kubernetes extensions on the generated schemas. The API types' schemas carry names,
//! types and descriptions but (mostly) not the merge semantics; those facts are the ones krust
//! already derived from upstream's OpenAPI for strategic merge patch (`patch_keys.json`) and
//! server-side apply (`types.json`), so the published document and the server's own behaviour
//! cannot disagree.

use serde_json::{json, Map, Value};

const PATCH_KEYS: &str = include_str!("../strategic/patch_keys.json");
const APPLY_TYPES: &str = include_str!("../apply/types.json");

const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";

/// Adds the patch, list/map and scalar-format extensions to `schemas` (v3 form).
pub fn add(schemas: &mut Map<String, Value>) {
    if let Ok(table) = serde_json::from_str::<Value>(PATCH_KEYS) {
        patch_strategies(schemas, &table["definitions"]);
    }
    if let Ok(table) = serde_json::from_str::<Value>(APPLY_TYPES) {
        list_and_map_types(schemas, &table["definitions"]);
    }
    scalar_formats(schemas);
}

fn property<'a>(
    schemas: &'a mut Map<String, Value>,
    def: &str,
    field: &str,
) -> Option<&'a mut Map<String, Value>> {
    schemas
        .get_mut(def)?
        .get_mut("properties")?
        .get_mut(field)?
        .as_object_mut()
}

/// `x-kubernetes-patch-strategy` and `x-kubernetes-patch-merge-key`, which `kubectl apply` reads
/// to compute a strategic merge patch.
fn patch_strategies(schemas: &mut Map<String, Value>, facts: &Value) {
    let Some(defs) = facts.as_object() else {
        return;
    };
    for (def, fields) in defs {
        for (field, fact) in fields.as_object().into_iter().flatten() {
            let Some(prop) = property(schemas, def, field) else {
                continue;
            };
            if let Some(s) = fact.get("strategy") {
                prop.insert("x-kubernetes-patch-strategy".into(), s.clone());
            }
            if let Some(k) = fact.get("key") {
                prop.insert("x-kubernetes-patch-merge-key".into(), k.clone());
            }
        }
    }
}

/// `x-kubernetes-list-type` / `x-kubernetes-list-map-keys` / `x-kubernetes-map-type`, as
/// server-side apply treats each field.
fn list_and_map_types(schemas: &mut Map<String, Value>, facts: &Value) {
    let Some(defs) = facts.as_object() else {
        return;
    };
    for (def, fact) in defs {
        if fact.get("atomic") == Some(&Value::Bool(true)) {
            if let Some(s) = schemas.get_mut(def).and_then(Value::as_object_mut) {
                s.insert("x-kubernetes-map-type".into(), json!("atomic"));
            }
        }
        for (field, ty) in fact
            .get("fields")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let Some(prop) = property(schemas, def, field) else {
                continue;
            };
            if let Some(list_type) = ty.get("type").filter(|_| ty.get("list").is_some()) {
                prop.insert("x-kubernetes-list-type".into(), list_type.clone());
                if let Some(keys) = ty.get("keys") {
                    prop.insert("x-kubernetes-list-map-keys".into(), keys.clone());
                }
            }
            // An atomic map of values, or a struct field marked atomic/granular.
            if ty.get("map").is_some() || ty.get("ref").is_some() {
                if let Some(atomic) = ty.get("atomic").and_then(Value::as_bool) {
                    let t = if atomic { "atomic" } else { "granular" };
                    prop.insert("x-kubernetes-map-type".into(), json!(t));
                }
            }
        }
    }
}

/// IntOrString and Quantity as upstream's v3 document writes them (one of the JSON types they
/// accept); v2 flattens them to strings (see `v2.rs`).
fn scalar_formats(schemas: &mut Map<String, Value>) {
    if let Some(s) = schemas
        .get_mut(INT_OR_STRING)
        .and_then(Value::as_object_mut)
    {
        s.insert("format".into(), json!("int-or-string"));
        s.insert(
            "oneOf".into(),
            json!([{"type": "integer"}, {"type": "string"}]),
        );
        s.insert("x-kubernetes-int-or-string".into(), json!(true));
    }
    if let Some(s) = schemas.get_mut(QUANTITY).and_then(Value::as_object_mut) {
        s.insert(
            "oneOf".into(),
            json!([{"type": "string"}, {"type": "number"}]),
        );
        s.insert("x-kubernetes-int-or-string".into(), json!(true));
    }
}

/// The v2 (Swagger 2.0) form of the two scalar types: strings, with IntOrString's format.
pub fn v2_scalar(name: &str, schema: &mut Value) {
    let Some(s) = schema.as_object_mut() else {
        return;
    };
    if name == INT_OR_STRING || name == QUANTITY {
        s.remove("oneOf");
        s.insert("type".into(), json!("string"));
    }
}
