//! Re-derives the server-side apply type table (`src/apply/types.json`) from upstream's v1.26
//! OpenAPI document and checks that the committed table equals it.
//!
//! This test is also the generator: run it with `KRUST_UPDATE_APPLY_TYPES=1` to rewrite the table.
//! It converts the swagger the way upstream's kube-openapi `schemaconv` does for the API server's
//! structured-merge-diff schema: `x-kubernetes-list-type` / `x-kubernetes-list-map-keys` first,
//! else a `merge` patch strategy makes a list associative (keyed by the merge key, or a set of
//! scalars without one), else lists are atomic; `x-kubernetes-map-type` marks atomic structs and
//! maps; int-or-string and schemaless objects are untyped. Facts the v1.26 document lacks (key
//! defaults, which upstream takes from its OpenAPI v3) are added at load time in `apply/schema.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

/// The kinds whose type trees the table holds: the built-in kinds krust serves (as the strategic
/// patch table lists them), plus `Scale`.
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
    ("certificates.k8s.io/v1", "CertificateSigningRequest"),
];

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn table_path() -> PathBuf {
    crate_dir().join("src/apply/types.json")
}

fn swagger_path() -> PathBuf {
    crate_dir().join("../../../shared/reference/kubernetes-1.26-swagger.json")
}

const PREFIX: &str = "#/definitions/";

fn roots(definitions: &Map<String, Value>) -> BTreeMap<String, String> {
    let wanted: BTreeSet<String> = KINDS.iter().map(|(av, k)| format!("{av}/{k}")).collect();
    let mut roots = BTreeMap::new();
    for (name, def) in definitions {
        for gvk in def["x-kubernetes-group-version-kind"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let (g, v, k) = (
                gvk["group"].as_str().unwrap_or(""),
                gvk["version"].as_str().unwrap_or(""),
                gvk["kind"].as_str().unwrap_or(""),
            );
            let av = if g.is_empty() {
                v.to_string()
            } else {
                format!("{g}/{v}")
            };
            let key = format!("{av}/{k}");
            if wanted.contains(&key) {
                roots.insert(key, name.clone());
            }
        }
    }
    roots
}

/// The type of one property (or list item, or map value), as the table writes it.
fn field_type(p: &Value, refs: &mut Vec<String>) -> Value {
    if let Some(r) = p["$ref"].as_str() {
        let name = r.trim_start_matches(PREFIX).to_string();
        refs.push(name.clone());
        return match p["x-kubernetes-map-type"].as_str() {
            Some(t) => json!({"ref": name, "atomic": t == "atomic"}),
            None => Value::String(name),
        };
    }
    match p["type"].as_str() {
        Some("array") => {
            let elem = field_type(&p["items"], refs);
            let mut list = json!({"list": elem});
            match (
                p["x-kubernetes-list-type"].as_str(),
                p["x-kubernetes-patch-strategy"].as_str(),
            ) {
                (Some("map"), _) => {
                    list["type"] = json!("map");
                    list["keys"] = p["x-kubernetes-list-map-keys"].clone();
                }
                (Some("set"), _) => list["type"] = json!("set"),
                (Some(_), _) => list["type"] = json!("atomic"),
                (None, Some("merge" | "merge,retainKeys")) => {
                    match p["x-kubernetes-patch-merge-key"].as_str() {
                        Some(key) => {
                            list["type"] = json!("map");
                            list["keys"] = json!([key]);
                        }
                        None => list["type"] = json!("set"),
                    }
                }
                _ => list["type"] = json!("atomic"),
            }
            list
        }
        Some("object") => match p.get("additionalProperties") {
            Some(values) if values.is_object() => {
                let mut map = json!({"map": field_type(values, refs)});
                if p["x-kubernetes-map-type"] == "atomic" {
                    map["atomic"] = json!(true);
                }
                map
            }
            _ => json!("untyped"),
        },
        Some("string") if p["format"] == "int-or-string" => json!("untyped"),
        Some(_) => json!("scalar"),
        None => json!("untyped"),
    }
}

/// One definition: a struct's fields, or what a schemaless/scalar definition stands for.
fn definition(def: &Value, refs: &mut Vec<String>) -> Value {
    let Some(props) = def["properties"].as_object() else {
        return field_type(def, refs);
    };
    let fields: Map<String, Value> = props
        .iter()
        .map(|(name, p)| (name.clone(), field_type(p, refs)))
        .collect();
    let mut out = json!({"fields": fields});
    if def["x-kubernetes-map-type"] == "atomic" {
        out["atomic"] = json!(true);
    }
    out
}

fn render(kinds: &BTreeMap<String, String>, defs: &BTreeMap<String, Value>) -> String {
    let line = |k: &String, v: String| format!("    {}: {}", Value::String(k.clone()), v);
    let kinds: Vec<String> = kinds
        .iter()
        .map(|(k, v)| line(k, Value::String(v.clone()).to_string()))
        .collect();
    let defs: Vec<String> = defs.iter().map(|(k, v)| line(k, v.to_string())).collect();
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
    let roots = roots(definitions);
    assert_eq!(roots.len(), KINDS.len(), "every kind has a definition");
    let mut defs = BTreeMap::new();
    let mut stack: Vec<String> = roots.values().cloned().collect();
    while let Some(name) = stack.pop() {
        if defs.contains_key(&name) {
            continue;
        }
        let def = definitions.get(&name).expect("referenced definition");
        let mut refs = Vec::new();
        defs.insert(name, definition(def, &mut refs));
        stack.extend(refs);
    }
    render(&roots, &defs)
}

#[test]
fn committed_apply_types_match_upstream_swagger() {
    let swagger = swagger_path();
    if !swagger.exists() {
        eprintln!(
            "SKIPPED: {} is absent; cannot re-derive the apply type table",
            swagger.display()
        );
        return;
    }
    let derived = derive(&swagger);
    if std::env::var_os("KRUST_UPDATE_APPLY_TYPES").is_some() {
        std::fs::create_dir_all(table_path().parent().unwrap()).expect("mkdir");
        std::fs::write(table_path(), &derived).expect("write table");
    }
    let committed = std::fs::read_to_string(table_path()).unwrap_or_default();
    assert!(
        committed == derived,
        "src/apply/types.json is stale; regenerate with KRUST_UPDATE_APPLY_TYPES=1 cargo test -p apiserver --test apply_types"
    );
}
