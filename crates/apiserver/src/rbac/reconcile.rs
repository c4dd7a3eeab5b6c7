//! Start-up reconciliation of the bootstrap policy with what is stored, as upstream's
//! `pkg/registry/rbac/reconciliation` in its union mode (the one the API server uses): missing
//! objects are created; existing ones gain missing labels, annotations, rules, aggregation
//! selectors or subjects but keep everything the admin added; objects annotated
//! `rbac.authorization.kubernetes.io/autoupdate: "false"` are never touched.
//!
//! Pure functions over the stored JSON: the caller reads the existing object, asks what to
//! write, and writes it (retrying on a conflict, as upstream does).

use serde_json::Value;

use super::objects::{
    decode, AggregationRule, Binding, Kind, Meta, Object, Role, AUTOUPDATE_ANNOTATION,
};
use super::rules::covers;
use super::RbacError;

/// What the caller has to do with the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Already as expected (or only differs by things the admin added).
    None,
    Create,
    Update,
    /// The binding's `roleRef` differs and `roleRef` is immutable: delete, then create.
    Recreate,
}

/// The outcome for one bootstrap object.
#[derive(Debug, Clone, PartialEq)]
pub struct Reconciled {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    pub operation: Operation,
    /// The stored object opted out (`autoupdate: "false"`): report, but do not write.
    pub protected: bool,
    /// The object to write (the existing one, merged), or the existing one when nothing changes.
    pub object: Value,
}

impl Reconciled {
    /// The object to write, if anything is to be written at all.
    pub fn to_write(&self) -> Option<&Value> {
        (self.operation != Operation::None && !self.protected).then_some(&self.object)
    }
}

/// Reconciles one bootstrap object of any of the four kinds with its stored version.
pub fn reconcile(expected: &Value, existing: Option<&Value>) -> Result<Reconciled, RbacError> {
    let kind = Object::from_value(expected)?.kind();
    let Some(existing) = existing else {
        return created(kind, expected);
    };
    if kind.is_binding() {
        reconcile_binding(kind, expected, existing)
    } else {
        reconcile_role(kind, expected, existing)
    }
}

fn created(kind: Kind, expected: &Value) -> Result<Reconciled, RbacError> {
    let meta: Meta = decode(expected.get("metadata").unwrap_or(&Value::Null))?;
    Ok(Reconciled {
        kind,
        namespace: meta.namespace,
        name: meta.name,
        operation: Operation::Create,
        protected: false,
        object: expected.clone(),
    })
}

/// Starts a result from the existing object with the expected labels and annotations merged in
/// (the existing values win, so an admin's edits survive).
fn merged_meta(kind: Kind, expected: &Meta, existing: &Meta, stored: &Value) -> Reconciled {
    let mut object = stored.clone();
    let mut operation = Operation::None;
    for (field, want, have) in [
        ("annotations", &expected.annotations, &existing.annotations),
        ("labels", &expected.labels, &existing.labels),
    ] {
        let mut merged = want.clone();
        merged.extend(have.iter().map(|(k, v)| (k.clone(), v.clone())));
        if &merged != have {
            set(
                &mut object,
                &["metadata", field],
                serde_json::to_value(&merged).unwrap_or_default(),
            );
            operation = Operation::Update;
        }
    }
    Reconciled {
        kind,
        namespace: existing.namespace.clone(),
        name: existing.name.clone(),
        operation,
        protected: existing
            .annotations
            .get(AUTOUPDATE_ANNOTATION)
            .is_some_and(|v| v == "false"),
        object,
    }
}

