//! OpenAPI: `/openapi/v3` (the discovery root and one document per group-version) and
//! `/openapi/v2`, describing exactly what the resource table serves.
//!
//! Built-in schemas are generated from the API types ([`schemas`]: k8s-openapi's `JsonSchema`
//! implementations, upstream's names and descriptions), with upstream's extensions added from
//! the facts krust keeps for patching and apply ([`extensions`]): `x-kubernetes-group-version-kind`
//! on kinds, patch strategies and merge keys, list and map types, IntOrString and Quantity
//! formats. A custom resource's document carries its CRD's schema. Each group-version document
//! lists its resources' operations ([`paths`]) with the query parameters kubectl checks: the PATCH
//! operation's `fieldValidation` tells kubectl to leave validation to the server, and its request
//! body's media types tell kubectl 1.28+ it may compute `apply`'s strategic merge patch from
//! these schemas (custom resources list no strategic type, so kubectl sends them merge patches).
//!
//! The schemas are generated once per process; a document is built once per set of rows it
//! describes and kept serialized, so a CRD change rebuilds only its group-version (and v2). Each
//! group-version's URL in the root carries a digest of its document (also its ETag), so
//! kubectl's disk cache is refreshed when a document changes.
//!
//! `/openapi/v2`: JSON carries the whole API (paths and `definitions`, [`v2`] form) for clients
//! that read Swagger 2.0. kubectl only ever asks for v2 in protobuf, and gets a document with no
//! paths or definitions there, on purpose: client-go asks for v2 in protobuf only (on a 406 it
//! retries `/swagger-2.0.0.pb-v1`, which no current server has), and kubectl 1.27 fetches v2 for
//! every validated `apply` / `create` and fails on an error, so JSON-only would break it; and
//! a v2 document with definitions changes what kubectl does with it: kubectls before 1.27 would
//! validate on the client instead of the server, and `kubectl apply` (1.27, and 1.33 when v3
//! does not settle it) would take its patch metadata from v2 rather than from its compiled-in
//! types. The empty protobuf document keeps every kubectl on server-side validation, v3 explain
//! and v3 (or compiled-in) patch metadata. Other media types get 406, as upstream.

mod extensions;
mod paths;
mod schemas;
mod v2;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde_json::{json, Map, Value};

use crate::content;
use crate::resources::{Resource, ResourceTable};
use paths::{gv_path, Form};
use schemas::{Catalog, V3_PREFIX};

const SCALE: &str = "io.k8s.api.autoscaling.v1.Scale";
const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

fn all_group_versions(table: &ResourceTable) -> Vec<(&'static str, &'static str)> {
    let mut gvs = vec![("", "v1")];
    for (g, vs) in table.groups() {
        gvs.extend(vs.into_iter().map(|v| (g, v)));
    }
    gvs
}

/// Serves `/openapi/v3` and `/openapi/v3/<gv path>`; None for other paths.
pub fn serve(path: &str, headers: &HeaderMap, table: &ResourceTable) -> Option<Response> {
    let rest = path.strip_prefix("/openapi/v3")?.trim_matches('/');
    if !accepts_json(headers) {
        return Some(not_acceptable());
    }
    if rest.is_empty() {
        return Some(content::respond(
            StatusCode::OK,
            &root(table),
            content::Output::Json,
        ));
    }
    let (group, version) = all_group_versions(table)
        .into_iter()
        .find(|(g, v)| gv_path(g, v) == rest)?;
    let doc = group_version_doc(group, version, table);
    Some(cached_response(&doc, headers))
}

/// `/openapi/v2`: JSON with everything, protobuf with nothing (see the module docs).
pub fn serve_v2(path: &str, headers: &HeaderMap, table: &ResourceTable) -> Option<Response> {
    if path != "/openapi/v2" {
        return None;
    }
    let accept = accept(headers);
    if accept.contains("protobuf") {
        return Some(content::raw(
            StatusCode::OK,
            Bytes::from(v2_protobuf()),
            "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
        ));
    }
    if !accepts_json(headers) {
        return Some(not_acceptable());
    }
    Some(cached_response(&v2_doc(table), headers))
}

