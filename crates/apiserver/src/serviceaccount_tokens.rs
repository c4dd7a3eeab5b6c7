//! Service-account tokens as upstream's TokenRequest API issues them
//! (`POST .../serviceaccounts/NAME/token`): ES256 JWTs signed with the cluster's service-account
//! key, carrying upstream's claims (`iss`, `sub`, `aud`, `exp`, `iat`, `nbf`, `jti` and the
//! `kubernetes.io` claim naming the service account and the pod or secret the token is bound
//! to). The authenticator verifies them with the same issuer and audiences, and asks
//! [`check_alive`] whether what a token names still exists: deleting the service account, or the
//! pod or secret a token is bound to, revokes it.

use base64::Engine as _;
use std::path::Path;

use axum::response::Response;
use http::StatusCode;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use thiserror::Error;

use crate::admission::{self, Operation};
use crate::content::{self, Output};
use crate::metadata;
use crate::resources;
use crate::rest::Call;
use crate::status::{cause, ApiError, ApiResult, Subject};
use crate::storage::{self, DynStore};

/// Upstream's defaulted `spec.expirationSeconds`.
const DEFAULT_EXPIRATION: i64 = 3600;
/// Upstream refuses shorter tokens (`ValidateTokenRequest`).
const MIN_EXPIRATION: i64 = 600;
/// Upstream refuses longer tokens (2^32 seconds).
const MAX_EXPIRATION: i64 = 1 << 32;
/// Upstream's `jwt.DefaultLeeway`: a bound object whose deletion is older than this revokes.
const DELETION_LEEWAY_SECS: i64 = 60;

#[derive(Debug, Error)]
pub enum SigningKeyError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("service-account signing key {path}: {source}")]
    Key {
        path: String,
        source: jsonwebtoken::errors::Error,
    },
}

/// Why a token naming an object is no longer valid (logged, never sent to the client).
#[derive(Debug, Error)]
pub enum Revoked {
    #[error("{kind} {namespace}/{name} has been deleted")]
    Deleted {
        kind: &'static str,
        namespace: String,
        name: String,
    },
    #[error("{kind} UID ({actual}) does not match claim ({claimed})")]
    UidMismatch {
        kind: &'static str,
        actual: String,
        claimed: String,
    },
    #[error("the token no longer matches secret {namespace}/{name}")]
    TokenMismatch { namespace: String, name: String },
    #[error("looking up the token's objects: {0}")]
    Store(#[from] store::StoreError),
}

/// `{name, uid}` as the `kubernetes.io` claim names objects.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ObjectRef {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub uid: String,
}

/// The private `kubernetes.io` claim of a bound token.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct KubernetesClaim {
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub serviceaccount: ObjectRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<ObjectRef>,
}

/// Everything a bound token says, in upstream's JSON names.
#[derive(Debug, Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: String,
    aud: &'a [String],
    exp: i64,
    iat: i64,
    nbf: i64,
    jti: String,
    #[serde(rename = "kubernetes.io")]
    kubernetes: KubernetesClaim,
}

/// Signs tokens for the TokenRequest API; present only when the server has the private key.
pub struct TokenIssuer {
    key: EncodingKey,
    issuer: String,
    audiences: Vec<String>,
}

impl TokenIssuer {
    pub fn load(path: &Path, issuer: &str, audiences: &[String]) -> Result<Self, SigningKeyError> {
        let pem = std::fs::read(path).map_err(|source| SigningKeyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let key = EncodingKey::from_ec_pem(&pem).map_err(|source| SigningKeyError::Key {
            path: path.display().to_string(),
            source,
        })?;
        Ok(TokenIssuer {
            key,
            issuer: issuer.to_string(),
            audiences: audiences.to_vec(),
        })
    }

    fn sign(&self, claims: &Claims<'_>) -> ApiResult<String> {
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), claims, &self.key)
            .map_err(|e| ApiError::Internal(format!("failed to generate token: {e}")))
    }
}

/// The audiences the API server accepts: as upstream, `--api-audiences` defaults to the issuer.
pub fn default_audiences(configured: &[String], issuer: &str) -> Vec<String> {
    if configured.is_empty() {
        vec![issuer.to_string()]
    } else {
        configured.to_vec()
    }
}

