//! `metadata.managedFields`, as upstream's field manager (k8s.io/apiserver's `fieldmanager`)
//! keeps it: entries grouped by manager, operation (`Apply` or `Update`), apiVersion (updates
//! only) and subresource, each with the time its fields last changed and its fields in FieldsV1.
//!
//! On top of [`super::merge::Updater`] this layer adds what upstream's manager chain does:
//! server-owned metadata is never owned (strip), objects that were never tracked are not tracked
//! on update but get a `before-first-apply` entry when first applied, update entries beyond ten
//! are folded into `ancient-changes`, and `kubectl`'s server-side apply keeps the client-side
//! `last-applied-configuration` annotation in step and may take over fields it set client-side.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::fieldset::{path_string, Path, PathElement, Set};
use super::merge::{Managers, MergeError, Updater, VersionedSet};
use super::typed;
use crate::kinds::Cause;
use crate::status::ApiError;

pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
const BEFORE_FIRST_APPLY: &str = "before-first-apply";
const ANCIENT_CHANGES: &str = "ancient-changes";
const MAX_UPDATE_MANAGERS: usize = 10;
/// The manager name `kubectl apply --server-side` uses by default.
const KUBECTL: &str = "kubectl";

/// `Apply` sorts before `Update`, as upstream orders entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    Apply,
    Update,
}

/// Who owns a set of fields. Appliers are one manager whatever version they apply with.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ManagerId {
    pub manager: String,
    pub operation: Operation,
    /// Empty for appliers.
    pub api_version: String,
    pub subresource: String,
}

impl ManagerId {
    pub fn update(manager: &str, api_version: &str, subresource: &str) -> ManagerId {
        ManagerId {
            manager: manager.into(),
            operation: Operation::Update,
            api_version: api_version.into(),
            subresource: subresource.into(),
        }
    }

    pub fn apply(manager: &str, subresource: &str) -> ManagerId {
        ManagerId {
            manager: manager.into(),
            operation: Operation::Apply,
            api_version: String::new(),
            subresource: subresource.into(),
        }
    }

    /// Upstream's `printManager`: `"name"`, plus `with subresource "s"` and, for updaters,
    /// `using <apiVersion>`.
    pub fn describe(&self) -> String {
        let mut s = json!(self.manager).to_string();
        if !self.subresource.is_empty() {
            s.push_str(&format!(" with subresource {}", json!(self.subresource)));
        }
        if self.operation == Operation::Update {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }
}

/// The decoded managedFields of an object.
#[derive(Debug, Clone, Default)]
pub struct Managed {
    pub fields: Managers<ManagerId>,
    pub times: BTreeMap<ManagerId, String>,
}

/// Reads `metadata.managedFields`; absent or empty is an empty set of managers.
pub fn decode(obj: &Value) -> Result<Managed, String> {
    let mut managed = Managed::default();
    let Some(entries) = obj["metadata"]["managedFields"].as_array() else {
        return Ok(managed);
    };
    for e in entries {
        let operation = match e["operation"].as_str() {
            Some("Apply") => Operation::Apply,
            Some("Update") => Operation::Update,
            other => return Err(format!("unsupported operation {other:?}")),
        };
        match e["fieldsType"].as_str() {
            Some("FieldsV1") => {}
            other => return Err(format!("unsupported fieldsType {other:?}")),
        }
        let api_version = e["apiVersion"].as_str().unwrap_or("").to_string();
        let manager = e["manager"].as_str().unwrap_or("");
        let subresource = e["subresource"].as_str().unwrap_or("");
        let id = match operation {
            Operation::Apply => ManagerId::apply(manager, subresource),
            Operation::Update => ManagerId::update(manager, &api_version, subresource),
        };
        let set = match e.get("fieldsV1") {
            None | Some(Value::Null) => Set::new(),
            Some(v) => Set::from_fields_v1(v)?,
        };
        let set = match managed.fields.remove(&id) {
            Some(prev) => prev.set.union(&set),
            None => set,
        };
        managed.fields.insert(
            id.clone(),
            VersionedSet {
                set,
                api_version,
                applied: operation == Operation::Apply,
            },
        );
        if let Some(t) = e["time"].as_str() {
            managed.times.insert(id, t.to_string());
        }
    }
    Ok(managed)
}

/// The managedFields array: Apply entries first, then oldest first, then by name.
pub fn encode(managed: &Managed) -> Vec<Value> {
    let mut entries: Vec<(&ManagerId, &VersionedSet)> = managed.fields.iter().collect();
    let time = |id: &ManagerId| managed.times.get(id).cloned().unwrap_or_default();
    entries.sort_by(|(a, av), (b, bv)| {
        a.operation
            .cmp(&b.operation)
            .then_with(|| time(a).cmp(&time(b)))
            .then_with(|| a.manager.cmp(&b.manager))
            .then_with(|| av.api_version.cmp(&bv.api_version))
            .then_with(|| a.subresource.cmp(&b.subresource))
    });
    entries
        .into_iter()
        .map(|(id, vs)| {
            let mut e = Map::new();
            e.insert("manager".into(), json!(id.manager));
            e.insert(
                "operation".into(),
                json!(match id.operation {
                    Operation::Apply => "Apply",
                    Operation::Update => "Update",
                }),
            );
            e.insert("apiVersion".into(), json!(vs.api_version));
            if let Some(t) = managed.times.get(id) {
                e.insert("time".into(), json!(t));
            }
            e.insert("fieldsType".into(), json!("FieldsV1"));
            e.insert("fieldsV1".into(), vs.set.to_fields_v1());
            if !id.subresource.is_empty() {
                e.insert("subresource".into(), json!(id.subresource));
            }
            Value::Object(e)
        })
        .collect()
}

fn set_managed(obj: &mut Value, managed: &Managed) {
    let entries = encode(managed);
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if entries.is_empty() {
            m.remove("managedFields");
        } else {
            m.insert("managedFields".into(), Value::Array(entries));
        }
    } else if !entries.is_empty() {
        obj["metadata"] = json!({"managedFields": entries});
    }
}

