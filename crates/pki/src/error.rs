//! The one error type of the PKI. Every variant names the file involved and, where the user can
//! do something about it, what to do next, because these messages end up on the CLI verbatim.

use std::path::PathBuf;

/// What can go wrong while creating, loading or inspecting krust's certificates and credentials.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file or directory could not be read, written or listed.
    #[error("cannot {action} {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A CA certificate exists but its private key does not.
    #[error(
        "{} exists but its private key {} is missing: restore the key from a backup, or run \
         `krust refresh-certs --cert ca.crt` to create a new CA (this re-issues every certificate \
         and kubeconfig signed by it)",
        .cert.display(), .key.display()
    )]
    CaKeyMissing { cert: PathBuf, key: PathBuf },

    /// A CA private key exists but its certificate does not.
    #[error(
        "{} exists but its certificate {} is missing: restore the certificate from a backup, or run \
         `krust refresh-certs --cert ca.crt` to create a new CA",
        .key.display(), .cert.display()
    )]
    CaCertMissing { cert: PathBuf, key: PathBuf },

    /// A CA private key cannot be parsed.
    #[error(
        "{} is not a usable private key ({reason}): restore it from a backup, or run \
         `krust refresh-certs --cert ca.crt` to create a new CA",
        .key.display()
    )]
    CaKeyInvalid { key: PathBuf, reason: String },

    /// A CA private key does not match its certificate.
    #[error(
        "{} does not belong to {}: restore the matching pair from a backup, or run \
         `krust refresh-certs --cert ca.crt` to create a new CA",
        .key.display(), .cert.display()
    )]
    CaKeyMismatch { cert: PathBuf, key: PathBuf },

    /// A certificate file cannot be parsed.
    #[error(
        "{} is not a readable PEM certificate ({reason}): restore it, or run \
         `krust refresh-certs --cert ca.crt` if it is a CA",
        .path.display()
    )]
    CertInvalid { path: PathBuf, reason: String },

    /// The service-account signing key cannot be parsed.
    #[error(
        "{} is not a usable private key ({reason}): restore it from a backup, or delete it to \
         create a new one (service-account tokens signed with the old key then stop working)",
        .path.display()
    )]
    ServiceAccountKey { path: PathBuf, reason: String },

    /// A line of csr.conf.template's `[ alt_names ]` section is not a valid SAN.
    #[error(
        "{}, line {line}: {reason}; fix the [ alt_names ] section and run \
         `krust refresh-certs --cert server.crt`",
        .path.display()
    )]
    Template {
        path: PathBuf,
        line: usize,
        reason: String,
    },

    /// A token or password file has a malformed record.
    #[error("{}, record {record}: {reason}", .path.display())]
    CredentialsFile {
        path: PathBuf,
        record: usize,
        reason: String,
    },

    /// rcgen refused to build a key or certificate.
    #[error("cannot issue {what}: {source}")]
    Issue {
        what: String,
        #[source]
        source: rcgen::Error,
    },

    /// A kubeconfig could not be rendered.
    #[error("cannot render kubeconfig {name}: {source}")]
    Kubeconfig {
        name: String,
        #[source]
        source: serde_yaml::Error,
    },

    /// A file `ensure` creates is not there yet.
    #[error("{} does not exist: start the server once (`krust server`) to create the certificates", .path.display())]
    NotInitialized { path: PathBuf },

    /// `refresh-certs --cert` named a certificate that cannot be refreshed on its own.
    #[error("unknown certificate {0:?}: expected ca.crt, server.crt or front-proxy-client.crt")]
    UnknownCert(String),
}

impl PkiError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        PkiError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn issue(what: impl Into<String>, source: rcgen::Error) -> Self {
        PkiError::Issue {
            what: what.into(),
            source,
        }
    }
}
