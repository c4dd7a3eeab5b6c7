//! Where every PKI file lives under the data directory. The names follow MicroK8s where it has
//! one (`ca.crt`, `server.crt`, `csr.conf.template`, `known_tokens.csv`, `client.config`, ...), so
//! its documentation and habits carry over.

use std::path::{Path, PathBuf};

/// Absolute paths of the files other components read. Build it with [`Paths::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    pub certs_dir: PathBuf,
    pub credentials_dir: PathBuf,
    /// Cluster CA: signs the API server, kubelet and every client certificate.
    pub ca_crt: PathBuf,
    pub ca_key: PathBuf,
    /// API server serving certificate.
    pub server_crt: PathBuf,
    pub server_key: PathBuf,
    /// Editable openssl-style config whose `[ alt_names ]` adds SANs to `server.crt`.
    pub csr_template: PathBuf,
    /// Service-account token signing key (ECDSA P-256, PKCS#8 PEM, for ES256) and its public key.
    pub service_account_key: PathBuf,
    pub service_account_pub: PathBuf,
    /// Aggregation layer: a separate CA and the API server's client certificate to extensions.
    pub front_proxy_ca_crt: PathBuf,
    pub front_proxy_ca_key: PathBuf,
    pub front_proxy_client_crt: PathBuf,
    pub front_proxy_client_key: PathBuf,
    /// The API server's client certificate towards kubelets (CN=kube-apiserver-kubelet-client).
    pub apiserver_kubelet_client_crt: PathBuf,
    pub apiserver_kubelet_client_key: PathBuf,
    /// The kubelet's serving certificate (port 10250).
    pub kubelet_crt: PathBuf,
    pub kubelet_key: PathBuf,
    /// Serving certificates of the scheduler's and controller manager's secure ports (10259,
    /// 10257); `scheduler.crt` and `controller.crt` are their client certificates.
    pub scheduler_serving_crt: PathBuf,
    pub scheduler_serving_key: PathBuf,
    pub controller_manager_serving_crt: PathBuf,
    pub controller_manager_serving_key: PathBuf,
    /// Datastore CA: a separate trust root, so a cluster client certificate cannot open the datastore.
    pub datastore_ca_crt: PathBuf,
    pub datastore_ca_key: PathBuf,
    /// Datastore server, peer and client (API server, etcdctl) certificates.
    pub datastore_crt: PathBuf,
    pub datastore_key: PathBuf,
    pub datastore_peer_crt: PathBuf,
    pub datastore_peer_key: PathBuf,
    pub datastore_client_crt: PathBuf,
    pub datastore_client_key: PathBuf,
    /// Static token file: `token,user,uid,"group1,group2"`.
    pub known_tokens: PathBuf,
    /// Legacy static password file, present only when enabled.
    pub basic_auth: PathBuf,
    /// Admin kubeconfig.
    pub client_config: PathBuf,
    /// Component kubeconfigs.
    pub scheduler_config: PathBuf,
    pub controller_config: PathBuf,
    pub proxy_config: PathBuf,
    pub kubelet_config: PathBuf,
}

impl Paths {
    /// The layout under `data_dir` (`certs/` and `credentials/`).
    pub fn new(data_dir: &Path) -> Self {
        let certs = data_dir.join("certs");
        let creds = data_dir.join("credentials");
        let c = |n: &str| certs.join(n);
        let k = |n: &str| creds.join(n);
        Paths {
            ca_crt: c("ca.crt"),
            ca_key: c("ca.key"),
            server_crt: c("server.crt"),
            server_key: c("server.key"),
            csr_template: c("csr.conf.template"),
            service_account_key: c("serviceaccount.key"),
            service_account_pub: c("serviceaccount.pub"),
            front_proxy_ca_crt: c("front-proxy-ca.crt"),
            front_proxy_ca_key: c("front-proxy-ca.key"),
            front_proxy_client_crt: c("front-proxy-client.crt"),
            front_proxy_client_key: c("front-proxy-client.key"),
            apiserver_kubelet_client_crt: c("apiserver-kubelet-client.crt"),
            apiserver_kubelet_client_key: c("apiserver-kubelet-client.key"),
            kubelet_crt: c("kubelet.crt"),
            kubelet_key: c("kubelet.key"),
            scheduler_serving_crt: c("scheduler-serving.crt"),
            scheduler_serving_key: c("scheduler-serving.key"),
            controller_manager_serving_crt: c("controller-manager-serving.crt"),
            controller_manager_serving_key: c("controller-manager-serving.key"),
            datastore_ca_crt: c("datastore-ca.crt"),
            datastore_ca_key: c("datastore-ca.key"),
            datastore_crt: c("datastore.crt"),
            datastore_key: c("datastore.key"),
            datastore_peer_crt: c("datastore-peer.crt"),
            datastore_peer_key: c("datastore-peer.key"),
            datastore_client_crt: c("datastore-client.crt"),
            datastore_client_key: c("datastore-client.key"),
            known_tokens: k("known_tokens.csv"),
            basic_auth: k("basic_auth.csv"),
            client_config: k("client.config"),
            scheduler_config: k("scheduler.config"),
            controller_config: k("controller.config"),
            proxy_config: k("proxy.config"),
            kubelet_config: k("kubelet.config"),
            certs_dir: certs,
            credentials_dir: creds,
        }
    }

    /// `certs/<stem>.crt` and `certs/<stem>.key`.
    pub fn pair(&self, stem: &str) -> (PathBuf, PathBuf) {
        (
            self.certs_dir.join(format!("{stem}.crt")),
            self.certs_dir.join(format!("{stem}.key")),
        )
    }
}
