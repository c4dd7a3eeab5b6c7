//! A custom resource's structural OpenAPI v3 schema applied to its objects, as upstream's
//! apiextensions-apiserver does: pruning of unknown fields, defaulting, and validation with
//! upstream's field errors (kube-openapi's messages turned into `field.Error`s).
//!
//! Schemas stay `serde_json::Value`s: a CRD's `openAPIV3Schema` as stored, read where needed.

use serde_json::{Map, Value};

use crate::kinds::Cause;
use crate::status::cause;

fn flag(schema: &Value, name: &str) -> bool {
    schema[name] == true
}

fn props(schema: &Value) -> Option<&Map<String, Value>> {
    schema["properties"].as_object()
}

/// What a node of this schema keeps besides its declared properties.
fn preserves_unknown(schema: &Value) -> bool {
    flag(schema, "x-kubernetes-preserve-unknown-fields")
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// `apiVersion`, `kind` and `metadata` at an object's root (or of an embedded resource) are the
/// API machinery's, never the schema's to prune.
fn is_type_meta(key: &str) -> bool {
    matches!(key, "apiVersion" | "kind" | "metadata")
}

/// Removes fields the schema does not declare (upstream's structural pruning).
pub fn prune(schema: &Value, value: &mut Value, root: bool) {
    walk_unknown(schema, value, "", root, &mut |_| {}, true);
}

/// Lists the fields pruning would remove, as `spec.foo` paths.
pub fn unknown(schema: &Value, value: &Value, path: &str, root: bool, out: &mut Vec<String>) {
    let mut copy = value.clone();
    walk_unknown(schema, &mut copy, path, root, &mut |p| out.push(p), false);
}

fn walk_unknown(
    schema: &Value,
    value: &mut Value,
    path: &str,
    root: bool,
    found: &mut dyn FnMut(String),
    remove: bool,
) {
    match value {
        Value::Object(map) => {
            let embedded = root || flag(schema, "x-kubernetes-embedded-resource");
            let declared = props(schema);
            let additional = schema["additionalProperties"]
                .as_object()
                .map(|_| &schema["additionalProperties"]);
            let keep_all = preserves_unknown(schema)
                || schema["additionalProperties"] == true
                || additional.is_some();
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                if embedded && is_type_meta(&key) {
                    if key == "metadata" && !root {
                        // An embedded object's metadata is ObjectMeta: its own shape, kept.
                    }
                    continue;
                }
                let child_path = join(path, &key);
                let child_schema = declared.and_then(|d| d.get(&key)).or(additional);
                match child_schema {
                    Some(cs) => {
                        if let Some(child) = map.get_mut(&key) {
                            walk_unknown(cs, child, &child_path, false, found, remove);
                        }
                    }
                    None if keep_all => {}
                    None => {
                        found(child_path);
                        if remove {
                            map.remove(&key);
                        }
                    }
                }
            }
        }
        Value::Array(items) if schema["items"].is_object() => {
            for (i, item) in items.iter_mut().enumerate() {
                walk_unknown(
                    &schema["items"],
                    item,
                    &format!("{path}[{i}]"),
                    false,
                    found,
                    remove,
                );
            }
        }
        _ => {}
    }
}

/// Fills in the schema's `default`s for absent fields (and for nulls where null is not allowed),
/// as upstream's structural defaulting.
pub fn default(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(declared) = props(schema) {
                for (key, cs) in declared {
                    let Some(d) = cs.get("default") else {
                        continue;
                    };
                    let missing = match map.get(key) {
                        None => true,
                        Some(Value::Null) => !flag(cs, "nullable"),
                        Some(_) => false,
                    };
                    if missing {
                        map.insert(key.clone(), d.clone());
                    }
                }
                for (key, child) in map.iter_mut() {
                    if let Some(cs) = declared.get(key) {
                        default(cs, child);
                    }
                }
            }
            if schema["additionalProperties"].is_object() {
                let cs = &schema["additionalProperties"];
                let declared = props(schema);
                for (key, child) in map.iter_mut() {
                    if declared.is_none_or(|d| !d.contains_key(key)) {
                        default(cs, child);
                    }
                }
            }
        }
        Value::Array(items) if schema["items"].is_object() => {
            for item in items.iter_mut() {
                if item.is_null() && !flag(&schema["items"], "nullable") {
                    if let Some(d) = schema["items"].get("default") {
                        *item = d.clone();
                    }
                }
                default(&schema["items"], item);
            }
        }
        _ => {}
    }
}

