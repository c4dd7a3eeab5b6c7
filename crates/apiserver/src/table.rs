//! Server-side printing: `meta.k8s.io/v1` Table and PartialObjectMetadata forms of objects, with
//! the per-kind columns from `kinds`, so `kubectl get` prints what it prints against upstream.
//! A custom resource's columns are its CRD's `additionalPrinterColumns` after Name, evaluated
//! with their JSONPath as upstream's table convertor does.

use serde_json::{json, Value};

use crate::crd::{PrinterColumn, AGE_DESCRIPTION};
use crate::kinds;
use crate::resources::Resource;

/// Upstream's `includeObject` policy for table rows; kubectl asks for `Object` when it needs more
/// than metadata and otherwise gets metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(s: &str) -> Self {
        match s {
            "None" => IncludeObject::None,
            "Object" => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

pub fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// metav1.ObjectMeta's name description, which upstream's Name column carries.
const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";

fn column_definitions(res: &Resource) -> Vec<Value> {
    if let Some(custom) = &res.custom {
        let mut cols = vec![json!({"name": "Name", "type": "string", "format": "name",
                                   "description": NAME_DESCRIPTION, "priority": 0})];
        cols.extend(custom.columns.iter().map(|c| {
            let description = if c.description.is_empty() && c.name == "Age" {
                AGE_DESCRIPTION
            } else {
                c.description.as_str()
            };
            json!({"name": c.name, "type": c.type_, "format": c.format,
                   "description": description, "priority": c.priority})
        }));
        return cols;
    }
    kinds::table_columns(res.group, res.kind)
        .into_iter()
        .map(|c| {
            json!({"name": c.name, "type": c.type_, "format": c.format,
                   "description": c.description, "priority": c.priority})
        })
        .collect()
}

pub fn partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj["metadata"].clone(),
    })
}

/// One cell of a custom column, as upstream's `cellForJSONValue` (and its string printing).
fn custom_cell(col: &PrinterColumn, obj: &Value, now: i64) -> Value {
    let Some(v) = col.path.first(obj) else {
        return Value::Null;
    };
    match (col.type_.as_str(), v) {
        ("string", Value::String(s)) => json!(s),
        ("string", Value::Null) => Value::Null,
        ("string", other) => json!(other.to_string()),
        ("integer", Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .map_or(Value::Null, |i| json!(i)),
        ("number", Value::Number(n)) => n.as_f64().map_or(Value::Null, |f| json!(f)),
        ("boolean", Value::Bool(b)) => json!(b),
        ("date", Value::String(s)) => match kinds::parse_rfc3339(s) {
            Some(t) => json!(kinds::human_duration(now - t)),
            None => json!("<invalid>"),
        },
        _ => Value::Null,
    }
}

fn cells(res: &Resource, obj: &Value, now: i64) -> Vec<Value> {
    match &res.custom {
        Some(custom) => std::iter::once(obj["metadata"]["name"].clone())
            .chain(custom.columns.iter().map(|c| custom_cell(c, obj, now)))
            .collect(),
        None => kinds::table_row(res.group, res.kind, obj, now),
    }
}

fn row(res: &Resource, obj: &Value, include: IncludeObject, now: i64) -> Value {
    let mut row = json!({"cells": cells(res, obj, now)});
    match include {
        IncludeObject::None => {}
        IncludeObject::Metadata => row["object"] = partial_metadata(obj),
        IncludeObject::Object => row["object"] = obj.clone(),
    }
    row
}

/// A Table of `objs`; `list_meta` is the list's metadata (resourceVersion, continue).
pub fn table(res: &Resource, objs: &[Value], list_meta: Value, include: IncludeObject) -> Value {
    let now = now_secs();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": column_definitions(res),
        "rows": objs.iter().map(|o| row(res, o, include, now)).collect::<Vec<_>>(),
    })
}

pub fn metadata_list(objs: &[Value], list_meta: Value) -> Value {
    json!({
        "kind": "PartialObjectMetadataList",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "items": objs.iter().map(partial_metadata).collect::<Vec<_>>(),
    })
}
