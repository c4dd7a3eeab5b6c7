//! Authentication, as seed 002 lists it: x509 client certificates signed by the cluster CA,
//! static bearer tokens, service-account JWTs and (only when enabled) the static password file.
//! A request that none of them accepts is `system:anonymous`; the router decides where that is
//! enough (health and version, as upstream).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use thiserror::Error;

pub mod bootstrap;

use crate::config::Config;
use crate::serviceaccount_tokens::{
    self, KubernetesClaim, ObjectRef, SigningKeyError, TokenIssuer,
};
use crate::storage::DynStore;

/// Who made a request, in the shape of upstream's `user.Info`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    /// Upstream's `GetExtra()`: bound service-account tokens' pod and node, impersonated extras.
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    pub fn anonymous() -> Self {
        UserInfo {
            name: "system:anonymous".into(),
            uid: String::new(),
            groups: vec!["system:unauthenticated".into()],
            extra: BTreeMap::new(),
        }
    }

    pub fn is_anonymous(&self) -> bool {
        self.name == "system:anonymous"
    }

    fn authenticated(name: String, uid: String, mut groups: Vec<String>) -> Self {
        if !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".into());
        }
        UserInfo {
            name,
            uid,
            groups,
            extra: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Error)]
pub enum AuthnError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// known_tokens.csv or basic_auth.csv is unreadable or malformed (parsed by the PKI crate,
    /// which writes them).
    #[error(transparent)]
    Credentials(#[from] pki::PkiError),
    #[error("service-account key {path}: {source}")]
    Key {
        path: String,
        source: jsonwebtoken::errors::Error,
    },
    #[error(transparent)]
    SigningKey(#[from] SigningKeyError),
}

/// A credentials-file entry: `secret,user,uid,"group1,group2"`.
#[derive(Debug, Clone)]
struct Entry {
    user: String,
    uid: String,
    groups: Vec<String>,
}

pub struct Authenticator {
    tokens: HashMap<String, Entry>,
    passwords: Option<HashMap<String, (String, Entry)>>,
    sa_keys: Vec<DecodingKey>,
    sa_issuers: Vec<String>,
    /// The issuer bound tokens carry; they must also name one of `audiences`.
    issuer: String,
    audiences: Vec<String>,
    /// Where the objects a token names are looked up (a deleted one revokes the token).
    store: DynStore,
    token_issuer: Option<TokenIssuer>,
}

/// What the request carried that can prove identity.
pub struct Credentials<'a> {
    /// The verified client certificate's leaf, DER.
    pub client_cert: Option<&'a [u8]>,
    pub authorization: Option<&'a str>,
}

impl Authenticator {
    pub fn from_config(config: &Config, store: DynStore) -> Result<Self, AuthnError> {
        let tokens = match &config.token_file {
            Some(p) => read_tokens(p)?,
            None => HashMap::new(),
        };
        let passwords = config
            .basic_auth_file
            .as_deref()
            .map(read_passwords)
            .transpose()?;
        let mut sa_keys = Vec::new();
        for path in &config.service_account_keys {
            let pem = std::fs::read(path).map_err(|source| AuthnError::Read {
                path: path.display().to_string(),
                source,
            })?;
            let key = DecodingKey::from_ec_pem(&pem).map_err(|source| AuthnError::Key {
                path: path.display().to_string(),
                source,
            })?;
            sa_keys.push(key);
        }
        let issuer = config.service_account_issuer.clone();
        let audiences = serviceaccount_tokens::default_audiences(&config.api_audiences, &issuer);
        let token_issuer = match &config.service_account_signing_key {
            Some(path) => Some(TokenIssuer::load(path, &issuer, &audiences)?),
            None => None,
        };
        Ok(Authenticator {
            tokens,
            passwords,
            sa_keys,
            sa_issuers: vec![issuer.clone(), LEGACY_ISSUER.into()],
            issuer,
            audiences,
            store,
            token_issuer,
        })
    }

