//! Small helpers over `serde_json::Value` shared by the merge steps: equality as upstream's Go
//! `==` on decoded JSON (numbers compare by value), type names and compact rendering for errors.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::error::StrategicPatchError;

/// Equality of merge-key values and list items; `1` and `1.0` are the same number, as in Go where
/// both decode to the same value.
pub(crate) fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => canonical(a) == canonical(b),
        _ => a == b,
    }
}

/// A string that is equal for two values exactly when [`same`] holds (objects aside, whose key
/// order may differ), for hashing list elements by identity.
pub(crate) fn canonical(v: &Value) -> String {
    match v {
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => format!("n{i}"),
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e18 => format!("n{}", f as i64),
            _ => format!("n{n}"),
        },
        other => other.to_string(),
    }
}

/// First positions of values in a list, by [`canonical`] form. Patch lists come from clients, so
/// matching and ordering use hashing to stay linear on long lists.
pub(crate) struct Positions(HashMap<String, usize>);

impl Positions {
    pub(crate) fn of(list: &[Value]) -> Self {
        let mut positions = HashMap::with_capacity(list.len());
        for (i, v) in list.iter().enumerate() {
            positions.entry(canonical(v)).or_insert(i);
        }
        Positions(positions)
    }

    pub(crate) fn get(&self, canonical: &str) -> Option<usize> {
        self.0.get(canonical).copied()
    }
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
