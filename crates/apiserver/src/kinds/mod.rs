//! Per-kind knowledge of the built-in resources, as upstream Kubernetes has it: defaulting,
//! validation, the Table columns kubectl prints, and the fields a field selector may use.
//!
//! The generic registry calls these functions for every built-in object; a kind with nothing
//! special gets the generic behaviour (no defaults, metadata-only validation, NAME/AGE columns,
//! metadata.name and metadata.namespace selectable). Objects are `serde_json::Value`s in their
//! external (versioned) JSON form; `group` is "" for the core group. No function here panics on
//! malformed input: missing fields and wrong types read as empty.
//!
//! Call order, as upstream's registry does it:
//! - create: server fields first (name from generateName, namespace, uid, creationTimestamp),
//!   then `apply_defaults`, then `validate(obj, None)`. Defaulting relies on them: a Job's
//!   selector is generated from its uid and name, a Namespace is labelled with its name.
//! - update: carry the server-owned fields over from the stored object, then `apply_defaults`,
//!   then `validate(obj, Some(old))`, which adds the rules on what may not change.
//! - Defaulting also performs upstream's decode-time conversions: quantities canonicalised,
//!   Secret `stringData` folded into `data`, deprecated twin fields kept in step.

mod defaults;
mod duration;
mod events;
mod fields;
mod format;
mod json;
mod quantity;
#[cfg(test)]
mod samples;
mod table;
mod validation;

pub use duration::{human_duration, parse_rfc3339};
pub use events::convert_event;
pub use format::selector_string;
/// Upstream's name syntaxes (DNS-1123/1035 labels and subdomains, ...), for other validators.
pub(crate) use validation::names;

use serde_json::Value;

/// One reason an object is invalid, in the shape of `metav1.StatusCause`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// Upstream's cause type: `FieldValueRequired`, `FieldValueInvalid`, `FieldValueDuplicate`,
    /// `FieldValueNotSupported`, `FieldValueForbidden`, `FieldValueTooLong`.
    pub reason: String,
    /// Upstream-style message, e.g. `Required value` or `Invalid value: "Foo": a lowercase RFC 1123 ...`.
    pub message: String,
    /// JSON path of the field, e.g. `spec.containers[0].name`.
    pub field: String,
}

/// One column of a `meta.k8s.io/v1` Table (`TableColumnDefinition`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    /// OpenAPI type: `string`, `integer`, `number`, `boolean`, `date`.
    pub type_: &'static str,
    /// e.g. `name` for the NAME column, `` otherwise.
    pub format: &'static str,
    pub description: &'static str,
    /// 0 = always shown, 1 = only with `-o wide`.
    pub priority: i32,
}

/// Fills in upstream's defaults for a built-in object before validation, on create and update.
pub fn apply_defaults(group: &str, kind: &str, obj: &mut Value) {
    defaults::apply(group, kind, obj);
}

/// Validates a built-in object (after `apply_defaults`); `old` is the stored object on update.
/// Empty means valid.
pub fn validate(group: &str, kind: &str, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    validation::validate(group, kind, obj, old)
}

/// The Table columns kubectl shows for this kind against upstream (including `-o wide` ones).
pub fn table_columns(group: &str, kind: &str) -> Vec<Column> {
    table::columns(group, kind)
}

/// The cells of one Table row for `obj`, matching `table_columns` (always the wide form, as
/// upstream's server renders it); `now` is the server's time in seconds since the epoch.
pub fn table_row(group: &str, kind: &str, obj: &Value, now: i64) -> Vec<Value> {
    table::row(group, kind, obj, now)
}

/// The (field path, value) pairs a field selector may match for this object, e.g. for pods
/// `spec.nodeName`, `status.phase`; `metadata.name` and `metadata.namespace` for every kind.
pub fn selectable_fields(group: &str, kind: &str, obj: &Value) -> Vec<(String, String)> {
    fields::selectable(group, kind, obj)
}

/// Whether a field selector may use `field` on this kind; the registry answers 400
/// `field label not supported: <field>` when it may not.
pub fn is_selectable(group: &str, kind: &str, field: &str) -> bool {
    fields::is_selectable(group, kind, field)
}
