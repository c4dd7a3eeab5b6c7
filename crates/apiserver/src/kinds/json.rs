//! Lenient accessors over `serde_json::Value` objects.
//!
//! Objects come from users, so any field may be missing or of the wrong type; every accessor here
//! answers with an empty/zero value instead of failing, which is what Go's zero values give
//! upstream's printers and validators.

use serde_json::{Map, Value};

static NULL: Value = Value::Null;

/// The value at a dotted path such as `spec.template.spec`, or `Null` if any step is missing.
pub fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    if path.is_empty() {
        return v;
    }
    path.split('.')
        .try_fold(v, |cur, key| cur.get(key))
        .unwrap_or(&NULL)
}

/// The string at `path`, or "" when missing or not a string.
pub fn str_at<'a>(v: &'a Value, path: &str) -> &'a str {
    at(v, path).as_str().unwrap_or_default()
}

/// The integer at `path`, or 0 when missing or not an integer.
pub fn int_at(v: &Value, path: &str) -> i64 {
    at(v, path).as_i64().unwrap_or_default()
}

/// The boolean at `path`, or false.
pub fn bool_at(v: &Value, path: &str) -> bool {
    at(v, path).as_bool().unwrap_or_default()
}

/// The array at `path`, or an empty slice.
pub fn arr_at<'a>(v: &'a Value, path: &str) -> &'a [Value] {
    at(v, path)
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The object at `path`, if it is one.
pub fn obj_at<'a>(v: &'a Value, path: &str) -> Option<&'a Map<String, Value>> {
    at(v, path).as_object()
}

/// Number of entries of the object or array at `path` (0 otherwise), as Go's `len()` of a map
/// or slice.
pub fn len_at(v: &Value, path: &str) -> usize {
    match at(v, path) {
        Value::Object(m) => m.len(),
        Value::Array(a) => a.len(),
        _ => 0,
    }
}

/// A mutable object at the dotted `path`, created (replacing non-objects) as needed. `None` only
/// if `v` itself is not an object.
pub fn obj_mut<'a>(v: &'a mut Value, path: &str) -> Option<&'a mut Map<String, Value>> {
    let mut cur = v;
    if !path.is_empty() {
        for key in path.split('.') {
            let map = cur.as_object_mut()?;
            let next = map.entry(key).or_insert_with(|| Value::Object(Map::new()));
            if !next.is_object() {
                *next = Value::Object(Map::new());
            }
            cur = next;
        }
    }
    cur.as_object_mut()
}

/// Sets `key` in `map` to `value` unless it already holds something other than null.
pub fn set_default(map: &mut Map<String, Value>, key: &str, value: Value) {
    let slot = map.entry(key).or_insert(Value::Null);
    if slot.is_null() {
        *slot = value;
    }
}

/// Sets `key` in `map` unless it holds a non-empty string (Go treats "" as unset).
pub fn set_default_str(map: &mut Map<String, Value>, key: &str, value: &str) {
    if map
        .get(key)
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        map.insert(key.to_string(), Value::String(value.to_string()));
    }
}

/// Calls `f` on every object element of the array at `key` in `map`.
pub fn each_obj_mut(
    map: &mut Map<String, Value>,
    key: &str,
    mut f: impl FnMut(&mut Map<String, Value>),
) {
    if let Some(Value::Array(items)) = map.get_mut(key) {
        items
            .iter_mut()
            .filter_map(Value::as_object_mut)
            .for_each(&mut f);
    }
}

/// A copy of the object `v` without the top-level `keys` (non-objects are copied as they are).
pub fn without(v: &Value, keys: &[&str]) -> Value {
    let mut copy = v.clone();
    if let Some(map) = copy.as_object_mut() {
        keys.iter().for_each(|k| {
            map.remove(*k);
        });
    }
    copy
}

/// A string-to-string map (labels, selectors) as sorted `(key, value)` pairs; non-string values
/// are skipped.
pub fn string_map(v: &Value) -> Vec<(&str, &str)> {
    let mut pairs: Vec<(&str, &str)> = v
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
                .collect()
        })
        .unwrap_or_default();
    pairs.sort_unstable();
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accessors_tolerate_missing_and_wrong_types() {
        let v = json!({"spec": {"n": 3, "s": "x", "a": [1], "b": true, "m": {"k": "v"}}, "odd": 5});
        assert_eq!(str_at(&v, "spec.s"), "x");
        assert_eq!(str_at(&v, "spec.n"), "");
        assert_eq!(int_at(&v, "spec.n"), 3);
        assert_eq!(int_at(&v, "odd.deeper"), 0);
        assert_eq!(arr_at(&v, "spec.a").len(), 1);
        assert!(arr_at(&v, "nope").is_empty());
        assert!(bool_at(&v, "spec.b"));
        assert_eq!(len_at(&v, "spec.m"), 1);
        assert_eq!(string_map(at(&v, "spec.m")), vec![("k", "v")]);
    }

    #[test]
    fn obj_mut_creates_and_set_default_keeps_existing() {
        let mut v = json!({"spec": 7});
        let m = obj_mut(&mut v, "spec.strategy").unwrap();
        set_default(m, "type", json!("RollingUpdate"));
        set_default(m, "type", json!("Recreate"));
        set_default_str(m, "empty", "");
        set_default_str(m, "empty", "filled");
        assert_eq!(
            v,
            json!({"spec": {"strategy": {"type": "RollingUpdate", "empty": "filled"}}})
        );
        assert!(obj_mut(&mut json!(3), "a").is_none());
    }
}
