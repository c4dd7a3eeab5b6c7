//! Authorization behind one interface, so RBAC and the Node authorizer can replace AlwaysAllow
//! (MicroK8s's default, seed 002) without touching the request path.

use async_trait::async_trait;

use crate::authn::UserInfo;

/// Upstream's `authorizer.Attributes`: what a request wants to do.
#[derive(Debug, Clone, Default)]
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
    /// The request's `fieldSelector` as sent (the Node authorizer lets a kubelet list pods
    /// only with `spec.nodeName=<itself>`).
    pub field_selector: String,
}

impl Attributes {
    /// A resource request's attributes, as upstream's `RequestInfoFactory` and
    /// `GetAuthorizerAttributes` build them: a list or watch selecting one `metadata.name` is
    /// authorized as a request for that name.
    pub fn for_request(
        user: &UserInfo,
        info: &crate::request::RequestInfo,
        field_selector: &str,
        path: &str,
    ) -> Attributes {
        let listing = matches!(
            info.verb,
            crate::request::Verb::List | crate::request::Verb::Watch
        );
        let name = match &info.name {
            Some(name) => name.clone(),
            None if listing => exact_match(field_selector, "metadata.name")
                .filter(|n| valid_path_segment(n))
                .unwrap_or_default(),
            None => String::new(),
        };
        Attributes {
            user: user.clone(),
            verb: info.verb.as_str().into(),
            resource_request: true,
            api_group: info.res.group.into(),
            api_version: info.res.version.into(),
            resource: info.res.plural.into(),
            subresource: info.subresource.clone().unwrap_or_default(),
            namespace: info.namespace.clone().unwrap_or_default(),
            name,
            path: path.into(),
            field_selector: field_selector.into(),
        }
    }
}

/// The value a field selector requires `field` to equal (`field=v` or `field==v`), as upstream's
/// `RequiresExactMatch`.
pub fn exact_match(selector: &str, field: &str) -> Option<String> {
    selector.split(',').find_map(|term| {
        let (key, value) = term.split_once('=')?;
        if key.ends_with('!') {
            return None;
        }
        let value = value.strip_prefix('=').unwrap_or(value);
        (key.trim() == field).then(|| value.trim().to_string())
    })
}

/// Upstream's `IsValidPathSegmentName`.
fn valid_path_segment(name: &str) -> bool {
    name != "." && name != ".." && !name.contains('/') && !name.contains('%')
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
    // `apierrors.NewForbidden(GroupResource, name, ...)`: the group-qualified resource, without
    // the subresource, names what was refused.
    let qualified = match attrs.api_group.as_str() {
        "" => attrs.resource.clone(),
        group => format!("{}.{group}", attrs.resource),
    };
    format!(
        "{qualified}{} is forbidden: User \"{user}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}{}",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_messages_name_the_group_resource() {
        let attrs = Attributes {
            user: UserInfo {
                name: "jane".into(),
                ..Default::default()
            },
            verb: "create".into(),
            resource_request: true,
            api_group: "apps".into(),
            resource: "deployments".into(),
            subresource: "scale".into(),
            namespace: "ns".into(),
            name: "web".into(),
            ..Default::default()
        };
        assert_eq!(
            forbidden_message(&attrs, ""),
            r#"deployments.apps "web" is forbidden: User "jane" cannot create resource "deployments/scale" in API group "apps" in the namespace "ns""#
        );
    }

    #[test]
    fn exact_matches() {
        assert_eq!(
            exact_match("metadata.name=n1", "metadata.name").as_deref(),
            Some("n1")
        );
        assert_eq!(
            exact_match("a=b,spec.nodeName==n2", "spec.nodeName").as_deref(),
            Some("n2")
        );
        assert_eq!(exact_match("spec.nodeName!=n2", "spec.nodeName"), None);
        assert_eq!(exact_match("", "spec.nodeName"), None);
    }
}
