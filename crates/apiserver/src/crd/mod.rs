//! CustomResourceDefinitions (apiextensions.k8s.io/v1).
//!
//! A CRD is an ordinary built-in resource (a row of the resource table, stored under
//! `/registry/apiextensions.k8s.io/customresourcedefinitions/`), validated as upstream
//! ([`definition`]). The [`controller`] follows CRDs through the watch cache, sets their
//! NamesAccepted and Established conditions, and turns each established CRD into rows of the
//! server's [`ResourceTable`](crate::resources::ResourceTable), one per served version. From then
//! on its objects go through the same generic registry, REST, watch, discovery and Table code as
//! built-in objects; what differs is carried by [`Custom`] on the row: the version's structural
//! schema ([`schema`]: validation, pruning, defaulting), its CEL rules ([`cel`]), printer columns
//! ([`jsonpath`]) and scale paths.
//!
//! Conversion is upstream's strategy `None`: objects are stored in the storage version and every
//! served version sees the same fields with its own apiVersion.

pub mod cel;
pub mod controller;
pub mod definition;
pub mod jsonpath;
pub mod schema;

use std::sync::Arc;

use serde_json::{json, Value};

use crate::kinds::Cause;
use crate::resources::{intern, intern_list, Resource};
use crate::status::ApiError;

/// The finalizer the first DELETE of a CRD adds; the controller removes it once every object of
/// the CRD is gone.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// One `additionalPrinterColumns` entry.
#[derive(Debug, Clone)]
pub struct PrinterColumn {
    pub name: String,
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub path: jsonpath::Path,
}

/// `subresources.scale` of a version: where the replicas and the selector live.
#[derive(Debug, Clone)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

/// What a custom resource's row knows beyond the generic columns of the table.
pub struct Custom {
    /// The CRD's name (`widgets.example.com`), which owns the row.
    pub crd_name: String,
    pub list_kind: &'static str,
    /// The version objects are stored in.
    pub storage_version: &'static str,
    /// `openAPIV3Schema` of this version (None: anything goes, which v1 CRDs cannot ask for).
    pub schema: Option<Arc<Value>>,
    /// The schema's `x-kubernetes-validations`, compiled once.
    pub rules: Option<cel::Rules>,
    pub columns: Vec<PrinterColumn>,
    pub scale: Option<ScalePaths>,
    /// The CRD is being deleted: its objects are read and deleted, no new ones are created.
    pub terminating: bool,
}

impl std::fmt::Debug for Custom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Custom")
            .field("crd_name", &self.crd_name)
            .field("storage_version", &self.storage_version)
            .field("terminating", &self.terminating)
            .finish_non_exhaustive()
    }
}

impl Custom {
    /// Upstream's order on a write: drop fields the schema does not know, then fill defaults.
    pub fn prune_and_default(&self, obj: &mut Value) {
        if let Some(s) = &self.schema {
            schema::prune(s, obj, true);
            schema::default(s, obj);
        }
    }

    /// Objects read from storage get the defaults their schema has now (upstream defaults on
    /// read too, so a default added to a CRD shows on old objects).
    pub fn default_on_read(&self, obj: &mut Value) {
        if let Some(s) = &self.schema {
            schema::default(s, obj);
        }
    }

    /// The fields pruning would drop, as `spec.foo` paths, for fieldValidation Warn/Strict.
    pub fn unknown_fields(&self, obj: &Value) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(s) = &self.schema {
            schema::unknown(s, obj, "", true, &mut out);
        }
        out
    }

    /// The schema's checks, then (when the types are right) its CEL rules.
    pub fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let Some(s) = &self.schema else {
            return Vec::new();
        };
        let mut causes = Vec::new();
        let type_errors = schema::validate(s, obj, &mut causes);
        if !type_errors {
            if let Some(rules) = &self.rules {
                causes.extend(rules.validate(s, obj, old));
            }
        }
        causes
    }

    /// Upstream refuses creates while the CRD is terminating (405; its message, "create not
    /// allowed while custom resource definition is terminating", is not carried).
    pub fn terminating_error(&self, _res: &Resource) -> ApiError {
        ApiError::MethodNotAllowed
    }
}

