//! Leaf certificates: the table of what krust issues (who, signed by which CA, for which use and
//! names), the rules for when an existing certificate is kept or re-issued, and issuing itself.
//!
//! An existing leaf is kept byte for byte unless it is unreadable, does not match its key, was
//! signed by another CA, names another subject, lacks a SAN it needs, or expires within
//! [`RENEW_WITHIN_DAYS`]. A renewal keeps the existing key when it is sound, so that only the
//! certificate changes; an explicit refresh makes a new key too.

use std::net::IpAddr;
use std::path::Path;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
    KeyUsagePurpose, PublicKeyData, SerialNumber,
};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::ca::{Ca, CaKind};
use crate::report::EnsureReport;
use crate::sans::{self, San};
use crate::{files, PkiError};

/// Leaves live one year, as kubeadm's do; with start-time renewal they never reach that age.
pub const LEAF_VALIDITY_DAYS: i64 = 365;
/// A leaf expiring within this many days is renewed at start.
pub const RENEW_WITHIN_DAYS: i64 = 90;

/// What a certificate is used for (its extended key usage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Server,
    Client,
    /// Datastore members are both server and client of each other.
    ServerAndClient,
}

/// One leaf certificate krust issues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafSpec {
    /// File stem under `certs/` (`server` for server.crt/server.key).
    pub stem: &'static str,
    pub signer: CaKind,
    pub common_name: String,
    pub organization: Option<&'static str>,
    pub usage: Usage,
    pub sans: Vec<San>,
}

/// Inputs that decide the SANs and subjects of the leaves.
pub struct LeafInputs<'a> {
    pub node_name: &'a str,
    pub hosts: &'a [IpAddr],
    pub service_ip: IpAddr,
    /// SANs from csr.conf.template.
    pub extra_server_sans: &'a [San],
}

/// Every leaf krust issues, in issuing order.
pub fn leaf_specs(input: &LeafInputs<'_>) -> Vec<LeafSpec> {
    use CaKind::{Cluster, Datastore, FrontProxy};
    use Usage::{Client, Server, ServerAndClient};
    let local = sans::local_sans(input.hosts);
    let mut kubelet_sans = vec![San::Dns(input.node_name.to_string())];
    kubelet_sans.extend(local.iter().cloned());
    let server_sans = sans::server_sans(input.hosts, input.service_ip, input.extra_server_sans);
    let leaf = |stem, signer, cn: &str, org, usage, sans: Vec<San>| LeafSpec {
        stem,
        signer,
        common_name: cn.to_string(),
        organization: org,
        usage,
        sans: sans::dedup(sans),
    };
    let node = format!("system:node:{}", input.node_name);
    vec![
        leaf(
            "server",
            Cluster,
            "kube-apiserver",
            None,
            Server,
            server_sans,
        ),
        leaf(
            "front-proxy-client",
            FrontProxy,
            "front-proxy-client",
            None,
            Client,
            vec![],
        ),
        leaf(
            "admin",
            Cluster,
            "admin",
            Some("system:masters"),
            Client,
            vec![],
        ),
        leaf(
            "scheduler",
            Cluster,
            "system:kube-scheduler",
            None,
            Client,
            vec![],
        ),
        leaf(
            "controller",
            Cluster,
            "system:kube-controller-manager",
            None,
            Client,
            vec![],
        ),
        // The components' secure ports (10259, 10257). Upstream self-signs these at start;
        // signing them with the cluster CA lets clients verify them with ca.crt.
        leaf(
            "scheduler-serving",
            Cluster,
            "kube-scheduler",
            None,
            Server,
            local.clone(),
        ),
        leaf(
            "controller-manager-serving",
            Cluster,
            "kube-controller-manager",
            None,
            Server,
            local.clone(),
        ),
        leaf("proxy", Cluster, "system:kube-proxy", None, Client, vec![]),
        leaf(
            "kubelet-client",
            Cluster,
            &node,
            Some("system:nodes"),
            Client,
            vec![],
        ),
        leaf(
            "kubelet",
            Cluster,
            &node,
            Some("system:nodes"),
            Server,
            kubelet_sans,
        ),
        leaf(
            "apiserver-kubelet-client",
            Cluster,
            "kube-apiserver-kubelet-client",
            Some("system:masters"),
            Client,
            vec![],
        ),
        leaf(
            "datastore",
            Datastore,
            "krust-datastore",
            None,
            ServerAndClient,
            local.clone(),
        ),
        leaf(
            "datastore-peer",
            Datastore,
            "krust-datastore-peer",
            None,
            ServerAndClient,
            local,
        ),
        leaf(
            "datastore-client",
            Datastore,
            "kube-apiserver-datastore-client",
            None,
            Client,
            vec![],
        ),
    ]
}

