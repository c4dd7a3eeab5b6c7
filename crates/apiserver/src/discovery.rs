//! Discovery documents, generated from the resource table: the legacy `/api`, `/apis`, per-group
//! and per-group-version lists, and aggregated discovery (apidiscovery.k8s.io v2 and v2beta1),
//! which kubectl 1.30+ asks for first and recognises by the response's Content-Type. The table is
//! the server's current one, so an established CRD's resources appear at once.

use axum::response::Response;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde_json::{json, Value};

use crate::content;
use crate::resources::{subresource_kind, subresource_verbs, Resource, ResourceTable};
use crate::status::ApiError;

/// Which aggregated-discovery version the Accept header asks for, if any.
fn aggregated_version(headers: &HeaderMap) -> Option<&'static str> {
    let accept = headers.get(header::ACCEPT)?.to_str().ok()?;
    for entry in accept.split(',') {
        let params: Vec<&str> = entry.split(';').map(str::trim).collect();
        if !params.contains(&"as=APIGroupDiscoveryList")
            || !params.contains(&"g=apidiscovery.k8s.io")
        {
            continue;
        }
        if params.contains(&"v=v2") {
            return Some("v2");
        }
        if params.contains(&"v=v2beta1") {
            return Some("v2beta1");
        }
    }
    None
}

fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

/// `/api`, `/apis`, `/api/v1`, `/apis/g`, `/apis/g/v`; None when `path` is none of them.
pub fn serve(
    path: &str,
    headers: &HeaderMap,
    server_address: &str,
    table: &ResourceTable,
) -> Option<Result<Response, ApiError>> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let doc = match parts.as_slice() {
        ["api"] => match aggregated_version(headers) {
            Some(v) => return Some(Ok(aggregated(v, true, table))),
            None => json!({"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}),
        },
        ["apis"] => match aggregated_version(headers) {
            Some(v) => return Some(Ok(aggregated(v, false, table))),
            None => json!({"kind": "APIGroupList", "apiVersion": "v1",
                "groups": table.groups().iter().map(|(g, vs)| api_group(g, vs)).collect::<Vec<_>>()}),
        },
        ["api", "v1"] => resource_list("", "v1", table)?,
        ["apis", group] => {
            let (g, vs) = table.groups().into_iter().find(|(g, _)| g == group)?;
            let mut doc = api_group(g, &vs);
            doc["kind"] = json!("APIGroup");
            doc["apiVersion"] = json!("v1");
            doc
        }
        ["apis", group, version] => resource_list(group, version, table)?,
        _ => return None,
    };
    Some(Ok(content::respond(
        StatusCode::OK,
        &doc,
        content::Output::Json,
    )))
}

fn api_group(group: &str, versions: &[&str]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": group_version(group, v), "version": v}))
        .collect();
    json!({"name": group, "versions": vs, "preferredVersion": vs[0].clone()})
}

fn resource_list(group: &str, version: &str, table: &ResourceTable) -> Option<Value> {
    let mut list = Vec::new();
    for r in table.in_group_version(group, version) {
        list.push(api_resource(&r));
        for sub in r.subresources {
            let (g, v, kind) = subresource_kind(&r, sub);
            let mut s = json!({"name": format!("{}/{sub}", r.plural), "singularName": "", "namespaced": r.namespaced,
                               "kind": kind, "verbs": subresource_verbs(sub)});
            if (g, v) != (r.group, r.version) {
                s["group"] = json!(g);
                s["version"] = json!(v);
            }
            list.push(s);
        }
    }
    if list.is_empty() {
        return None;
    }
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version(group, version), "resources": list}),
    )
}

fn api_resource(r: &Resource) -> Value {
    let mut v = json!({"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                       "kind": r.kind, "verbs": r.verbs()});
    if !r.short_names.is_empty() {
        v["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        v["categories"] = json!(r.categories);
    }
    v
}

fn aggregated(version: &'static str, core: bool, table: &ResourceTable) -> Response {
    let groups: Vec<(&str, Vec<&str>)> = if core {
        vec![("", vec!["v1"])]
    } else {
        table.groups()
    };
    let items: Vec<Value> = groups
        .iter()
        .map(|(g, vs)| discovery_group(g, vs, table))
        .collect();
    let doc = json!({"kind": "APIGroupDiscoveryList", "apiVersion": format!("apidiscovery.k8s.io/{version}"),
                     "metadata": {}, "items": items});
    let ct = if version == "v2" {
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    } else {
        "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
    };
    let mut resp = content::raw(
        StatusCode::OK,
        Bytes::from(doc.to_string()),
        "application/json",
    );
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    resp
}

fn discovery_group(group: &str, versions: &[&str], table: &ResourceTable) -> Value {
    let mut meta = json!({"creationTimestamp": null});
    if !group.is_empty() {
        meta["name"] = json!(group);
    }
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| {
            let res: Vec<Value> = table
                .in_group_version(group, v)
                .iter()
                .map(|r| discovery_resource(r))
                .collect();
            json!({"version": v, "resources": res, "freshness": "Current"})
        })
        .collect();
    json!({"metadata": meta, "versions": vs})
}

fn discovery_resource(r: &Resource) -> Value {
    let subs: Vec<Value> = r
        .subresources
        .iter()
        .map(|sub| {
            let (g, v, kind) = subresource_kind(r, sub);
            json!({"subresource": sub, "responseKind": {"group": g, "version": v, "kind": kind}, "verbs": subresource_verbs(sub)})
        })
        .collect();
    let mut v = json!({
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": r.verbs(),
    });
    if !r.short_names.is_empty() {
        v["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        v["categories"] = json!(r.categories);
    }
    if !subs.is_empty() {
        v["subresources"] = json!(subs);
    }
    v
}
