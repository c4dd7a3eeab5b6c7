//! Small helpers over `serde_json::Value` shared by the merge steps: equality as upstream's Go
//! `==` on decoded JSON (numbers compare by value), type names and compact rendering for errors.

use serde_json::{Map, Value};

use super::error::StrategicPatchError;

/// Equality of merge-key values and list items; `1` and `1.0` are the same number, as in Go where
/// both decode to float64.
pub(crate) fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        _ => a == b,
    }
}

/// Position of `wanted` in `list`, by [`same`].
pub(crate) fn position(list: &[Value], wanted: &Value) -> Option<usize> {
    list.iter().position(|v| same(v, wanted))
}

pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "map",
    }
}

/// Compact JSON for error messages.
pub(crate) fn render_list(items: &[Value]) -> String {
    serde_json::to_string(items).unwrap_or_default()
}

pub(crate) fn render_map(m: &Map<String, Value>) -> String {
    serde_json::to_string(m).unwrap_or_default()
}

pub(crate) fn expect_list(v: Value) -> Result<Vec<Value>, StrategicPatchError> {
    match v {
        Value::Array(items) => Ok(items),
        other => Err(bad_type("list", &other)),
    }
}

pub(crate) fn expect_map(v: &Value) -> Result<&Map<String, Value>, StrategicPatchError> {
    v.as_object().ok_or_else(|| bad_type("map", v))
}

pub(crate) fn bad_type(expected: &'static str, actual: &Value) -> StrategicPatchError {
    StrategicPatchError::BadArgType {
        expected,
        actual: type_name(actual),
    }
}

/// The merge-key value of a list element, which must be a map that has it.
pub(crate) fn merge_key_value<'v>(
    item: &'v Value,
    key: &str,
) -> Result<&'v Value, StrategicPatchError> {
    let map = expect_map(item)?;
    map.get(key).ok_or_else(|| StrategicPatchError::NoMergeKey {
        map: render_map(map),
        key: key.to_string(),
    })
}
