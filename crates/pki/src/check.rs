//! `krust refresh-certs --check`: what every certificate under `certs/` says about itself.

use std::fmt;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use crate::certs::{days_left, parse_pem, sans_of, with_x509};
use crate::sans::San;
use crate::{files, PkiError};

/// `--check` fails when a certificate expires within this many days.
pub const CHECK_WITHIN_DAYS: i64 = 30;

/// One certificate as `--check` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub path: PathBuf,
    /// RFC 4514-ish subject, e.g. `CN=admin, O=system:masters`.
    pub subject: String,
    pub issuer: String,
    pub sans: Vec<San>,
    pub not_after: OffsetDateTime,
    /// Whole days left, negative once expired.
    pub days_left: i64,
    pub is_ca: bool,
}

impl CertInfo {
    /// True when the certificate expires in fewer than `days` days (or already has).
    pub fn expires_within(&self, days: i64) -> bool {
        self.days_left < days
    }
}

impl fmt::Display for CertInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.path.file_name().unwrap_or_default().to_string_lossy();
        let t = self.not_after;
        write!(
            f,
            "{name}: subject {}; expires {}-{:02}-{:02} {:02}:{:02} UTC ({} days left)",
            self.subject,
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            self.days_left
        )?;
        if !self.sans.is_empty() {
            let sans: Vec<String> = self.sans.iter().map(ToString::to_string).collect();
            write!(f, "; SANs {}", sans.join(", "))?;
        }
        Ok(())
    }
}

/// True when any certificate expires within `days` days: `--check` then exits non-zero.
pub fn any_expiring(infos: &[CertInfo], days: i64) -> bool {
    infos.iter().any(|i| i.expires_within(days))
}

/// Every `*.crt` under `<data_dir>/certs/`, sorted by file name.
pub fn check(data_dir: &Path) -> Result<Vec<CertInfo>, PkiError> {
    let dir = data_dir.join("certs");
    let entries = std::fs::read_dir(&dir).map_err(|e| PkiError::io("list", &dir, e))?;
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| PkiError::io("list", &dir, e))?.path();
        if path.extension().is_some_and(|ext| ext == "crt") {
            paths.push(path);
        }
    }
    paths.sort();
    paths.iter().map(|p| inspect(p)).collect()
}

/// Reads one certificate file.
pub fn inspect(path: &Path) -> Result<CertInfo, PkiError> {
    let invalid = |reason: String| PkiError::CertInvalid {
        path: path.to_path_buf(),
        reason,
    };
    let pem = files::read_opt(path)?.ok_or_else(|| invalid("missing".into()))?;
    let der = parse_pem(&pem).map_err(invalid)?;
    with_x509(&der, |x| CertInfo {
        path: path.to_path_buf(),
        subject: x.subject().to_string(),
        issuer: x.issuer().to_string(),
        sans: sans_of(x),
        not_after: x.validity().not_after.to_datetime(),
        days_left: days_left(x),
        is_ca: x.is_ca(),
    })
    .map_err(invalid)
}