fn accept(headers: &HeaderMap) -> &str {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn accepts_json(headers: &HeaderMap) -> bool {
    let a = accept(headers);
    a.is_empty() || a.contains("json") || a.contains("*/*")
}

fn not_acceptable() -> Response {
    content::raw(
        StatusCode::NOT_ACCEPTABLE,
        Bytes::from_static(b"only application/json is served"),
        "text/plain",
    )
}

/// A serialized document with its digest (the ETag, and the `hash` in the root's URLs).
#[derive(Clone)]
struct Doc {
    body: Bytes,
    hash: String,
}

fn cached_response(doc: &Doc, headers: &HeaderMap) -> Response {
    let etag = format!("\"{}\"", doc.hash);
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == etag);
    let mut resp = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        content::raw(StatusCode::OK, doc.body.clone(), "application/json")
    };
    if let Ok(v) = HeaderValue::from_str(&etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

/// Documents already built, each with the rows it describes: a document is rebuilt only when
/// one of its rows was replaced (a CRD changed). Holding the rows keeps their addresses unique.
struct Built {
    rows: Vec<Arc<Resource>>,
    doc: Doc,
}

fn cached(key: String, rows: Vec<Arc<Resource>>, build: impl FnOnce() -> Value) -> Doc {
    static DOCS: Mutex<Option<HashMap<String, Built>>> = Mutex::new(None);
    let same = |b: &Built| {
        b.rows.len() == rows.len() && b.rows.iter().zip(&rows).all(|(a, b)| Arc::ptr_eq(a, b))
    };
    if let Some(b) = DOCS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new)
        .get(&key)
        .filter(|b| same(b))
    {
        return b.doc.clone();
    }
    let body = Bytes::from(serde_json::to_vec(&build()).unwrap_or_default());
    let doc = Doc {
        hash: digest(&body),
        body,
    };
    let built = Built {
        rows,
        doc: doc.clone(),
    };
    DOCS.lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(key, built);
    doc
}

fn digest(body: &[u8]) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut h);
    format!("{:016X}", h.finish())
}

/// gnostic's `openapi_v2.Document{swagger: "2.0", info: {title, version}}` on the wire.
fn v2_protobuf() -> Vec<u8> {
    let field = |tag: u8, bytes: &[u8]| {
        let mut f = vec![tag, bytes.len() as u8];
        f.extend_from_slice(bytes);
        f
    };
    let mut info = field(0x0a, b"Kubernetes");
    info.extend(field(0x12, crate::health::KUBERNETES_VERSION.as_bytes()));
    let mut doc = field(0x0a, b"2.0");
    doc.extend(field(0x12, &info));
    doc
}

fn root(table: &ResourceTable) -> Value {
    let mut paths = Map::new();
    for (g, v) in all_group_versions(table) {
        let p = gv_path(g, v);
        let hash = group_version_doc(g, v, table).hash;
        let url = format!("/openapi/v3/{p}?hash={hash}");
        paths.insert(p, json!({"serverRelativeURL": url}));
    }
    json!({"paths": paths})
}

fn info() -> Value {
    json!({"title": "Kubernetes", "version": crate::health::KUBERNETES_VERSION})
}

fn group_version_doc(group: &str, version: &str, table: &ResourceTable) -> Doc {
    let rows = table.in_group_version(group, version);
    let key = format!("v3:{}", gv_path(group, version));
    cached(key, rows.clone(), || {
        let mut paths = Map::new();
        let schemas = describe(&rows, Form::V3, &mut paths);
        json!({
            "openapi": "3.0.0",
            "info": info(),
            "paths": paths,
            "components": {"schemas": schemas},
        })
    })
}

fn v2_doc(table: &ResourceTable) -> Doc {
    let rows: Vec<Arc<Resource>> = table.snapshot().iter().cloned().collect();
    cached("v2".into(), rows.clone(), || {
        let mut paths = Map::new();
        let schemas = describe(&rows, Form::V2, &mut paths);
        json!({
            "swagger": "2.0",
            "info": info(),
            "paths": paths,
            "definitions": v2::definitions(&schemas),
        })
    })
}

