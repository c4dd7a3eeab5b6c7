//! What the API server needs to start: where to listen, which PKI files prove who it is and who
//! its clients are, and the cluster-wide ranges it allocates from.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;

use tokio::sync::watch;

pub use ports::AuthorizationMode;

#[derive(Debug, Clone)]
pub struct Config {
    /// The secure port's address, e.g. 0.0.0.0:6443.
    pub bind: SocketAddr,
    /// The port other components and the `kubernetes` Service reach the API server on (usually
    /// `bind.port()`); 0 means "whatever `bind` ended up with".
    pub advertise_port: u16,
    /// The address the `kubernetes` Endpoints point at; defaults to `bind`'s address, or
    /// 127.0.0.1 when bound to all addresses.
    pub advertise_address: Option<IpAddr>,
    /// Server certificate chain and key (PEM).
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// The CA that signs client certificates (PEM); no client-certificate authentication without it.
    pub client_ca: Option<PathBuf>,
    /// `known_tokens.csv`: `token,user,uid,"group1,group2"`.
    pub token_file: Option<PathBuf>,
    /// `basic_auth.csv`: `password,user,uid,"group1,group2"`; only honoured when set.
    pub basic_auth_file: Option<PathBuf>,
    /// Public keys (PEM, ES256) service-account tokens are verified with.
    pub service_account_keys: Vec<PathBuf>,
    /// The `iss` claim service-account tokens must carry (plus the legacy `kubernetes/serviceaccount`).
    pub service_account_issuer: String,
    /// The private key (PEM, ES256 PKCS#8) TokenRequest signs with; no TokenRequest without it.
    pub service_account_signing_key: Option<PathBuf>,
    /// The audiences tokens must name (upstream's `--api-audiences`); empty means the issuer.
    pub api_audiences: Vec<String>,
    /// Where one JSON audit event per request is appended; no audit log when unset.
    pub audit_log: Option<PathBuf>,
    /// The legacy unauthenticated HTTP port (seed 003). Off unless set; bind it to localhost.
    pub insecure_bind: Option<SocketAddr>,
    /// The Service ClusterIP range, e.g. 10.152.183.0/24.
    pub service_cidr: String,
    pub node_port_range: RangeInclusive<u16>,
    pub authorization_mode: AuthorizationMode,
    /// Mode changes to apply while serving (`krust enable rbac`), without restarting listeners;
    /// the mode first received replaces `authorization_mode`.
    pub authorization_updates: Option<watch::Receiver<AuthorizationMode>>,
    /// Largest request body accepted (upstream: 3 MiB).
    pub max_request_bytes: usize,
    /// Admission plugins turned off (upstream's `--disable-admission-plugins`): `ServiceAccount`,
    /// `NodeRestriction`. Harnesses that run no controller manager (so no namespace has its
    /// `default` ServiceAccount) turn off `ServiceAccount`.
    pub disable_admission_plugins: Vec<String>,
    /// The client certificate and key presented to kubelets (pods/log, exec, attach,
    /// portforward, nodes/proxy); without them kubelets see an anonymous caller.
    pub kubelet_client_cert: Option<PathBuf>,
    pub kubelet_client_key: Option<PathBuf>,
    /// What kubelets' serving certificates must chain to; `client_ca` when unset.
    pub kubelet_certificate_authority: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 6443),
            advertise_port: 0,
            advertise_address: None,
            tls_cert: PathBuf::from("/var/lib/krust/certs/server.crt"),
            tls_key: PathBuf::from("/var/lib/krust/certs/server.key"),
            client_ca: Some(PathBuf::from("/var/lib/krust/certs/ca.crt")),
            token_file: Some(PathBuf::from("/var/lib/krust/credentials/known_tokens.csv")),
            basic_auth_file: None,
            service_account_keys: vec![],
            service_account_issuer: "https://kubernetes.default.svc".into(),
            service_account_signing_key: None,
            api_audiences: Vec::new(),
            audit_log: None,
            insecure_bind: None,
            service_cidr: "10.96.0.0/12".into(),
            node_port_range: 30000..=32767,
            authorization_mode: AuthorizationMode::AlwaysAllow,
            authorization_updates: None,
            max_request_bytes: 3 * 1024 * 1024,
            disable_admission_plugins: Vec::new(),
            kubelet_client_cert: None,
            kubelet_client_key: None,
            kubelet_certificate_authority: None,
        }
    }
}
