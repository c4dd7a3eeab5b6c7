//! krust's PKI: the cluster CA and every certificate, key, token file and kubeconfig the
//! components need, under `<data-dir>/certs/` and `<data-dir>/credentials/` (see [`Paths`]).
//!
//! - [`ensure`] runs at every server start: it creates what is missing, keeps what is sound byte
//!   for byte, and renews leaf certificates that expire within 90 days (logged). CAs are never
//!   replaced silently.
//! - [`refresh`] is `krust refresh-certs [--cert ...]`; [`check`] is `--check`, with
//!   [`any_expiring`] deciding the exit code.
//! - [`admin_kubeconfig`] is `krust config`; [`read_token_file`] and [`read_basic_auth_file`] are
//!   for the API server's authenticators.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // `krust server`, before anything listens:
//! let cfg = pki::PkiConfig::new("/var/lib/krust", "node1", "10.96.0.1".parse()?, 6443);
//! let report = pki::ensure(&cfg)?;
//! let paths = pki::Paths::new(&cfg.data_dir); // server.crt, ca.crt, known_tokens.csv, ...
//!
//! // `krust refresh-certs --cert server.crt`:
//! pki::refresh(&cfg, Some("server.crt".parse()?))?;
//!
//! // `krust refresh-certs --check`:
//! let infos = pki::check(&cfg.data_dir)?;
//! infos.iter().for_each(|info| println!("{info}"));
//! let failed = pki::any_expiring(&infos, pki::CHECK_WITHIN_DAYS);
//!
//! // `krust config`:
//! let url = format!("https://{}:6443", pki::primary_address());
//! print!("{}", pki::admin_kubeconfig(&cfg.data_dir, &url)?);
//! # let _ = (report, paths, failed);
//! # Ok(())
//! # }
//! ```

mod ca;
mod certs;
mod check;
mod error;
mod files;
mod identity;
mod kubeconfig;
mod paths;
mod report;
mod sans;
mod service_account;
mod signer;
mod template;
mod tokens;

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use ca::CA_VALIDITY_DAYS;
pub use certs::{LEAF_VALIDITY_DAYS, RENEW_WITHIN_DAYS};
pub use check::{any_expiring, check, inspect, CertInfo, CHECK_WITHIN_DAYS};
pub use error::PkiError;
pub use identity::{cert_identity, CertIdentity};
pub use paths::Paths;
pub use report::{Action, Change, EnsureReport};
pub use sans::{machine_addresses, primary_address, San};
pub use signer::{new_request, parse_request, CsrSigner, RequestInfo, SignError};
pub use template::default_template;
pub use tokens::{read_basic_auth_file, read_token_file, PasswordEntry, TokenEntry};

use ca::Cas;
use certs::LeafInputs;
pub use kubeconfig::{render as render_kubeconfig, KubeconfigInput};

/// Everything that decides what the PKI contains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiConfig {
    /// `certs/` and `credentials/` go under it.
    pub data_dir: PathBuf,
    /// The node's name, for `system:node:NAME` and the kubelet certificate.
    pub node_name: String,
    /// First IP of the service range (10.152.183.1 microk8s preset, 10.96.0.1 upstream).
    pub service_ip: IpAddr,
    /// Every address of the machine, see [`machine_addresses`].
    pub host_addresses: Vec<IpAddr>,
    /// `https://127.0.0.1:PORT`: the server in client.config and the component kubeconfigs.
    pub apiserver_url: String,
    /// Write the legacy static password file `basic_auth.csv`.
    pub basic_auth: bool,
}

impl PkiConfig {
    /// A config with this machine's addresses and basic auth off.
    pub fn new(
        data_dir: impl Into<PathBuf>,
        node_name: &str,
        service_ip: IpAddr,
        apiserver_port: u16,
    ) -> Self {
        PkiConfig {
            data_dir: data_dir.into(),
            node_name: node_name.to_string(),
            service_ip,
            host_addresses: machine_addresses(),
            apiserver_url: format!("https://127.0.0.1:{apiserver_port}"),
            basic_auth: false,
        }
    }
}

/// A certificate `refresh-certs --cert` can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertName {
    /// New CAs (cluster, front-proxy, datastore) and everything they signed.
    Ca,
    /// The API server certificate, with csr.conf.template re-read.
    Server,
    /// The aggregation layer's client certificate.
    FrontProxyClient,
}

impl FromStr for CertName {
    type Err = PkiError;

    fn from_str(s: &str) -> Result<Self, PkiError> {
        match s.trim_end_matches(".crt") {
            "ca" => Ok(CertName::Ca),
            "server" => Ok(CertName::Server),
            "front-proxy-client" => Ok(CertName::FrontProxyClient),
            _ => Err(PkiError::UnknownCert(s.to_string())),
        }
    }
}

