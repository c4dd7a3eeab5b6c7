//! The review resources: TokenReview and SubjectAccessReview (how the kubelet, scheduler and
//! controller manager delegate authentication and authorization to the API server), and the
//! self-reviews behind `kubectl auth whoami` and `kubectl auth can-i`. They are created, answered
//! from the request and the configured authenticator/authorizer, and never stored.

use axum::response::Response;
use http::StatusCode;
use serde_json::{json, Value};

use crate::authn::UserInfo;
use crate::authz::{Attributes, Decision};
use crate::config::AuthorizationMode;
use crate::content::{self, Output};
use crate::rest::Call;
use crate::status::{ApiError, ApiResult};

pub async fn create(call: &Call<'_>) -> ApiResult<Response> {
    let res = &*call.info.res;
    let mut obj = call.body_object(res.kind, &res.api_version())?;
    let status = match res.kind {
        "TokenReview" => token_review(call, &obj).await?,
        "SelfSubjectReview" => json!({"userInfo": user_json(call.user)}),
        "SelfSubjectRulesReview" => rules_review(call, &obj),
        _ => access_review(call, &obj).await,
    };
    obj["status"] = status;
    if obj["metadata"].is_null() {
        obj["metadata"] = json!({"creationTimestamp": null});
    }
    Ok(content::respond(StatusCode::CREATED, &obj, Output::Json))
}

fn user_json(u: &UserInfo) -> Value {
    let mut v = json!({"username": u.name, "groups": u.groups});
    if !u.uid.is_empty() {
        v["uid"] = json!(u.uid);
    }
    if !u.extra.is_empty() {
        v["extra"] = json!(u.extra);
    }
    v
}

/// Upstream's TokenReview: the token is checked against `spec.audiences` (the server's own
/// when empty), and `status.audiences` says which of them it is valid for.
async fn token_review(call: &Call<'_>, obj: &Value) -> ApiResult<Value> {
    let token = obj["spec"]["token"].as_str().unwrap_or("");
    if token.is_empty() {
        return Err(ApiError::BadRequest(
            "token is required for TokenReview in authentication".into(),
        ));
    }
    let mut wanted = strings(&obj["spec"]["audiences"]);
    if wanted.is_empty() {
        wanted = call.authn.audiences().to_vec();
    }
    Ok(match call.authn.bearer_for(token, &wanted).await {
        Some((user, audiences)) => {
            json!({"authenticated": true, "user": user_json(&user), "audiences": audiences})
        }
        None => json!({"user": {}, "error": "invalid bearer token"}),
    })
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(String::from))
        .collect()
}

/// Who the review asks about: the requester for self-reviews, `spec.user` otherwise.
fn subject(call: &Call<'_>, spec: &Value) -> UserInfo {
    if call.info.res.kind == "SelfSubjectAccessReview" {
        return call.user.clone();
    }
    let groups = strings(&spec["groups"]);
    let extra = spec["extra"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), strings(v)))
        .collect();
    UserInfo {
        name: spec["user"].as_str().unwrap_or("").into(),
        uid: spec["uid"].as_str().unwrap_or("").into(),
        groups,
        extra,
    }
}

async fn access_review(call: &Call<'_>, obj: &Value) -> Value {
    let spec = &obj["spec"];
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    let ra = &spec["resourceAttributes"];
    let nra = &spec["nonResourceAttributes"];
    let resource_request = !ra.is_null();
    let namespace = match call.info.res.kind {
        "LocalSubjectAccessReview" => call.info.namespace.clone().unwrap_or_default(),
        _ => s(&ra["namespace"]),
    };
    let attrs = Attributes {
        user: subject(call, spec),
        verb: if resource_request {
            s(&ra["verb"])
        } else {
            s(&nra["verb"])
        },
        resource_request,
        api_group: s(&ra["group"]),
        api_version: s(&ra["version"]),
        resource: s(&ra["resource"]),
        subresource: s(&ra["subresource"]),
        namespace,
        name: s(&ra["name"]),
        path: s(&nra["path"]),
        field_selector: String::new(),
    };
    match call.authz.authorize(&attrs).await {
        Decision::Allow => json!({"allowed": true}),
        Decision::Deny(reason) => json!({"allowed": false, "reason": reason}),
    }
}

/// The rules the requester holds in `spec.namespace`: everything under AlwaysAllow, the RBAC
/// rules under Node,RBAC (the Node authorizer adds nothing for non-nodes, and cannot list a
/// node's).
fn rules_review(call: &Call<'_>, obj: &Value) -> Value {
    let switch = &call.registry.authorization;
    if switch.mode() == AuthorizationMode::AlwaysAllow {
        return json!({
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": false,
        });
    }
    let namespace = obj["spec"]["namespace"].as_str().unwrap_or("");
    if crate::authorization::node::node_identity(call.user).is_some() {
        // Upstream's Node authorizer cannot list a node's rules: the review says so.
        let mut status = switch
            .rbac()
            .snapshot()
            .rules_for(call.user, namespace)
            .review_status();
        status["incomplete"] = json!(true);
        status["evaluationError"] = json!("node authorizer does not support user rule resolution");
        return status;
    }
    switch
        .rbac()
        .snapshot()
        .rules_for(call.user, namespace)
        .review_status()
}
