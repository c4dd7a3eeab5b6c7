//! Ownership bookkeeping across managers, as structured-merge-diff's `merge.Updater`: an update
//! takes the fields it changed from everyone else; an apply merges its configuration, removes the
//! fields its manager applied last time and no longer applies (unless someone else owns them), and
//! refuses to change fields other managers own unless forced.
//!
//! All managers are treated as speaking the object's one served version (krust serves one
//! version per kind), so no conversion happens between their sets.

use std::collections::BTreeMap;

use serde_json::Value;

use super::fieldset::{Path, PathElement, Set};
use super::schema::{Schema, TypeRef};
use super::typed::{self, Comparison};

/// One manager's fields.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionedSet {
    pub set: Set,
    pub api_version: String,
    pub applied: bool,
}

/// Managers by identity (see `managed_fields::ManagerId`).
pub type Managers<K> = BTreeMap<K, VersionedSet>;

/// Why an apply did not happen.
#[derive(Debug)]
pub enum MergeError<K> {
    /// Fields the apply would change that other managers own.
    Conflicts(Vec<(K, Path)>),
    /// The configuration (or live object) does not fit the type.
    Invalid(String),
}

impl<K> From<String> for MergeError<K> {
    fn from(e: String) -> Self {
        MergeError::Invalid(e)
    }
}

/// The type a manager's operations are judged against, and the top-level fields nobody may own
/// through this endpoint (upstream's reset fields: `status` on a main resource, everything but
/// `status` on the status subresource).
pub struct Updater<'a> {
    pub schema: &'a Schema,
    pub root: TypeRef,
    pub ignore: &'a dyn Fn(&PathElement) -> bool,
}