/// The paths of `rows` (into `paths`) and the v3 schemas they need: each kind's schema and
/// everything it references.
fn describe(
    rows: &[Arc<Resource>],
    form: Form,
    paths: &mut Map<String, Value>,
) -> Map<String, Value> {
    let catalog = Catalog::get();
    let mut custom = Map::new();
    let mut roots = BTreeSet::new();
    for r in rows {
        let name = match custom_schema(r) {
            Some(schema) => {
                let name = schema_name(r);
                custom.insert(name.clone(), schema);
                Some(name)
            }
            None => catalog.kind(r.group, r.version, r.kind).map(str::to_string),
        };
        if name.is_none() && r.custom.is_none() {
            tracing::warn!(
                kind = r.kind,
                group = r.group,
                "no API type for a built-in kind"
            );
        }
        if r.has_subresource("scale") {
            roots.insert(SCALE.to_string());
        }
        paths::resource_paths(r, name.as_deref(), form, paths);
        roots.extend(name);
    }
    schemas::closure(|n| custom.get(n).or_else(|| catalog.schemas.get(n)), roots)
}

/// `com.example.v1.Widget`: the group reversed, as upstream names CRD definitions.
fn schema_name(r: &Resource) -> String {
    let mut parts: Vec<&str> = r.group.split('.').collect();
    parts.reverse();
    format!("{}.{}.{}", parts.join("."), r.version, r.kind)
}

/// A CRD version's schema as upstream publishes it: apiVersion, kind and metadata (ObjectMeta)
/// added, tagged with its group-version-kind.
fn custom_schema(r: &Resource) -> Option<Value> {
    let custom = r.custom.as_ref()?;
    let mut schema =
        custom.schema.as_deref().cloned().unwrap_or_else(
            || json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
        );
    let props = &mut schema["properties"];
    if !props.is_object() {
        *props = json!({});
    }
    props["apiVersion"] = json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources"});
    props["kind"] = json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"});
    props["metadata"] = json!({"allOf": [{"$ref": format!("{V3_PREFIX}{OBJECT_META}")}], "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"});
    schema["x-kubernetes-group-version-kind"] =
        json!([{"group": r.group, "version": r.version, "kind": r.kind}]);
    Some(schema)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(group: &str, version: &str) -> Value {
        let table = ResourceTable::default();
        serde_json::from_slice(&group_version_doc(group, version, &table).body).unwrap()
    }

    #[test]
    fn root_lists_group_versions() {
        let table = ResourceTable::default();
        let r = root(&table);
        assert!(r["paths"]["api/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap()
            .starts_with("/openapi/v3/api/v1?hash="));
        assert!(r["paths"]["apis/apps/v1"].is_object());
        let apps = doc("apps", "v1");
        let op = &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(op["x-kubernetes-group-version-kind"]["kind"], "Deployment");
    }

    #[test]
    fn deployment_schema_is_generated_with_extensions() {
        let apps = doc("apps", "v1");
        let schemas = &apps["components"]["schemas"];
        let d = &schemas["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            d["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "version": "v1", "kind": "Deployment"}])
        );
        let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(containers["x-kubernetes-list-type"], "map");
        assert!(schemas[OBJECT_META].is_object());
        // Every reference resolves within the document.
        let mut refs = BTreeSet::new();
        schemas::refs(schemas, V3_PREFIX, &mut refs);
        for r in refs {
            assert!(schemas[&r].is_object(), "{r} is referenced but missing");
        }
    }

    #[test]
    fn v2_negotiates_media_types() {
        let table = ResourceTable::default();
        let with = |accept: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, HeaderValue::from_str(accept).unwrap());
            serve_v2("/openapi/v2", &h, &table).unwrap().status()
        };
        assert_eq!(with("application/json"), StatusCode::OK);
        assert_eq!(
            with("application/com.github.proto-openapi.spec.v2@v1.0+protobuf"),
            StatusCode::OK
        );
        assert_eq!(with("application/yaml"), StatusCode::NOT_ACCEPTABLE);
        let v2: Value = serde_json::from_slice(&v2_doc(&table).body).unwrap();
        let spec = &v2["definitions"]["io.k8s.api.apps.v1.Deployment"]["properties"]["spec"];
        assert_eq!(
            spec["$ref"],
            "#/definitions/io.k8s.api.apps.v1.DeploymentSpec"
        );
        assert!(spec["description"].is_string());
        let patch =
            &v2["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert!(patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation" && p["in"] == "query"));
    }

    #[test]
    fn every_built_in_kind_has_a_schema() {
        let catalog = Catalog::get();
        for r in crate::resources::RESOURCES {
            assert!(
                catalog.kind(r.group, r.version, r.kind).is_some(),
                "{}/{} {}",
                r.group,
                r.version,
                r.kind
            );
        }
    }
}
