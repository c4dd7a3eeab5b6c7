//! The Swagger 2.0 form of the generated schemas, for `/openapi/v2`'s `definitions`.
//!
//! v2 differs from the v3 form in three places only: references point into `#/definitions/`, a
//! reference carries its description beside it (v3 wraps it in a one-element `allOf`), and
//! IntOrString/Quantity are plain strings (v3 lists the JSON types they accept).

use serde_json::{Map, Value};

use super::schemas::V3_PREFIX;

/// One v3 schema rewritten in v2 form.
pub fn schema(name: &str, v3: &Value) -> Value {
    let mut s = v3.clone();
    rewrite(&mut s);
    super::extensions::v2_scalar(name, &mut s);
    s
}

/// All of `schemas` in v2 form.
pub fn definitions(schemas: &Map<String, Value>) -> Map<String, Value> {
    schemas
        .iter()
        .map(|(name, s)| (name.clone(), schema(name, s)))
        .collect()
}

fn rewrite(v: &mut Value) {
    match v {
        Value::Object(m) => {
            unwrap_single_all_of(m);
            m.remove("nullable");
            if let Some(Value::String(r)) = m.get_mut("$ref") {
                if let Some(name) = r.strip_prefix(V3_PREFIX) {
                    *r = format!("#/definitions/{name}");
                }
            }
            m.values_mut().for_each(rewrite);
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite),
        _ => {}
    }
}

/// `{allOf: [{$ref}], description}` → `{$ref, description}`.
fn unwrap_single_all_of(m: &mut Map<String, Value>) {
    let single = matches!(m.get("allOf"), Some(Value::Array(a)) if a.len() == 1 && a[0].get("$ref").is_some());
    if !single {
        return;
    }
    if let Some(Value::Array(mut a)) = m.remove("allOf") {
        if let Some(Value::Object(inner)) = a.pop() {
            m.extend(inner);
        }
    }
}
