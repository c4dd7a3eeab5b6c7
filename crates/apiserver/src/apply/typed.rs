//! Operations on JSON values along a type tree, as structured-merge-diff's `typed` package does
//! them: the set of fields a value sets ([`to_field_set`]), what changed between two values
//! ([`compare`]), merging an applied configuration into a live object ([`merge`]) and removing a
//! set of fields from a value ([`remove_items`]).
//!
//! Values that do not fit their type (a string where a struct belongs) are treated as leaves
//! rather than refused; validation of the stored object reports them.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::fieldset::{Path, PathElement, Set};
use super::schema::{ListKind, ListType, MapType, Resolved, Schema, TypeRef, DEDUCED, DEDUCED_MAP};

pub type Result<T> = std::result::Result<T, String>;

/// What changed from one value to another.
#[derive(Debug, Default, Clone)]
pub struct Comparison {
    pub removed: Set,
    pub modified: Set,
    pub added: Set,
}

impl Comparison {
    pub fn is_same(&self) -> bool {
        self.removed.is_empty() && self.modified.is_empty() && self.added.is_empty()
    }

    /// Drops the paths `keep` refuses at the top level (upstream's ignored "reset" fields).
    pub fn filter_top(&self, keep: &dyn Fn(&PathElement) -> bool) -> Comparison {
        Comparison {
            removed: self.removed.filter_top(keep),
            modified: self.modified.filter_top(keep),
            added: self.added.filter_top(keep),
        }
    }
}

fn is_empty_object(v: &Value) -> bool {
    v.as_object().is_some_and(Map::is_empty)
}

/// A map's type for one key: its named field, else its element type, else deduced.
fn field_type(m: &MapType, key: &str) -> TypeRef {
    m.fields.get(key).copied().or(m.elem).unwrap_or(DEDUCED)
}

/// The path element of a list item: its key fields (with their defaults), or its value for sets.
pub fn item_element(
    schema: &Schema,
    l: &ListType,
    item: &Value,
    index: usize,
) -> Result<PathElement> {
    let keys = match &l.kind {
        ListKind::Atomic => return Ok(PathElement::Index(index)),
        ListKind::Map(keys) if !keys.is_empty() => keys,
        // A set, or a map list without keys, which upstream treats as a set.
        _ => {
            return match item {
                Value::Object(_) => {
                    Err("associative list without keys has an element that's a map type".into())
                }
                Value::Array(_) => {
                    Err("not supported: associative list with lists as elements".into())
                }
                Value::Null => Err(
                    "associative list without keys has an element that's an explicit null".into(),
                ),
                v => Ok(PathElement::Value(v.clone())),
            }
        }
    };
    let Some(obj) = item.as_object() else {
        return Err(if item.is_null() {
            "associative list with keys may not have a null element".into()
        } else {
            "associative list with keys may not have non-map elements".into()
        });
    };
    let defaults = match schema.resolve(l.elem) {
        Resolved::Map(m, _) => Some(&m.key_defaults),
        _ => None,
    };
    let mut fields = Vec::with_capacity(keys.len());
    for k in keys {
        let v = obj
            .get(k)
            .or_else(|| defaults.and_then(|d| d.get(k)))
            .ok_or_else(|| {
                format!("associative list with keys has an element that omits key field {k:?} (and doesn't have default value)")
            })?;
        fields.push((k.clone(), v.clone()));
    }
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(PathElement::Key(fields))
}

fn errorf(path: &Path, msg: impl std::fmt::Display) -> String {
    let p = super::fieldset::path_string(path);
    if p.is_empty() {
        msg.to_string()
    } else {
        format!("{p}: {msg}")
    }
}

/// The fields `v` sets: every leaf, every list item, every map entry that is not a struct field,
/// and every null or empty-object field (upstream's `ToFieldSet`).
pub fn to_field_set(schema: &Schema, t: TypeRef, v: &Value) -> Result<Set> {
    let mut set = Set::new();
    let mut path = Vec::new();
    tfs(schema, t, v, &mut path, &mut set)?;
    Ok(set)
}

