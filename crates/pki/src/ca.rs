//! The certificate authorities: the cluster CA (`ca.crt`), the front-proxy CA for the aggregation
//! layer, and the datastore CA (kept separate, as kubeadm does for etcd, so that a kubelet's or
//! user's client certificate never opens the datastore). A CA is created when neither its
//! certificate nor its key exists, loaded otherwise, and never replaced except by an explicit
//! `refresh-certs --cert ca.crt`: a new CA invalidates every kubeconfig handed out.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData,
};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;

use crate::certs::{days_left, parse_pem, random_serial, RENEW_WITHIN_DAYS};
use crate::report::EnsureReport;
use crate::{files, PkiError};

/// CAs live ten years, as kubeadm's do.
pub const CA_VALIDITY_DAYS: i64 = 3650;

/// Which of the three authorities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CaKind {
    Cluster,
    FrontProxy,
    Datastore,
}

impl CaKind {
    pub const ALL: [CaKind; 3] = [CaKind::Cluster, CaKind::FrontProxy, CaKind::Datastore];

    /// File stem under `certs/`.
    pub fn stem(self) -> &'static str {
        match self {
            CaKind::Cluster => "ca",
            CaKind::FrontProxy => "front-proxy-ca",
            CaKind::Datastore => "datastore-ca",
        }
    }

    fn common_name(self) -> &'static str {
        match self {
            CaKind::Cluster => "krust-ca",
            CaKind::FrontProxy => "krust-front-proxy-ca",
            CaKind::Datastore => "krust-datastore-ca",
        }
    }
}

/// A loaded CA, ready to sign.
pub struct Ca {
    pub kind: CaKind,
    cert_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    /// Loads the CA from `certs/`, creating it when neither file exists.
    pub fn load_or_create(
        certs_dir: &Path,
        kind: CaKind,
        report: &mut EnsureReport,
    ) -> Result<Ca, PkiError> {
        let (crt, key) = pair(certs_dir, kind);
        let ca = match (files::read_opt(&crt)?, files::read_opt(&key)?) {
            (None, None) => return Ca::create(certs_dir, kind, report),
            (Some(_), None) => return Err(PkiError::CaKeyMissing { cert: crt, key }),
            (None, Some(_)) => return Err(PkiError::CaCertMissing { cert: crt, key }),
            (Some(c), Some(k)) => Ca::from_pem(kind, &c, &k, &crt, &key)?,
        };
        files::restrict_mode(&key, files::SECRET)?;
        ca.warn_if_expiring(&crt, report);
        Ok(ca)
    }

    /// Makes a new CA and writes it over whatever was there.
    pub fn create(
        certs_dir: &Path,
        kind: CaKind,
        report: &mut EnsureReport,
    ) -> Result<Ca, PkiError> {
        let (crt, key_path) = pair(certs_dir, kind);
        let existed = crt.exists();
        let key = KeyPair::generate().map_err(|e| PkiError::issue(kind.stem(), e))?;
        let params = ca_params(kind);
        let cert = params
            .self_signed(&key)
            .map_err(|e| PkiError::issue(kind.stem(), e))?;
        files::write(&key_path, key.serialize_pem().as_bytes(), files::SECRET)?;
        files::write(&crt, cert.pem().as_bytes(), files::PUBLIC)?;
        if existed {
            report.renewed(&crt, "new CA requested".into());
        } else {
            report.created(&crt);
        }
        Ok(Ca {
            kind,
            cert_der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        })
    }

    fn from_pem(
        kind: CaKind,
        cert_pem: &str,
        key_pem: &str,
        crt: &Path,
        key: &Path,
    ) -> Result<Ca, PkiError> {
        let pair = KeyPair::from_pem(key_pem).map_err(|e| PkiError::CaKeyInvalid {
            key: key.to_path_buf(),
            reason: e.to_string(),
        })?;
        let invalid = |reason: String| PkiError::CertInvalid {
            path: crt.to_path_buf(),
            reason,
        };
        let cert_der = parse_pem(cert_pem).map_err(invalid)?;
        let matches = crate::certs::with_x509(&cert_der, |x| {
            x.public_key().raw == pair.subject_public_key_info().as_slice()
        })
        .map_err(invalid)?;
        if !matches {
            return Err(PkiError::CaKeyMismatch {
                cert: crt.to_path_buf(),
                key: key.to_path_buf(),
            });
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der.clone().into(), pair)
            .map_err(|e| invalid(e.to_string()))?;
        Ok(Ca {
            kind,
            cert_der,
            issuer,
        })
    }

    pub fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }

    /// Whether `leaf` carries a valid signature of this CA: a leaf left over from a previous CA
    /// must be re-issued, or clients trusting the current ca.crt reject it.
    pub fn signed(&self, leaf: &X509Certificate<'_>) -> bool {
        crate::certs::with_x509(&self.cert_der, |ca| {
            leaf.issuer() == ca.subject() && leaf.verify_signature(Some(ca.public_key())).is_ok()
        })
        .unwrap_or(false)
    }

    fn warn_if_expiring(&self, crt: &Path, report: &mut EnsureReport) {
        let days = crate::certs::with_x509(&self.cert_der, days_left).unwrap_or(0);
        if days < RENEW_WITHIN_DAYS {
            report.warn(format!(
                "{} expires in {days} days and is not renewed automatically: plan \
                 `krust refresh-certs --cert ca.crt` (it re-issues every certificate and kubeconfig)",
                crt.display()
            ));
        }
    }
}

/// The three CAs of a run.
pub struct Cas(Vec<Ca>);

impl Cas {
    /// Loads (or creates) every CA, or makes new ones with `renew`.
    pub fn ensure(
        certs_dir: &Path,
        renew: bool,
        report: &mut EnsureReport,
    ) -> Result<Cas, PkiError> {
        CaKind::ALL
            .iter()
            .map(|&kind| match renew {
                true => Ca::create(certs_dir, kind, report),
                false => Ca::load_or_create(certs_dir, kind, report),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Cas)
    }

    pub fn get(&self, kind: CaKind) -> &Ca {
        // `ensure` builds one CA per kind in CaKind::ALL order.
        &self.0[kind as usize]
    }
}

/// `certs/<stem>.crt`, `certs/<stem>.key` of a CA.
pub fn pair(certs_dir: &Path, kind: CaKind) -> (PathBuf, PathBuf) {
    (
        certs_dir.join(format!("{}.crt", kind.stem())),
        certs_dir.join(format!("{}.key", kind.stem())),
    )
}

fn ca_params(kind: CaKind) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, kind.common_name());
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + Duration::days(CA_VALIDITY_DAYS);
    params.serial_number = Some(random_serial());
    params
}
