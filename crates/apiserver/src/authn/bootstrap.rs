//! Bootstrap tokens, as upstream's `--enable-bootstrap-token-auth` authenticator
//! (plugin/pkg/auth/authenticator/token/bootstrap): a bearer token `<id>.<secret>` (`[a-z0-9]{6}`
//! and `[a-z0-9]{16}`) is looked up as the Secret `kube-system/bootstrap-token-<id>` of type
//! `bootstrap.kubernetes.io/token`; it authenticates as `system:bootstrap:<id>` in
//! `system:bootstrappers` plus the secret's `auth-extra-groups`, while
//! `usage-bootstrap-authentication` is `true`, the `expiration` has not passed and the secret is
//! not being deleted. `krust add-node` writes such secrets; the tokencleaner controller deletes
//! expired ones.

use base64::Engine as _;
use serde_json::Value;
use time::OffsetDateTime;

use super::UserInfo;
use crate::resources;
use crate::storage::{self, DynStore};

pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
pub const SECRET_PREFIX: &str = "bootstrap-token-";
pub const GROUP: &str = "system:bootstrappers";
pub const USER_PREFIX: &str = "system:bootstrap:";

/// Splits a bootstrap token into its id and secret, or None when it has not that shape.
pub fn parse(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    let ok = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    (ok(id, 6) && ok(secret, 16)).then_some((id, secret))
}

/// The token's user, or None when it is not a valid bootstrap token (upstream answers 401).
pub async fn authenticate(store: &DynStore, token: &str) -> Option<UserInfo> {
    let (id, secret) = parse(token)?;
    let res = resources::find("", "v1", "secrets")?;
    let name = format!("{SECRET_PREFIX}{id}");
    let stored = match storage::get(store, &res.key(Some("kube-system"), &name)).await {
        Ok(Some(stored)) => stored,
        Ok(None) => {
            tracing::debug!(%name, "bootstrap token secret not found");
            return None;
        }
        Err(e) => {
            tracing::warn!(%name, "cannot read the bootstrap token secret: {e}");
            return None;
        }
    };
    match check(&stored.obj, id, secret, OffsetDateTime::now_utc()) {
        Ok(groups) => Some(UserInfo::authenticated(
            format!("{USER_PREFIX}{id}"),
            String::new(),
            groups,
        )),
        Err(reason) => {
            tracing::debug!(%name, "bootstrap token refused: {reason}");
            None
        }
    }
}

/// Checks the secret against the presented token; the groups on success, why not otherwise.
fn check(
    secret: &Value,
    id: &str,
    token_secret: &str,
    now: OffsetDateTime,
) -> Result<Vec<String>, &'static str> {
    if !secret["metadata"]["deletionTimestamp"].is_null() {
        return Err("the secret is being deleted");
    }
    if secret["type"] != SECRET_TYPE {
        return Err("the secret has not the bootstrap token type");
    }
    let data = |key: &str| data(secret, key);
    if data("token-id").as_deref() != Some(id) {
        return Err("token-id does not match");
    }
    let held = data("token-secret").unwrap_or_default();
    if !super::constant_time_eq(held.as_bytes(), token_secret.as_bytes()) {
        return Err("token-secret does not match");
    }
    if is_expired(data("expiration").as_deref(), now) {
        return Err("the token has expired");
    }
    if data("usage-bootstrap-authentication").as_deref() != Some("true") {
        return Err("the token may not be used for authentication");
    }
    let mut groups = vec![GROUP.to_string()];
    for group in data("auth-extra-groups").unwrap_or_default().split(',') {
        let group = group.trim();
        if group.is_empty() {
            continue;
        }
        if !valid_extra_group(group) {
            return Err("auth-extra-groups holds a group outside system:bootstrappers:");
        }
        groups.push(group.to_string());
    }
    Ok(groups)
}

/// A secret's `data` value, decoded (or its `stringData`, which a direct store write may hold).
pub fn data(secret: &Value, key: &str) -> Option<String> {
    if let Some(b64) = secret["data"][key].as_str() {
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        return String::from_utf8(bytes).ok();
    }
    secret["stringData"][key].as_str().map(str::to_string)
}

/// Whether an RFC 3339 `expiration` has passed; an unparsable one counts as expired, as
/// upstream's (it logs and refuses).
pub fn is_expired(expiration: Option<&str>, now: OffsetDateTime) -> bool {
    let Some(text) = expiration else {
        return false;
    };
    match OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339) {
        Ok(at) => now >= at,
        Err(_) => true,
    }
}

/// Upstream's `system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]`.
fn valid_extra_group(group: &str) -> bool {
    let Some(rest) = group.strip_prefix("system:bootstrappers:") else {
        return false;
    };
    !rest.is_empty()
        && rest.len() <= 256
        && rest
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b':' || b == b'-')
        && rest
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn secret(expiration: &str) -> Value {
        json!({
            "metadata": {"name": "bootstrap-token-abcdef", "namespace": "kube-system"},
            "type": SECRET_TYPE,
            "data": {
                "token-id": b64("abcdef"),
                "token-secret": b64("0123456789abcdef"),
                "expiration": b64(expiration),
                "usage-bootstrap-authentication": b64("true"),
                "auth-extra-groups": b64("system:bootstrappers:krust:default-node-token"),
            }
        })
    }

    #[test]
    fn token_shape() {
        assert_eq!(
            parse("abcdef.0123456789abcdef"),
            Some(("abcdef", "0123456789abcdef"))
        );
        assert_eq!(parse("ABCDEF.0123456789abcdef"), None);
        assert_eq!(parse("abcdef.0123456789abcde"), None);
        assert_eq!(parse("abcdef0123456789abcdef"), None);
    }

    #[test]
    fn valid_expired_and_wrong_secret() {
        let now = OffsetDateTime::parse(
            "2030-01-01T00:00:00Z",
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        let groups = check(
            &secret("2030-01-01T01:00:00Z"),
            "abcdef",
            "0123456789abcdef",
            now,
        )
        .unwrap();
        assert_eq!(
            groups,
            [
                "system:bootstrappers",
                "system:bootstrappers:krust:default-node-token"
            ]
        );
        assert!(check(
            &secret("2029-12-31T23:00:00Z"),
            "abcdef",
            "0123456789abcdef",
            now
        )
        .is_err());
        assert!(check(
            &secret("2030-01-01T01:00:00Z"),
            "abcdef",
            "0123456789abcdeX",
            now
        )
        .is_err());
    }

    #[test]
    fn extra_groups_stay_under_bootstrappers() {
        assert!(valid_extra_group(
            "system:bootstrappers:krust:default-node-token"
        ));
        assert!(!valid_extra_group("system:masters"));
        assert!(!valid_extra_group("system:bootstrappers:"));
    }
}
