//! Who is calling the secure port and may they, as upstream's kubelet (pkg/kubelet/server/auth.go
//! with `--anonymous-auth=false` and `--authorization-mode=Webhook`): a verified client
//! certificate or a bearer token (TokenReview) names the caller, nobody else gets past 401, and
//! every request is a SubjectAccessReview on this node's `nodes/<subresource>`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use component_base::delegated::{Decision, Delegated, User};
use http::{header, Method, StatusCode};
use k8s_openapi::api::authorization::v1::ResourceAttributes;

use super::listen::CertUser;

pub struct Auth {
    pub delegated: Delegated,
    pub node_name: String,
}

/// The axum middleware guarding every route of the secure port.
pub async fn guard(State(auth): State<Arc<Auth>>, req: Request, next: Next) -> Response {
    let cert_user = req.extensions().get::<CertUser>().and_then(|c| c.0.clone());
    let token = bearer(req.headers());
    let Some(user) = authenticate(&auth, cert_user, token).await else {
        return (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
    };
    let candidates = attributes(req.method(), req.uri().path(), &auth.node_name);
    for attrs in &candidates {
        match auth.delegated.authorize_resource(&user, attrs).await {
            Ok(Decision::Allow) => return next.run(req).await,
            Ok(Decision::Deny(_)) => {}
            Err(e) => {
                tracing::warn!(error = %e, user = %user.name, "kubelet API: cannot authorize");
                let msg = format!(
                    "Authorization error (user={}, verb={}, resource={}, subresource={})",
                    user.name,
                    verb_of(attrs),
                    "nodes",
                    sub_of(attrs)
                );
                return (StatusCode::INTERNAL_SERVER_ERROR, msg).into_response();
            }
        }
    }
    let last = candidates.last().cloned().unwrap_or_default();
    let msg = format!(
        "Forbidden (user={}, verb={}, resource=nodes, subresource={})\n",
        user.name,
        verb_of(&last),
        sub_of(&last)
    );
    (StatusCode::FORBIDDEN, msg).into_response()
}

fn verb_of(attrs: &ResourceAttributes) -> &str {
    attrs.verb.as_deref().unwrap_or_default()
}

fn sub_of(attrs: &ResourceAttributes) -> &str {
    attrs.subresource.as_deref().unwrap_or_default()
}

fn bearer(headers: &http::HeaderMap) -> Option<String> {
    let token = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?
        .trim();
    (!token.is_empty()).then(|| token.to_string())
}

async fn authenticate(auth: &Auth, cert_user: Option<User>, token: Option<String>) -> Option<User> {
    if cert_user.is_some() {
        return cert_user;
    }
    match auth.delegated.authenticate_token(&token?).await {
        Ok(user) => user,
        Err(e) => {
            tracing::warn!(error = %e, "kubelet API: cannot review a bearer token");
            None
        }
    }
}

/// Upstream's kubelet request attributes, in the order they are tried: the fine-grained
/// subresource for `/pods` and `/healthz` (KubeletFineGrainedAuthz, on in 1.33) first, then the
/// coarse one by path (`stats`, `metrics`, `log`, `spec`, else `proxy`).
pub fn attributes(method: &Method, path: &str, node: &str) -> Vec<ResourceAttributes> {
    let verb = match *method {
        Method::POST => "create",
        Method::GET | Method::HEAD => "get",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "",
    };
    let fine = [
        ("/pods", "pods"),
        ("/healthz", "healthz"),
        ("/configz", "configz"),
    ]
    .into_iter()
    .find(|(p, _)| is_subpath(path, p))
    .map(|(_, sub)| sub);
    let coarse = [
        ("/stats", "stats"),
        ("/metrics", "metrics"),
        ("/logs", "log"),
        ("/spec", "spec"),
        ("/checkpoint", "checkpoint"),
    ]
    .into_iter()
    .find(|(p, _)| is_subpath(path, p))
    .map_or("proxy", |(_, sub)| sub);
    fine.into_iter()
        .chain(std::iter::once(coarse))
        .map(|sub| ResourceAttributes {
            verb: Some(verb.into()),
            version: Some("v1".into()),
            resource: Some("nodes".into()),
            subresource: Some(sub.into()),
            name: Some(node.into()),
            ..Default::default()
        })
        .collect()
}

/// `path` is `prefix` or below it (upstream's isSubpath).
fn is_subpath(path: &str, prefix: &str) -> bool {
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subs(method: Method, path: &str) -> Vec<(String, String)> {
        attributes(&method, path, "n1")
            .into_iter()
            .map(|a| (a.verb.unwrap(), a.subresource.unwrap()))
            .collect()
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(v, s)| (v.to_string(), s.to_string()))
            .collect()
    }

    #[test]
    fn subresources_by_path_as_upstream() {
        assert_eq!(
            subs(Method::GET, "/stats/summary"),
            pairs(&[("get", "stats")])
        );
        assert_eq!(subs(Method::GET, "/metrics"), pairs(&[("get", "metrics")]));
        assert_eq!(
            subs(Method::GET, "/metrics/resource"),
            pairs(&[("get", "metrics")])
        );
        assert_eq!(subs(Method::GET, "/logs/syslog"), pairs(&[("get", "log")]));
        assert_eq!(
            subs(Method::GET, "/containerLogs/ns/p/c"),
            pairs(&[("get", "proxy")])
        );
        assert_eq!(
            subs(Method::POST, "/exec/ns/p/c"),
            pairs(&[("create", "proxy")])
        );
        assert_eq!(
            subs(Method::GET, "/pods"),
            pairs(&[("get", "pods"), ("get", "proxy")])
        );
        assert_eq!(
            subs(Method::GET, "/healthz"),
            pairs(&[("get", "healthz"), ("get", "proxy")])
        );
        // Not a subpath: a prefix of a longer word.
        assert_eq!(subs(Method::GET, "/metricsx"), pairs(&[("get", "proxy")]));
        let a = &attributes(&Method::GET, "/pods", "n1")[0];
        assert_eq!(
            (
                a.resource.as_deref(),
                a.name.as_deref(),
                a.namespace.as_deref()
            ),
            (Some("nodes"), Some("n1"), None)
        );
    }
}