/// Upstream's `computeReconciledRole` with `RemoveExtraPermissions: false`.
fn reconcile_role(kind: Kind, expected: &Value, stored: &Value) -> Result<Reconciled, RbacError> {
    let want: Role = decode(expected)?;
    let have: Role = decode(stored)?;
    let mut out = merged_meta(kind, &want.metadata, &have.metadata, stored);

    let (_, missing) = covers(&have.rules, &want.rules);
    if !missing.is_empty() {
        let mut rules = have.rules.clone();
        rules.extend(missing);
        set(
            &mut out.object,
            &["rules"],
            serde_json::to_value(&rules).unwrap_or_default(),
        );
        out.operation = Operation::Update;
    }
    if let Some(rule) = reconciled_aggregation(
        want.aggregation_rule.as_ref(),
        have.aggregation_rule.as_ref(),
    ) {
        match rule {
            Some(rule) => set(
                &mut out.object,
                &["aggregationRule"],
                serde_json::to_value(&rule).unwrap_or_default(),
            ),
            None => remove(&mut out.object, "aggregationRule"),
        }
        out.operation = Operation::Update;
    }
    Ok(out)
}

/// The aggregation rule to store, if it must change: removed when the bootstrap role no longer
/// aggregates, or extended with the expected selectors the stored one lacks.
fn reconciled_aggregation(
    want: Option<&AggregationRule>,
    have: Option<&AggregationRule>,
) -> Option<Option<AggregationRule>> {
    match (want, have) {
        (None, Some(_)) => Some(None),
        (None, None) => None,
        (Some(want), have) => {
            let mut rule = have.cloned().unwrap_or_default();
            let missing: Vec<_> = want
                .cluster_role_selectors
                .iter()
                .filter(|s| !rule.cluster_role_selectors.contains(s))
                .cloned()
                .collect();
            if missing.is_empty() {
                return None;
            }
            rule.cluster_role_selectors.extend(missing);
            Some(Some(rule))
        }
    }
}

/// Upstream's `computeReconciledRoleBinding` with `RemoveExtraSubjects: false`.
fn reconcile_binding(
    kind: Kind,
    expected: &Value,
    stored: &Value,
) -> Result<Reconciled, RbacError> {
    let want: Binding = decode(expected)?;
    let have: Binding = decode(stored)?;
    if want.role_ref != have.role_ref {
        // roleRef is immutable, so the only way to the expected binding is a new object.
        return Ok(Reconciled {
            operation: Operation::Recreate,
            object: expected.clone(),
            ..merged_meta(kind, &have.metadata, &have.metadata, stored)
        });
    }
    let mut out = merged_meta(kind, &want.metadata, &have.metadata, stored);
    let missing: Vec<_> = want
        .subjects
        .iter()
        .filter(|s| !have.subjects.contains(s))
        .cloned()
        .collect();
    if !missing.is_empty() {
        let mut subjects = have.subjects.clone();
        subjects.extend(missing);
        set(
            &mut out.object,
            &["subjects"],
            serde_json::to_value(&subjects).unwrap_or_default(),
        );
        out.operation = Operation::Update;
    }
    Ok(out)
}

/// Reconciles every bootstrap object; `stored` looks up the current version by kind,
/// namespace and name. Objects come back in the order given (roles before their bindings).
pub fn reconcile_all(
    bootstrap: &[Value],
    mut stored: impl FnMut(Kind, &str, &str) -> Option<Value>,
) -> Result<Vec<Reconciled>, RbacError> {
    bootstrap
        .iter()
        .map(|expected| {
            let object = Object::from_value(expected)?;
            let meta = object.meta();
            let existing = stored(object.kind(), &meta.namespace, &meta.name);
            reconcile(expected, existing.as_ref())
        })
        .collect()
}

/// Sets `value[path...]`, creating objects on the way (no-op on a non-object in the path).
fn set(value: &mut Value, path: &[&str], new: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = value;
    for key in parents {
        let Some(map) = cur.as_object_mut() else {
            return;
        };
        cur = map
            .entry(key.to_string())
            .or_insert_with(|| Value::Object(Default::default()));
    }
    if let Some(map) = cur.as_object_mut() {
        map.insert(last.to_string(), new);
    }
}

fn remove(value: &mut Value, key: &str) {
    if let Some(map) = value.as_object_mut() {
        map.remove(key);
    }
}
