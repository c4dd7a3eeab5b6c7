//! Field paths and sets of them, as structured-merge-diff's `fieldpath` package has them, and
//! their `FieldsV1` form in `metadata.managedFields`.
//!
//! A set is a trie: at each level, `members` are paths that end here and `children` lead deeper.
//! In FieldsV1 a member is `{}`, a child is its own object, and a node that is both carries
//! `".": {}`. Path elements are `f:<field>`, `k:<key fields as JSON>`, `v:<value as JSON>` and
//! `i:<index>`, ordered as upstream orders them (fields, then keys, values, indexes).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

use super::schema::{Resolved, Schema, TypeRef};

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathElement {
    /// A struct field or map key.
    Field(String),
    /// An item of a list-map, by its key fields (sorted by name).
    Key(Vec<(String, Value)>),
    /// An item of a set, by its value.
    Value(Value),
    /// An item by position (lists without keys; only for conflicts inside such lists).
    Index(usize),
}

pub type Path = Vec<PathElement>;

fn rank(pe: &PathElement) -> u8 {
    match pe {
        PathElement::Field(_) => 0,
        PathElement::Key(_) => 1,
        PathElement::Value(_) => 2,
        PathElement::Index(_) => 3,
    }
}

/// Upstream's total order over values: numbers, strings, booleans, lists, maps, null.
pub fn compare_values(a: &Value, b: &Value) -> Ordering {
    fn class(v: &Value) -> u8 {
        match v {
            Value::Number(_) => 0,
            Value::String(_) => 1,
            Value::Bool(_) => 2,
            Value::Array(_) => 3,
            Value::Object(_) => 4,
            Value::Null => 5,
        }
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => {
                let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
                x.partial_cmp(&y).unwrap_or(Ordering::Equal)
            }
        },
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (p, q) in x.iter().zip(y) {
                match compare_values(p, q) {
                    Ordering::Equal => continue,
                    o => return o,
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            let mut xs: Vec<_> = x.iter().collect();
            let mut ys: Vec<_> = y.iter().collect();
            xs.sort_by(|p, q| p.0.cmp(q.0));
            ys.sort_by(|p, q| p.0.cmp(q.0));
            for ((kp, vp), (kq, vq)) in xs.iter().zip(&ys) {
                match kp.cmp(kq).then_with(|| compare_values(vp, vq)) {
                    Ordering::Equal => continue,
                    o => return o,
                }
            }
            xs.len().cmp(&ys.len())
        }
        _ => class(a).cmp(&class(b)),
    }
}

impl Ord for PathElement {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (PathElement::Field(a), PathElement::Field(b)) => a.cmp(b),
            (PathElement::Key(a), PathElement::Key(b)) => {
                for ((ka, va), (kb, vb)) in a.iter().zip(b) {
                    match ka.cmp(kb).then_with(|| compare_values(va, vb)) {
                        Ordering::Equal => continue,
                        o => return o,
                    }
                }
                a.len().cmp(&b.len())
            }
            (PathElement::Value(a), PathElement::Value(b)) => compare_values(a, b),
            (PathElement::Index(a), PathElement::Index(b)) => a.cmp(b),
            _ => rank(self).cmp(&rank(other)),
        }
    }
}

impl PartialOrd for PathElement {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A value as upstream prints it in paths: strings quoted, numbers and booleans plain.
fn value_string(v: &Value) -> String {
    match v {
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(value_string).collect::<Vec<_>>().join(",")
        ),
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{k}={}", value_string(v)))
                .collect::<Vec<_>>()
                .join(";")
        ),
        other => other.to_string(),
    }
}

impl fmt::Display for PathElement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(fields) => {
                let parts: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| format!("{k}={}", value_string(v)))
                    .collect();
                write!(f, "[{}]", parts.join(","))
            }
            PathElement::Value(v) => write!(f, "[={}]", value_string(v)),
            PathElement::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// A path as upstream prints it: `.spec.template.spec.containers[name="app"].image`.
pub fn path_string(path: &[PathElement]) -> String {
    path.iter().map(ToString::to_string).collect()
}

