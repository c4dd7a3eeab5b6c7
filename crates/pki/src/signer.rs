//! Signing certificate requests with a CA, as upstream's csrsigning controller
//! (`--cluster-signing-cert-file` / `--cluster-signing-key-file`): the subject and SANs come
//! from the PKCS#10 request (its signature checked), the key usages from the
//! CertificateSigningRequest's `spec.usages` (never from the request's own extensions), the
//! lifetime from `spec.expirationSeconds` capped by the signer's maximum.

use std::path::Path;

use rcgen::{
    CertificateSigningRequestParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::FromDer;

use crate::certs::random_serial;

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the signing CA {path} is not usable: {reason}")]
    Ca { path: String, reason: String },
    #[error("the certificate request is invalid: {0}")]
    Request(String),
    #[error("unsupported key usage {0:?}")]
    Usage(String),
    #[error("cannot sign: {0}")]
    Sign(String),
}

/// What a PKCS#10 request asks for, as the approver and signer check it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestInfo {
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<String>,
    /// Email addresses and URIs (a node client certificate may have none).
    pub other_names: Vec<String>,
}

/// Parses a PEM `CERTIFICATE REQUEST` and checks its signature.
pub fn parse_request(pem: &str) -> Result<RequestInfo, SignError> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| SignError::Request(format!("not PEM: {e}")))?;
    if block.label != "CERTIFICATE REQUEST" && block.label != "NEW CERTIFICATE REQUEST" {
        return Err(SignError::Request(format!(
            "PEM block is {:?}, not CERTIFICATE REQUEST",
            block.label
        )));
    }
    let der = block.contents;
    let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(&der)
        .map_err(|e| SignError::Request(e.to_string()))?;
    csr.verify_signature()
        .map_err(|e| SignError::Request(format!("bad signature: {e}")))?;
    let subject = &csr.certification_request_info.subject;
    let text = |attr: &x509_parser::x509::AttributeTypeAndValue<'_>| {
        attr.as_str().map(str::to_string).unwrap_or_default()
    };
    let mut info = RequestInfo {
        common_name: subject
            .iter_common_name()
            .next()
            .map(text)
            .unwrap_or_default(),
        organizations: subject.iter_organization().map(text).collect(),
        ..RequestInfo::default()
    };
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let x509_parser::extensions::ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                use x509_parser::extensions::GeneralName;
                match name {
                    GeneralName::DNSName(d) => info.dns_names.push(d.to_string()),
                    GeneralName::IPAddress(ip) => info.ip_addresses.push(format_ip(ip)),
                    other => info.other_names.push(other.to_string()),
                }
            }
        }
    }
    Ok(info)
}

fn format_ip(raw: &[u8]) -> String {
    match raw.len() {
        4 => std::net::Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]).to_string(),
        16 => <[u8; 16]>::try_from(raw)
            .map(|b| std::net::Ipv6Addr::from(b).to_string())
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// A new private key and a PKCS#10 request for `CN=<common_name>, O=<organization>` with
/// `sans`, both PEM: what a kubelet sends to be signed (`pki::CsrSigner` on the other side).
pub fn new_request(
    common_name: &str,
    organization: &str,
    sans: &[crate::San],
) -> Result<(String, String), SignError> {
    let key = KeyPair::generate().map_err(|e| SignError::Sign(e.to_string()))?;
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::OrganizationName, organization);
    dn.push(rcgen::DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.subject_alt_names = sans
        .iter()
        .map(crate::San::to_rcgen)
        .collect::<Result<_, _>>()
        .map_err(|e| SignError::Request(e.to_string()))?;
    let request = params
        .serialize_request(&key)
        .and_then(|r| r.pem())
        .map_err(|e| SignError::Sign(e.to_string()))?;
    Ok((key.serialize_pem(), request))
}

/// A CA that signs requests.
pub struct CsrSigner {
    issuer: Issuer<'static, KeyPair>,
}