/// The JSON type name go-openapi reports for a value.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn is_integer(v: &Value) -> bool {
    match v {
        Value::Number(n) => {
            n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        _ => false,
    }
}

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => is_integer(v),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        _ => true,
    }
}

/// A value as Go's `%v`/`%q` prints it in a field error.
pub fn go_value(v: &Value) -> String {
    match v {
        Value::String(s) => serde_json::to_string(s).unwrap_or_default(),
        Value::Number(n) => go_number(n),
        Value::Bool(b) => b.to_string(),
        Value::Null => "\"null\"".into(),
        Value::Array(_) => format!("[]interface {{}}{{{}}}", go_items(v)),
        Value::Object(m) => format!(
            "map[string]interface {{}}{{{}}}",
            m.iter()
                .map(|(k, v)| format!(
                    "{}:{}",
                    serde_json::to_string(k).unwrap_or_default(),
                    go_value(v)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn go_items(v: &Value) -> String {
    v.as_array()
        .into_iter()
        .flatten()
        .map(go_value)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A JSON number as Go's `%v` prints the float64 or int64 it decodes to.
pub fn go_number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    let f = n.as_f64().unwrap_or(0.0);
    if f.fract() == 0.0 && f.abs() < 1e21 {
        format!("{f:.0}")
    } else {
        f.to_string()
    }
}

fn invalid(field: &str, value: &str, detail: &str) -> Cause {
    cause(
        "FieldValueInvalid",
        field,
        format!("Invalid value: {value}: {detail}"),
    )
}

/// The path kube-openapi names in its messages; the root is `body`-relative and unnamed.
fn in_body(path: &str) -> String {
    if path.is_empty() {
        "body".to_string()
    } else {
        format!("{path} in body")
    }
}

/// Validates `obj` against its CRD version's schema; returns whether a type error was among the
/// causes (upstream then skips the CEL rules, which would only fail on the same values).
pub fn validate(schema: &Value, obj: &Value, out: &mut Vec<Cause>) -> bool {
    let mut v = Validator {
        out,
        type_error: false,
    };
    v.node(schema, obj, "", true);
    v.type_error
}

struct Validator<'a> {
    out: &'a mut Vec<Cause>,
    type_error: bool,
}

impl Validator<'_> {
    fn node(&mut self, schema: &Value, value: &Value, path: &str, root: bool) {
        if value.is_null() {
            if flag(schema, "nullable") || schema.get("type").is_none() {
                return;
            }
            self.type_fail(path, schema["type"].as_str().unwrap_or(""), value);
            return;
        }
        if flag(schema, "x-kubernetes-int-or-string") {
            if !(is_integer(value) || value.is_string()) {
                self.type_fail(path, "integer,string", value);
                return;
            }
        } else if let Some(t) = schema["type"].as_str() {
            if !type_matches(t, value) {
                self.type_fail(path, t, value);
                return;
            }
        }
        self.enumeration(schema, value, path);
        match value {
            Value::String(s) => self.string(schema, s, path),
            Value::Number(n) => self.number(schema, n, path),
            Value::Array(items) => self.array(schema, items, path),
            Value::Object(map) => self.object(schema, map, path, root),
            _ => {}
        }
        self.combinators(schema, value, path);
    }

    fn type_fail(&mut self, path: &str, want: &str, value: &Value) {
        self.type_error = true;
        let have = type_name(value);
        self.out.push(invalid(
            path,
            &format!("\"{have}\""),
            &format!("{} must be of type {want}: \"{have}\"", in_body(path)),
        ));
    }

    fn enumeration(&mut self, schema: &Value, value: &Value, path: &str) {
        let Some(allowed) = schema["enum"].as_array() else {
            return;
        };
        if allowed.iter().any(|a| a == value) {
            return;
        }
        let listed: Vec<String> = allowed
            .iter()
            .map(|a| match a {
                Value::String(s) => serde_json::to_string(s).unwrap_or_default(),
                other => serde_json::to_string(&other.to_string()).unwrap_or_default(),
            })
            .collect();
        self.out.push(cause(
            "FieldValueNotSupported",
            path,
            format!(
                "Unsupported value: {}: supported values: {}",
                go_value(value),
                listed.join(", ")
            ),
        ));
    }

    fn string(&mut self, schema: &Value, s: &str, path: &str) {
        let len = s.chars().count() as u64;
        if let Some(max) = schema["maxLength"].as_u64() {
            if len > max {
                self.out.push(cause(
                    "FieldValueTooLong",
                    path,
                    format!("Too long: may not be more than {max} bytes"),
                ));
            }
        }
        if let Some(min) = schema["minLength"].as_u64() {
            if len < min {
                self.out.push(invalid(
                    path,
                    &go_value(&Value::String(s.into())),
                    &format!("{} should be at least {min} chars long", in_body(path)),
                ));
            }
        }
        if let Some(p) = schema["pattern"].as_str() {
            if let Ok(re) = regex::Regex::new(p) {
                if !re.is_match(s) {
                    self.out.push(invalid(
                        path,
                        &go_value(&Value::String(s.into())),
                        &format!("{} should match '{p}'", in_body(path)),
                    ));
                }
            }
        }
        if let Some(f) = schema["format"].as_str() {
            if !super::definition::format_ok(f, s) {
                self.out.push(invalid(
                    path,
                    &go_value(&Value::String(s.into())),
                    &format!(
                        "{} must be of type {f}: {}",
                        in_body(path),
                        go_value(&Value::String(s.into()))
                    ),
                ));
            }
        }
    }

    fn number(&mut self, schema: &Value, n: &serde_json::Number, path: &str) {
        let x = n.as_f64().unwrap_or(0.0);
        let shown = go_number(n);
        let bound = |v: &Value| v.as_number().map(go_number).unwrap_or_default();
        if let Some(max) = schema["maximum"].as_f64() {
            let exclusive = flag(schema, "exclusiveMaximum");
            if (exclusive && x >= max) || (!exclusive && x > max) {
                let rel = if exclusive {
                    "less than"
                } else {
                    "less than or equal to"
                };
                self.out.push(invalid(
                    path,
                    &shown,
                    &format!(
                        "{} should be {rel} {}",
                        in_body(path),
                        bound(&schema["maximum"])
                    ),
                ));
            }
        }
        if let Some(min) = schema["minimum"].as_f64() {
            let exclusive = flag(schema, "exclusiveMinimum");
            if (exclusive && x <= min) || (!exclusive && x < min) {
                let rel = if exclusive {
                    "greater than"
                } else {
                    "greater than or equal to"
                };
                self.out.push(invalid(
                    path,
                    &shown,
                    &format!(
                        "{} should be {rel} {}",
                        in_body(path),
                        bound(&schema["minimum"])
                    ),
                ));
            }
        }
        if let Some(m) = schema["multipleOf"].as_f64().filter(|m| *m > 0.0) {
            let q = x / m;
            if (q - q.round()).abs() > 1e-9 {
                self.out.push(invalid(
                    path,
                    &shown,
                    &format!(
                        "{} should be a multiple of {}",
                        in_body(path),
                        bound(&schema["multipleOf"])
                    ),
                ));
            }
        }
    }

    /// `maxItems` / `maxProperties`: upstream words both as "items".
    fn too_many(&mut self, schema: &Value, key: &str, n: u64, path: &str) {
        if let Some(max) = schema[key].as_u64().filter(|max| n > *max) {
            self.out.push(cause(
                "FieldValueTooMany",
                path,
                format!("Too many: {n}: must have at most {max} items"),
            ));
        }
    }

    fn array(&mut self, schema: &Value, items: &[Value], path: &str) {
        let n = items.len() as u64;
        self.too_many(schema, "maxItems", n, path);
        if let Some(min) = schema["minItems"].as_u64() {
            if n < min {
                self.out.push(invalid(
                    path,
                    &format!(
                        "[]interface {{}}{{{}}}",
                        go_items(&Value::Array(items.to_vec()))
                    ),
                    &format!("{} should have at least {min} items", in_body(path)),
                ));
            }
        }
        match schema["x-kubernetes-list-type"].as_str() {
            Some("set") => {
                for (i, item) in items.iter().enumerate() {
                    if items[..i].contains(item) {
                        self.out.push(cause(
                            "FieldValueDuplicate",
                            &format!("{path}[{i}]"),
                            format!("Duplicate value: {}", go_value(item)),
                        ));
                    }
                }
            }
            Some("map") => {
                let keys: Vec<&str> = schema["x-kubernetes-list-map-keys"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let key_of = |item: &Value| -> Value {
                    let mut m = Map::new();
                    for k in &keys {
                        if let Some(v) = item.get(*k) {
                            m.insert((*k).to_string(), v.clone());
                        }
                    }
                    Value::Object(m)
                };
                for (i, item) in items.iter().enumerate() {
                    let key = key_of(item);
                    if items[..i].iter().any(|o| key_of(o) == key) {
                        self.out.push(cause(
                            "FieldValueDuplicate",
                            &format!("{path}[{i}]"),
                            format!("Duplicate value: {}", go_value(&key)),
                        ));
                    }
                }
            }
            _ => {}
        }
        if schema["items"].is_object() {
            for (i, item) in items.iter().enumerate() {
                self.node(&schema["items"], item, &format!("{path}[{i}]"), false);
            }
        }
    }

    fn object(&mut self, schema: &Value, map: &Map<String, Value>, path: &str, root: bool) {
        for req in schema["required"].as_array().into_iter().flatten() {
            if let Some(name) = req.as_str() {
                if !map.contains_key(name) {
                    self.out.push(cause(
                        "FieldValueRequired",
                        &join(path, name),
                        "Required value".into(),
                    ));
                }
            }
        }
        let n = map.len() as u64;
        self.too_many(schema, "maxProperties", n, path);
        if let Some(min) = schema["minProperties"].as_u64() {
            if n < min {
                self.out.push(invalid(
                    path,
                    "\"object\"",
                    &format!("{} should have at least {min} properties", in_body(path)),
                ));
            }
        }
        let embedded = flag(schema, "x-kubernetes-embedded-resource");
        if embedded {
            for k in ["apiVersion", "kind"] {
                if map.get(k).and_then(Value::as_str).is_none_or(str::is_empty) {
                    self.out.push(cause(
                        "FieldValueRequired",
                        &join(path, k),
                        "Required value: must not be empty".into(),
                    ));
                }
            }
        }
        let declared = props(schema);
        for (key, child) in map {
            if (root || embedded) && is_type_meta(key) {
                if key == "metadata" {
                    if let Some(cs) = declared.and_then(|d| d.get(key)) {
                        self.metadata(cs, child, &join(path, key));
                    }
                }
                continue;
            }
            let child_path = join(path, key);
            if let Some(cs) = declared.and_then(|d| d.get(key)) {
                self.node(cs, child, &child_path, false);
            } else if schema["additionalProperties"].is_object() {
                self.node(&schema["additionalProperties"], child, &child_path, false);
            }
        }
    }

    /// A root schema may only restrict metadata.name and metadata.generateName.
    fn metadata(&mut self, schema: &Value, meta: &Value, path: &str) {
        for field in ["name", "generateName"] {
            if let (Some(cs), Some(v)) = (schema["properties"].get(field), meta.get(field)) {
                self.node(cs, v, &join(path, field), false);
            }
        }
    }

    fn combinators(&mut self, schema: &Value, value: &Value, path: &str) {
        let passes = |s: &Value| {
            let mut scratch = Vec::new();
            let mut v = Validator {
                out: &mut scratch,
                type_error: false,
            };
            v.node(s, value, path, false);
            scratch.is_empty()
        };
        if let Some(all) = schema["allOf"].as_array() {
            for s in all {
                self.node(s, value, path, false);
            }
        }
        if let Some(any) = schema["anyOf"].as_array() {
            if !any.iter().any(passes) {
                self.out.push(invalid(
                    path,
                    &format!("\"{}\"", type_name(value)),
                    &format!(
                        "{} must validate at least one schema (anyOf)",
                        in_body(path)
                    ),
                ));
            }
        }
        if let Some(one) = schema["oneOf"].as_array() {
            if one.iter().filter(|s| passes(s)).count() != 1 {
                self.out.push(invalid(
                    path,
                    &format!("\"{}\"", type_name(value)),
                    &format!(
                        "{} must validate one and only one schema (oneOf)",
                        in_body(path)
                    ),
                ));
            }
        }
        if schema["not"].is_object() && passes(&schema["not"]) {
            self.out.push(invalid(
                path,
                &format!("\"{}\"", type_name(value)),
                &format!("{} must not validate the schema (not)", in_body(path)),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["size"], "properties": {
                "size": {"type": "integer", "minimum": 1, "maximum": 10},
                "color": {"type": "string", "enum": ["red", "blue"], "default": "red"},
                "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5},
                "port": {"x-kubernetes-int-or-string": true},
                "tags": {"type": "array", "x-kubernetes-list-type": "set", "maxItems": 3, "items": {"type": "string"}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "opt": {"type": "string", "nullable": true},
                "template": {"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true},
            }},
            "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
        }})
    }

    fn errors(obj: Value) -> Vec<String> {
        let mut out = Vec::new();
        validate(&schema(), &obj, &mut out);
        out.iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn type_errors_use_upstream_wording() {
        assert_eq!(
            errors(json!({"spec": {"size": "string"}})),
            [
                r#"spec.size: Invalid value: "string": spec.size in body must be of type integer: "string""#
            ]
        );
        assert_eq!(
            errors(json!({"spec": {"size": 3, "port": true}})),
            [
                r#"spec.port: Invalid value: "boolean": spec.port in body must be of type integer,string: "boolean""#
            ]
        );
    }

    #[test]
    fn value_checks() {
        let e = errors(
            json!({"spec": {"size": 0, "color": "green", "name": "ABCDEFG", "tags": ["a", "a"]}}),
        );
        assert!(e.contains(&"spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1".to_string()), "{e:?}");
        assert!(
            e.contains(
                &r#"spec.color: Unsupported value: "green": supported values: "red", "blue""#
                    .to_string()
            ),
            "{e:?}"
        );
        assert!(
            e.contains(&"spec.name: Too long: may not be more than 5 bytes".to_string()),
            "{e:?}"
        );
        assert!(e.contains(&r#"spec.name: Invalid value: "ABCDEFG": spec.name in body should match '^[a-z]+$'"#.to_string()), "{e:?}");
        assert!(
            e.contains(&r#"spec.tags[1]: Duplicate value: "a""#.to_string()),
            "{e:?}"
        );
        assert_eq!(errors(json!({"spec": {}})), ["spec.size: Required value"]);
        assert_eq!(
            errors(json!({"spec": {"size": 2, "opt": null, "port": "http"}})),
            Vec::<String>::new()
        );
        assert_eq!(
            errors(json!({"spec": {"size": 2, "template": {"metadata": {}}}})),
            [
                "spec.template.apiVersion: Required value: must not be empty",
                "spec.template.kind: Required value: must not be empty"
            ]
        );
    }

    #[test]
    fn prune_and_default() {
        let mut obj = json!({"apiVersion": "x/v1", "kind": "W", "metadata": {"name": "a"},
            "spec": {"size": 1, "extra": 1, "free": {"any": 1}, "labels": {"a": "b"}, "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}}},
            "other": true});
        let mut unknown_paths = Vec::new();
        unknown(&schema(), &obj, "", true, &mut unknown_paths);
        assert_eq!(unknown_paths, ["other", "spec.extra"]);
        prune(&schema(), &mut obj, true);
        default(&schema(), &mut obj);
        assert_eq!(
            obj,
            json!({"apiVersion": "x/v1", "kind": "W", "metadata": {"name": "a"},
            "spec": {"size": 1, "color": "red", "free": {"any": 1}, "labels": {"a": "b"}, "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}}}})
        );
    }
}