/// Makes sure `spec`'s certificate and key exist and are sound, re-issuing them when not (or
/// always, with `force`). Returns whether the certificate was (re)written.
pub fn ensure_leaf(
    certs_dir: &Path,
    spec: &LeafSpec,
    ca: &Ca,
    force: bool,
    report: &mut EnsureReport,
) -> Result<bool, PkiError> {
    let crt = certs_dir.join(format!("{}.crt", spec.stem));
    let key_path = certs_dir.join(format!("{}.key", spec.stem));
    let existing_key = read_key(&key_path)?;
    let cert_pem = files::read_opt(&crt)?;
    let verdict = match (&cert_pem, force) {
        (_, true) => Some(Reissue::new_key("refresh requested")),
        (None, false) => Some(Reissue::keep_key(String::new())),
        (Some(pem), false) => assess(spec, ca, pem, existing_key.as_ref()),
    };
    let Some(Reissue { reason, keep_key }) = verdict else {
        files::restrict_mode(&key_path, files::SECRET)?;
        return Ok(false);
    };
    let (key, key_is_new) = match existing_key.filter(|_| keep_key) {
        Some(k) => (k, false),
        None => (
            KeyPair::generate().map_err(|e| PkiError::issue(spec.stem, e))?,
            true,
        ),
    };
    let cert = params(spec)?
        .signed_by(&key, ca.issuer())
        .map_err(|e| PkiError::issue(spec.stem, e))?;
    if key_is_new {
        files::write(&key_path, key.serialize_pem().as_bytes(), files::SECRET)?;
    }
    files::write(&crt, cert.pem().as_bytes(), files::PUBLIC)?;
    match cert_pem {
        None => report.created(&crt),
        Some(_) => report.renewed(&crt, reason),
    }
    Ok(true)
}

/// Why a certificate must be re-issued, and whether its existing key may be kept.
struct Reissue {
    reason: String,
    keep_key: bool,
}

impl Reissue {
    fn keep_key(reason: impl Into<String>) -> Self {
        Reissue {
            reason: reason.into(),
            keep_key: true,
        }
    }

    fn new_key(reason: impl Into<String>) -> Self {
        Reissue {
            reason: reason.into(),
            keep_key: false,
        }
    }
}

fn read_key(path: &Path) -> Result<Option<KeyPair>, PkiError> {
    let Some(pem) = files::read_opt(path)? else {
        return Ok(None);
    };
    match KeyPair::from_pem(&pem) {
        Ok(key) => Ok(Some(key)),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "unreadable private key, a new one is made");
            Ok(None)
        }
    }
}

/// `None` when the existing certificate `pem` is sound for `spec`.
fn assess(spec: &LeafSpec, ca: &Ca, pem: &str, key: Option<&KeyPair>) -> Option<Reissue> {
    let Some(key) = key else {
        return Some(Reissue::new_key("its key is missing or unreadable"));
    };
    parse_pem(pem)
        .and_then(|der| with_x509(&der, |x| problem(spec, ca, x, key)))
        .unwrap_or_else(|e| Some(Reissue::keep_key(format!("unreadable certificate: {e}"))))
}