fn tfs(schema: &Schema, t: TypeRef, v: &Value, path: &mut Path, set: &mut Set) -> Result<()> {
    match schema.resolve(t) {
        Resolved::Scalar => set.insert(path),
        Resolved::Deduced => match v {
            Value::Object(o) => tfs_map(schema, deduced_map(schema), o, path, set)?,
            _ => set.insert(path),
        },
        Resolved::Map(m, atomic) => match v {
            _ if atomic => set.insert(path),
            Value::Object(o) => tfs_map(schema, m, o, path, set)?,
            Value::Null => {}
            _ => set.insert(path),
        },
        Resolved::List(l) => match v {
            _ if l.kind == ListKind::Atomic => set.insert(path),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let pe = item_element(schema, l, item, i)
                        .map_err(|e| errorf(path, format!("element {i}: {e}")))?;
                    path.push(pe);
                    tfs(schema, l.elem, item, path, set)?;
                    set.insert(path);
                    path.pop();
                }
            }
            Value::Null => {}
            _ => set.insert(path),
        },
    }
    Ok(())
}

fn deduced_map(schema: &Schema) -> &MapType {
    match schema.resolve(DEDUCED_MAP) {
        Resolved::Map(m, _) => m,
        _ => unreachable!("the deduced map type is a map"),
    }
}

fn tfs_map(
    schema: &Schema,
    m: &MapType,
    o: &Map<String, Value>,
    path: &mut Path,
    set: &mut Set,
) -> Result<()> {
    for (k, val) in o {
        path.push(PathElement::Field(k.clone()));
        tfs(schema, field_type(m, k), val, path, set)?;
        if val.is_null() || is_empty_object(val) || !m.fields.contains_key(k) {
            set.insert(path);
        }
        path.pop();
    }
    Ok(())
}

/// How a pair of values is walked at some type.
enum Shape<'a> {
    Leaf,
    Map(&'a MapType),
    List(&'a ListType),
}

fn shape<'a>(
    schema: &'a Schema,
    t: TypeRef,
    lhs: Option<&Value>,
    rhs: Option<&Value>,
) -> Shape<'a> {
    let sides = [lhs, rhs];
    let present = sides.iter().flatten().filter(|v| !v.is_null());
    match schema.resolve(t) {
        Resolved::Scalar => Shape::Leaf,
        Resolved::Deduced => {
            let all_objects = present.clone().all(|v| v.is_object());
            let some_content = present.clone().any(|v| !is_empty_object(v));
            if all_objects && some_content {
                Shape::Map(deduced_map(schema))
            } else {
                Shape::Leaf
            }
        }
        Resolved::Map(m, atomic) => {
            let all_objects = present.clone().all(|v| v.is_object());
            let some_content = present.clone().any(|v| !is_empty_object(v));
            if !atomic && all_objects && some_content {
                Shape::Map(m)
            } else {
                Shape::Leaf
            }
        }
        Resolved::List(l) => {
            let all_arrays = present.clone().all(|v| v.is_array());
            let some_content = present
                .clone()
                .any(|v| v.as_array().is_some_and(|a| !a.is_empty()));
            if l.kind != ListKind::Atomic && all_arrays && some_content {
                Shape::List(l)
            } else {
                Shape::Leaf
            }
        }
    }
}

/// The merging walker behind [`merge`] and [`compare`]: walks both values along the type, taking
/// the right-hand side at leaves; in compare mode it records what changed instead of building
/// the result.
struct Walker<'a> {
    schema: &'a Schema,
    path: Path,
    cmp: Option<Comparison>,
}