fn without_managed(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    v
}

/// Metadata the server owns: nobody's fields (upstream's strip-meta manager).
fn strip_set() -> Set {
    let f = |s: &str| PathElement::Field(s.into());
    let mut set = Set::new();
    set.insert(&[f("apiVersion")]);
    set.insert(&[f("kind")]);
    set.insert(&[f("metadata")]);
    for m in [
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "clusterName",
        "generation",
        "managedFields",
        "resourceVersion",
    ] {
        set.insert(&[f("metadata"), f(m)]);
    }
    set
}

fn strip(managed: &mut Managed, id: &ManagerId) {
    if let Some(vs) = managed.fields.get_mut(id) {
        vs.set = vs.set.difference(&strip_set());
        if vs.set.is_empty() {
            managed.fields.remove(id);
        }
    }
}

/// Folds the oldest update entries into `ancient-changes` (one per apiVersion) beyond ten.
fn cap_updaters(managed: &mut Managed) {
    let mut updaters: Vec<ManagerId> = managed
        .fields
        .iter()
        .filter(|(_, vs)| !vs.applied)
        .map(|(id, _)| id.clone())
        .collect();
    if updaters.len() <= MAX_UPDATE_MANAGERS {
        return;
    }
    let time = |id: &ManagerId| managed.times.get(id).cloned().unwrap_or_default();
    updaters.sort_by(|a, b| time(a).cmp(&time(b)).then_with(|| a.cmp(b)));
    let mut first_of_version: BTreeMap<String, ManagerId> = BTreeMap::new();
    let mut length = updaters.len();
    for id in updaters {
        if length <= MAX_UPDATE_MANAGERS {
            break;
        }
        let Some(vs) = managed.fields.get(&id).cloned() else {
            continue;
        };
        let bucket = ManagerId::update(ANCIENT_CHANGES, &vs.api_version, "");
        match first_of_version.get(&vs.api_version) {
            Some(first) => {
                if !managed.fields.contains_key(&bucket) {
                    if let Some(s) = managed.fields.remove(first) {
                        managed.fields.insert(bucket.clone(), s);
                    }
                }
                let merged = managed.fields[&bucket].set.union(&vs.set);
                managed
                    .fields
                    .insert(bucket.clone(), VersionedSet { set: merged, ..vs });
                managed.fields.remove(&id);
                if let Some(t) = managed.times.remove(&id) {
                    managed.times.insert(bucket, t);
                }
                length -= 1;
            }
            None => {
                first_of_version.insert(vs.api_version.clone(), id);
            }
        }
    }
}