/// POST serviceaccounts/NAME/token.
pub async fn create(call: &Call<'_>) -> ApiResult<Response> {
    let issuer = call.authn.token_issuer().ok_or(ApiError::NoSuchResource)?;
    let mut request = call.body_object("TokenRequest", "authentication.k8s.io/v1")?;
    let spec = defaulted_spec(&request["spec"], issuer);
    validate(&spec)?;
    let ns = call.info.namespace.clone().unwrap_or_default();
    let name = call.info.name.clone().unwrap_or_default();
    let sa_res = resources::find("", "v1", "serviceaccounts").ok_or(ApiError::NoSuchResource)?;
    request["spec"] = spec.clone();
    admission::run(
        call.registry,
        Operation::Create,
        sa_res,
        Some("token"),
        Some(&ns),
        &name,
        Some(&mut request),
        None,
    )
    .await?;
    let sa = call.registry.get(sa_res, Some(&ns), &name).await?;
    let mut kubernetes = KubernetesClaim {
        namespace: ns.clone(),
        serviceaccount: object_ref(&sa),
        ..Default::default()
    };
    bind(call, &ns, &name, &spec["boundObjectRef"], &mut kubernetes).await?;
    let now = time::OffsetDateTime::now_utc();
    let exp = now.unix_timestamp() + spec["expirationSeconds"].as_i64().unwrap_or(0);
    let audiences: Vec<String> = strings(&spec["audiences"]);
    let token = issuer.sign(&Claims {
        iss: &issuer.issuer,
        sub: format!("system:serviceaccount:{ns}:{name}"),
        aud: &audiences,
        exp,
        iat: now.unix_timestamp(),
        nbf: now.unix_timestamp(),
        jti: metadata::new_uid(),
        kubernetes,
    })?;
    tracing::debug!(namespace = %ns, serviceaccount = %name, "issued a service-account token");
    request["spec"] = spec;
    request["status"] = json!({"token": token, "expirationTimestamp": rfc3339_at(exp)});
    fill_metadata(&mut request, &ns, &name);
    Ok(content::respond(
        StatusCode::CREATED,
        &request,
        Output::Json,
    ))
}

/// Upstream's defaults: the server's audiences and an hour.
fn defaulted_spec(spec: &Value, issuer: &TokenIssuer) -> Value {
    let mut spec = if spec.is_object() {
        spec.clone()
    } else {
        json!({})
    };
    if strings(&spec["audiences"]).is_empty() {
        spec["audiences"] = json!(issuer.audiences);
    }
    if spec["expirationSeconds"].is_null() {
        spec["expirationSeconds"] = json!(DEFAULT_EXPIRATION);
    }
    spec
}

fn validate(spec: &Value) -> ApiResult<()> {
    let seconds = spec["expirationSeconds"].as_i64().unwrap_or(0);
    let message = if seconds < MIN_EXPIRATION {
        "may not specify a duration less than 10 minutes"
    } else if seconds > MAX_EXPIRATION {
        "may not specify a duration larger than 2^32 seconds"
    } else {
        return Ok(());
    };
    Err(ApiError::Invalid(
        Subject::new("authentication.k8s.io", "TokenRequest", ""),
        vec![cause(
            "FieldValueInvalid",
            "spec.expirationSeconds",
            format!("Invalid value: {seconds}: {message}"),
        )],
    ))
}

/// Binds the token to the Pod or Secret `spec.boundObjectRef` names, as upstream's TokenREST.
async fn bind(
    call: &Call<'_>,
    ns: &str,
    sa_name: &str,
    reference: &Value,
    claim: &mut KubernetesClaim,
) -> ApiResult<()> {
    if reference.is_null() {
        return Ok(());
    }
    let kind = reference["kind"].as_str().unwrap_or("");
    let api_version = reference["apiVersion"].as_str().unwrap_or("");
    let name = reference["name"].as_str().unwrap_or("");
    let plural = match (api_version, kind) {
        ("v1", "Pod") => "pods",
        ("v1", "Secret") => "secrets",
        _ => {
            return Err(ApiError::BadRequest(format!(
                "cannot bind token to object of type {}",
                group_version_kind(api_version, kind)
            )))
        }
    };
    let res = resources::find("", "v1", plural).ok_or(ApiError::NoSuchResource)?;
    let obj = call.registry.get(res, Some(ns), name).await?;
    let found = object_ref(&obj);
    if plural == "pods" && pod_service_account(&obj) != sa_name {
        return Err(ApiError::BadRequest(format!(
            "cannot bind token for serviceaccount {sa_name:?} to pod running with different serviceaccount name."
        )));
    }
    let claimed = reference["uid"].as_str().unwrap_or("");
    if !claimed.is_empty() && claimed != found.uid {
        return Err(ApiError::Conflict(
            Subject::new("", kind, name),
            format!("the UID in the bound object reference ({claimed}) does not match the UID in record. The object might have been deleted and then recreated"),
        ));
    }
    if plural == "pods" {
        claim.node = node_of(call, &obj).await;
        claim.pod = Some(found);
    } else {
        claim.secret = Some(found);
    }
    Ok(())
}

/// The pod's service account; empty means `default`, which upstream's ServiceAccount admission
/// would have written.
fn pod_service_account(pod: &Value) -> &str {
    match pod["spec"]["serviceAccountName"].as_str() {
        Some(name) if !name.is_empty() => name,
        _ => "default",
    }
}

/// The node a bound pod runs on, recorded as upstream does (ServiceAccountTokenPodNodeInfo).
async fn node_of(call: &Call<'_>, pod: &Value) -> Option<ObjectRef> {
    let node = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty())?;
    let res = resources::find("", "v1", "nodes")?;
    let obj = call.registry.get(res, None, node).await.ok()?;
    Some(object_ref(&obj))
}

fn group_version_kind(api_version: &str, kind: &str) -> String {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    format!("{group}/{version}, Kind={kind}")
}

