//! Server-side apply (`application/apply-patch+yaml`) and managed-fields tracking, as upstream's
//! structured-merge-diff and the API server's field manager do them.
//!
//! - [`fieldset`]: field paths, sets of them, and the FieldsV1 encoding;
//! - [`schema`]: the type trees (struct fields, maps, atomic/set/map lists with their keys) for
//!   built-in kinds, derived from upstream's OpenAPI into `types.json`; custom resources can bring
//!   their own from a structural schema ([`Schema::from_openapi_v3`]) and use [`FieldManager`];
//! - [`typed`]: field sets of values, comparison, merge and removal along a type;
//! - [`merge`]: ownership across managers (conflicts, force, pruning of dropped fields);
//! - [`managed_fields`]: `metadata.managedFields` entries and upstream's manager chain.
//!
//! The REST layer calls [`track`] on every create, update and non-apply patch, and [`apply`] for
//! apply patches; both return the object to hand to the registry.

pub mod fieldset;
pub mod managed_fields;
pub mod merge;
pub mod schema;
pub mod typed;

use std::sync::Arc;

use serde_json::Value;

pub use fieldset::PathElement;
pub use managed_fields::FieldManager;
pub use merge::Updater;
pub use schema::{Schema, TypeRef};

use crate::kinds::Cause;
use crate::resources::Resource;
use crate::status::{ApiError, ApiResult, Subject};

/// Upstream's limit on a field manager's name.
const FIELD_MANAGER_MAX_LENGTH: usize = 128;

/// Which write a manager name is checked for (the options kind upstream names in its errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    Create,
    Update,
    Patch,
    Apply,
}

/// The manager a write is recorded under, as upstream's handlers choose and check it:
/// `fieldManager`, required for apply, else the product part of the User-Agent (`kubectl/v1.33.0
/// (...)` → `kubectl`); `force` is only for apply.
pub fn manager_name(
    requested: Option<&str>,
    force: Option<bool>,
    user_agent: &str,
    write: Write,
) -> ApiResult<String> {
    let mut causes: Vec<Cause> = Vec::new();
    let requested = requested.unwrap_or("");
    let options = match write {
        Write::Create => "CreateOptions",
        Write::Update => "UpdateOptions",
        Write::Patch | Write::Apply => "PatchOptions",
    };
    if write == Write::Patch && force.is_some() {
        causes.push(crate::status::cause(
            "FieldValueForbidden",
            "force",
            "Forbidden: may not be specified for non-apply patch".into(),
        ));
    }
    if write == Write::Apply && requested.is_empty() {
        causes.push(crate::status::cause(
            "FieldValueRequired",
            "fieldManager",
            "Required value: is required for apply patch".into(),
        ));
    }
    if requested.len() > FIELD_MANAGER_MAX_LENGTH {
        causes.push(crate::status::cause(
            "FieldValueTooLong",
            "fieldManager",
            format!("Too long: may not be more than {FIELD_MANAGER_MAX_LENGTH} bytes"),
        ));
    }
    if let Some((i, c)) = requested.char_indices().find(|(_, c)| c.is_control()) {
        causes.push(crate::status::cause(
            "FieldValueInvalid",
            "fieldManager",
            format!(
                "Invalid value: {}: invalid character U+{:04X} (at position {i})",
                serde_json::json!(requested),
                c as u32
            ),
        ));
    }
    if !causes.is_empty() {
        return Err(ApiError::Invalid(
            Subject::new("meta.k8s.io", options, ""),
            causes,
        ));
    }
    if !requested.is_empty() {
        return Ok(requested.to_string());
    }
    let product = user_agent.split('/').next().unwrap_or("");
    let mut name = String::new();
    for c in product.chars().filter(|c| !c.is_control()) {
        if name.len() + c.len_utf8() > FIELD_MANAGER_MAX_LENGTH {
            break;
        }
        name.push(c);
    }
    Ok(name)
}