impl fmt::Display for CertName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CertName::Ca => "ca.crt",
            CertName::Server => "server.crt",
            CertName::FrontProxyClient => "front-proxy-client.crt",
        })
    }
}

/// Which leaves a run re-issues regardless of their state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reissue {
    None,
    All,
    Only(&'static str),
}

/// Creates what is missing and renews what needs it; see the crate docs. Run at every start.
pub fn ensure(cfg: &PkiConfig) -> Result<EnsureReport, PkiError> {
    run(cfg, false, Reissue::None)
}

/// Re-issues `which` (every leaf when `None`, with new keys), then ensures the rest. A new CA
/// re-issues every certificate and kubeconfig; the service-account key and tokens are kept.
/// A running server must reload its certificates for the change to take effect.
pub fn refresh(cfg: &PkiConfig, which: Option<CertName>) -> Result<EnsureReport, PkiError> {
    match which {
        None => run(cfg, false, Reissue::All),
        Some(CertName::Ca) => run(cfg, true, Reissue::All),
        Some(CertName::Server) => run(cfg, false, Reissue::Only("server")),
        Some(CertName::FrontProxyClient) => run(cfg, false, Reissue::Only("front-proxy-client")),
    }
}

/// The admin kubeconfig pointing at `server_url` (for `krust config`, with
/// [`primary_address`]). Reads the files [`ensure`] wrote.
pub fn admin_kubeconfig(data_dir: &Path, server_url: &str) -> Result<String, PkiError> {
    let paths = Paths::new(data_dir);
    let (crt, key) = paths.pair("admin");
    kubeconfig::render(&KubeconfigInput {
        server: server_url,
        ca_pem: &read_required(&paths.ca_crt)?,
        user: "admin",
        cert_pem: &read_required(&crt)?,
        key_pem: &read_required(&key)?,
    })
}

fn read_required(path: &Path) -> Result<String, PkiError> {
    files::read_opt(path)?.ok_or_else(|| PkiError::NotInitialized {
        path: path.to_path_buf(),
    })
}

fn run(cfg: &PkiConfig, new_cas: bool, reissue: Reissue) -> Result<EnsureReport, PkiError> {
    let paths = Paths::new(&cfg.data_dir);
    files::ensure_dir(&paths.certs_dir, 0o755)?;
    files::ensure_dir(&paths.credentials_dir, 0o700)?;
    let mut report = EnsureReport::default();
    if template::ensure(&paths.csr_template, cfg.service_ip)? {
        report.created(&paths.csr_template);
    }
    let extra = template::read_alt_names(&paths.csr_template)?;
    let cas = Cas::ensure(&paths.certs_dir, new_cas, &mut report)?;
    let specs = certs::leaf_specs(&LeafInputs {
        node_name: &cfg.node_name,
        hosts: &cfg.host_addresses,
        service_ip: cfg.service_ip,
        extra_server_sans: &extra,
    });
    for spec in &specs {
        let force = match reissue {
            Reissue::None => false,
            Reissue::All => true,
            Reissue::Only(stem) => stem == spec.stem,
        };
        certs::ensure_leaf(
            &paths.certs_dir,
            spec,
            cas.get(spec.signer),
            force,
            &mut report,
        )?;
    }
    service_account::ensure(&paths, &mut report)?;
    tokens::ensure_token_file(&paths.known_tokens, &cfg.node_name, &mut report)?;
    tokens::ensure_basic_auth(&paths.basic_auth, cfg.basic_auth, &mut report)?;
    write_kubeconfigs(cfg, &paths, &mut report)?;
    Ok(report)
}

/// Kubeconfigs are derived files: rewritten whenever a certificate or the URL they embed changed,
/// untouched otherwise.
fn write_kubeconfigs(
    cfg: &PkiConfig,
    paths: &Paths,
    report: &mut EnsureReport,
) -> Result<(), PkiError> {
    let node_user = format!("system:node:{}", cfg.node_name);
    let configs: [(&Path, &str, &str); 5] = [
        (&paths.client_config, "admin", "admin"),
        (
            &paths.scheduler_config,
            "system:kube-scheduler",
            "scheduler",
        ),
        (
            &paths.controller_config,
            "system:kube-controller-manager",
            "controller",
        ),
        (&paths.proxy_config, "system:kube-proxy", "proxy"),
        (&paths.kubelet_config, &node_user, "kubelet-client"),
    ];
    let ca_pem = read_required(&paths.ca_crt)?;
    for (path, user, stem) in configs {
        let (crt, key) = paths.pair(stem);
        let yaml = kubeconfig::render(&KubeconfigInput {
            server: &cfg.apiserver_url,
            ca_pem: &ca_pem,
            user,
            cert_pem: &read_required(&crt)?,
            key_pem: &read_required(&key)?,
        })?;
        files::write_derived(path, &yaml, files::SECRET, report)?;
    }
    Ok(())
}
