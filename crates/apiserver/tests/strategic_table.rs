//! Re-derives the strategic-merge-patch metadata table from upstream's v1.26 OpenAPI document and
//! checks that the committed `src/strategic/patch_keys.json` equals it.
//!
//! This test is also the generator: run it with `KRUST_UPDATE_PATCH_KEYS=1` to rewrite the table.
//! Facts added after v1.26 are not in the swagger file; they live in `strategic/schema.rs`
//! (`ADDED_AFTER_1_26`) and are applied on top at load time, so this check stays exact.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The built-in kinds krust serves, as (apiVersion, kind), plus `Scale` (the `/scale` subresource
/// of served kinds) and `CustomResourceDefinition` (`kubectl apply` of a CRD sends a strategic
/// merge patch, which upstream accepts because CRDs are a built-in type).
const KINDS: &[(&str, &str)] = &[
    ("autoscaling/v1", "Scale"),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
    ("v1", "Pod"),
    ("v1", "Service"),
    ("v1", "Endpoints"),
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "ServiceAccount"),
    ("v1", "Node"),
    ("v1", "Namespace"),
    ("v1", "Event"),
    ("v1", "LimitRange"),
    ("v1", "ResourceQuota"),
    ("v1", "PersistentVolume"),
    ("v1", "PersistentVolumeClaim"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "ReplicaSet"),
    ("apps/v1", "DaemonSet"),
    ("apps/v1", "StatefulSet"),
    ("apps/v1", "ControllerRevision"),
    ("batch/v1", "Job"),
    ("batch/v1", "CronJob"),
    ("coordination.k8s.io/v1", "Lease"),
    ("discovery.k8s.io/v1", "EndpointSlice"),
    ("events.k8s.io/v1", "Event"),
    ("networking.k8s.io/v1", "Ingress"),
    ("networking.k8s.io/v1", "IngressClass"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("policy/v1", "PodDisruptionBudget"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    ("storage.k8s.io/v1", "StorageClass"),
    ("scheduling.k8s.io/v1", "PriorityClass"),
];

type Fields = BTreeMap<String, BTreeMap<&'static str, String>>;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn table_path() -> PathBuf {
    crate_dir().join("src/strategic/patch_keys.json")
}

fn swagger_path() -> PathBuf {
    crate_dir().join("../../../shared/reference/kubernetes-1.26-swagger.json")
}

/// `group/version` as apiVersion: the core group has no prefix.
fn api_version(gvk: &Value) -> Option<String> {
    let group = gvk.get("group")?.as_str()?;
    let version = gvk.get("version")?.as_str()?;
    Some(if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    })
}

/// Maps each wanted `apiVersion/Kind` to the definition carrying its group-version-kind.
fn root_definitions(definitions: &serde_json::Map<String, Value>) -> BTreeMap<String, String> {
    let wanted: BTreeSet<String> = KINDS.iter().map(|(av, k)| format!("{av}/{k}")).collect();
    let mut roots = BTreeMap::new();
    for (name, def) in definitions {
        let gvks = def
            .get("x-kubernetes-group-version-kind")
            .and_then(Value::as_array);
        for gvk in gvks.into_iter().flatten() {
            let kind = gvk.get("kind").and_then(Value::as_str).unwrap_or_default();
            let Some(av) = api_version(gvk) else { continue };
            let key = format!("{av}/{kind}");
            if wanted.contains(&key) {
                roots.insert(key, name.clone());
            }
        }
    }
    roots
}

/// The definition a property points at: directly, as list items or as map values.
fn property_ref(property: &Value) -> Option<String> {
    let direct = property.get("$ref");
    let items = property.get("items").and_then(|i| i.get("$ref"));
    let values = property
        .get("additionalProperties")
        .and_then(|i| i.get("$ref"));
    let reference = direct.or(items).or(values)?.as_str()?;
    Some(reference.trim_start_matches("#/definitions/").to_string())
}

fn properties(def: &Value) -> impl Iterator<Item = (&String, &Value)> {
    def.get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
}

