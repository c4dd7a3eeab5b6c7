//! csrapproving (upstream's sarapprove.go): approves a kubelet client certificate request when a
//! SubjectAccessReview says its requester may `create` `certificatesigningrequests/nodeclient`
//! (any node's first certificate, the bootstrap token's right) or, for a request naming the
//! requester itself, `.../selfnodeclient` (renewal). Anything else is left for a person
//! (`kubectl certificate approve`).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use super::{has_condition, requests, ACCOUNT, KUBELET_CLIENT_SIGNER, KUBELET_SERVING_SIGNER};
use crate::context::Context;
use crate::error::{Error, Result};

struct State {
    client: Client,
    metrics: crate::Metrics,
}

pub async fn run(ctx: Context) -> Result<()> {
    let client = ctx.client_for(ACCOUNT).await?;
    let state = Arc::new(State {
        client: client.clone(),
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
    state.metrics.sync_failed("csrapproving");
    tracing::warn!(%error, "csrapproving sync failed");
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile(csr: Arc<CertificateSigningRequest>, state: Arc<State>) -> Result<Action> {
    state.metrics.synced("csrapproving");
    if ["Approved", "Denied"]
        .iter()
        .any(|t| has_condition(&csr, t))
    {
        return Ok(Action::await_change());
    }
    let Some(message) = recognize(&csr, &state.client).await? else {
        return Ok(Action::await_change());
    };
    approve(&csr, &state.client, message).await?;
    tracing::info!(csr = %csr.name_any(), requester = ?csr.spec.username, "approved");
    Ok(Action::await_change())
}

/// The approval message when the request is one this controller approves.
async fn recognize(
    csr: &CertificateSigningRequest,
    client: &Client,
) -> Result<Option<&'static str>> {
    let info = match requests::parse(csr) {
        Ok(info) => info,
        Err(reason) => {
            tracing::debug!(csr = %csr.name_any(), "not approving: {reason}");
            return Ok(None);
        }
    };
    let requester = csr.spec.username.as_deref().unwrap_or_default();
    let is_self = requester == info.common_name;
    match csr.spec.signer_name.as_str() {
        KUBELET_CLIENT_SIGNER => {
            if let Err(reason) = requests::check_kubelet_client(csr, &info) {
                tracing::debug!(csr = %csr.name_any(), "not approving: {reason}");
                return Ok(None);
            }
            if is_self && allowed(csr, client, "selfnodeclient").await? {
                return Ok(Some(
                    "Auto approving self kubelet client certificate after SubjectAccessReview.",
                ));
            }
            if allowed(csr, client, "nodeclient").await? {
                return Ok(Some(
                    "Auto approving kubelet client certificate after SubjectAccessReview.",
                ));
            }
            Ok(None)
        }
        // krust's own: a node asking for its own serving certificate.
        KUBELET_SERVING_SIGNER => {
            let in_nodes = csr
                .spec
                .groups
                .iter()
                .flatten()
                .any(|g| g == "system:nodes");
            match requests::check_kubelet_serving(csr, &info) {
                Ok(()) if is_self && in_nodes => Ok(Some(
                    "Auto approving the node's own kubelet serving certificate.",
                )),
                _ => Ok(None),
            }
        }
        _ => Ok(None),
    }
}

/// Whether the requester may `create` `certificatesigningrequests/<subresource>`.
async fn allowed(
    csr: &CertificateSigningRequest,
    client: &Client,
    subresource: &str,
) -> Result<bool> {
    let spec = &csr.spec;
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: spec.username.clone(),
            uid: spec.uid.clone(),
            groups: spec.groups.clone(),
            extra: spec.extra.clone(),
            resource_attributes: Some(ResourceAttributes {
                group: Some("certificates.k8s.io".into()),
                resource: Some("certificatesigningrequests".into()),
                subresource: Some(subresource.into()),
                verb: Some("create".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    let answer = api.create(&PostParams::default(), &review).await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

async fn approve(csr: &CertificateSigningRequest, client: &Client, message: &str) -> Result<()> {
    let mut approved = csr.clone();
    let status = approved.status.get_or_insert_with(Default::default);
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    status
        .conditions
        .get_or_insert_with(Vec::new)
        .push(CertificateSigningRequestCondition {
            type_: "Approved".into(),
            status: "True".into(),
            reason: Some("AutoApproved".into()),
            message: Some(message.into()),
            last_update_time: Some(now.clone()),
            last_transition_time: Some(now),
        });
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    match api
        .replace_subresource(
            "approval",
            &csr.name_any(),
            &PostParams::default(),
            &approved,
        )
        .await
    {
        Ok(_) => Ok(()),
        // Changed meanwhile: the watch brings the new version.
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
