//! Joining a cluster with a bootstrap token, as upstream's kubelet TLS bootstrap
//! (pkg/kubelet/certificate/bootstrap) with k3s's CA pinning:
//!
//! 1. [`pin`]: the join token `K10<sha256 of the CA certificate>::<id>.<secret>` names the
//!    cluster CA; the server's TLS chain must hold a certificate with that hash which signed the
//!    server's certificate, checked before the token is sent anywhere.
//! 2. [`request`]: with the token (`system:bootstrap:<id>`), a CertificateSigningRequest for
//!    `O=system:nodes, CN=system:node:<name>` to `kubernetes.io/kube-apiserver-client-kubelet`,
//!    approved and signed by the controller manager; then, as the node, one for the kubelet
//!    serving certificate (`kubernetes.io/kubelet-serving`), so the API server can reach the
//!    kubelet API with the cluster CA.
//! 3. The results land where `krust server`'s PKI keeps a node's: `certs/ca.crt`,
//!    `certs/kubelet-client.{crt,key}`, `certs/kubelet.{crt,key}` (serving) and
//!    `credentials/kubelet.config`; a restart finds them and joins no more ([`joined`]).

mod pin;
mod request;

use std::path::{Path, PathBuf};
use std::str::FromStr;

use sha2::{Digest, Sha256};

pub use pin::fetch_ca;

/// The join token's prefix, as k3s's secure token format (`K10<ca hash>::<credentials>`).
pub const TOKEN_PREFIX: &str = "K10";

/// Why joining failed; each is one sentence for the person at the terminal.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("the join token is malformed: expected K10<64 hex digits>::<6 characters>.<16 characters> as `krust add-node` prints it")]
    MalformedToken,
    #[error("the server URL {0:?} is not https://HOST:PORT")]
    BadUrl(String),
    #[error("cannot reach the server at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the server at {url} does not present the cluster CA the join token pins ({reason}); nothing was sent to it")]
    CaMismatch { url: String, reason: String },
    #[error("the server refused the join token (wrong, expired or deleted): run `krust add-node` on the server for a new one")]
    TokenRefused,
    #[error("the certificate request {name} was {state}: {message}")]
    Rejected {
        name: String,
        state: &'static str,
        message: String,
    },
    #[error("the certificate request {0} was not signed within {1} s: is the controller manager running?")]
    Timeout(String, u64),
    #[error("the API server answered: {0}")]
    Api(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot make a key and certificate request: {0}")]
    Key(String),
}

/// A parsed join token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// Lowercase hex SHA-256 of the cluster CA certificate (DER).
    pub ca_hash: String,
    /// The bootstrap token, `<id>.<secret>`.
    pub token: String,
}

impl FromStr for JoinToken {
    type Err = BootstrapError;

    fn from_str(s: &str) -> Result<JoinToken, BootstrapError> {
        let rest = s
            .trim()
            .strip_prefix(TOKEN_PREFIX)
            .ok_or(BootstrapError::MalformedToken)?;
        let (hash, token) = rest
            .split_once("::")
            .ok_or(BootstrapError::MalformedToken)?;
        let hex_ok = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex_ok || !valid_bootstrap_token(token) {
            return Err(BootstrapError::MalformedToken);
        }
        Ok(JoinToken {
            ca_hash: hash.to_ascii_lowercase(),
            token: token.to_string(),
        })
    }
}

impl std::fmt::Display for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{TOKEN_PREFIX}{}::{}", self.ca_hash, self.token)
    }
}

/// `[a-z0-9]{6}.[a-z0-9]{16}`, upstream's bootstrap token shape.
pub fn valid_bootstrap_token(token: &str) -> bool {
    let ok = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    token
        .split_once('.')
        .is_some_and(|(id, secret)| ok(id, 6) && ok(secret, 16))
}

/// The hash a join token pins: SHA-256 of the CA certificate's DER, lowercase hex.
pub fn ca_hash(ca_der: &[u8]) -> String {
    hex::encode(Sha256::digest(ca_der))
}

/// The pinned hash of a PEM CA file's first certificate (`krust add-node` reads `ca.crt`).
pub fn ca_hash_of_pem(pem: &[u8]) -> Option<String> {
    let mut reader = pem;
    let der = rustls_pemfile::certs(&mut reader).next()?.ok()?;
    Some(ca_hash(der.as_ref()))
}

/// What joining needs.
#[derive(Debug, Clone)]
pub struct BootstrapConfig {
    /// `https://HOST:PORT` of the API server.
    pub server: String,
    pub token: JoinToken,
    pub node_name: String,
    pub data_dir: PathBuf,
    /// Names and addresses the kubelet serving certificate covers.
    pub serving_sans: Vec<pki::San>,
}

/// Progress for the terminal, one line each.
pub type Progress<'a> = &'a (dyn Fn(&str) + Send + Sync);

/// Whether this data dir holds a joined node's credentials (kubeconfig, client and serving
/// certificates, CA) with a client certificate not yet expired: a restart reuses them.
pub fn joined(data_dir: &Path) -> bool {
    let paths = pki::Paths::new(data_dir);
    let files = Files::new(data_dir);
    let present = [
        &paths.kubelet_config,
        &paths.kubelet_crt,
        &paths.kubelet_key,
        &paths.ca_crt,
        &files.client_crt,
    ]
    .iter()
    .all(|p| p.exists());
    present && !expired(&files.client_crt)
}

fn expired(cert: &Path) -> bool {
    pki::inspect(cert).map_or(true, |info| info.days_left <= 0)
}

/// The agent-only files (the rest are `pki::Paths`').
pub(crate) struct Files {
    pub client_crt: PathBuf,
    pub client_key: PathBuf,
}

impl Files {
    pub fn new(data_dir: &Path) -> Files {
        let certs = pki::Paths::new(data_dir).certs_dir;
        Files {
            client_crt: certs.join("kubelet-client.crt"),
            client_key: certs.join("kubelet-client.key"),
        }
    }
}

/// Joins: pins the CA, has the client and serving certificates signed, writes them and the
/// kubeconfig. The kubeconfig's path on success.
pub async fn bootstrap(
    config: &BootstrapConfig,
    progress: Progress<'_>,
) -> Result<PathBuf, BootstrapError> {
    progress(&format!("Connecting to {}", config.server));
    let ca_pem = fetch_ca(&config.server, &config.token.ca_hash).await?;
    progress(&format!(
        "The server presents the pinned cluster CA (sha256 {}…)",
        &config.token.ca_hash[..16]
    ));
    let paths = pki::Paths::new(&config.data_dir);
    write(&paths.ca_crt, ca_pem.as_bytes(), 0o644)?;
    request::obtain(config, &ca_pem, progress).await?;
    Ok(paths.kubelet_config)
}

/// Writes `bytes` to `path` through a temporary file in the same directory, with `mode`.
pub(crate) fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), BootstrapError> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let err = |source| BootstrapError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(err)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(err)?;
    tmp.write_all(bytes).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_token_round_trip() {
        let text = format!("K10{}::abcdef.0123456789abcdef", "a".repeat(64));
        let token: JoinToken = text.parse().unwrap();
        assert_eq!(token.token, "abcdef.0123456789abcdef");
        assert_eq!(token.to_string(), text);
        assert!("abcdef.0123456789abcdef".parse::<JoinToken>().is_err());
        assert!(format!("K10{}::abcdef.0123", "a".repeat(64))
            .parse::<JoinToken>()
            .is_err());
        assert!(format!("K10{}::abcdef.0123456789abcdef", "g".repeat(64))
            .parse::<JoinToken>()
            .is_err());
    }
}