impl PathElement {
    /// The FieldsV1 key of this element.
    fn fields_v1_key(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(fields) => {
                let m: Map<String, Value> = fields.iter().cloned().collect();
                format!("k:{}", Value::Object(m))
            }
            PathElement::Value(v) => format!("v:{v}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    fn from_fields_v1_key(key: &str) -> Result<PathElement, String> {
        let bad = || format!("unexpected FieldsV1 key {key:?}");
        let (kind, rest) = key.split_once(':').ok_or_else(bad)?;
        Ok(match kind {
            "f" => PathElement::Field(rest.to_string()),
            "k" => match serde_json::from_str::<Value>(rest).map_err(|_| bad())? {
                Value::Object(m) => {
                    let mut fields: Vec<(String, Value)> = m.into_iter().collect();
                    fields.sort_by(|a, b| a.0.cmp(&b.0));
                    PathElement::Key(fields)
                }
                _ => return Err(bad()),
            },
            "v" => PathElement::Value(serde_json::from_str(rest).map_err(|_| bad())?),
            "i" => PathElement::Index(rest.parse().map_err(|_| bad())?),
            _ => return Err(bad()),
        })
    }
}

/// A set of paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Set {
    members: BTreeSet<PathElement>,
    /// Never holds an empty set.
    children: BTreeMap<PathElement, Set>,
}