/// The CRD's version entries.
fn versions(crd: &Value) -> impl Iterator<Item = &Value> {
    crd["spec"]["versions"].as_array().into_iter().flatten()
}

/// The version objects are stored in.
pub fn storage_version(crd: &Value) -> Option<&str> {
    versions(crd)
        .find(|v| v["storage"] == true)
        .and_then(|v| v["name"].as_str())
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(String::from)
        .collect()
}

/// metav1.ObjectMeta's creationTimestamp description, which upstream's Age column carries.
pub const AGE_DESCRIPTION: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// Upstream's default when a version names no printer columns: Age.
fn default_columns() -> Value {
    json!([{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp",
            "description": AGE_DESCRIPTION}])
}

fn columns(version: &Value) -> Vec<PrinterColumn> {
    let given = &version["additionalPrinterColumns"];
    let list = match given.as_array() {
        Some(a) if !a.is_empty() => given.clone(),
        _ => default_columns(),
    };
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            Some(PrinterColumn {
                name: c["name"].as_str()?.to_string(),
                type_: c["type"].as_str().unwrap_or("string").to_string(),
                format: c["format"].as_str().unwrap_or("").to_string(),
                description: c["description"].as_str().unwrap_or("").to_string(),
                priority: c["priority"].as_i64().unwrap_or(0),
                path: jsonpath::Path::parse(c["jsonPath"].as_str()?).ok()?,
            })
        })
        .collect()
}

/// The table rows an established CRD is served by, one per served version, named by its
/// accepted names.
pub fn rows(crd: &Value, terminating: bool) -> Vec<Resource> {
    let spec = &crd["spec"];
    let names = &crd["status"]["acceptedNames"];
    let (Some(group), Some(plural), Some(kind), Some(storage)) = (
        spec["group"].as_str(),
        names["plural"].as_str(),
        names["kind"].as_str(),
        storage_version(crd),
    ) else {
        return Vec::new();
    };
    let crd_name = crd["metadata"]["name"].as_str().unwrap_or("").to_string();
    let list_kind = names["listKind"]
        .as_str()
        .map_or_else(|| format!("{kind}List"), String::from);
    let singular = names["singular"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map_or_else(|| kind.to_lowercase(), String::from);
    let namespaced = spec["scope"] != "Cluster";
    let mut out = Vec::new();
    for v in versions(crd).filter(|v| v["served"] == true) {
        let Some(version) = v["name"].as_str() else {
            continue;
        };
        let mut subs = Vec::new();
        if v["subresources"]["status"].is_object() {
            subs.push("status".to_string());
        }
        let scale = v["subresources"]["scale"].as_object().map(|s| ScalePaths {
            spec_replicas: s
                .get("specReplicasPath")
                .and_then(Value::as_str)
                .unwrap_or(".spec.replicas")
                .to_string(),
            status_replicas: s
                .get("statusReplicasPath")
                .and_then(Value::as_str)
                .unwrap_or(".status.replicas")
                .to_string(),
            label_selector: s
                .get("labelSelectorPath")
                .and_then(Value::as_str)
                .map(String::from),
        });
        if scale.is_some() {
            subs.push("scale".to_string());
        }
        let schema = v["schema"]["openAPIV3Schema"]
            .as_object()
            .map(|_| Arc::new(v["schema"]["openAPIV3Schema"].clone()));
        let rules = schema.as_deref().and_then(cel::Rules::compile);
        let custom = Custom {
            crd_name: crd_name.clone(),
            list_kind: intern(&list_kind),
            storage_version: intern(storage),
            schema,
            rules,
            columns: columns(v),
            scale,
            terminating,
        };
        out.push(Resource {
            group: intern(group),
            version: intern(version),
            kind: intern(kind),
            plural: intern(plural),
            singular: intern(&singular),
            namespaced,
            subresources: intern_list(&subs),
            short_names: intern_list(&strings(&names["shortNames"])),
            categories: intern_list(&strings(&names["categories"])),
            storage: intern(&format!("{group}/{plural}")),
            returns_deleted_object: false,
            generation: true,
            review: false,
            delete_finalizer: None,
            custom: Some(Arc::new(custom)),
        });
    }
    out
}