impl Walker<'_> {
    fn leaf(&mut self, lhs: Option<&Value>, rhs: Option<&Value>) {
        if let Some(c) = &mut self.cmp {
            match (lhs, rhs) {
                (None, Some(_)) => c.added.insert(&self.path),
                (Some(_), None) => c.removed.insert(&self.path),
                (Some(l), Some(r)) if l != r => c.modified.insert(&self.path),
                _ => {}
            }
        }
    }

    fn producing(&self) -> bool {
        self.cmp.is_none()
    }

    fn walk(
        &mut self,
        t: TypeRef,
        lhs: Option<&Value>,
        rhs: Option<&Value>,
    ) -> Result<Option<Value>> {
        let out = match shape(self.schema, t, lhs, rhs) {
            Shape::Leaf => {
                self.leaf(lhs, rhs);
                return Ok(if self.producing() {
                    rhs.or(lhs).cloned()
                } else {
                    None
                });
            }
            Shape::Map(m) => self.walk_map(
                m,
                lhs.and_then(Value::as_object),
                rhs.and_then(Value::as_object),
            )?,
            Shape::List(l) => self.walk_list(
                l,
                lhs.and_then(Value::as_array),
                rhs.and_then(Value::as_array),
            )?,
        };
        if let Some(c) = &mut self.cmp {
            match (lhs, rhs) {
                (None, _) => c.added.insert(&self.path),
                (_, None) => c.removed.insert(&self.path),
                _ => {}
            }
        }
        Ok(out)
    }

    fn walk_map(
        &mut self,
        m: &MapType,
        lhs: Option<&Map<String, Value>>,
        rhs: Option<&Map<String, Value>>,
    ) -> Result<Option<Value>> {
        let mut out = Map::new();
        let mut keys: Vec<&String> = lhs.into_iter().flat_map(|o| o.keys()).collect();
        for k in rhs.into_iter().flat_map(|o| o.keys()) {
            if !lhs.is_some_and(|l| l.contains_key(k)) {
                keys.push(k);
            }
        }
        for k in keys {
            let (l, r) = (lhs.and_then(|o| o.get(k)), rhs.and_then(|o| o.get(k)));
            self.path.push(PathElement::Field(k.clone()));
            let child = self.walk(field_type(m, k), l, r);
            self.path.pop();
            if let Some(v) = child? {
                out.insert(k.clone(), v);
            }
        }
        Ok((!out.is_empty()).then_some(Value::Object(out)))
    }

    fn index(&self, l: &ListType, list: Option<&Vec<Value>>) -> Result<Vec<(PathElement, usize)>> {
        let mut out = Vec::new();
        for (i, item) in list.into_iter().flatten().enumerate() {
            let pe = item_element(self.schema, l, item, i)
                .map_err(|e| errorf(&self.path, format!("element {i}: {e}")))?;
            out.push((pe, i));
        }
        Ok(out)
    }

    fn walk_item(
        &mut self,
        l: &ListType,
        pe: &PathElement,
        lhs: Option<&Value>,
        rhs: Option<&Value>,
        out: &mut Vec<Value>,
    ) -> Result<()> {
        self.path.push(pe.clone());
        let child = self.walk(l.elem, lhs, rhs);
        self.path.pop();
        if let Some(v) = child? {
            out.push(v);
        }
        Ok(())
    }

    /// Items in the right-hand side's order where both have them; left-only items stay where
    /// they were relative to the shared ones (upstream's merge order).
    fn walk_list(
        &mut self,
        l: &ListType,
        lhs: Option<&Vec<Value>>,
        rhs: Option<&Vec<Value>>,
    ) -> Result<Option<Value>> {
        let lhs_all = self.index(l, lhs)?;
        let rhs_pes = self.index(l, rhs)?;
        // Each side's items by path element; duplicates count once (the first occurrence), as
        // upstream's index does.
        let first = |pes: &[(PathElement, usize)]| {
            let mut m: BTreeMap<PathElement, usize> = BTreeMap::new();
            for (pe, i) in pes {
                m.entry(pe.clone()).or_insert(*i);
            }
            m
        };
        let lhs_u = first(&lhs_all);
        let rhs_u = first(&rhs_pes);
        let lookup =
            |m: &BTreeMap<PathElement, usize>, list: Option<&Vec<Value>>, pe: &PathElement| {
                m.get(pe)
                    .and_then(|i| list.and_then(|v| v.get(*i)))
                    .cloned()
            };
        let in_rhs = |pe: &PathElement| rhs_u.contains_key(pe);
        let in_lhs = |pe: &PathElement| lhs_u.contains_key(pe);
        let rhs_all: Vec<(PathElement, usize)> = rhs_pes
            .into_iter()
            .filter(|(pe, i)| rhs_u.get(pe) == Some(i))
            .collect();
        let mut shared: std::collections::VecDeque<PathElement> = rhs_all
            .iter()
            .filter(|(p, _)| in_lhs(p))
            .map(|(p, _)| p.clone())
            .collect();
        let mut next_shared = shared.pop_front();
        let mut merged_rhs: BTreeSet<PathElement> = BTreeSet::new();
        let mut out = Vec::new();
        let (mut li, mut ri) = (0, 0);
        while li < lhs_all.len() || ri < rhs_all.len() {
            if li < lhs_all.len() && ri < rhs_all.len() {
                let pe = &lhs_all[li].0;
                if *pe == rhs_all[ri].0 {
                    if merged_rhs.insert(pe.clone()) {
                        let lc = lookup(&lhs_u, lhs, pe);
                        let rc = lookup(&rhs_u, rhs, pe);
                        self.walk_item(l, pe, lc.as_ref(), rc.as_ref(), &mut out)?;
                    }
                    li += 1;
                    ri += 1;
                    next_shared = shared.pop_front();
                    continue;
                }
                if in_rhs(pe) && next_shared.as_ref().is_some_and(|n| n != pe) {
                    li += 1;
                    continue;
                }
            }
            if li < lhs_all.len() {
                let (pe, i) = &lhs_all[li];
                if !in_rhs(pe) {
                    let lc = lhs.and_then(|v| v.get(*i));
                    self.walk_item(l, pe, lc, None, &mut out)?;
                    li += 1;
                    continue;
                } else if merged_rhs.contains(pe) {
                    li += 1;
                    continue;
                }
            }
            if ri < rhs_all.len() {
                let pe = rhs_all[ri].0.clone();
                if merged_rhs.insert(pe.clone()) {
                    let lc = lookup(&lhs_u, lhs, &pe);
                    let rc = lookup(&rhs_u, rhs, &pe);
                    self.walk_item(l, &pe, lc.as_ref(), rc.as_ref(), &mut out)?;
                }
                ri += 1;
                if next_shared.as_ref() == Some(&pe) {
                    next_shared = shared.pop_front();
                }
            }
        }
        Ok((!out.is_empty()).then_some(Value::Array(out)))
    }
}

