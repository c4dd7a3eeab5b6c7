//! The type trees server-side apply walks: which values are structs (named fields), maps,
//! lists with their merge semantics (atomic, set, or map keyed by some fields) and scalars, as
//! structured-merge-diff's `schema` package describes them.
//!
//! Built-in kinds come from `types.json`, derived from upstream's OpenAPI by
//! `tests/apply_types.rs`. Kinds without a table entry (custom resources today) use the deduced
//! schema: maps merge key by key, lists are atomic. A custom resource with a structural schema can
//! build its own with [`Schema::from_openapi_v3`], which honours `x-kubernetes-list-type`,
//! `x-kubernetes-list-map-keys`, `x-kubernetes-map-type` and `x-kubernetes-preserve-unknown-fields`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use serde_json::Value;

const TABLE: &str = include_str!("types.json");

/// An index into a [`Schema`]'s atoms.
pub type TypeRef = usize;

/// How a list's items are told apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListKind {
    /// The list is one value: replaced whole, owned whole.
    Atomic,
    /// A set of scalars, each owned on its own (`v:` path elements).
    Set,
    /// Items identified by these fields (`k:` path elements).
    Map(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct ListType {
    pub elem: TypeRef,
    pub kind: ListKind,
}

/// A struct (named `fields`), a map (`elem` for every other key), or both.
#[derive(Debug, Clone, Default)]
pub struct MapType {
    pub fields: HashMap<String, TypeRef>,
    pub elem: Option<TypeRef>,
    pub atomic: bool,
    /// Defaults of fields used as list-map keys (upstream takes them from the OpenAPI v3 schema).
    pub key_defaults: HashMap<String, Value>,
}

#[derive(Debug, Clone)]
pub enum Atom {
    Scalar,
    /// Deduced from the value: objects are granular maps of deduced values, lists atomic.
    Deduced,
    Map(MapType),
    List(ListType),
    /// A struct used with another map type (`x-kubernetes-map-type` on the property).
    Override {
        target: TypeRef,
        atomic: bool,
    },
}

/// A set of types, addressed by [`TypeRef`].
#[derive(Debug, Clone)]
pub struct Schema {
    atoms: Vec<Atom>,
    kinds: HashMap<String, TypeRef>,
}

/// The deduced type every schema starts with.
pub const DEDUCED: TypeRef = 0;
const SCALAR: TypeRef = 1;
/// What a deduced object is: a map of deduced values.
pub const DEDUCED_MAP: TypeRef = 2;

/// Key defaults upstream's OpenAPI v3 carries and the v1.26 swagger (v2) does not.
const KEY_DEFAULTS: &[(&str, &str, &str)] = &[
    ("io.k8s.api.core.v1.ContainerPort", "protocol", "TCP"),
    ("io.k8s.api.core.v1.ServicePort", "protocol", "TCP"),
];

impl Schema {
    fn empty() -> Schema {
        Schema {
            atoms: vec![
                Atom::Deduced,
                Atom::Scalar,
                Atom::Map(MapType {
                    elem: Some(DEDUCED),
                    ..Default::default()
                }),
            ],
            kinds: HashMap::new(),
        }
    }

    pub fn atom(&self, t: TypeRef) -> &Atom {
        self.atoms.get(t).unwrap_or(&Atom::Deduced)
    }

    fn push(&mut self, a: Atom) -> TypeRef {
        self.atoms.push(a);
        self.atoms.len() - 1
    }

    /// The built-in kinds' types, parsed once.
    pub fn builtin() -> &'static Arc<Schema> {
        static SCHEMA: OnceLock<Arc<Schema>> = OnceLock::new();
        SCHEMA.get_or_init(|| {
            Arc::new(Schema::parse_table(TABLE).unwrap_or_else(|e| {
                tracing::error!("apply type table: {e}");
                Schema::empty()
            }))
        })
    }

    /// A schema with only the deduced type (for kinds nothing is known about).
    pub fn deduced() -> &'static Arc<Schema> {
        static SCHEMA: OnceLock<Arc<Schema>> = OnceLock::new();
        SCHEMA.get_or_init(|| Arc::new(Schema::empty()))
    }

    /// [`Schema::from_openapi_v3`] of a custom resource's schema, converted once per schema
    /// value (kept while the value is).
    pub fn custom(schema: &Arc<Value>) -> (Arc<Schema>, TypeRef) {
        type Cache = Vec<(Weak<Value>, Arc<Schema>, TypeRef)>;
        static CACHE: Mutex<Cache> = Mutex::new(Vec::new());
        let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        cache.retain(|(w, _, _)| w.strong_count() > 0);
        if let Some((_, s, t)) = cache
            .iter()
            .find(|(w, _, _)| w.upgrade().is_some_and(|v| Arc::ptr_eq(&v, schema)))
        {
            return (s.clone(), *t);
        }
        let (s, t) = Schema::from_openapi_v3(schema);
        let s = Arc::new(s);
        cache.push((Arc::downgrade(schema), s.clone(), t));
        (s, t)
    }

    /// The root type of a built-in kind (`group` empty for the core group).
    pub fn kind(&self, group: &str, version: &str, kind: &str) -> Option<TypeRef> {
        let key = if group.is_empty() {
            format!("{version}/{kind}")
        } else {
            format!("{group}/{version}/{kind}")
        };
        self.kinds.get(&key).copied()
    }

    fn parse_table(text: &str) -> Result<Schema, String> {
        let raw: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let defs = raw["definitions"].as_object().ok_or("no definitions")?;
        let mut s = Schema::empty();
        // Every definition gets its slot first, so references can be resolved in any order.
        let mut named: HashMap<&str, TypeRef> = HashMap::new();
        for name in defs.keys() {
            let t = s.push(Atom::Deduced);
            named.insert(name, t);
        }
        for (name, def) in defs {
            let atom = match def.get("fields").and_then(Value::as_object) {
                Some(fields) => {
                    let mut m = MapType {
                        atomic: def["atomic"] == true,
                        ..Default::default()
                    };
                    for (f, ty) in fields {
                        let t = s.table_type(ty, &named)?;
                        m.fields.insert(f.clone(), t);
                    }
                    for (d, field, value) in KEY_DEFAULTS {
                        if d == name {
                            m.key_defaults
                                .insert(field.to_string(), Value::String(value.to_string()));
                        }
                    }
                    Atom::Map(m)
                }
                None => {
                    let t = s.table_type(def, &named)?;
                    s.atoms[t].clone()
                }
            };
            s.atoms[named[name.as_str()]] = atom;
        }
        for (kind, def) in raw["kinds"].as_object().ok_or("no kinds")? {
            let t = def
                .as_str()
                .and_then(|d| named.get(d))
                .ok_or_else(|| format!("kind {kind}: unknown definition"))?;
            s.kinds.insert(kind.clone(), *t);
        }
        Ok(s)
    }

    fn table_type(
        &mut self,
        ty: &Value,
        named: &HashMap<&str, TypeRef>,
    ) -> Result<TypeRef, String> {
        Ok(match ty {
            Value::String(s) => match s.as_str() {
                "scalar" => SCALAR,
                "untyped" => DEDUCED,
                name => *named
                    .get(name)
                    .ok_or_else(|| format!("unknown definition {name}"))?,
            },
            Value::Object(o) if o.contains_key("list") => {
                let elem = self.table_type(&ty["list"], named)?;
                let kind = match ty["type"].as_str() {
                    Some("map") => ListKind::Map(
                        ty["keys"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|k| k.as_str().map(String::from))
                            .collect(),
                    ),
                    Some("set") => ListKind::Set,
                    _ => ListKind::Atomic,
                };
                self.push(Atom::List(ListType { elem, kind }))
            }
            Value::Object(o) if o.contains_key("map") => {
                let elem = self.table_type(&ty["map"], named)?;
                self.push(Atom::Map(MapType {
                    elem: Some(elem),
                    atomic: ty["atomic"] == true,
                    ..Default::default()
                }))
            }
            Value::Object(o) if o.contains_key("ref") => {
                // A struct whose map type is overridden where it is used.
                let target = self.table_type(&ty["ref"], named)?;
                self.push(Atom::Override {
                    target,
                    atomic: ty["atomic"] == true,
                })
            }
            other => return Err(format!("bad type {other}")),
        })
    }

    /// Converts a structural OpenAPI v3 schema (a CRD version's `openAPIV3Schema`) into a schema
    /// whose root type is returned with it, as upstream's CRD handler does for apply: the
    /// object's `metadata` is always the built-in ObjectMeta, whatever the schema says of it.
    pub fn from_openapi_v3(root: &Value) -> (Schema, TypeRef) {
        let builtin = Schema::builtin();
        let mut s = Schema {
            atoms: builtin.atoms.clone(),
            kinds: HashMap::new(),
        };
        let meta = builtin
            .kind("", "v1", "ConfigMap")
            .and_then(|t| match builtin.resolve(t) {
                Resolved::Map(m, _) => m.fields.get("metadata").copied(),
                _ => None,
            });
        let t = s.v3_type(root);
        if let (Some(meta), Some(Atom::Map(m))) = (meta, s.atoms.get_mut(t)) {
            m.fields.insert("metadata".into(), meta);
        }
        (s, t)
    }

    fn v3_type(&mut self, p: &Value) -> TypeRef {
        let preserve = p["x-kubernetes-preserve-unknown-fields"] == true;
        if p["x-kubernetes-int-or-string"] == true {
            return DEDUCED;
        }
        match p["type"].as_str() {
            Some("object") => {
                let props = p["properties"].as_object();
                let additional = p.get("additionalProperties").filter(|a| a.is_object());
                if props.is_none() && additional.is_none() {
                    return DEDUCED;
                }
                let mut m = MapType {
                    atomic: p["x-kubernetes-map-type"] == "atomic",
                    ..Default::default()
                };
                for (name, sub) in props.into_iter().flatten() {
                    let t = self.v3_type(sub);
                    m.fields.insert(name.clone(), t);
                    if let Some(d) = sub.get("default") {
                        m.key_defaults.insert(name.clone(), d.clone());
                    }
                }
                m.elem = match additional {
                    Some(a) => Some(self.v3_type(a)),
                    None if preserve => Some(DEDUCED),
                    None => None,
                };
                self.push(Atom::Map(m))
            }
            Some("array") => {
                let elem = match p.get("items") {
                    Some(items) => self.v3_type(items),
                    None => DEDUCED,
                };
                let kind = match p["x-kubernetes-list-type"].as_str() {
                    Some("set") => ListKind::Set,
                    Some("map") => ListKind::Map(
                        p["x-kubernetes-list-map-keys"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|k| k.as_str().map(String::from))
                            .collect(),
                    ),
                    _ => ListKind::Atomic,
                };
                self.push(Atom::List(ListType { elem, kind }))
            }
            Some(_) => SCALAR,
            None => DEDUCED,
        }
    }
}

