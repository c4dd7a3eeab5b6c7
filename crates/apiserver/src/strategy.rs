//! What differs per resource in the generic write path, as upstream's per-kind "strategies":
//! which status a new object starts with, what a main-resource update may not touch, Service
//! address allocation, and how long a pod's graceful deletion lasts. Driven by table flags and
//! resource names, never by per-kind handlers.

use serde_json::{json, Value};

use crate::allocators::Allocators;
use crate::kinds::Cause;
use crate::resources::Resource;

/// Upstream resets status on create for these (the controllers own it); nodes, PVs and namespaces
/// keep what the creator sent.
fn resets_status_on_create(res: &Resource) -> bool {
    res.has_subresource("status")
        && !matches!(res.plural, "nodes" | "namespaces" | "persistentvolumes")
}

pub fn prepare_create(res: &Resource, obj: &mut Value) {
    if resets_status_on_create(res) {
        if let Some(o) = obj.as_object_mut() {
            o.remove("status");
        }
    }
    match (res.group, res.plural) {
        ("", "pods") => obj["status"] = json!({"phase": "Pending"}),
        ("", "namespaces") => {
            obj["status"] = json!({"phase": "Active"});
            if obj["spec"]["finalizers"].is_null() {
                obj["spec"]["finalizers"] = json!(["kubernetes"]);
            }
        }
        ("", "persistentvolumes") | ("", "persistentvolumeclaims") => {
            obj["status"] = json!({"phase": "Pending"});
        }
        _ => {}
    }
}

/// A main-resource update keeps the stored status; a status update keeps everything else but
/// metadata labels/annotations-free changes, as upstream's `PrepareForUpdate` pair does.
pub fn merge_for_subresource(res: &Resource, sub: Option<&str>, new: &mut Value, old: &Value) {
    match sub {
        Some("approval") => crate::certificates::merge_approval(new, old),
        Some("status") => {
            let status = new.get("status").cloned();
            let mut merged = old.clone();
            match status {
                Some(s) => merged["status"] = s,
                None => {
                    if let Some(o) = merged.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
            // The caller's resourceVersion is the precondition, so it travels with the merge, and
            // the managedFields the status write recorded with it.
            merged["metadata"]["resourceVersion"] = new["metadata"]["resourceVersion"].clone();
            match new["metadata"].get("managedFields") {
                Some(mf) => merged["metadata"]["managedFields"] = mf.clone(),
                None => {
                    if let Some(m) = merged["metadata"].as_object_mut() {
                        m.remove("managedFields");
                    }
                }
            }
            *new = merged;
        }
        None if res.has_subresource("status") => match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove("status");
                }
            }
        },
        _ => {}
    }
}

/// Allocates Service addresses for a new object.
pub fn allocate(res: &Resource, alloc: &Allocators, obj: &mut Value) -> Result<(), Vec<Cause>> {
    if res.group.is_empty() && res.plural == "services" {
        return alloc.allocate(obj);
    }
    Ok(())
}

pub fn reallocate(
    res: &Resource,
    alloc: &Allocators,
    obj: &mut Value,
    old: &Value,
) -> Result<(), Vec<Cause>> {
    if res.group.is_empty() && res.plural == "services" {
        return alloc.reallocate(obj, old);
    }
    Ok(())
}

/// Gives back what `reallocate` changed for an update that is not stored (dry run).
pub fn undo_reallocate(res: &Resource, alloc: &Allocators, obj: &Value, old: &Value) {
    if res.group.is_empty() && res.plural == "services" {
        alloc.undo_reallocate(obj, old);
    }
}

/// Frees what a deleted (or never stored) object held.
pub fn release(res: &Resource, alloc: &Allocators, obj: &Value) {
    if res.group.is_empty() && res.plural == "services" {
        alloc.release(obj);
    }
}

/// The grace period a delete of `obj` gets, or None for an immediate delete. Only pods are
/// deleted gracefully, and only once bound to a node (nothing else would ever finish them).
pub fn grace_period(res: &Resource, obj: &Value, requested: Option<i64>) -> Option<i64> {
    if !(res.group.is_empty() && res.plural == "pods") {
        return None;
    }
    let unscheduled = obj["spec"]["nodeName"].as_str().unwrap_or("").is_empty();
    let finished = matches!(
        obj["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    );
    if unscheduled || finished {
        return None;
    }
    let grace = requested
        .or_else(|| obj["spec"]["terminationGracePeriodSeconds"].as_i64())
        .unwrap_or(30);
    // Upstream treats 0 as "force now" only when asked; a pod spec of 0 still gets 1 second.
    match (requested, grace) {
        (Some(0), _) => None,
        (_, g) => Some(g.max(1)),
    }
}

/// Namespaces upstream refuses to delete.
pub fn undeletable(res: &Resource, name: &str) -> bool {
    res.group.is_empty()
        && res.plural == "namespaces"
        && matches!(name, "default" | "kube-system" | "kube-public")
}