fn object_ref(obj: &Value) -> ObjectRef {
    ObjectRef {
        name: obj["metadata"]["name"].as_str().unwrap_or("").to_string(),
        uid: obj["metadata"]["uid"].as_str().unwrap_or("").to_string(),
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(String::from))
        .collect()
}

fn rfc3339_at(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map(metadata::rfc3339)
        .unwrap_or_default()
}

fn fill_metadata(request: &mut Value, ns: &str, name: &str) {
    request["kind"] = json!("TokenRequest");
    request["apiVersion"] = json!("authentication.k8s.io/v1");
    if !request["metadata"].is_object() {
        request["metadata"] = json!({});
    }
    let meta = &mut request["metadata"];
    if meta["name"].as_str().unwrap_or("").is_empty() {
        meta["name"] = json!(name);
    }
    meta["namespace"] = json!(ns);
    if meta["creationTimestamp"].is_null() {
        meta["creationTimestamp"] = Value::Null;
    }
}

/// Whether the objects a token names still exist with the uids it carries; a pod or secret
/// being deleted revokes once its deletion is a leeway old, as upstream's validator.
pub async fn check_alive(
    store: &DynStore,
    namespace: &str,
    serviceaccount: &ObjectRef,
    claim: Option<&KubernetesClaim>,
) -> Result<(), Revoked> {
    check_object(store, "serviceaccounts", namespace, serviceaccount).await?;
    if let Some(secret) = claim.and_then(|c| c.secret.as_ref()) {
        check_object(store, "secrets", namespace, secret).await?;
    }
    if let Some(pod) = claim.and_then(|c| c.pod.as_ref()) {
        check_object(store, "pods", namespace, pod).await?;
    }
    Ok(())
}

/// A legacy (Secret-based) token is valid only while its Secret exists, is not being deleted and
/// still holds exactly this token, as upstream's legacy validator: deleting or rotating the
/// Secret revokes it.
pub async fn check_legacy_secret(
    store: &DynStore,
    namespace: &str,
    secret: &str,
    token: &str,
) -> Result<(), Revoked> {
    let deleted = || Revoked::Deleted {
        kind: "secrets",
        namespace: namespace.to_string(),
        name: secret.to_string(),
    };
    let Some(res) = resources::find("", "v1", "secrets") else {
        return Err(deleted());
    };
    let Some(stored) = storage::get(store, &res.key(Some(namespace), secret)).await? else {
        return Err(deleted());
    };
    if !stored.obj["metadata"]["deletionTimestamp"].is_null() {
        return Err(deleted());
    }
    let held = stored.obj["data"]["token"]
        .as_str()
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .unwrap_or_default();
    if !crate::authn::constant_time_eq(&held, token.as_bytes()) {
        return Err(Revoked::TokenMismatch {
            namespace: namespace.to_string(),
            name: secret.to_string(),
        });
    }
    Ok(())
}

async fn check_object(
    store: &DynStore,
    plural: &'static str,
    namespace: &str,
    claimed: &ObjectRef,
) -> Result<(), Revoked> {
    let deleted = || Revoked::Deleted {
        kind: plural,
        namespace: namespace.to_string(),
        name: claimed.name.clone(),
    };
    let Some(res) = resources::find("", "v1", plural) else {
        return Err(deleted());
    };
    let Some(stored) = storage::get(store, &res.key(Some(namespace), &claimed.name)).await? else {
        return Err(deleted());
    };
    let actual = stored.obj["metadata"]["uid"].as_str().unwrap_or("");
    if !claimed.uid.is_empty() && actual != claimed.uid {
        return Err(Revoked::UidMismatch {
            kind: plural,
            actual: actual.to_string(),
            claimed: claimed.uid.clone(),
        });
    }
    if deleted_long_ago(&stored.obj) {
        return Err(deleted());
    }
    Ok(())
}

fn deleted_long_ago(obj: &Value) -> bool {
    let Some(at) = obj["metadata"]["deletionTimestamp"].as_str() else {
        return false;
    };
    let Ok(at) = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
    else {
        return false;
    };
    at < time::OffsetDateTime::now_utc() - time::Duration::seconds(DELETION_LEEWAY_SECS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiration_bounds() {
        assert!(validate(&json!({"expirationSeconds": 600})).is_ok());
        let err = validate(&json!({"expirationSeconds": 60})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "TokenRequest.authentication.k8s.io \"\" is invalid: spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"
        );
        assert!(validate(&json!({"expirationSeconds": (1i64 << 32) + 1})).is_err());
    }

    #[test]
    fn audiences_default_to_the_issuer() {
        assert_eq!(default_audiences(&[], "https://i"), vec!["https://i"]);
        assert_eq!(default_audiences(&["a".into()], "https://i"), vec!["a"]);
    }

    #[test]
    fn deletion_leeway() {
        assert!(!deleted_long_ago(&json!({"metadata": {}})));
        let recent = metadata::now_rfc3339();
        assert!(!deleted_long_ago(
            &json!({"metadata": {"deletionTimestamp": recent}})
        ));
        assert!(deleted_long_ago(
            &json!({"metadata": {"deletionTimestamp": "2020-01-01T00:00:00Z"}})
        ));
    }
}
