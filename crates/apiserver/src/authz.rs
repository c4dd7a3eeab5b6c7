//! Authorization behind one interface, so RBAC and the Node authorizer can replace AlwaysAllow
//! (MicroK8s's default, seed 002) without touching the request path.

use async_trait::async_trait;

use crate::authn::UserInfo;

/// Upstream's `authorizer.Attributes`: what a request wants to do.
#[derive(Debug, Clone)]
pub struct Attributes {
    pub user: UserInfo,
    /// get, list, watch, create, update, patch, delete, deletecollection (resource requests) or
    /// the lower-case HTTP method (non-resource requests).
    pub verb: String,
    pub resource_request: bool,
    pub api_group: String,
    pub api_version: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Denied, with the reason upstream puts after `forbidden: `.
    Deny(String),
}

#[async_trait]
pub trait Authorizer: Send + Sync {
    async fn authorize(&self, attrs: &Attributes) -> Decision;
}

pub struct AlwaysAllow;

#[async_trait]
impl Authorizer for AlwaysAllow {
    async fn authorize(&self, _attrs: &Attributes) -> Decision {
        Decision::Allow
    }
}

/// Upstream's Forbidden message for a denied request.
pub fn forbidden_message(attrs: &Attributes, reason: &str) -> String {
    let user = &attrs.user.name;
    if !attrs.resource_request {
        return format!(
            "forbidden: User \"{user}\" cannot {} path \"{}\"{}",
            attrs.verb,
            attrs.path,
            suffix(reason)
        );
    }
    let resource = match attrs.subresource.as_str() {
        "" => attrs.resource.clone(),
        sub => format!("{}/{sub}", attrs.resource),
    };
    let scope = if attrs.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace \"{}\"", attrs.namespace)
    };
    format!(
        "{resource}{} is forbidden: User \"{user}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}{}",
        if attrs.name.is_empty() { String::new() } else { format!(" \"{}\"", attrs.name) },
        attrs.verb,
        attrs.api_group,
        suffix(reason)
    )
}

fn suffix(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    }
}