/// The type tree of a served resource: its CRD schema's, the built-in table's, else the deduced
/// one.
pub fn schema_for(res: &Resource) -> (Arc<Schema>, TypeRef) {
    if let Some(schema) = res.custom.as_ref().and_then(|c| c.schema.as_ref()) {
        return Schema::custom(schema);
    }
    let builtin = Schema::builtin();
    match builtin.kind(res.group, res.version, res.kind) {
        Some(t) => (builtin.clone(), t),
        None => (Schema::deduced().clone(), schema::DEDUCED),
    }
}

fn is_status(pe: &PathElement) -> bool {
    matches!(pe, PathElement::Field(f) if f == "status")
}

/// What an endpoint may not own: a main resource with a status subresource leaves `status` to
/// it, and the status subresource owns nothing but `status`.
fn ignore_for(res: &Resource, sub: Option<&str>) -> &'static dyn Fn(&PathElement) -> bool {
    match sub {
        Some("status") => &|pe| !is_status(pe),
        None if res.has_subresource("status") => &is_status,
        _ => &|_| false,
    }
}

fn with_manager<T>(res: &Resource, sub: Option<&str>, f: impl FnOnce(&FieldManager<'_>) -> T) -> T {
    let (schema, root) = schema_for(res);
    let api_version = res.api_version();
    let fm = FieldManager {
        updater: Updater {
            schema: &schema,
            root,
            ignore: ignore_for(res, sub),
        },
        api_version: &api_version,
        subresource: sub.unwrap_or(""),
    };
    f(&fm)
}

/// A create (`live` None), update or non-apply patch of `res` by `manager`: `new` with the
/// kind's defaults (pruned and defaulted by its schema for a custom resource) and its
/// managedFields brought up to date.
pub fn track(
    res: &Resource,
    sub: Option<&str>,
    live: Option<&Value>,
    mut new: Value,
    manager: &str,
) -> Value {
    res.apply_defaults(&mut new);
    let now = crate::metadata::now_rfc3339();
    with_manager(res, sub, |fm| fm.update(live, new, manager, &now))
}

/// An apply patch of `res` by `manager` onto `live` (None: create on apply).
pub fn apply(
    res: &Resource,
    sub: Option<&str>,
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    force: bool,
) -> ApiResult<Value> {
    let now = crate::metadata::now_rfc3339();
    with_manager(res, sub, |fm| fm.apply(live, config, manager, force, &now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn manager_names() {
        let ua = "kubectl/v1.33.0 (linux/amd64) kubernetes/abc";
        assert_eq!(
            manager_name(None, None, ua, Write::Update).unwrap(),
            "kubectl"
        );
        assert_eq!(
            manager_name(Some("m"), None, ua, Write::Create).unwrap(),
            "m"
        );
        let e = manager_name(None, Some(false), ua, Write::Apply).unwrap_err();
        assert_eq!(
            e.to_string(),
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
        );
        assert!(manager_name(Some("m"), Some(true), ua, Write::Patch).is_err());
        assert!(manager_name(Some(&"x".repeat(129)), None, ua, Write::Update).is_err());
    }

    #[test]
    fn every_served_builtin_kind_has_a_type() {
        for res in crate::resources::RESOURCES.iter().filter(|r| !r.review) {
            let (_, t) = schema_for(res);
            assert_ne!(t, schema::DEDUCED, "{}/{}", res.group, res.kind);
        }
    }

    #[test]
    fn status_is_left_to_the_status_subresource() {
        let res = crate::resources::find("apps", "v1", "deployments").unwrap();
        let d =
            json!({"metadata": {"name": "d"}, "spec": {"replicas": 1}, "status": {"replicas": 1}});
        let main = track(res, None, None, d.clone(), "m");
        let fields = &main["metadata"]["managedFields"][0]["fieldsV1"];
        assert!(fields.get("f:status").is_none(), "{fields}");
        let status = track(
            res,
            Some("status"),
            Some(&main),
            {
                let mut s = main.clone();
                s["status"]["replicas"] = json!(2);
                s
            },
            "ctrl",
        );
        let entries = status["metadata"]["managedFields"].as_array().unwrap();
        let ctrl = entries.iter().find(|e| e["manager"] == "ctrl").unwrap();
        assert_eq!(ctrl["subresource"], "status");
        assert_eq!(ctrl["fieldsV1"], json!({"f:status": {"f:replicas": {}}}));
    }
}