/// Why an existing, parseable certificate must be re-issued, if it must.
fn problem(spec: &LeafSpec, ca: &Ca, x: &X509Certificate<'_>, key: &KeyPair) -> Option<Reissue> {
    if x.public_key().raw != key.subject_public_key_info().as_slice() {
        return Some(Reissue::new_key("it does not match its key"));
    }
    problem_with_cert(spec, ca, x).map(Reissue::keep_key)
}

/// Problems that a new certificate for the same key fixes.
fn problem_with_cert(spec: &LeafSpec, ca: &Ca, x: &X509Certificate<'_>) -> Option<String> {
    if !ca.signed(x) {
        return Some(format!(
            "it is not signed by the current {}.crt",
            ca.kind.stem()
        ));
    }
    let (cn, org) = subject_of(x);
    if cn.as_deref() != Some(spec.common_name.as_str()) || org.as_deref() != spec.organization {
        return Some(format!("its subject is not CN={}", spec.common_name));
    }
    let present = sans_of(x);
    let missing: Vec<String> = spec
        .sans
        .iter()
        .filter(|s| !present.contains(s))
        .map(ToString::to_string)
        .collect();
    if !missing.is_empty() {
        return Some(format!("it lacks {}", missing.join(", ")));
    }
    let days = days_left(x);
    (days < RENEW_WITHIN_DAYS).then(|| format!("it expires in {days} days"))
}

fn params(spec: &LeafSpec) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, spec.common_name.as_str());
    if let Some(org) = spec.organization {
        dn.push(DnType::OrganizationName, org);
    }
    params.distinguished_name = dn;
    params.subject_alt_names = spec
        .sans
        .iter()
        .map(San::to_rcgen)
        .collect::<Result<_, _>>()?;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = match spec.usage {
        Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
        Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        Usage::ServerAndClient => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    };
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial());
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + Duration::days(LEAF_VALIDITY_DAYS);
    Ok(params)
}

/// A random positive 128-bit serial. rcgen's default derives the serial from the public key,
/// which would repeat it when a certificate is renewed with the same key.
pub fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

/// The DER inside a PEM `CERTIFICATE` block.
pub fn parse_pem(pem: &str) -> Result<Vec<u8>, String> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| e.to_string())?;
    if block.label != "CERTIFICATE" {
        return Err(format!("PEM block is {:?}, not CERTIFICATE", block.label));
    }
    Ok(block.contents)
}

/// Runs `f` on the parsed certificate `der`.
pub fn with_x509<T>(der: &[u8], f: impl FnOnce(&X509Certificate<'_>) -> T) -> Result<T, String> {
    let (_, x) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    Ok(f(&x))
}

/// Whole days until `x` expires, negative once it has.
pub fn days_left(x: &X509Certificate<'_>) -> i64 {
    let secs = x.validity().not_after.timestamp() - OffsetDateTime::now_utc().unix_timestamp();
    secs.div_euclid(86_400)
}

/// Common name and first organization of the subject.
pub fn subject_of(x: &X509Certificate<'_>) -> (Option<String>, Option<String>) {
    let text =
        |a: &x509_parser::x509::AttributeTypeAndValue<'_>| a.as_str().ok().map(str::to_string);
    let subject = x.subject();
    (
        subject.iter_common_name().next().and_then(text),
        subject.iter_organization().next().and_then(text),
    )
}

/// The DNS and IP SANs of `x`.
pub fn sans_of(x: &X509Certificate<'_>) -> Vec<San> {
    let Ok(Some(ext)) = x.subject_alternative_name() else {
        return Vec::new();
    };
    ext.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(San::Dns((*dns).to_string())),
            GeneralName::IPAddress(bytes) => ip_from_bytes(bytes).map(San::Ip),
            _ => None,
        })
        .collect()
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        return Some(IpAddr::from(v4));
    }
    <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from)
}
