//! The subresources that reach a node's kubelet, as upstream's connect REST handlers
//! (pkg/registry/core/pod/rest/subresources.go, log.go, node/rest/proxy.go):
//!
//! - `pods/log` (GET) → the kubelet's `/containerLogs/{ns}/{pod}/{container}`, streamed back;
//! - `pods/exec`, `pods/attach` (SPDY POST or WebSocket GET, both authorized as `create`, as
//!   upstream since 1.31) → `/exec/...`, `/attach/...`; `pods/portforward` → `/portForward/...`:
//!   the upgraded connection is relayed byte for byte, whatever its protocol;
//! - `nodes/{name}/proxy/{path}` → `/{path}` on the kubelet, any method.
//!
//! The kubelet is reached at the node's address (InternalIP, else Hostname, ...) and
//! `status.daemonEndpoints.kubeletEndpoint.Port`, over TLS with the API server's kubelet client
//! certificate, its serving certificate verified against the cluster CA ([`client`]).
//!
//! kubectl ≥ 1.30 first asks for WebSocket `v5.channel.k8s.io` (and ≥ 1.31 port-forward tunnelled
//! over WebSocket). Upstream's API server translates those to SPDY for the kubelet
//! (StreamTranslatorProxy, TunnelingHandler); krust's kubelet accepts them itself (it translates
//! to its runtime's SPDY), so here they are relayed like any other upgrade. A kubelet that does
//! not speak them answers the handshake with an error, which kubectl takes as an upgrade failure
//! and retries with SPDY.

mod client;
mod locations;

pub(crate) use client::KubeletClient;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{header, StatusCode};
use serde_json::{json, Value};

use crate::registry::Registry;
use crate::request::RequestInfo;
use crate::status::{ApiError, Subject};
use locations::Target;

/// Whether this request is one of ours.
pub(crate) fn handles(info: &RequestInfo) -> bool {
    matches!(
        (info.res.plural, info.subresource.as_deref()),
        ("pods", Some("log" | "exec" | "attach" | "portforward")) | ("nodes", Some("proxy"))
    )
}

/// Serves an already authorized node-facing request.
pub(crate) async fn serve(
    registry: &Registry,
    kubelet: &KubeletClient,
    info: &RequestInfo,
    req: Request,
) -> Result<Response, ApiError> {
    let name = info.name.clone().unwrap_or_default();
    let sub = info.subresource.as_deref().unwrap_or_default();
    let query = req.uri().query().unwrap_or_default().to_string();
    let (node_name, path, kind) = if info.res.plural == "nodes" {
        let rest = locations::proxy_rest(req.uri().path(), &name);
        (name.clone(), rest, Kind::Proxy)
    } else {
        let ns = info.namespace.clone().unwrap_or_default();
        let pod = get(registry, "pods", Some(&ns), &name).await?;
        let (node, path) = locations::pod_location(&pod, sub, &query)?;
        let kind = if sub == "log" {
            Kind::Log
        } else {
            Kind::Stream
        };
        (node, path, kind)
    };
    let node = get(registry, "nodes", None, &node_name).await?;
    let target = Target::of_node(&node)?;
    let forwarded = locations::forwarded_query(&query, kind == Kind::Proxy);
    let path_and_query = if forwarded.is_empty() {
        path
    } else {
        format!("{path}?{forwarded}")
    };
    let resp = match kubelet.forward(&target, &path_and_query, req).await {
        Ok(resp) => resp,
        Err(e) => return Ok(dial_error(e)),
    };
    match kind {
        Kind::Log if !resp.status().is_success() => Err(passthrough_error(resp, sub, &name).await),
        _ => Ok(resp),
    }
}

#[derive(PartialEq, Eq)]
enum Kind {
    Log,
    Stream,
    Proxy,
}

async fn get(
    registry: &Registry,
    plural: &str,
    ns: Option<&str>,
    name: &str,
) -> Result<Value, ApiError> {
    let res = crate::resources::find("", "v1", plural).ok_or(ApiError::NoSuchResource)?;
    registry.get(res, ns, name).await
}

/// A kubelet's refusal of a log request as a Status: its code, and its text as the message
/// (upstream's generic response checker).
async fn passthrough_error(resp: Response, sub: &str, name: &str) -> ApiError {
    let code = resp.status();
    let body =
        http_body_util::BodyExt::collect(http_body_util::Limited::new(resp.into_body(), 64 << 10))
            .await
            .map(|c| String::from_utf8_lossy(&c.to_bytes()).trim().to_string())
            .unwrap_or_default();
    match code {
        StatusCode::BAD_REQUEST => ApiError::BadRequest(body),
        StatusCode::NOT_FOUND => ApiError::NotFound(Subject::new("", &format!("pods/{sub}"), name)),
        StatusCode::FORBIDDEN => {
            ApiError::Forbidden(Subject::new("", &format!("pods/{sub}"), name), body)
        }
        _ => ApiError::Internal(format!("the kubelet answered {}: {body}", code.as_u16())),
    }
}

/// Upstream's words when the kubelet cannot be reached.
pub(crate) fn dial_error(e: impl std::fmt::Display) -> Response {
    let status = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("error dialing backend: {e}"), "code": 500,
    });
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(status.to_string()),
    )
        .into_response()
}
