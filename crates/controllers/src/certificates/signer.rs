//! csrsigning (upstream's signer.go): an approved, not yet issued request of the kubelet client,
//! client or kubelet serving signer is signed with the cluster CA and the certificate written to
//! `status.certificate`. Requests that break their signer's rules get a `Failed` condition, as
//! upstream's.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::ByteString;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use pki::CsrSigner;

use super::{
    has_condition, is_issued, requests, ACCOUNT, CLIENT_SIGNER, KUBELET_CLIENT_SIGNER,
    KUBELET_SERVING_SIGNER,
};
use crate::context::Context;
use crate::error::{Error, Result};

/// Upstream's `--cluster-signing-duration` default: one year.
pub const MAX_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

/// The CA the signer uses (upstream's `--cluster-signing-cert-file` and `-key-file`).
#[derive(Debug, Clone)]
pub struct SigningCa {
    pub cert: PathBuf,
    pub key: PathBuf,
}

struct State {
    client: Client,
    signer: CsrSigner,
    metrics: crate::Metrics,
}

pub async fn run(ctx: Context) -> Result<()> {
    let Some(ca) = ctx.settings.cluster_signing.clone() else {
        tracing::info!(
            "csrsigning has no signing CA configured: certificate requests stay unsigned"
        );
        std::future::pending::<()>().await;
        return Ok(());
    };
    let signer = CsrSigner::load(&ca.cert, &ca.key).map_err(|e| Error::Invalid(e.to_string()))?;
    let client = ctx.client_for(ACCOUNT).await?;
    let state = Arc::new(State {
        client: client.clone(),
        signer,
        metrics: ctx.metrics.clone(),
    });
    Controller::new(
        Api::<CertificateSigningRequest>::all(client),
        watcher::Config::default(),
    )
    .run(reconcile, error_policy, state)
    .for_each(|_| std::future::ready(()))
    .await;
    Ok(())
}

fn error_policy(_: Arc<CertificateSigningRequest>, error: &Error, state: Arc<State>) -> Action {
    state.metrics.sync_failed("csrsigning");
    tracing::warn!(%error, "csrsigning sync failed");
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile(csr: Arc<CertificateSigningRequest>, state: Arc<State>) -> Result<Action> {
    state.metrics.synced("csrsigning");
    let ours = matches!(
        csr.spec.signer_name.as_str(),
        KUBELET_CLIENT_SIGNER | CLIENT_SIGNER | KUBELET_SERVING_SIGNER
    );
    let done = is_issued(&csr) || has_condition(&csr, "Failed") || has_condition(&csr, "Denied");
    if !ours || done || !has_condition(&csr, "Approved") {
        return Ok(Action::await_change());
    }
    let mut signed = (*csr).clone();
    match sign(&csr, &state.signer) {
        Ok(pem) => {
            signed
                .status
                .get_or_insert_with(Default::default)
                .certificate = Some(ByteString(pem.into_bytes()));
            tracing::info!(csr = %csr.name_any(), signer = %csr.spec.signer_name, "signed");
        }
        Err(reason) => {
            tracing::info!(csr = %csr.name_any(), "not signing: {reason}");
            fail(&mut signed, reason);
        }
    }
    let api: Api<CertificateSigningRequest> = Api::all(state.client.clone());
    match api
        .replace_status(&csr.name_any(), &PostParams::default(), &signed)
        .await
    {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

/// Checks the request against its signer's rules and signs it; why not otherwise.
fn sign(csr: &CertificateSigningRequest, signer: &CsrSigner) -> Result<String, String> {
    let info = requests::parse(csr)?;
    match csr.spec.signer_name.as_str() {
        KUBELET_CLIENT_SIGNER => requests::check_kubelet_client(csr, &info)?,
        KUBELET_SERVING_SIGNER => requests::check_kubelet_serving(csr, &info)?,
        _ => {}
    }
    let usages = csr.spec.usages.clone().unwrap_or_default();
    let lifetime = match csr.spec.expiration_seconds {
        // Upstream's minimum is 10 minutes (validation); the signer's maximum caps it.
        Some(s) => Duration::from_secs(s.max(600) as u64).min(MAX_LIFETIME),
        None => MAX_LIFETIME,
    };
    let pem = String::from_utf8(csr.spec.request.0.clone()).map_err(|e| e.to_string())?;
    signer
        .sign(&pem, &usages, lifetime)
        .map_err(|e| e.to_string())
}

fn fail(csr: &mut CertificateSigningRequest, message: String) {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    csr.status
        .get_or_insert_with(Default::default)
        .conditions
        .get_or_insert_with(Vec::new)
        .push(CertificateSigningRequestCondition {
            type_: "Failed".into(),
            status: "True".into(),
            reason: Some("SignerValidationFailure".into()),
            message: Some(message),
            last_update_time: Some(now.clone()),
            last_transition_time: Some(now),
        });
}