    /// The TokenRequest signer, when the server was given the private key.
    pub fn token_issuer(&self) -> Option<&TokenIssuer> {
        self.token_issuer.as_ref()
    }

    /// Returns the user, or None when credentials were presented but rejected (upstream answers
    /// 401 then, even where anonymous would be allowed).
    pub async fn authenticate(&self, creds: &Credentials<'_>) -> Option<UserInfo> {
        if let Some(der) = creds.client_cert {
            if let Some(user) = user_from_cert(der) {
                return Some(user);
            }
        }
        let Some(header) = creds.authorization else {
            return Some(UserInfo::anonymous());
        };
        let (scheme, value) = header.split_once(' ').unwrap_or((header, ""));
        match scheme.to_ascii_lowercase().as_str() {
            "bearer" => self.bearer(value.trim()).await,
            "basic" => self.basic(value.trim()),
            _ => None,
        }
    }

    /// A bearer token's user (static token or service-account JWT), for the server's own
    /// audiences.
    pub async fn bearer(&self, token: &str) -> Option<UserInfo> {
        self.bearer_for(token, &self.audiences)
            .await
            .map(|(user, _)| user)
    }

    /// A bearer token's user and the audiences it was accepted for, out of `wanted` (a
    /// TokenReview's `spec.audiences`, or the server's). As upstream, a static token stands for
    /// the server's own audiences only, and a legacy service-account token (no `aud`) too.
    pub async fn bearer_for(
        &self,
        token: &str,
        wanted: &[String],
    ) -> Option<(UserInfo, Vec<String>)> {
        if let Some(e) = self.tokens.get(token) {
            let audiences = intersect(&self.audiences, wanted);
            if audiences.is_empty() {
                return None;
            }
            let user = UserInfo::authenticated(e.user.clone(), e.uid.clone(), e.groups.clone());
            return Some((user, audiences));
        }
        if bootstrap::parse(token).is_some() {
            let user = bootstrap::authenticate(&self.store, token).await?;
            let audiences = intersect(&self.audiences, wanted);
            return (!audiences.is_empty()).then_some((user, audiences));
        }
        self.service_account(token, wanted).await
    }

    /// The audiences the server accepts tokens for (upstream's `--api-audiences`).
    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    fn basic(&self, value: &str) -> Option<UserInfo> {
        let passwords = self.passwords.as_ref()?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(value)
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (user, password) = decoded.split_once(':')?;
        let (expected, e) = passwords.get(user)?;
        (constant_time_eq(expected.as_bytes(), password.as_bytes()))
            .then(|| UserInfo::authenticated(e.user.clone(), e.uid.clone(), e.groups.clone()))
    }

    /// A service-account JWT's user: signature, issuer and times first, then the audience, then
    /// whether the service account and bound object still exist.
    async fn service_account(
        &self,
        token: &str,
        wanted: &[String],
    ) -> Option<(UserInfo, Vec<String>)> {
        let claims = self.verify_jwt(token)?;
        let token_audiences = match claims.aud.list() {
            listed if listed.is_empty() => self.audiences.clone(),
            listed => listed,
        };
        let audiences = intersect(&token_audiences, wanted);
        if audiences.is_empty() {
            tracing::debug!(token = ?token_audiences, target = ?wanted, "token audiences are invalid for the target audiences");
            return None;
        }
        let user = claims.user()?;
        let (namespace, name) = claims.namespace_and_name()?;
        let sa = ObjectRef {
            name: name.to_string(),
            uid: user.uid.clone(),
        };
        let alive = async {
            if let Some(secret) = &claims.legacy_secret {
                serviceaccount_tokens::check_legacy_secret(&self.store, namespace, secret, token)
                    .await?;
            }
            serviceaccount_tokens::check_alive(&self.store, namespace, &sa, claims.bound.as_ref())
                .await
        }
        .await;
        match alive {
            Ok(()) => Some((user, audiences)),
            Err(e) => {
                tracing::debug!(user = %user.name, error = %e, "service-account token refused");
                None
            }
        }
    }