/// The field manager of one endpoint: a kind's type, its served version and subresource.
pub struct FieldManager<'a> {
    pub updater: Updater<'a>,
    pub api_version: &'a str,
    pub subresource: &'a str,
}

impl FieldManager<'_> {
    /// Records a create (`live` None), update or non-apply patch by `manager` in `new`'s
    /// managedFields. Never fails: when the fields cannot be worked out, managedFields is
    /// cleared, as upstream's `UpdateNoErrors`.
    pub fn update(&self, live: Option<&Value>, mut new: Value, manager: &str, now: &str) -> Value {
        // `[{}]` resets managedFields.
        if new["metadata"]["managedFields"] == json!([{}]) {
            if let Some(m) = new["metadata"].as_object_mut() {
                m.remove("managedFields");
            }
            return new;
        }
        let from_new = if self.subresource.is_empty() {
            decode(&new).ok().filter(|m| !m.fields.is_empty())
        } else {
            None
        };
        let managed = match from_new {
            Some(m) => Ok(m),
            None => live.map(decode).unwrap_or_else(|| Ok(Managed::default())),
        };
        let stripped_new = without_managed(&new);
        let result = managed.and_then(|managed| {
            // Objects that exist untracked stay untracked until applied.
            if managed.fields.is_empty() && live.is_some() {
                return Ok(None);
            }
            let live = live.map(without_managed).unwrap_or_else(|| json!({}));
            self.track_update(managed, &live, &stripped_new, manager, now)
                .map(Some)
        });
        match result {
            Ok(Some(managed)) => {
                new = stripped_new;
                set_managed(&mut new, &managed);
                new
            }
            Ok(None) => stripped_new,
            Err(e) => {
                tracing::debug!(error = %e, "managed fields not tracked for this update");
                stripped_new
            }
        }
    }

    fn track_update(
        &self,
        mut managed: Managed,
        live: &Value,
        new: &Value,
        manager: &str,
        now: &str,
    ) -> Result<Managed, String> {
        let id = ManagerId::update(manager, self.api_version, self.subresource);
        let current = ManagerId::update("\0current-operation", self.api_version, self.subresource);
        self.updater
            .update_manager(live, new, self.api_version, &mut managed.fields, &current)
            .map_err(|e| match e {
                MergeError::Invalid(e) => e,
                MergeError::Conflicts(_) => "unexpected conflict".into(),
            })?;
        strip(&mut managed, &current);
        if let Some(vs) = managed.fields.remove(&current) {
            let set = match managed.fields.get(&id) {
                Some(prev) => vs.set.union(&prev.set),
                None => vs.set,
            };
            managed.fields.insert(
                id.clone(),
                VersionedSet {
                    set,
                    api_version: self.api_version.into(),
                    applied: false,
                },
            );
            managed.times.insert(id, now.into());
        }
        managed
            .times
            .retain(|id, _| managed.fields.contains_key(id));
        cap_updaters(&mut managed);
        Ok(managed)
    }

    /// Applies `config` for `manager` to `live` (None: the object does not exist yet) and returns
    /// the object to store, with its managedFields.
    pub fn apply(
        &self,
        live: Option<&Value>,
        config: &Value,
        manager: &str,
        force: bool,
        now: &str,
    ) -> Result<Value, ApiError> {
        if !config["metadata"]["managedFields"].is_null() {
            return Err(ApiError::BadRequest(
                "metadata.managedFields must be nil".into(),
            ));
        }
        let mut managed = match live.map(decode) {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                return Err(ApiError::Internal(format!(
                    "failed to decode managed fields: {e}"
                )))
            }
            None => Managed::default(),
        };
        let live_obj = live.map(without_managed).unwrap_or_else(|| json!({}));
        if managed.fields.is_empty() && live.is_some() {
            managed = self
                .track_update(managed, &json!({}), &live_obj, BEFORE_FIRST_APPLY, now)
                .map_err(ApiError::Internal)?;
        }
        let id = ManagerId::apply(manager, self.subresource);
        let mut fields = managed.fields.clone();
        let result =
            self.updater
                .apply(&live_obj, config, self.api_version, &mut fields, &id, force);
        let result = match result {
            Err(MergeError::Conflicts(conflicts)) if manager == KUBECTL => {
                match self.allowed_by_last_applied(&live_obj) {
                    Some(allowed) if conflicts.iter().all(|(_, p)| allowed.has(p)) => {
                        fields = managed.fields.clone();
                        self.updater.apply(
                            &live_obj,
                            config,
                            self.api_version,
                            &mut fields,
                            &id,
                            true,
                        )
                    }
                    Some(allowed) => Err(MergeError::Conflicts(
                        conflicts
                            .into_iter()
                            .filter(|(_, p)| !allowed.has(p))
                            .collect(),
                    )),
                    None => Err(MergeError::Conflicts(conflicts)),
                }
            }
            other => other,
        };
        let mut new = match result {
            Ok(v) => v,
            Err(MergeError::Conflicts(c)) => return Err(conflict_error(&c)),
            Err(MergeError::Invalid(e)) => {
                return Err(ApiError::BadRequest(format!(
                    "failed to create typed patch object: {e}"
                )))
            }
        };
        managed.fields = fields;
        strip(&mut managed, &id);
        if new != live_obj {
            managed.times.insert(id.clone(), now.into());
        }
        managed
            .times
            .retain(|id, _| managed.fields.contains_key(id));
        if manager == KUBECTL && !new["metadata"]["annotations"][LAST_APPLIED].is_null() {
            let mut applied = config.clone();
            if let Some(a) = applied["metadata"]["annotations"].as_object_mut() {
                a.remove(LAST_APPLIED);
                if a.is_empty() {
                    if let Some(m) = applied["metadata"].as_object_mut() {
                        m.remove("annotations");
                    }
                }
            }
            new["metadata"]["annotations"][LAST_APPLIED] = json!(applied.to_string());
        }
        cap_updaters(&mut managed);
        set_managed(&mut new, &managed);
        Ok(new)
    }

    /// The fields `kubectl apply` (client-side) set, per the last-applied annotation, that still
    /// have the value it set: upgrading to server-side apply may take them over from their
    /// managers without a conflict.
    fn allowed_by_last_applied(&self, live: &Value) -> Option<Set> {
        let text = live["metadata"]["annotations"][LAST_APPLIED].as_str()?;
        let last: Value = serde_json::from_str(text).ok()?;
        let (s, t) = (self.updater.schema, self.updater.root);
        let last_set = typed::to_field_set(s, t, &last).ok()?;
        let cmp = typed::compare(s, t, &last, live).ok()?;
        Some(last_set.difference(&cmp.modified))
    }
}

