//! Impersonation, as upstream's `WithImpersonation` filter: `Impersonate-User`,
//! `Impersonate-Group` (repeatable), `Impersonate-Uid` and `Impersonate-Extra-<key>` turn the
//! request into one made by that user, once the requester is allowed the `impersonate` verb on
//! each part (`users`, `serviceaccounts`, `groups`, `uids`, `userextras/<key>`). A refusal is
//! upstream's 403 for the first part refused. This is how `kubectl --as` and
//! `kubectl auth can-i --as` work.

use std::collections::BTreeMap;

use http::HeaderMap;

use crate::authn::UserInfo;
use crate::authz::{forbidden_message, Attributes, Authorizer, Decision};
use crate::status::{ApiError, Subject};

pub const USER_HEADER: &str = "impersonate-user";
pub const GROUP_HEADER: &str = "impersonate-group";
pub const UID_HEADER: &str = "impersonate-uid";
pub const EXTRA_PREFIX: &str = "impersonate-extra-";

/// One thing asked to be impersonated (upstream builds `ObjectReference`s).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    User(String),
    ServiceAccount { namespace: String, name: String },
    Group(String),
    Extra { key: String, value: String },
    Uid(String),
}

impl Part {
    /// Go's `%v` of the `ObjectReference` upstream builds (for its 400 message).
    fn go_value(&self) -> String {
        let (kind, ns, name, api_version, field) = match self {
            Part::User(n) => ("User", "", n.as_str(), "", ""),
            Part::ServiceAccount { namespace, name } => {
                ("ServiceAccount", namespace.as_str(), name.as_str(), "", "")
            }
            Part::Group(n) => ("Group", "", n.as_str(), "", ""),
            Part::Extra { key, value } => (
                "UserExtra",
                "",
                value.as_str(),
                "authentication.k8s.io/v1",
                key.as_str(),
            ),
            Part::Uid(n) => ("UID", "", n.as_str(), "authentication.k8s.io/v1", ""),
        };
        format!("{{{kind} {ns} {name}  {api_version}  {field}}}")
    }

    /// The attributes the requester must be allowed.
    fn attributes(&self, requester: &UserInfo) -> Attributes {
        let (group, version, resource, sub, ns, name) = match self {
            Part::User(n) => ("", "", "users", "", "", n.as_str()),
            Part::ServiceAccount { namespace, name } => (
                "",
                "",
                "serviceaccounts",
                "",
                namespace.as_str(),
                name.as_str(),
            ),
            Part::Group(n) => ("", "", "groups", "", "", n.as_str()),
            Part::Extra { key, value } => (
                "authentication.k8s.io",
                "v1",
                "userextras",
                key.as_str(),
                "",
                value.as_str(),
            ),
            Part::Uid(n) => ("authentication.k8s.io", "v1", "uids", "", "", n.as_str()),
        };
        Attributes {
            user: requester.clone(),
            verb: "impersonate".into(),
            resource_request: true,
            api_group: group.into(),
            api_version: version.into(),
            resource: resource.into(),
            subresource: sub.into(),
            namespace: ns.into(),
            name: name.into(),
            ..Default::default()
        }
    }
}

/// Whether the request carries any impersonation header (the common case is a cheap no).
pub fn requested(headers: &HeaderMap) -> bool {
    headers
        .keys()
        .any(|k| k.as_str().starts_with("impersonate-"))
}

/// `system:serviceaccount:NS:NAME` split, as upstream's `serviceaccount.SplitUsername`.
fn split_service_account(user: &str) -> Option<(String, String)> {
    let rest = user.strip_prefix("system:serviceaccount:")?;
    let (ns, name) = rest.split_once(':')?;
    (!ns.is_empty() && !name.is_empty() && !name.contains(':'))
        .then(|| (ns.to_string(), name.to_string()))
}

/// Upstream's `buildImpersonationRequests`.
fn parts(headers: &HeaderMap) -> Result<Vec<Part>, ApiError> {
    let text = |v: &http::HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
    let mut parts = Vec::new();
    let user = headers.get(USER_HEADER).map(text).unwrap_or_default();
    let has_user = !user.is_empty();
    if has_user {
        parts.push(match split_service_account(&user) {
            Some((namespace, name)) => Part::ServiceAccount { namespace, name },
            None => Part::User(user),
        });
    }
    let mut others = false;
    for group in headers.get_all(GROUP_HEADER) {
        others = true;
        parts.push(Part::Group(text(group)));
    }
    for (name, value) in headers {
        let Some(key) = name.as_str().strip_prefix(EXTRA_PREFIX) else {
            continue;
        };
        others = true;
        parts.push(Part::Extra {
            key: unescape(key),
            value: text(value),
        });
    }
    let uid = headers.get(UID_HEADER).map(text).unwrap_or_default();
    if !uid.is_empty() {
        others = true;
        parts.push(Part::Uid(uid));
    }
    if others && !has_user {
        let listed: Vec<String> = parts.iter().map(Part::go_value).collect();
        return Err(ApiError::BadRequest(format!(
            "requested [{}] without impersonating a user",
            listed.join(" ")
        )));
    }
    Ok(parts)
}

