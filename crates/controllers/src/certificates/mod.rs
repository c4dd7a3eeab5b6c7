//! The certificate controllers (upstream's pkg/controller/certificates), run as the
//! `certificate-controller` service account as upstream's are:
//!
//! - `approver`: csrapproving, auto-approves kubelet client certificate requests
//!   (`kubernetes.io/kube-apiserver-client-kubelet`) from a requester a SubjectAccessReview
//!   allows `create` on `certificatesigningrequests/nodeclient` (a bootstrapping node) or
//!   `.../selfnodeclient` (a node renewing its own); krust also approves a node's own
//!   `kubernetes.io/kubelet-serving` request (upstream leaves those to an external approver; k3s
//!   signs them itself), so the API server can reach a joined node's kubelet with its CA.
//! - `signer`: csrsigning, signs approved requests of the kubelet, client and serving signers
//!   with the cluster CA (`--cluster-signing-cert-file`/`-key-file`).
//! - `requests`: what a node's request must look like, shared by both.

mod approver;
mod requests;
mod signer;

pub use approver::run as run_approver;
pub use signer::{run as run_signer, SigningCa};

/// The service account the certificate controllers act as (upstream's).
const ACCOUNT: &str = "certificate-controller";

pub const KUBELET_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
pub const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client";
pub const KUBELET_SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;

/// The condition of this type with status True, if any.
fn has_condition(csr: &CertificateSigningRequest, type_: &str) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

fn is_issued(csr: &CertificateSigningRequest) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .is_some_and(|c| !c.0.is_empty())
}
