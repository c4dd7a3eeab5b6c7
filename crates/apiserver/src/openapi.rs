//! A minimal OpenAPI v3 (`/openapi/v3`): the discovery root and, per group-version, the PATCH
//! operations with their `fieldValidation` parameter and `x-kubernetes-group-version-kind`. kubectl
//! reads exactly that to decide it may leave validation to the server (`create -f`, `apply`);
//! without it kubectl refuses to send anything. `/openapi/v2` is an empty document (kubectl up to
//! 1.2x insists on fetching it, then falls back to its built-in patch metadata). Built-in schemas
//! are not served yet; a custom resource's group-version document carries its CRD's schema under
//! `components.schemas` with `x-kubernetes-group-version-kind`, which is what `kubectl explain`
//! looks up. (`/openapi/v2` stays empty, custom resources included: kubectl 1.27+ explains from
//! v3, and a v2 document with definitions would switch older kubectls to client-side validation.)
//! Each group-version's URL carries a hash of its document, so kubectl's cache of it is
//! refreshed when a CRD changes.

use axum::response::Response;
use bytes::Bytes;
use http::{header, HeaderMap, StatusCode};
use serde_json::{json, Map, Value};

use crate::content;
use crate::resources::{Resource, ResourceTable};

/// `api/v1` or `apis/apps/v1`: the key kubectl looks group-versions up by.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn all_group_versions(table: &ResourceTable) -> Vec<(&'static str, &'static str)> {
    let mut gvs = vec![("", "v1")];
    for (g, vs) in table.groups() {
        gvs.extend(vs.into_iter().map(|v| (g, v)));
    }
    gvs
}

/// Serves `/openapi/v3` and `/openapi/v3/<gv path>`; None for other paths.
pub fn serve(path: &str, table: &ResourceTable) -> Option<Response> {
    let rest = path.strip_prefix("/openapi/v3")?.trim_matches('/');
    let doc = if rest.is_empty() {
        root(table)
    } else {
        let (group, version) = all_group_versions(table)
            .into_iter()
            .find(|(g, v)| gv_path(g, v) == rest)?;
        group_version_doc(group, version, table)
    };
    Some(content::respond(
        StatusCode::OK,
        &doc,
        content::Output::Json,
    ))
}

/// `/openapi/v2`: protobuf (what client-go asks for) or JSON, with no paths or definitions.
pub fn serve_v2(path: &str, headers: &HeaderMap, _table: &ResourceTable) -> Option<Response> {
    if path != "/openapi/v2" {
        return None;
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.contains("protobuf") {
        return Some(content::raw(
            StatusCode::OK,
            Bytes::from(v2_protobuf()),
            "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
        ));
    }
    let doc = json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": crate::health::KUBERNETES_VERSION}, "paths": {}});
    Some(content::respond(
        StatusCode::OK,
        &doc,
        content::Output::Json,
    ))
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
        let url = format!("/openapi/v3/{p}?hash={}", doc_hash(g, v, table));
        paths.insert(p, json!({"serverRelativeURL": url}));
    }
    json!({"paths": paths})
}

/// The document's hash in the root's URL (upstream: its ETag): the server version for the
/// built-in documents, which only change with it; a digest of the document where a CRD is.
fn doc_hash(group: &str, version: &str, table: &ResourceTable) -> String {
    let base = crate::health::KUBERNETES_VERSION.replace(['.', '+'], "");
    let rows = table.in_group_version(group, version);
    if rows.iter().all(|r| r.custom.is_none()) {
        return base;
    }
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    group_version_doc(group, version, table)
        .to_string()
        .hash(&mut h);
    format!("{base}{:016X}", h.finish())
}

fn group_version_doc(group: &str, version: &str, table: &ResourceTable) -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for r in table.in_group_version(group, version) {
        paths.insert(object_path(&r), json!({"patch": patch_operation(&r)}));
        if let Some(schema) = custom_schema(&r) {
            schemas.insert(schema_name(&r), schema);
        }
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": crate::health::KUBERNETES_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

/// `com.example.v1.Widget`: the group reversed, as upstream names CRD definitions.
fn schema_name(r: &Resource) -> String {
    let mut parts: Vec<&str> = r.group.split('.').collect();
    parts.reverse();
    format!("{}.{}.{}", parts.join("."), r.version, r.kind)
}

/// A CRD version's schema as upstream publishes it: apiVersion, kind and metadata added, tagged
/// with its group-version-kind.
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
    props["metadata"] = json!({"type": "object", "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"});
    schema["x-kubernetes-group-version-kind"] =
        json!([{"group": r.group, "version": r.version, "kind": r.kind}]);
    Some(schema)
}

fn object_path(r: &Resource) -> String {
    let ns = if r.namespaced {
        "/namespaces/{namespace}"
    } else {
        ""
    };
    format!("/{}{ns}/{}/{{name}}", gv_path(r.group, r.version), r.plural)
}

fn patch_operation(r: &Resource) -> Value {
    let query = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}});
    json!({
        "operationId": format!("patch{}", r.kind),
        "x-kubernetes-action": "patch",
        "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
        "parameters": [query("dryRun"), query("fieldManager"), query("fieldValidation"), query("force")],
        "responses": {"200": {"description": "OK"}},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_lists_group_versions() {
        let table = ResourceTable::default();
        let r = root(&table);
        assert!(r["paths"]["api/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap()
            .starts_with("/openapi/v3/api/v1?hash="));
        assert!(r["paths"]["apis/apps/v1"].is_object());
        let apps = group_version_doc("apps", "v1", &table);
        let op = &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(op["x-kubernetes-group-version-kind"]["kind"], "Deployment");
    }
}