/// Extra keys are percent-encoded in header names (`url.PathUnescape`); a bad escape is kept.
fn unescape(key: &str) -> String {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = key
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                None => return key.to_string(),
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| key.to_string())
}

/// The user the request acts as: `requester` itself without impersonation headers, the
/// impersonated user when every part is allowed, upstream's 403 (or 400) otherwise.
pub async fn impersonate(
    authz: &dyn Authorizer,
    requester: &UserInfo,
    headers: &HeaderMap,
) -> Result<Option<UserInfo>, ApiError> {
    if !requested(headers) {
        return Ok(None);
    }
    let parts = parts(headers)?;
    if parts.is_empty() {
        return Ok(None);
    }
    let groups_given = headers.contains_key(GROUP_HEADER);
    let mut user = UserInfo::default();
    let mut groups = Vec::new();
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for part in &parts {
        let attrs = part.attributes(requester);
        if let Decision::Deny(reason) = authz.authorize(&attrs).await {
            tracing::debug!(requester = %requester.name, part = ?part, "impersonation refused");
            return Err(ApiError::Forbidden(
                Subject::new(&attrs.api_group, &attrs.resource, &attrs.name),
                forbidden_message(&attrs, &reason),
            ));
        }
        match part {
            Part::User(name) => user.name = name.clone(),
            Part::ServiceAccount { namespace, name } => {
                user.name = format!("system:serviceaccount:{namespace}:{name}");
                if !groups_given {
                    groups = vec![
                        "system:serviceaccounts".to_string(),
                        format!("system:serviceaccounts:{namespace}"),
                    ];
                }
            }
            Part::Group(g) => groups.push(g.clone()),
            Part::Extra { key, value } => extra.entry(key.clone()).or_default().push(value.clone()),
            Part::Uid(uid) => user.uid = uid.clone(),
        }
    }
    if user.name != "system:anonymous" {
        let special = |g: &String| g == "system:authenticated" || g == "system:unauthenticated";
        if !groups.iter().any(special) {
            groups.push("system:authenticated".into());
        }
    } else if !groups.iter().any(|g| g == "system:unauthenticated") {
        groups.push("system:unauthenticated".into());
    }
    user.groups = groups;
    user.extra = extra;
    tracing::debug!(requester = %requester.name, user = %user.name, "impersonating");
    Ok(Some(user))
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;

    /// Allows impersonating anything but the user `root` and the group `wheel`.
    struct Picky;

    #[async_trait]
    impl Authorizer for Picky {
        async fn authorize(&self, attrs: &Attributes) -> Decision {
            match attrs.name.as_str() {
                "root" | "wheel" => Decision::Deny(String::new()),
                _ => Decision::Allow,
            }
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn admin() -> UserInfo {
        UserInfo {
            name: "admin".into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn builds_the_impersonated_user() {
        let h = headers(&[
            ("Impersonate-User", "jane"),
            ("Impersonate-Group", "devs"),
            ("Impersonate-Group", "ops"),
            ("Impersonate-Uid", "u-1"),
            ("Impersonate-Extra-Scopes%2Fa", "view"),
        ]);
        let user = impersonate(&Picky, &admin(), &h).await.unwrap().unwrap();
        assert_eq!(user.name, "jane");
        assert_eq!(user.uid, "u-1");
        assert_eq!(user.groups, ["devs", "ops", "system:authenticated"]);
        assert_eq!(user.extra["scopes/a"], ["view"]);

        let sa = headers(&[("Impersonate-User", "system:serviceaccount:ns:robot")]);
        let user = impersonate(&Picky, &admin(), &sa).await.unwrap().unwrap();
        assert_eq!(
            user.groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:ns",
                "system:authenticated"
            ]
        );
        assert!(impersonate(&Picky, &admin(), &HeaderMap::new())
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn refusals_are_upstreams() {
        let err = impersonate(&Picky, &admin(), &headers(&[("Impersonate-User", "root")]))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"users "root" is forbidden: User "admin" cannot impersonate resource "users" in API group "" at the cluster scope"#
        );
        let h = headers(&[("Impersonate-User", "jane"), ("Impersonate-Group", "wheel")]);
        let err = impersonate(&Picky, &admin(), &h).await.unwrap_err();
        assert!(err
            .to_string()
            .starts_with(r#"groups "wheel" is forbidden"#));
        let err = impersonate(&Picky, &admin(), &headers(&[("Impersonate-Group", "g")]))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "requested [{Group  g    }] without impersonating a user"
        );
    }
}
