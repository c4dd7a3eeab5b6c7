//! A minimal OpenAPI v3 (`/openapi/v3`): the discovery root and, per group-version, the PATCH
//! operations with their `fieldValidation` parameter and `x-kubernetes-group-version-kind`. kubectl
//! reads exactly that to decide it may leave validation to the server (`create -f`, `apply`);
//! without it kubectl refuses to send anything. `/openapi/v2` is an empty document (kubectl up to
//! 1.2x insists on fetching it, then falls back to its built-in patch metadata). Schemas are not
//! served yet (`kubectl explain`).

use axum::response::Response;
use bytes::Bytes;
use http::{header, HeaderMap, StatusCode};
use serde_json::{json, Map, Value};

use crate::content;
use crate::resources::{self, Resource};

/// `api/v1` or `apis/apps/v1`: the key kubectl looks group-versions up by.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn all_group_versions() -> Vec<(&'static str, &'static str)> {
    let mut gvs = vec![("", "v1")];
    for (g, vs) in resources::groups() {
        gvs.extend(vs.into_iter().map(|v| (g, v)));
    }
    gvs
}

/// Serves `/openapi/v3` and `/openapi/v3/<gv path>`; None for other paths.
pub fn serve(path: &str) -> Option<Response> {
    let rest = path.strip_prefix("/openapi/v3")?.trim_matches('/');
    let doc = if rest.is_empty() {
        root()
    } else {
        let (group, version) = all_group_versions()
            .into_iter()
            .find(|(g, v)| gv_path(g, v) == rest)?;
        group_version_doc(group, version)
    };
    Some(content::respond(
        StatusCode::OK,
        &doc,
        content::Output::Json,
    ))
}

/// `/openapi/v2`: protobuf (what client-go asks for) or JSON, with no paths or definitions.
pub fn serve_v2(path: &str, headers: &HeaderMap) -> Option<Response> {
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

fn root() -> Value {
    let mut paths = Map::new();
    for (g, v) in all_group_versions() {
        let p = gv_path(g, v);
        let url = format!(
            "/openapi/v3/{p}?hash={}",
            crate::health::KUBERNETES_VERSION.replace(['.', '+'], "")
        );
        paths.insert(p, json!({"serverRelativeURL": url}));
    }
    json!({"paths": paths})
}

fn group_version_doc(group: &str, version: &str) -> Value {
    let mut paths = Map::new();
    for r in resources::in_group_version(group, version) {
        paths.insert(object_path(r), json!({"patch": patch_operation(r)}));
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": crate::health::KUBERNETES_VERSION},
        "paths": paths,
        "components": {"schemas": {}},
    })
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
        let r = root();
        assert!(r["paths"]["api/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap()
            .starts_with("/openapi/v3/api/v1?hash="));
        assert!(r["paths"]["apis/apps/v1"].is_object());
        let apps = group_version_doc("apps", "v1");
        let op = &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(op["x-kubernetes-group-version-kind"]["kind"], "Deployment");
    }
}
