//! The service-account token signing key: ECDSA P-256 in PKCS#8 PEM (what `jsonwebtoken`'s
//! `EncodingKey::from_ec_pem` reads for ES256), and its public key as SPKI PEM
//! (`DecodingKey::from_ec_pem`). Created once and never rotated silently: a new key invalidates
//! every service-account token in the cluster.

use rcgen::KeyPair;

use crate::paths::Paths;
use crate::report::EnsureReport;
use crate::{files, PkiError};

/// Creates the key when missing and (re)derives the public key file from it.
pub fn ensure(paths: &Paths, report: &mut EnsureReport) -> Result<(), PkiError> {
    let path = &paths.service_account_key;
    let key = match files::read_opt(path)? {
        Some(pem) => {
            files::restrict_mode(path, files::SECRET)?;
            KeyPair::from_pem(&pem).map_err(|e| PkiError::ServiceAccountKey {
                path: path.clone(),
                reason: e.to_string(),
            })?
        }
        None => {
            let key = KeyPair::generate().map_err(|e| PkiError::issue("serviceaccount.key", e))?;
            files::write(path, key.serialize_pem().as_bytes(), files::SECRET)?;
            report.created(path);
            key
        }
    };
    files::write_derived(
        &paths.service_account_pub,
        &key.public_key_pem(),
        files::PUBLIC,
        report,
    )?;
    Ok(())
}
