//! Patch metadata: which fields merge lists by which key, which replace or retain keys, and the
//! type of each nested object, for the built-in kinds krust serves.
//!
//! The facts come from upstream's OpenAPI (`x-kubernetes-patch-strategy`,
//! `x-kubernetes-patch-merge-key`) rather than hand-written tags, so they cannot drift from what
//! `kubectl` assumes when it computes a patch. `patch_keys.json` is derived from the v1.26 swagger
//! by `tests/strategic_table.rs`; the few strategies added upstream since then are in
//! [`ADDED_AFTER_1_26`].

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Deserialize;

use super::error::{Result, StrategicPatchError};

const TABLE: &str = include_str!("patch_keys.json");

/// One fact added by hand on top of the derived table.
pub(crate) struct Addition {
    definition: &'static str,
    field: &'static str,
    ty: Option<&'static str>,
    strategy: Option<&'static str>,
    key: Option<&'static str>,
}

const CORE: &str = "io.k8s.api.core.v1.";

/// Patch strategies that upstream added between v1.26 and v1.33 (k8s.io/api core/v1 types.go):
/// `PodStatus.hostIPs` (1.28, by `ip`), `PodStatus.resourceClaimStatuses` (1.28, merge+retainKeys
/// by `name`) and `ContainerStatus.allocatedResourcesStatus` (1.31, by `name`), plus the type links
/// from `PodStatus` to `ContainerStatus` that make the latter reachable. The first two were
/// confirmed with kubectl 1.32's local strategic patch; the last is inert in practice, since the
/// container status lists themselves have no strategy and are replaced whole. Other list-map
/// fields added since 1.26 (`resources.claims`, `resizePolicy`, ...) carry no patch strategy.
const ADDED_AFTER_1_26: &[Addition] = &[
    addition("PodStatus", "hostIPs", None, Some("merge"), Some("ip")),
    addition(
        "PodStatus",
        "resourceClaimStatuses",
        None,
        Some("merge,retainKeys"),
        Some("name"),
    ),
    addition(
        "ContainerStatus",
        "allocatedResourcesStatus",
        None,
        Some("merge"),
        Some("name"),
    ),
    addition(
        "PodStatus",
        "containerStatuses",
        Some("ContainerStatus"),
        None,
        None,
    ),
    addition(
        "PodStatus",
        "initContainerStatuses",
        Some("ContainerStatus"),
        None,
        None,
    ),
    addition(
        "PodStatus",
        "ephemeralContainerStatuses",
        Some("ContainerStatus"),
        None,
        None,
    ),
];

const fn addition(
    definition: &'static str,
    field: &'static str,
    ty: Option<&'static str>,
    strategy: Option<&'static str>,
    key: Option<&'static str>,
) -> Addition {
    Addition {
        definition,
        field,
        ty,
        strategy,
        key,
    }
}

#[derive(Deserialize)]
struct RawTable {
    kinds: HashMap<String, String>,
    definitions: HashMap<String, HashMap<String, RawField>>,
}

#[derive(Deserialize, Default)]
struct RawField {
    #[serde(rename = "type")]
    ty: Option<String>,
    strategy: Option<String>,
    key: Option<String>,
}

/// How a field is patched (`x-kubernetes-patch-strategy`, possibly comma-separated).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Strategy {
    pub merge: bool,
    pub replace: bool,
    pub retain_keys: bool,
}

impl Strategy {
    fn parse(s: &str) -> Result<Self> {
        let mut strategy = Strategy::default();
        for part in s.split(',').map(str::trim) {
            match part {
                "merge" => strategy.merge = true,
                "replace" => strategy.replace = true,
                "retainKeys" => strategy.retain_keys = true,
                other => {
                    return Err(StrategicPatchError::Table(format!(
                        "unexpected patch strategy: {other}"
                    )))
                }
            }
        }
        Ok(strategy)
    }
}

#[derive(Debug, Default)]
struct FieldMeta {
    ty: Option<String>,
    strategy: Strategy,
    merge_key: Option<String>,
}

type Definition = HashMap<String, FieldMeta>;

/// The parsed table.
pub(crate) struct Schema {
    kinds: HashMap<String, String>,
    definitions: HashMap<String, Definition>,
}

/// A position in the type tree: the object type whose fields are being merged, if known.
#[derive(Clone, Copy)]
pub(crate) struct Node<'a> {
    schema: Option<&'a Schema>,
    def: Option<&'a Definition>,
}

/// What the table says about one field of a [`Node`].
#[derive(Clone, Copy)]
pub(crate) struct Field<'a> {
    pub name: &'a str,
    /// The field's object type, or its list items' type.
    pub node: Node<'a>,
    pub strategy: Strategy,
    pub merge_key: Option<&'a str>,
}

impl<'a> Node<'a> {
    /// A value without schema: maps merge, lists are replaced (upstream's behaviour for fields it
    /// has no metadata for).
    #[cfg(test)]
    pub(crate) fn untyped() -> Self {
        Node {
            schema: None,
            def: None,
        }
    }