fn reachable(
    definitions: &serde_json::Map<String, Value>,
    roots: &BTreeMap<String, String>,
) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<String> = roots.values().cloned().collect();
    while let Some(name) = stack.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let Some(def) = definitions.get(&name) else {
            continue;
        };
        stack.extend(properties(def).filter_map(|(_, p)| property_ref(p)));
    }
    seen
}

/// Per definition, the patch facts of each property plus its referenced definition.
fn raw_fields(
    definitions: &serde_json::Map<String, Value>,
    names: &BTreeSet<String>,
) -> BTreeMap<String, Fields> {
    let mut out = BTreeMap::new();
    for name in names {
        let Some(def) = definitions.get(name) else {
            continue;
        };
        let mut fields = Fields::new();
        for (field, property) in properties(def) {
            let mut facts = BTreeMap::new();
            if let Some(reference) = property_ref(property) {
                facts.insert("type", reference);
            }
            for (tag, extension) in [
                ("strategy", "x-kubernetes-patch-strategy"),
                ("key", "x-kubernetes-patch-merge-key"),
            ] {
                if let Some(value) = property.get(extension).and_then(Value::as_str) {
                    facts.insert(tag, value.to_string());
                }
            }
            fields.insert(field.clone(), facts);
        }
        out.insert(name.clone(), fields);
    }
    out
}

/// Keeps only definitions that matter to patching: those with a patch strategy somewhere below.
/// Everything else patches like a plain JSON object, so the table can stay small.
fn prune(mut defs: BTreeMap<String, Fields>) -> BTreeMap<String, Fields> {
    let mut relevant: BTreeSet<String> = BTreeSet::new();
    loop {
        let before = relevant.len();
        for (name, fields) in &defs {
            let matters = fields.values().any(|f| {
                f.contains_key("strategy") || f.get("type").is_some_and(|t| relevant.contains(t))
            });
            if matters {
                relevant.insert(name.clone());
            }
        }
        if relevant.len() == before {
            break;
        }
    }
    defs.retain(|name, _| relevant.contains(name));
    for fields in defs.values_mut() {
        fields.retain(|_, f| {
            if f.get("type").is_some_and(|t| !relevant.contains(t)) {
                f.remove("type");
            }
            !f.is_empty()
        });
    }
    defs
}

fn render(kinds: &BTreeMap<String, String>, defs: &BTreeMap<String, Fields>) -> String {
    let line = |k: &String, v: String| format!("    {}: {}", Value::String(k.clone()), v);
    let kinds: Vec<String> = kinds
        .iter()
        .map(|(k, v)| line(k, Value::String(v.clone()).to_string()))
        .collect();
    let defs: Vec<String> = defs
        .iter()
        .map(|(k, v)| line(k, serde_json::to_string(v).unwrap_or_default()))
        .collect();
    format!(
        "{{\n  \"kinds\": {{\n{}\n  }},\n  \"definitions\": {{\n{}\n  }}\n}}\n",
        kinds.join(",\n"),
        defs.join(",\n")
    )
}

fn derive(swagger: &Path) -> String {
    let text = std::fs::read_to_string(swagger).expect("read swagger");
    let doc: Value = serde_json::from_str(&text).expect("parse swagger");
    let definitions = doc["definitions"].as_object().expect("definitions");
    let roots = root_definitions(definitions);
    assert_eq!(
        roots.len(),
        KINDS.len(),
        "every served kind has a definition"
    );
    let names = reachable(definitions, &roots);
    render(&roots, &prune(raw_fields(definitions, &names)))
}

#[test]
fn committed_table_matches_upstream_swagger() {
    let swagger = swagger_path();
    if !swagger.exists() {
        eprintln!(
            "SKIPPED: {} is absent; cannot re-derive the patch table",
            swagger.display()
        );
        return;
    }
    let derived = derive(&swagger);
    if std::env::var_os("KRUST_UPDATE_PATCH_KEYS").is_some() {
        std::fs::write(table_path(), &derived).expect("write table");
    }
    let committed = std::fs::read_to_string(table_path()).unwrap_or_default();
    assert!(
        committed == derived,
        "src/strategic/patch_keys.json is stale; regenerate with KRUST_UPDATE_PATCH_KEYS=1 cargo test -p apiserver --test strategic_table"
    );
}