/// What a type is once use-site overrides are followed.
pub enum Resolved<'a> {
    Scalar,
    Deduced,
    /// A struct and/or map, and whether it is atomic.
    Map(&'a MapType, bool),
    List(&'a ListType),
}

impl Schema {
    pub fn resolve(&self, t: TypeRef) -> Resolved<'_> {
        match self.atom(t) {
            Atom::Scalar => Resolved::Scalar,
            Atom::Deduced => Resolved::Deduced,
            Atom::Map(m) => Resolved::Map(m, m.atomic),
            Atom::List(l) => Resolved::List(l),
            Atom::Override { target, atomic } => match self.resolve(*target) {
                Resolved::Map(m, _) => Resolved::Map(m, *atomic),
                other => other,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn custom_resource_schema() {
        let crd = json!({"type": "object", "properties": {
            "metadata": {"type": "object"},
            "spec": {"type": "object", "properties": {
                "replicas": {"type": "integer"},
                "ports": {"type": "array", "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                    "items": {"type": "object", "properties": {
                        "name": {"type": "string"}, "port": {"type": "integer"},
                        "protocol": {"type": "string", "default": "TCP"}}}},
                "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                "args": {"type": "array", "items": {"type": "string"}},
                "selector": {"type": "object", "x-kubernetes-map-type": "atomic",
                    "additionalProperties": {"type": "string"}},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            }},
        }});
        let (s, root) = Schema::from_openapi_v3(&crd);
        let Resolved::Map(obj, false) = s.resolve(root) else {
            panic!()
        };
        let Resolved::Map(meta, false) = s.resolve(obj.fields["metadata"]) else {
            panic!()
        };
        assert!(meta.fields.contains_key("labels"), "metadata is ObjectMeta");
        let Resolved::Map(spec, false) = s.resolve(obj.fields["spec"]) else {
            panic!()
        };
        let kind = |f: &str| match s.resolve(spec.fields[f]) {
            Resolved::List(l) => l.kind.clone(),
            _ => panic!("{f} is a list"),
        };
        assert_eq!(kind("ports"), ListKind::Map(vec!["name".into()]));
        assert_eq!(kind("tags"), ListKind::Set);
        assert_eq!(kind("args"), ListKind::Atomic);
        assert!(matches!(
            s.resolve(spec.fields["selector"]),
            Resolved::Map(_, true)
        ));
        assert!(matches!(s.resolve(spec.fields["extra"]), Resolved::Deduced));
    }
}
