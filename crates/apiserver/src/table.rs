//! Server-side printing: `meta.k8s.io/v1` Table and PartialObjectMetadata forms of objects, with
//! the per-kind columns from `kinds`, so `kubectl get` prints what it prints against upstream.

use serde_json::{json, Value};

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

fn column_definitions(res: &Resource) -> Vec<Value> {
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

fn row(res: &Resource, obj: &Value, include: IncludeObject, now: i64) -> Value {
    let mut row = json!({"cells": kinds::table_row(res.group, res.kind, obj, now)});
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
