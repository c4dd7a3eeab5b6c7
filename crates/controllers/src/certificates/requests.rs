//! What a node's certificate request must be (upstream's `IsKubeletClientCSR` /
//! `IsKubeletServingCSR` in pkg/apis/certificates): `O=system:nodes`, `CN=system:node:<name>`,
//! and only the usages each kind of certificate needs.

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use pki::RequestInfo;

const NODE_PREFIX: &str = "system:node:";
const NODES_GROUP: &str = "system:nodes";

/// The parsed request, or why it cannot be read.
pub fn parse(csr: &CertificateSigningRequest) -> Result<RequestInfo, String> {
    let pem = String::from_utf8(csr.spec.request.0.clone())
        .map_err(|_| "the request is not PEM".to_string())?;
    pki::parse_request(&pem).map_err(|e| e.to_string())
}

fn usages(csr: &CertificateSigningRequest) -> Vec<&str> {
    csr.spec
        .usages
        .iter()
        .flatten()
        .map(String::as_str)
        .collect()
}

fn node_subject(info: &RequestInfo) -> Result<(), String> {
    if info.organizations != [NODES_GROUP] {
        return Err(format!("subject organization is not {NODES_GROUP}"));
    }
    if !info.common_name.starts_with(NODE_PREFIX) || info.common_name.len() == NODE_PREFIX.len() {
        return Err(format!(
            "subject common name does not begin with {NODE_PREFIX}"
        ));
    }
    Ok(())
}

/// A kubelet client certificate request: node subject, no SANs, client auth (with digital
/// signature and optionally key encipherment) and nothing else.
pub fn check_kubelet_client(
    csr: &CertificateSigningRequest,
    info: &RequestInfo,
) -> Result<(), String> {
    node_subject(info)?;
    if !(info.dns_names.is_empty() && info.ip_addresses.is_empty() && info.other_names.is_empty()) {
        return Err("a kubelet client certificate may not have subject alternative names".into());
    }
    let usages = usages(csr);
    let allowed = ["digital signature", "key encipherment", "client auth"];
    if !usages.contains(&"client auth") || usages.iter().any(|u| !allowed.contains(u)) {
        return Err(format!(
            "usages {usages:?} are not client auth with digital signature and key encipherment"
        ));
    }
    Ok(())
}

/// A kubelet serving certificate request: node subject, DNS and IP SANs only (at least one),
/// server auth (with digital signature and optionally key encipherment) and nothing else.
pub fn check_kubelet_serving(
    csr: &CertificateSigningRequest,
    info: &RequestInfo,
) -> Result<(), String> {
    node_subject(info)?;
    if !info.other_names.is_empty() {
        return Err("a kubelet serving certificate may have DNS and IP names only".into());
    }
    if info.dns_names.is_empty() && info.ip_addresses.is_empty() {
        return Err("a kubelet serving certificate needs a DNS or IP name".into());
    }
    let usages = usages(csr);
    let allowed = ["digital signature", "key encipherment", "server auth"];
    if !usages.contains(&"server auth") || usages.iter().any(|u| !allowed.contains(u)) {
        return Err(format!(
            "usages {usages:?} are not server auth with digital signature and key encipherment"
        ));
    }
    Ok(())
}
