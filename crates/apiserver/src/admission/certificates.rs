//! Upstream's `CertificateApproval` and `CertificateSigning` admission plugins
//! (plugin/pkg/admission/certificates): approving or denying a CertificateSigningRequest (its
//! `approval` subresource) needs the `approve` verb, and setting or changing its
//! `status.certificate` the `sign` verb, on `certificates.k8s.io/signers` named by the request's
//! signer (or its `<domain>/*` wildcard), so RBAC decides who may issue what; and
//! `CertificateSubjectRestriction`: no request to `kubernetes.io/kube-apiserver-client` may ask
//! for the `system:masters` group, whoever would approve it.

use async_trait::async_trait;
use serde_json::Value;

use super::{Attributes, Operation, Plugin};
use crate::authz::{self, Authorizer, Decision};
use crate::registry::Registry;
use crate::status::ApiResult;

const GROUP: &str = "certificates.k8s.io";

pub struct CertificateApproval;
pub struct CertificateSigning;
pub struct CertificateSubjectRestriction;

#[async_trait]
impl Plugin for CertificateSubjectRestriction {
    fn name(&self) -> &'static str {
        "CertificateSubjectRestriction"
    }

    async fn admit(
        &self,
        attrs: &Attributes<'_>,
        object: Option<&mut Value>,
        _reg: &Registry,
    ) -> ApiResult<()> {
        let creating = attrs.operation == Operation::Create
            && attrs.is(GROUP, "certificatesigningrequests")
            && attrs.subresource.is_empty();
        let Some(csr) = object.filter(|_| creating) else {
            return Ok(());
        };
        let signer = csr["spec"]["signerName"].as_str().unwrap_or_default();
        if signer != "kubernetes.io/kube-apiserver-client" {
            return Ok(());
        }
        // An unparseable request is validation's to refuse, with its field error.
        let Some(info) = request_info(csr) else {
            return Ok(());
        };
        if info.organizations.iter().any(|o| o == "system:masters") {
            return Err(attrs.forbidden(
                Some(csr),
                format!("use of {signer} signer with system:masters group is not allowed"),
            ));
        }
        Ok(())
    }
}

fn request_info(csr: &Value) -> Option<pki::RequestInfo> {
    use base64::Engine as _;
    let b64 = csr["spec"]["request"].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    pki::parse_request(std::str::from_utf8(&bytes).ok()?).ok()
}

#[async_trait]
impl Plugin for CertificateApproval {
    fn name(&self) -> &'static str {
        "CertificateApproval"
    }

    async fn admit(
        &self,
        attrs: &Attributes<'_>,
        object: Option<&mut Value>,
        reg: &Registry,
    ) -> ApiResult<()> {
        if !applies(attrs, "approval") {
            return Ok(());
        }
        let Some(csr) = object else { return Ok(()) };
        check(attrs, csr, reg, "approve").await
    }
}

#[async_trait]
impl Plugin for CertificateSigning {
    fn name(&self) -> &'static str {
        "CertificateSigning"
    }

    async fn admit(
        &self,
        attrs: &Attributes<'_>,
        object: Option<&mut Value>,
        reg: &Registry,
    ) -> ApiResult<()> {
        if !applies(attrs, "status") {
            return Ok(());
        }
        let Some(csr) = object else { return Ok(()) };
        let old = attrs.old.map(|o| &o["status"]["certificate"]);
        if old == Some(&csr["status"]["certificate"]) {
            return Ok(());
        }
        check(attrs, csr, reg, "sign").await
    }
}

fn applies(attrs: &Attributes<'_>, subresource: &str) -> bool {
    attrs.operation == Operation::Update
        && attrs.is(GROUP, "certificatesigningrequests")
        && attrs.subresource == subresource
}

async fn check(attrs: &Attributes<'_>, csr: &Value, reg: &Registry, verb: &str) -> ApiResult<()> {
    let signer = csr["spec"]["signerName"].as_str().unwrap_or_default();
    if authorized(reg, attrs, verb, signer).await {
        return Ok(());
    }
    let action = if verb == "approve" { "approve" } else { "sign" };
    Err(attrs.forbidden(
        Some(csr),
        format!("user not permitted to {action} requests with signerName {signer:?}"),
    ))
}

/// Upstream's `IsAuthorizedForSignerName`: the signer's own name, then `<domain>/*`.
async fn authorized(reg: &Registry, attrs: &Attributes<'_>, verb: &str, signer: &str) -> bool {
    let mut names = vec![signer.to_string()];
    if let Some((domain, _)) = signer.split_once('/') {
        names.push(format!("{domain}/*"));
    }
    for name in names {
        let request = authz::Attributes {
            user: attrs.user.clone(),
            verb: verb.into(),
            resource_request: true,
            api_group: GROUP.into(),
            resource: "signers".into(),
            name,
            ..Default::default()
        };
        if reg.authorization.authorize(&request).await == Decision::Allow {
            return true;
        }
    }
    false
}