impl CsrSigner {
    pub fn load(ca_crt: &Path, ca_key: &Path) -> Result<CsrSigner, SignError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| SignError::Read {
                path: p.display().to_string(),
                source,
            })
        };
        let bad = |reason: String| SignError::Ca {
            path: ca_crt.display().to_string(),
            reason,
        };
        let key = KeyPair::from_pem(&read(ca_key)?).map_err(|e| bad(e.to_string()))?;
        let der = crate::certs::parse_pem(&read(ca_crt)?).map_err(bad)?;
        let issuer = Issuer::from_ca_cert_der(&der.into(), key).map_err(|e| bad(e.to_string()))?;
        Ok(CsrSigner { issuer })
    }

    /// Signs `request_pem` for `usages` (upstream's `spec.usages` names) and `lifetime`; the
    /// certificate, PEM.
    pub fn sign(
        &self,
        request_pem: &str,
        usages: &[String],
        lifetime: std::time::Duration,
    ) -> Result<String, SignError> {
        let mut csr = CertificateSigningRequestParams::from_pem(request_pem)
            .map_err(|e| SignError::Request(e.to_string()))?;
        let params = &mut csr.params;
        params.key_usages.clear();
        params.extended_key_usages.clear();
        for usage in usages {
            apply_usage(params, usage)?;
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        // Upstream backdates by five minutes for clock skew, as our own leaves do.
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + Duration::seconds(lifetime.as_secs() as i64);
        let cert = csr
            .signed_by(&self.issuer)
            .map_err(|e| SignError::Sign(e.to_string()))?;
        Ok(cert.pem())
    }
}

/// Upstream's `KeyUsage` names to X.509 key usages and extended key usages.
fn apply_usage(params: &mut rcgen::CertificateParams, usage: &str) -> Result<(), SignError> {
    let ku = |p: &mut rcgen::CertificateParams, k| p.key_usages.push(k);
    let eku = |p: &mut rcgen::CertificateParams, e| p.extended_key_usages.push(e);
    match usage {
        "digital signature" => ku(params, KeyUsagePurpose::DigitalSignature),
        "key encipherment" => ku(params, KeyUsagePurpose::KeyEncipherment),
        "content commitment" => ku(params, KeyUsagePurpose::ContentCommitment),
        "data encipherment" => ku(params, KeyUsagePurpose::DataEncipherment),
        "key agreement" => ku(params, KeyUsagePurpose::KeyAgreement),
        "client auth" => eku(params, ExtendedKeyUsagePurpose::ClientAuth),
        "server auth" => eku(params, ExtendedKeyUsagePurpose::ServerAuth),
        "code signing" => eku(params, ExtendedKeyUsagePurpose::CodeSigning),
        "email protection" => eku(params, ExtendedKeyUsagePurpose::EmailProtection),
        "timestamping" => eku(params, ExtendedKeyUsagePurpose::TimeStamping),
        "ocsp signing" => eku(params, ExtendedKeyUsagePurpose::OcspSigning),
        other => return Err(SignError::Usage(other.to_string())),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType};

    fn request(cn: &str, org: &str) -> String {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, org);
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    #[test]
    fn signs_a_node_client_request() {
        let dir = tempfile::tempdir().unwrap();
        let mut report = crate::report::EnsureReport::default();
        crate::ca::Ca::create(dir.path(), crate::ca::CaKind::Cluster, &mut report).unwrap();
        let (crt, key) = crate::ca::pair(dir.path(), crate::ca::CaKind::Cluster);
        let signer = CsrSigner::load(&crt, &key).unwrap();
        let req = request("system:node:n1", "system:nodes");
        let info = parse_request(&req).unwrap();
        assert_eq!(info.common_name, "system:node:n1");
        assert_eq!(info.organizations, ["system:nodes"]);
        let usages = ["digital signature".to_string(), "client auth".to_string()];
        let pem = signer
            .sign(&req, &usages, std::time::Duration::from_secs(3600))
            .unwrap();
        let id = crate::cert_identity(&crate::certs::parse_pem(&pem).unwrap()).unwrap();
        assert_eq!(id.user, "system:node:n1");
        assert_eq!(id.groups, ["system:nodes"]);
    }
}