impl Updater<'_> {
    fn keep(&self) -> impl Fn(&PathElement) -> bool + '_ {
        move |pe| !(self.ignore)(pe)
    }

    /// Takes the fields `old` → `new` changed away from every manager but `workflow`; without
    /// `force`, other managers' changed fields are conflicts instead.
    fn update<K: Ord + Clone>(
        &self,
        old: &Value,
        new: &Value,
        managers: &mut Managers<K>,
        workflow: &K,
        force: bool,
    ) -> Result<Comparison, MergeError<K>> {
        let compare = typed::compare(self.schema, self.root, old, new)?;
        let compare = compare.filter_top(&self.keep());
        let changed = compare.modified.union(&compare.added);
        let mut conflicts = Vec::new();
        let mut taken: Vec<(K, Set)> = Vec::new();
        for (manager, vs) in managers.iter() {
            if manager == workflow {
                continue;
            }
            let conflict = vs.set.intersection(&changed);
            if !conflict.is_empty() {
                conflicts.extend(conflict.paths().into_iter().map(|p| (manager.clone(), p)));
                taken.push((manager.clone(), conflict));
            }
        }
        if !force && !conflicts.is_empty() {
            return Err(MergeError::Conflicts(conflicts));
        }
        for (manager, set) in taken {
            if let Some(vs) = managers.get_mut(&manager) {
                vs.set = vs.set.difference(&set);
            }
        }
        if !compare.removed.is_empty() {
            for (manager, vs) in managers.iter_mut() {
                if manager != workflow {
                    vs.set = vs.set.difference(&compare.removed);
                }
            }
        }
        managers.retain(|_, vs| !vs.set.is_empty());
        Ok(compare)
    }

    /// A non-apply write by `manager`: it owns what it changed, on top of what it owned.
    pub fn update_manager<K: Ord + Clone>(
        &self,
        live: &Value,
        new: &Value,
        version: &str,
        managers: &mut Managers<K>,
        manager: &K,
    ) -> Result<(), MergeError<K>> {
        let compare = self.update(live, new, managers, manager, true)?;
        let previous = managers
            .remove(manager)
            .map(|vs| vs.set)
            .unwrap_or_default();
        let set = previous
            .difference(&compare.removed)
            .union(&compare.modified)
            .union(&compare.added)
            .filter_top(self.keep());
        if !set.is_empty() {
            managers.insert(
                manager.clone(),
                VersionedSet {
                    set,
                    api_version: version.to_string(),
                    applied: false,
                },
            );
        }
        Ok(())
    }

    /// An apply of `config` by `manager`: the merged object, and the managers afterwards.
    pub fn apply<K: Ord + Clone>(
        &self,
        live: &Value,
        config: &Value,
        version: &str,
        managers: &mut Managers<K>,
        manager: &K,
        force: bool,
    ) -> Result<Value, MergeError<K>> {
        let merged = typed::merge(self.schema, self.root, live, config)?;
        let last = managers.get(manager).map(|vs| vs.set.clone());
        let set = typed::to_field_set(self.schema, self.root, config)?.filter_top(self.keep());
        managers.insert(
            manager.clone(),
            VersionedSet {
                set,
                api_version: version.to_string(),
                applied: true,
            },
        );
        let new = match last {
            Some(last) if !last.is_empty() => self.prune(&merged, managers, &last)?,
            _ => merged,
        };
        self.update(live, &new, managers, manager, force)?;
        Ok(new)
    }

    /// Removes what the applier owned last time and no longer applies, unless another manager
    /// (or its new configuration) owns it, and only what it did own.
    fn prune<K: Ord + Clone>(
        &self,
        merged: &Value,
        managers: &Managers<K>,
        last: &Set,
    ) -> Result<Value, String> {
        let (s, t) = (self.schema, self.root);
        let named = |set: &Set| set.ensure_named_fields_are_members(s, t);
        let pruned = typed::remove_items(s, t, merged, &named(last));
        // Add back what any manager owns.
        let managed = managers
            .values()
            .fold(Set::new(), |acc, vs| acc.union(&vs.set));
        let merged_set = named(&typed::to_field_set(s, t, merged)?);
        let pruned_set = named(&typed::to_field_set(s, t, &pruned)?);
        let pruned = typed::remove_items(
            s,
            t,
            merged,
            &merged_set.difference(&pruned_set.union(&named(&managed))),
        );
        // Add back what the applier never owned (dangling items).
        let pruned_set = named(&typed::to_field_set(s, t, &pruned)?);
        Ok(typed::remove_items(
            s,
            t,
            merged,
            &merged_set
                .difference(&pruned_set)
                .intersection(&named(last)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn updater(ignore: &dyn Fn(&PathElement) -> bool) -> Updater<'_> {
        let s = Schema::builtin();
        Updater {
            schema: s,
            root: s.kind("apps", "v1", "Deployment").unwrap(),
            ignore,
        }
    }

    fn f(s: &str) -> PathElement {
        PathElement::Field(s.into())
    }

    const NONE: &dyn Fn(&PathElement) -> bool = &|_| false;

    fn deployment(replicas: i64, containers: &[&str]) -> Value {
        let cs: Vec<Value> = containers
            .iter()
            .map(|n| json!({"name": n, "image": format!("{n}:1")}))
            .collect();
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": cs}}}})
    }

    #[test]
    fn second_applier_conflicts_then_forces() {
        let u = updater(NONE);
        let mut managers: Managers<String> = Managers::new();
        let live = u
            .apply(
                &json!({}),
                &deployment(1, &["a"]),
                "apps/v1",
                &mut managers,
                &"one".to_string(),
                false,
            )
            .unwrap();
        let two = "two".to_string();
        let err = u
            .apply(
                &live,
                &deployment(3, &["a"]),
                "apps/v1",
                &mut managers.clone(),
                &two,
                false,
            )
            .unwrap_err();
        let MergeError::Conflicts(c) = err else {
            panic!()
        };
        assert_eq!(c, vec![("one".to_string(), vec![f("spec"), f("replicas")])]);
        let new = u
            .apply(
                &live,
                &deployment(3, &["a"]),
                "apps/v1",
                &mut managers,
                &two,
                true,
            )
            .unwrap();
        assert_eq!(new["spec"]["replicas"], 3);
        assert!(!managers["one"].set.has(&[f("spec"), f("replicas")]));
        assert!(managers["two"].set.has(&[f("spec"), f("replicas")]));
    }

    #[test]
    fn same_value_is_shared_not_a_conflict() {
        let u = updater(NONE);
        let mut managers: Managers<String> = Managers::new();
        let live = u
            .apply(
                &json!({}),
                &deployment(1, &["a"]),
                "apps/v1",
                &mut managers,
                &"one".to_string(),
                false,
            )
            .unwrap();
        u.apply(
            &live,
            &deployment(1, &["a"]),
            "apps/v1",
            &mut managers,
            &"two".to_string(),
            false,
        )
        .unwrap();
        assert!(managers["one"].set.has(&[f("spec"), f("replicas")]));
        assert!(managers["two"].set.has(&[f("spec"), f("replicas")]));
    }

    #[test]
    fn dropped_fields_are_pruned_unless_owned_elsewhere() {
        let u = updater(NONE);
        let mut managers: Managers<String> = Managers::new();
        let one = "one".to_string();
        let live = u
            .apply(
                &json!({}),
                &deployment(2, &["a", "b"]),
                "apps/v1",
                &mut managers,
                &one,
                false,
            )
            .unwrap();
        // A second applier also applies container b: the item is shared.
        let two = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"template": {"spec": {"containers": [{"name": "b", "image": "b:1"}]}}}});
        let live = u
            .apply(
                &live,
                &two,
                "apps/v1",
                &mut managers,
                &"two".to_string(),
                false,
            )
            .unwrap();
        // The first applier drops replicas and containers a and b.
        let mut config = deployment(2, &[]);
        config["spec"].as_object_mut().unwrap().remove("replicas");
        let new = u
            .apply(&live, &config, "apps/v1", &mut managers, &one, false)
            .unwrap();
        assert!(new["spec"].get("replicas").is_none(), "{new}");
        let cs = new["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap();
        assert_eq!(
            cs,
            &vec![json!({"name": "b", "image": "b:1"})],
            "b stays: {new}"
        );
    }

    #[test]
    fn sets_are_owned_item_by_item() {
        let u = updater(NONE);
        let mut managers: Managers<String> = Managers::new();
        let with = |f: &[&str]| json!({"metadata": {"name": "d", "finalizers": f}});
        let live = u
            .apply(
                &json!({}),
                &with(&["a", "b"]),
                "apps/v1",
                &mut managers,
                &"one".to_string(),
                false,
            )
            .unwrap();
        let live = u
            .apply(
                &live,
                &with(&["c"]),
                "apps/v1",
                &mut managers,
                &"two".to_string(),
                false,
            )
            .unwrap();
        assert_eq!(live["metadata"]["finalizers"], json!(["a", "b", "c"]));
        let set = &managers["two"].set;
        assert!(set.has(&[
            f("metadata"),
            f("finalizers"),
            PathElement::Value(json!("c"))
        ]));
        assert_eq!(
            set.to_fields_v1()["f:metadata"]["f:finalizers"],
            json!({"v:\"c\"": {}})
        );
        let live = u
            .apply(
                &live,
                &with(&["b"]),
                "apps/v1",
                &mut managers,
                &"one".to_string(),
                false,
            )
            .unwrap();
        assert_eq!(live["metadata"]["finalizers"], json!(["b", "c"]));
    }

    #[test]
    fn update_takes_changed_fields() {
        let u = updater(&|pe| *pe == PathElement::Field("status".into()));
        let mut managers: Managers<String> = Managers::new();
        let live = deployment(1, &["a"]);
        let mut new = live.clone();
        new["spec"]["replicas"] = json!(5);
        new["status"] = json!({"replicas": 1});
        u.update_manager(
            &json!({}),
            &live,
            "apps/v1",
            &mut managers,
            &"create".to_string(),
        )
        .unwrap();
        u.update_manager(&live, &new, "apps/v1", &mut managers, &"scaler".to_string())
            .unwrap();
        assert_eq!(
            managers["scaler"].set.paths(),
            vec![vec![f("spec"), f("replicas")]]
        );
        assert!(!managers["create"].set.has(&[f("spec"), f("replicas")]));
    }
}