    fn verify_jwt(&self, token: &str) -> Option<SaClaims> {
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&self.sa_issuers);
        // Legacy secret-based tokens carry neither exp nor aud; bound tokens must carry both
        // (checked below) and `exp`/`nbf` are checked whenever present.
        validation.set_required_spec_claims::<&str>(&[]);
        validation.validate_aud = false;
        validation.validate_nbf = true;
        let claims = self.sa_keys.iter().find_map(|key| {
            jsonwebtoken::decode::<SaClaims>(token, key, &validation)
                .ok()
                .map(|d| d.claims)
        })?;
        if claims.iss == self.issuer && !claims.bound_token_valid() {
            return None;
        }
        Some(claims)
    }
}

/// The members of `a` also in `b`, in `a`'s order (upstream's `Audiences.Intersect`).
fn intersect(a: &[String], b: &[String]) -> Vec<String> {
    a.iter().filter(|x| b.contains(x)).cloned().collect()
}

/// The issuer of the service-account tokens kept in Secrets before TokenRequest.
const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";

#[derive(Deserialize)]
struct SaClaims {
    #[serde(default)]
    iss: String,
    sub: String,
    #[serde(default)]
    aud: Audience,
    exp: Option<i64>,
    #[serde(default)]
    jti: String,
    #[serde(rename = "kubernetes.io")]
    bound: Option<KubernetesClaim>,
    #[serde(rename = "kubernetes.io/serviceaccount/service-account.uid")]
    legacy_uid: Option<String>,
    #[serde(rename = "kubernetes.io/serviceaccount/secret.name")]
    legacy_secret: Option<String>,
}

/// `aud` is a string or a list of strings (RFC 7519).
#[derive(Deserialize, Default)]
#[serde(untagged)]
enum Audience {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn list(&self) -> Vec<String> {
        match self {
            Audience::None => Vec::new(),
            Audience::One(a) => vec![a.clone()],
            Audience::Many(list) => list.clone(),
        }
    }
}

impl SaClaims {
    /// A bound token names an audience, expires, and says whose it is.
    fn bound_token_valid(&self) -> bool {
        self.exp.is_some() && self.bound.is_some() && !self.aud.list().is_empty()
    }

    fn namespace_and_name(&self) -> Option<(&str, &str)> {
        let rest = self.sub.strip_prefix("system:serviceaccount:")?;
        let (ns, name) = rest.split_once(':')?;
        (!ns.is_empty() && !name.is_empty()).then_some((ns, name))
    }

    fn user(&self) -> Option<UserInfo> {
        let (ns, _) = self.namespace_and_name()?;
        if let Some(bound) = &self.bound {
            // The claim's namespace is what the token was issued for; a mismatch is forged.
            if bound.namespace != ns {
                return None;
            }
        }
        let uid = self
            .bound
            .as_ref()
            .map(|b| b.serviceaccount.uid.clone())
            .filter(|u| !u.is_empty())
            .or_else(|| self.legacy_uid.clone())
            .unwrap_or_default();
        let groups = vec![
            "system:serviceaccounts".to_string(),
            format!("system:serviceaccounts:{ns}"),
        ];
        let mut user = UserInfo::authenticated(self.sub.clone(), uid, groups);
        user.extra = self.extra();
        Some(user)
    }