/// `config` merged into `live`: the configuration's values win at leaves and atomic values,
/// maps merge key by key, associative lists item by item.
pub fn merge(schema: &Schema, t: TypeRef, live: &Value, config: &Value) -> Result<Value> {
    let mut w = Walker {
        schema,
        path: Vec::new(),
        cmp: None,
    };
    Ok(w.walk(t, Some(live), Some(config))?
        .unwrap_or_else(|| Value::Object(Map::new())))
}

/// What changed from `old` to `new`: leaves that were added, removed or modified, and maps,
/// lists and items that appeared or went away as a whole.
pub fn compare(schema: &Schema, t: TypeRef, old: &Value, new: &Value) -> Result<Comparison> {
    let mut w = Walker {
        schema,
        path: Vec::new(),
        cmp: Some(Comparison::default()),
    };
    w.walk(t, Some(old), Some(new))?;
    Ok(w.cmp.unwrap_or_default())
}

/// `v` without the paths in `set` (a path that ends at a map or list item removes all of it).
pub fn remove_items(schema: &Schema, t: TypeRef, v: &Value, set: &Set) -> Value {
    if set.is_empty() {
        return v.clone();
    }
    remove(schema, t, v, set).unwrap_or_else(|| Value::Object(Map::new()))
}

fn remove(schema: &Schema, t: TypeRef, v: &Value, set: &Set) -> Option<Value> {
    match schema.resolve(t) {
        Resolved::Scalar => Some(v.clone()),
        Resolved::Deduced => match v {
            Value::Object(o) => remove_map(schema, deduced_map(schema), o, set),
            Value::Array(_) => None,
            other => Some(other.clone()),
        },
        Resolved::Map(m, atomic) => match v {
            Value::Object(o) if !atomic && !o.is_empty() => remove_map(schema, m, o, set),
            _ => None,
        },
        Resolved::List(l) => match v {
            Value::Array(items) if l.kind != ListKind::Atomic && !items.is_empty() => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let Ok(pe) = item_element(schema, l, item, i) else {
                        out.push(item.clone());
                        continue;
                    };
                    if set.has(std::slice::from_ref(&pe)) {
                        continue;
                    }
                    match set.with_prefix(&pe) {
                        Some(sub) => out.extend(remove(schema, l.elem, item, sub)),
                        None => out.push(item.clone()),
                    }
                }
                (!out.is_empty()).then_some(Value::Array(out))
            }
            _ => None,
        },
    }
}