    pub(crate) fn field(self, name: &'a str) -> Field<'a> {
        let meta = self.def.and_then(|d| d.get(name));
        let def = meta
            .and_then(|m| m.ty.as_deref())
            .and_then(|t| self.schema.and_then(|s| s.definitions.get(t)));
        Field {
            name,
            node: Node {
                schema: self.schema,
                def,
            },
            strategy: meta.map(|m| m.strategy).unwrap_or_default(),
            merge_key: meta.and_then(|m| m.merge_key.as_deref()),
        }
    }
}

impl Schema {
    /// The embedded table, parsed once.
    pub(crate) fn get() -> Result<&'static Schema> {
        static SCHEMA: OnceLock<Result<Schema>> = OnceLock::new();
        SCHEMA
            .get_or_init(Schema::load)
            .as_ref()
            .map_err(Clone::clone)
    }

    fn load() -> Result<Schema> {
        Schema::parse(TABLE, ADDED_AFTER_1_26)
    }

    /// Parses a table in `patch_keys.json`'s format and applies `additions` on top.
    pub(crate) fn parse(text: &str, additions: &[Addition]) -> Result<Schema> {
        let raw: RawTable =
            serde_json::from_str(text).map_err(|e| StrategicPatchError::Table(e.to_string()))?;
        let mut definitions = HashMap::new();
        for (name, fields) in raw.definitions {
            let def = fields
                .into_iter()
                .map(|(field, raw)| Ok((field, to_meta(raw)?)))
                .collect::<Result<Definition>>()?;
            definitions.insert(name, def);
        }
        for addition in additions {
            apply_addition(&mut definitions, addition)?;
        }
        Ok(Schema {
            kinds: raw.kinds,
            definitions,
        })
    }

    /// The root node of a served kind, `None` for kinds without schema (e.g. custom resources).
    pub(crate) fn kind(&self, (group, version, kind): (&str, &str, &str)) -> Option<Node<'_>> {
        let key = if group.is_empty() {
            format!("{version}/{kind}")
        } else {
            format!("{group}/{version}/{kind}")
        };
        let def = self.definitions.get(self.kinds.get(&key)?)?;
        Some(Node {
            schema: Some(self),
            def: Some(def),
        })
    }
}

fn to_meta(raw: RawField) -> Result<FieldMeta> {
    Ok(FieldMeta {
        ty: raw.ty,
        strategy: raw
            .strategy
            .as_deref()
            .map(Strategy::parse)
            .transpose()?
            .unwrap_or_default(),
        merge_key: raw.key,
    })
}

fn apply_addition(definitions: &mut HashMap<String, Definition>, a: &Addition) -> Result<()> {
    let raw = RawField {
        ty: a.ty.map(|t| format!("{CORE}{t}")),
        strategy: a.strategy.map(str::to_string),
        key: a.key.map(str::to_string),
    };
    let def = definitions
        .entry(format!("{CORE}{}", a.definition))
        .or_default();
    def.insert(a.field.to_string(), to_meta(raw)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment() -> Node<'static> {
        Schema::get()
            .unwrap()
            .kind(("apps", "v1", "Deployment"))
            .unwrap()
    }

    #[test]
    fn containers_merge_by_name() {
        let template = deployment().field("spec").node.field("template").node;
        let containers = template.field("spec").node.field("containers");
        assert!(containers.strategy.merge);
        assert_eq!(containers.merge_key, Some("name"));
        let env = containers.node.field("env");
        assert_eq!(env.merge_key, Some("name"));
        let mounts = containers.node.field("volumeMounts");
        assert_eq!(mounts.merge_key, Some("mountPath"));
    }

    #[test]
    fn volumes_merge_and_retain_keys() {
        let pod = Schema::get().unwrap().kind(("", "v1", "Pod")).unwrap();
        let volumes = pod.field("spec").node.field("volumes");
        assert_eq!(
            volumes.strategy,
            Strategy {
                merge: true,
                replace: false,
                retain_keys: true
            }
        );
    }

    #[test]
    fn additions_after_1_26_are_present() {
        let status = Schema::get()
            .unwrap()
            .kind(("", "v1", "Pod"))
            .unwrap()
            .field("status")
            .node;
        assert_eq!(status.field("hostIPs").merge_key, Some("ip"));
        let containers = status.field("containerStatuses").node;
        assert_eq!(
            containers.field("allocatedResourcesStatus").merge_key,
            Some("name")
        );
    }

    #[test]
    fn every_served_kind_has_a_root() {
        let schema = Schema::get().unwrap();
        assert_eq!(schema.kinds.len(), 35);
        for name in schema.kinds.values() {
            assert!(schema.definitions.contains_key(name), "{name}");
        }
        assert!(schema.kind(("example.com", "v1", "Widget")).is_none());
    }

    #[test]
    fn unknown_strategy_is_an_error() {
        assert!(Strategy::parse("merge,explode").is_err());
    }
}