    /// Upstream's extra for a bound token: the pod and node it is bound to, and its ID.
    fn extra(&self) -> BTreeMap<String, Vec<String>> {
        let mut extra = BTreeMap::new();
        let Some(bound) = &self.bound else {
            return extra;
        };
        let mut put = |key: &str, value: &str| {
            if !value.is_empty() {
                extra.insert(
                    format!("authentication.kubernetes.io/{key}"),
                    vec![value.to_string()],
                );
            }
        };
        if let Some(pod) = &bound.pod {
            put("pod-name", &pod.name);
            put("pod-uid", &pod.uid);
        }
        if let Some(node) = &bound.node {
            put("node-name", &node.name);
            put("node-uid", &node.uid);
        }
        if !self.jti.is_empty() {
            put("credential-id", &format!("JTI={}", self.jti));
        }
        extra
    }
}

/// CN is the user, each O a group, as upstream's x509 authenticator.
fn user_from_cert(der: &[u8]) -> Option<UserInfo> {
    let id = pki::cert_identity(der)?;
    Some(UserInfo::authenticated(id.user, String::new(), id.groups))
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// known_tokens.csv, by token.
fn read_tokens(path: &Path) -> Result<HashMap<String, Entry>, AuthnError> {
    let entries = pki::read_token_file(path)?;
    Ok(entries
        .into_iter()
        .map(|t| {
            (
                t.token,
                Entry {
                    user: t.user,
                    uid: t.uid,
                    groups: t.groups,
                },
            )
        })
        .collect())
}

/// basic_auth.csv, by user name: (password, entry).
fn read_passwords(path: &Path) -> Result<HashMap<String, (String, Entry)>, AuthnError> {
    let entries = pki::read_basic_auth_file(path)?;
    Ok(entries
        .into_iter()
        .map(|p| {
            let entry = Entry {
                user: p.user.clone(),
                uid: p.uid,
                groups: p.groups,
            };
            (p.user, (p.password, entry))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_groups_are_quoted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_tokens.csv");
        std::fs::write(&path, "tok,admin,admin,\"system:masters,devs\"\n").unwrap();
        let tokens = read_tokens(&path).unwrap();
        assert_eq!(tokens["tok"].groups, vec!["system:masters", "devs"]);
        std::fs::write(&path, "a,\"b\n").unwrap();
        assert!(read_tokens(&path).is_err());
    }

    #[test]
    fn service_account_subject() {
        let c = SaClaims {
            iss: LEGACY_ISSUER.into(),
            sub: "system:serviceaccount:kube-system:default".into(),
            aud: Audience::None,
            exp: None,
            jti: String::new(),
            bound: None,
            legacy_uid: Some("u1".into()),
            legacy_secret: None,
        };
        let u = c.user().unwrap();
        assert_eq!(u.name, "system:serviceaccount:kube-system:default");
        assert_eq!(u.uid, "u1");
        assert!(u
            .groups
            .contains(&"system:serviceaccounts:kube-system".to_string()));
        assert!(u.groups.contains(&"system:authenticated".to_string()));
    }

    #[test]
    fn bound_tokens_need_an_audience_and_carry_their_pod() {
        let c = |aud: Audience| SaClaims {
            iss: "https://i".into(),
            sub: "system:serviceaccount:ns:sa".into(),
            aud,
            exp: Some(1),
            jti: "j1".into(),
            bound: Some(KubernetesClaim {
                namespace: "ns".into(),
                pod: Some(ObjectRef {
                    name: "p".into(),
                    uid: "pu".into(),
                }),
                ..Default::default()
            }),
            legacy_uid: None,
            legacy_secret: None,
        };
        assert!(c(Audience::Many(vec!["x".into(), "https://i".into()])).bound_token_valid());
        assert!(!c(Audience::None).bound_token_valid());
        let user = c(Audience::One("a".into())).user().unwrap();
        assert_eq!(user.extra["authentication.kubernetes.io/pod-name"], ["p"]);
        assert_eq!(
            user.extra["authentication.kubernetes.io/credential-id"],
            ["JTI=j1"]
        );
        assert_eq!(
            intersect(&["a".into(), "b".into()], &["b".into(), "c".into()]),
            ["b"]
        );
    }
}
