//! Upstream's serviceaccount-token controller (TokensController, as since 1.24): a Secret of
//! type `kubernetes.io/service-account-token` naming a ServiceAccount in its
//! `kubernetes.io/service-account.name` annotation gets a legacy token (`token`), the cluster CA
//! (`ca.crt`) and its `namespace`; such secrets are only made when someone asks for one. A secret
//! whose account is gone is deleted.
//!
//! The token is upstream's legacy JWT: issuer `kubernetes/serviceaccount`, the
//! `kubernetes.io/serviceaccount/*` claims, no expiry, signed (ES256) with the service-account
//! key the API server verifies with. As upstream, the controller uses the controller manager's
//! own client, not a service account of its own.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::ByteString;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::ResourceExt;
use serde_json::json;

use crate::context::Context;
use crate::error::{Error, Result};

const NAME: &str = "serviceaccount-token";
pub const SECRET_TYPE: &str = "kubernetes.io/service-account-token";
const ACCOUNT_NAME: &str = "kubernetes.io/service-account.name";
const ACCOUNT_UID: &str = "kubernetes.io/service-account.uid";
const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";

struct State {
    ctx: Context,
    key: EncodingKey,
    ca: Option<String>,
}

pub async fn run(ctx: Context) -> Result<()> {
    let Some(path) = ctx.settings.service_account_key.clone() else {
        tracing::info!(
            "no service-account signing key configured; legacy token secrets stay empty"
        );
        return std::future::pending().await;
    };
    let key = signing_key(&path)?;
    let ca = crate::root_ca_cert_publisher::ca_bundle(&ctx).ok();
    let secrets: Api<Secret> = Api::all(ctx.client.clone());
    let accounts: Api<ServiceAccount> = Api::all(ctx.client.clone());
    let typed = watcher::Config::default().fields(&format!("type={SECRET_TYPE}"));
    let controller = Controller::new(secrets, typed);
    let store = controller.store();
    // A deleted (or recreated) account re-examines the secrets naming it.
    let controller = controller.watches(accounts, watcher::Config::default(), move |sa| {
        let (ns, name) = (sa.namespace(), sa.name_any());
        store
            .state()
            .into_iter()
            .filter(|s| s.namespace() == ns && annotation(s, ACCOUNT_NAME) == Some(name.as_str()))
            .map(|s| ObjectRef::from_obj(&*s))
            .collect::<Vec<_>>()
    });
    let state = Arc::new(State { ctx, key, ca });
    controller
        .run(reconcile, error_policy, state)
        .for_each(|_| async {})
        .await;
    Ok(())
}

fn signing_key(path: &Path) -> Result<EncodingKey> {
    let pem = std::fs::read(path)
        .map_err(|e| Error::Invalid(format!("cannot read {}: {e}", path.display())))?;
    EncodingKey::from_ec_pem(&pem)
        .map_err(|e| Error::Invalid(format!("{} is not an EC private key: {e}", path.display())))
}

fn annotation<'a>(secret: &'a Secret, key: &str) -> Option<&'a str> {
    secret.annotations().get(key).map(String::as_str)
}

async fn reconcile(secret: Arc<Secret>, state: Arc<State>) -> Result<Action> {
    let (Some(ns), Some(account)) = (secret.namespace(), annotation(&secret, ACCOUNT_NAME)) else {
        return Ok(Action::await_change());
    };
    if secret.type_.as_deref() != Some(SECRET_TYPE) || secret.metadata.deletion_timestamp.is_some()
    {
        return Ok(Action::await_change());
    }
    let client = state.ctx.client.clone();
    let sa = Api::<ServiceAccount>::namespaced(client.clone(), &ns)
        .get_opt(account)
        .await?;
    let secrets: Api<Secret> = Api::namespaced(client, &ns);
    let wanted_uid = annotation(&secret, ACCOUNT_UID).filter(|u| !u.is_empty());
    let sa = match sa {
        Some(sa) if wanted_uid.is_none_or(|u| sa.metadata.uid.as_deref() == Some(u)) => sa,
        _ => {
            tracing::info!(namespace = %ns, secret = %secret.name_any(), account, "deleting the token secret of a missing service account");
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: secret.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match secrets.delete(&secret.name_any(), &params).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if matches!(e.code, 404 | 409) => {}
                Err(e) => return Err(e.into()),
            }
            return Ok(Action::await_change());
        }
    };
    let mut updated = (*secret).clone();
    if !fill(&mut updated, &sa, &ns, &state)? {
        return Ok(Action::await_change());
    }
    match secrets
        .replace(&secret.name_any(), &PostParams::default(), &updated)
        .await
    {
        // Changed under us: the watch brings the newer one.
        Ok(_) => {}
        Err(kube::Error::Api(e)) if matches!(e.code, 409 | 404) => {}
        Err(e) => return Err(e.into()),
    }
    state.ctx.metrics.synced(NAME);
    Ok(Action::await_change())
}

/// Fills in what is missing (token, ca.crt, namespace, the account's uid); false when nothing is.
fn fill(secret: &mut Secret, sa: &ServiceAccount, ns: &str, state: &State) -> Result<bool> {
    let uid = sa.metadata.uid.clone().unwrap_or_default();
    let token = legacy_token(&state.key, ns, &secret.name_any(), &sa.name_any(), &uid)?;
    let data = secret.data.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    let mut set = |key: &str, value: Vec<u8>, replace: bool| {
        let present = data.get(key).is_some_and(|v| !v.0.is_empty());
        if !present || (replace && data.get(key).map(|v| &v.0) != Some(&value)) {
            data.insert(key.to_string(), ByteString(value));
            changed = true;
        }
    };
    if let Some(ca) = &state.ca {
        set("ca.crt", ca.clone().into_bytes(), true);
    }
    set("namespace", ns.as_bytes().to_vec(), true);
    set("token", token.into_bytes(), false);
    let annotations = secret
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new);
    if annotations.get(ACCOUNT_UID) != Some(&uid) {
        annotations.insert(ACCOUNT_UID.into(), uid);
        changed = true;
    }
    Ok(changed)
}

/// Upstream's legacy service-account JWT (serviceaccount.LegacyClaims).
fn legacy_token(
    key: &EncodingKey,
    ns: &str,
    secret: &str,
    account: &str,
    uid: &str,
) -> Result<String> {
    let claims = json!({
        "iss": LEGACY_ISSUER,
        "kubernetes.io/serviceaccount/namespace": ns,
        "kubernetes.io/serviceaccount/secret.name": secret,
        "kubernetes.io/serviceaccount/service-account.name": account,
        "kubernetes.io/serviceaccount/service-account.uid": uid,
        "sub": format!("system:serviceaccount:{ns}:{account}"),
    });
    jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, key)
        .map_err(|e| Error::Invalid(format!("cannot sign the token: {e}")))
}

fn error_policy(secret: Arc<Secret>, error: &Error, state: Arc<State>) -> Action {
    tracing::warn!(secret = %secret.name_any(), %error, "cannot fill the service-account token secret; retrying");
    state.ctx.metrics.sync_failed(NAME);
    Action::requeue(Duration::from_secs(2))
}