/// Upstream's 409 for apply conflicts: one cause per field, the message grouped by manager.
pub fn conflict_error(conflicts: &[(ManagerId, Path)]) -> ApiError {
    let causes: Vec<Cause> = conflicts
        .iter()
        .map(|(id, p)| Cause {
            reason: "FieldManagerConflict".into(),
            field: path_string(p),
            message: format!("conflict with {}", id.describe()),
        })
        .collect();
    let message = if let [(id, p)] = conflicts {
        format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            id.describe(),
            path_string(p)
        )
    } else {
        let mut by_manager: BTreeMap<&ManagerId, Vec<String>> = BTreeMap::new();
        for (id, p) in conflicts {
            by_manager.entry(id).or_default().push(path_string(p));
        }
        let mut lines = Vec::new();
        for (id, paths) in by_manager {
            lines.push(format!("conflicts with {}:", id.describe()));
            lines.extend(paths.into_iter().map(|p| format!("- {p}")));
        }
        format!(
            "Apply failed with {} conflicts: {}",
            conflicts.len(),
            lines.join("\n")
        )
    };
    ApiError::ApplyConflict(message, causes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::schema::Schema;

    fn manager<'a>(ignore: &'a dyn Fn(&PathElement) -> bool) -> FieldManager<'a> {
        let s = Schema::builtin();
        FieldManager {
            updater: Updater {
                schema: s,
                root: s.kind("apps", "v1", "Deployment").unwrap(),
                ignore,
            },
            api_version: "apps/v1",
            subresource: "",
        }
    }

    const NONE: &dyn Fn(&PathElement) -> bool = &|_| false;

    fn deployment(replicas: i64) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "namespace": "default", "uid": "u", "labels": {"app": "x"}},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "a", "image": "i"}]}}}})
    }

    #[test]
    fn create_then_update_record_managers() {
        let fm = manager(NONE);
        let created = fm.update(
            None,
            deployment(1),
            "kubectl-create",
            "2024-01-01T00:00:00Z",
        );
        let mf = &created["metadata"]["managedFields"];
        assert_eq!(mf[0]["manager"], "kubectl-create");
        assert_eq!(mf[0]["operation"], "Update");
        assert_eq!(mf[0]["apiVersion"], "apps/v1");
        assert_eq!(mf[0]["time"], "2024-01-01T00:00:00Z");
        let v1 = &mf[0]["fieldsV1"];
        assert_eq!(
            v1["f:metadata"],
            json!({"f:labels": {".": {}, "f:app": {}}})
        );
        assert_eq!(v1["f:spec"]["f:replicas"], json!({}));
        let mut edited = created.clone();
        edited["spec"]["replicas"] = json!(4);
        let updated = fm.update(
            Some(&created),
            edited,
            "kubectl-edit",
            "2024-01-02T00:00:00Z",
        );
        let mf = updated["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(mf.len(), 2);
        assert_eq!(mf[1]["manager"], "kubectl-edit");
        assert_eq!(mf[1]["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
        assert!(mf[0]["fieldsV1"]["f:spec"].get("f:replicas").is_none());
    }

    #[test]
    fn untracked_objects_stay_untracked_until_applied() {
        let fm = manager(NONE);
        let live = deployment(1);
        let mut edited = live.clone();
        edited["spec"]["replicas"] = json!(2);
        let out = fm.update(Some(&live), edited, "x", "2024-01-01T00:00:00Z");
        assert!(out["metadata"].get("managedFields").is_none());
        let mut config = deployment(3);
        config["metadata"] = json!({"name": "d"});
        let applied = fm
            .apply(Some(&out), &config, "mgr", true, "2024-01-01T00:00:00Z")
            .unwrap();
        let mf = applied["metadata"]["managedFields"].as_array().unwrap();
        let names: Vec<&str> = mf.iter().map(|e| e["manager"].as_str().unwrap()).collect();
        assert_eq!(names, ["mgr", BEFORE_FIRST_APPLY]);
    }

    #[test]
    fn conflict_status_matches_upstream() {
        let fm = manager(NONE);
        let created = fm.update(None, deployment(1), "mgr", "2024-01-01T00:00:00Z");
        let mut config = deployment(2);
        config["metadata"] = json!({"name": "d"});
        let err = fm
            .apply(Some(&created), &config, "other", false, "now")
            .unwrap_err();
        let status = err.to_status();
        assert_eq!(status["code"], 409);
        assert_eq!(status["reason"], "Conflict");
        assert_eq!(
            status["message"],
            "Apply failed with 1 conflict: conflict with \"mgr\" using apps/v1: .spec.replicas"
        );
        assert_eq!(status["details"]["causes"][0]["field"], ".spec.replicas");
        assert_eq!(
            status["details"]["causes"][0]["reason"],
            "FieldManagerConflict"
        );
    }

    #[test]
    fn caps_update_managers() {
        let fm = manager(NONE);
        let mut obj = fm.update(None, deployment(0), "m0", "2024-01-01T00:00:00Z");
        for i in 1..13 {
            let mut next = obj.clone();
            next["spec"]["replicas"] = json!(i);
            next["metadata"]["labels"][format!("l{i}")] = json!("x");
            obj = fm.update(
                Some(&obj),
                next,
                &format!("m{i}"),
                &format!("2024-01-01T00:00:{i:02}Z"),
            );
        }
        let mf = obj["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(mf.len(), 10);
        assert!(mf.iter().any(|e| e["manager"] == ANCIENT_CHANGES));
    }
}