fn remove_map(schema: &Schema, m: &MapType, o: &Map<String, Value>, set: &Set) -> Option<Value> {
    let mut out = Map::new();
    for (k, val) in o {
        let pe = PathElement::Field(k.clone());
        if set.has(std::slice::from_ref(&pe)) {
            continue;
        }
        match set.with_prefix(&pe) {
            Some(sub) => {
                if let Some(v) = remove(schema, field_type(m, k), val, sub) {
                    out.insert(k.clone(), v);
                }
            }
            None => {
                out.insert(k.clone(), val.clone());
            }
        }
    }
    (!out.is_empty()).then_some(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deploy() -> (&'static Schema, TypeRef) {
        let s = Schema::builtin();
        (s, s.kind("apps", "v1", "Deployment").unwrap())
    }

    fn f(s: &str) -> PathElement {
        PathElement::Field(s.into())
    }

    #[test]
    fn field_set_of_a_deployment() {
        let (s, t) = deploy();
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "labels": {"app": "x"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "x"}},
                "template": {"spec": {"containers": [{"name": "a", "image": "i",
                    "ports": [{"containerPort": 80}]}]}}}});
        let set = to_field_set(s, t, &d).unwrap();
        let v = set.to_fields_v1();
        assert_eq!(
            v["f:spec"]["f:selector"],
            json!({}),
            "LabelSelector is atomic"
        );
        assert_eq!(v["f:metadata"]["f:labels"], json!({"f:app": {}}));
        let c = &v["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"a\"}"];
        assert_eq!(c["."], json!({}));
        assert_eq!(
            c["f:ports"]["k:{\"containerPort\":80,\"protocol\":\"TCP\"}"],
            json!({".": {}, "f:containerPort": {}})
        );
    }

    #[test]
    fn merge_keeps_live_items_and_takes_config_values() {
        let (s, t) = deploy();
        let live = json!({"spec": {"replicas": 1, "template": {"spec": {"containers": [
            {"name": "a", "image": "old", "imagePullPolicy": "Always"},
            {"name": "b", "image": "b"}]}}}});
        let config = json!({"spec": {"replicas": 3, "template": {"spec": {"containers": [
            {"name": "c", "image": "c"}, {"name": "a", "image": "new"}]}}}});
        let out = merge(s, t, &live, &config).unwrap();
        let names: Vec<&str> = out["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["c", "a", "b"]);
        assert_eq!(out["spec"]["replicas"], 3);
        let a = &out["spec"]["template"]["spec"]["containers"][1];
        assert_eq!(
            (a["image"].as_str(), a["imagePullPolicy"].as_str()),
            (Some("new"), Some("Always"))
        );
    }

    #[test]
    fn compare_reports_items_and_leaves() {
        let (s, t) = deploy();
        let old = json!({"spec": {"replicas": 1, "paused": true}});
        let new =
            json!({"spec": {"replicas": 2, "template": {"metadata": {"labels": {"a": "b"}}}}});
        let c = compare(s, t, &old, &new).unwrap();
        assert!(c.modified.has(&[f("spec"), f("replicas")]));
        assert!(c.removed.has(&[f("spec"), f("paused")]));
        assert!(c.added.has(&[f("spec"), f("template")]));
        assert!(c
            .added
            .has(&[f("spec"), f("template"), f("metadata"), f("labels"), f("a")]));
    }

    #[test]
    fn remove_drops_items_and_emptied_parents() {
        let (s, t) = deploy();
        let v = json!({"spec": {"replicas": 1, "strategy": {"type": "Recreate"},
            "template": {"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}}});
        let mut set = Set::new();
        set.insert(&[f("spec"), f("strategy"), f("type")]);
        let key = PathElement::Key(vec![("name".into(), json!("b"))]);
        set.insert(&[f("spec"), f("template"), f("spec"), f("containers"), key]);
        let out = remove_items(s, t, &v, &set);
        assert_eq!(
            out,
            json!({"spec": {"replicas": 1,
            "template": {"spec": {"containers": [{"name": "a"}]}}}})
        );
    }

    #[test]
    fn missing_key_is_an_error() {
        let (s, t) = deploy();
        let v = json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}});
        let e = to_field_set(s, t, &v).unwrap_err();
        assert!(
            e.contains(".spec.template.spec.containers: element 0"),
            "{e}"
        );
    }
}
