//! Patch values the merge takes as they are instead of merging them: a field the original lacks
//! (or holds with another type), and lists, maps or list elements that replace or join the
//! original verbatim.
//!
//! Upstream treats the two differently (`removeDirectives` for the first, nothing for the second)
//! and then decodes the result into Go structs, which drops null fields and directive keys. krust
//! stores the JSON, so it applies that decoding step here too.

use serde_json::{Map, Value};

use super::directives::{is_directive_key, PATCH};

/// A value for a field the original lacks or holds with another type, as upstream's
/// `discardNullValuesFromPatch` and `removeDirectives` clean it: null fields go, and so does every
/// map carrying `$patch`; `None` when the value itself is such a map (the field stays unset).
pub(crate) fn new_value(value: Value) -> Option<Value> {
    match value {
        Value::Object(map) if map.contains_key(PATCH) => None,
        Value::Object(map) => Some(Value::Object(
            map.into_iter()
                .filter(|(k, v)| kept(k, v))
                .filter_map(|(k, v)| Some((k, new_value(v)?)))
                .collect(),
        )),
        Value::Array(items) => Some(Value::Array(
            items.into_iter().filter_map(new_value).collect(),
        )),
        other => Some(other),
    }
}

/// A value upstream takes verbatim (a replaced list or map, an appended list element): only what
/// decoding drops goes, so a stray `{"name": "x", "$patch": "delete"}` stays as `{"name": "x"}`.
pub(crate) fn raw_value(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(raw_map(map)),
        Value::Array(items) => Value::Array(items.into_iter().map(raw_value).collect()),
        other => other,
    }
}

/// [`raw_value`] for a map.
pub(crate) fn raw_map(map: Map<String, Value>) -> Map<String, Value> {
    map.into_iter()
        .filter(|(k, v)| kept(k, v))
        .map(|(k, v)| (k, raw_value(v)))
        .collect()
}

fn kept(key: &str, value: &Value) -> bool {
    !value.is_null() && !is_directive_key(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn new_values_lose_nulls_and_directive_maps() {
        let value = json!({
            "a": null, "b": {"$patch": "replace", "c": 1}, "$retainKeys": ["d"],
            "$setElementOrder/l": [], "l": [{"$patch": "delete", "name": "x"}, {"name": "y", "v": null}, null]
        });
        assert_eq!(new_value(value), Some(json!({"l": [{"name": "y"}, null]})));
        assert_eq!(new_value(json!({"$patch": "delete"})), None);
    }

    #[test]
    fn raw_values_lose_only_what_decoding_drops() {
        let value =
            json!([{"$patch": "delete", "name": "x"}, {"$patch": "replace"}, {"v": null, "w": 1}]);
        assert_eq!(raw_value(value), json!([{"name": "x"}, {}, {"w": 1}]));
    }
}