impl Set {
    pub fn new() -> Set {
        Set::default()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    pub fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    pub fn has(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.has(rest)),
        }
    }

    /// The paths below `pe`, without `pe` itself.
    pub fn with_prefix(&self, pe: &PathElement) -> Option<&Set> {
        self.children.get(pe)
    }

    pub fn union(&self, other: &Set) -> Set {
        let mut out = self.clone();
        out.members.extend(other.members.iter().cloned());
        for (pe, child) in &other.children {
            let merged = match out.children.get(pe) {
                Some(mine) => mine.union(child),
                None => child.clone(),
            };
            out.children.insert(pe.clone(), merged);
        }
        out
    }

    pub fn intersection(&self, other: &Set) -> Set {
        let mut out = Set::new();
        out.members = self.members.intersection(&other.members).cloned().collect();
        for (pe, child) in &self.children {
            if let Some(theirs) = other.children.get(pe) {
                let both = child.intersection(theirs);
                if !both.is_empty() {
                    out.children.insert(pe.clone(), both);
                }
            }
        }
        out
    }

    pub fn difference(&self, other: &Set) -> Set {
        let mut out = Set::new();
        out.members = self.members.difference(&other.members).cloned().collect();
        for (pe, child) in &self.children {
            let left = match other.children.get(pe) {
                Some(theirs) => child.difference(theirs),
                None => child.clone(),
            };
            if !left.is_empty() {
                out.children.insert(pe.clone(), left);
            }
        }
        out
    }

    /// Every path in the set: this level's members first, then each child's, in order.
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        for m in &self.members {
            let mut p = prefix.clone();
            p.push(m.clone());
            out.push(p);
        }
        for (pe, child) in &self.children {
            prefix.push(pe.clone());
            child.collect(prefix, out);
            prefix.pop();
        }
    }

    /// Keeps only the top-level elements `keep` accepts (with everything below them).
    pub fn filter_top(&self, keep: impl Fn(&PathElement) -> bool) -> Set {
        Set {
            members: self.members.iter().filter(|p| keep(p)).cloned().collect(),
            children: self
                .children
                .iter()
                .filter(|(p, _)| keep(p))
                .map(|(p, c)| (p.clone(), c.clone()))
                .collect(),
        }
    }

    /// This set plus every struct field that leads to a member: a manager owning `.a.b` of a
    /// struct `a` also owns `a` itself for pruning, but not a map entry on the way (upstream's
    /// `EnsureNamedFieldsAreMembers`).
    pub fn ensure_named_fields_are_members(&self, schema: &Schema, t: TypeRef) -> Set {
        let mut out = Set {
            members: self.members.clone(),
            children: BTreeMap::new(),
        };
        let resolved = schema.resolve(t);
        for (pe, child) in &self.children {
            let mut child_type = None;
            match (pe, &resolved) {
                (PathElement::Field(name), Resolved::Map(m, _)) => {
                    if let Some(ft) = m.fields.get(name) {
                        out.members.insert(pe.clone());
                        child_type = Some(*ft);
                    } else {
                        child_type = m.elem;
                    }
                }
                (PathElement::Key(_), Resolved::List(l)) => child_type = Some(l.elem),
                _ => {}
            }
            let child = match child_type {
                Some(ct) => child.ensure_named_fields_are_members(schema, ct),
                None => child.clone(),
            };
            out.children.insert(pe.clone(), child);
        }
        out
    }

    /// The FieldsV1 object of this set.
    pub fn to_fields_v1(&self) -> Value {
        Value::Object(self.fields_v1_object(false))
    }

    fn fields_v1_object(&self, include_self: bool) -> Map<String, Value> {
        let mut out = Map::new();
        if include_self {
            out.insert(".".into(), Value::Object(Map::new()));
        }
        let mut keys: Vec<&PathElement> = self.members.iter().collect();
        keys.extend(self.children.keys());
        keys.sort();
        keys.dedup();
        for pe in keys {
            let v = match self.children.get(pe) {
                Some(child) => child.fields_v1_object(self.members.contains(pe)),
                None => Map::new(),
            };
            out.insert(pe.fields_v1_key(), Value::Object(v));
        }
        out
    }

    /// Reads a FieldsV1 object.
    pub fn from_fields_v1(v: &Value) -> Result<Set, String> {
        let obj = v
            .as_object()
            .ok_or_else(|| "FieldsV1 must be an object".to_string())?;
        let mut set = Set::new();
        for (key, child) in obj {
            if key == "." {
                continue;
            }
            let pe = PathElement::from_fields_v1_key(key)?;
            let child_obj = child
                .as_object()
                .ok_or_else(|| format!("FieldsV1 entry {key:?} must be an object"))?;
            if child_obj.is_empty() || child_obj.contains_key(".") {
                set.members.insert(pe.clone());
            }
            let sub = Set::from_fields_v1(child)?;
            if !sub.is_empty() {
                set.children.insert(pe, sub);
            }
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(s: &str) -> PathElement {
        PathElement::Field(s.into())
    }

    #[test]
    fn fields_v1_round_trip() {
        let v = json!({
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:template": {"f:spec": {"f:containers": {
                    "k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {},
                        "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {}}},
                }}},
            },
            "f:finalizers": {"v:\"a\"": {}},
        });
        let set = Set::from_fields_v1(&v).unwrap();
        assert_eq!(set.to_fields_v1(), v);
        let c = PathElement::Key(vec![("name".into(), json!("nginx"))]);
        let image = vec![
            f("spec"),
            f("template"),
            f("spec"),
            f("containers"),
            c.clone(),
            f("image"),
        ];
        assert!(set.has(&image));
        assert_eq!(
            path_string(&image),
            ".spec.template.spec.containers[name=\"nginx\"].image"
        );
        assert!(set.has(&[f("metadata"), f("labels")]));
        assert!(!set.has(&[f("metadata")]));
    }

    #[test]
    fn set_algebra() {
        let mut a = Set::new();
        a.insert(&[f("a"), f("b")]);
        a.insert(&[f("c")]);
        let mut b = Set::new();
        b.insert(&[f("a"), f("b")]);
        b.insert(&[f("d")]);
        assert_eq!(a.intersection(&b).paths(), vec![vec![f("a"), f("b")]]);
        assert_eq!(a.difference(&b).paths(), vec![vec![f("c")]]);
        assert_eq!(a.union(&b).paths().len(), 3);
        assert!(a.difference(&a).is_empty());
    }

    #[test]
    fn ordering_matches_upstream() {
        let k80 = PathElement::Key(vec![("containerPort".into(), json!(80))]);
        let k443 = PathElement::Key(vec![("containerPort".into(), json!(443))]);
        assert!(k80 < k443);
        assert!(f("z") < k80);
        assert!(PathElement::Value(json!(1)) < PathElement::Value(json!("a")));
    }
}
