//! A real krust API server in process for the node agent's tests (in-memory datastore, PKI from
//! `pki::ensure`, Node,RBAC), with an admin client and the kubelet's own client
//! (`system:node:e2e`), so the Node authorizer decides what the agent may read.
//! Included with `#[path = "support/apiserver.rs"] mod apiserver;`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const NODE: &str = "e2e";

pub struct ApiServer {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    /// system:masters.
    pub admin: Client,
    /// system:node:e2e, as the kubelet.
    pub node: Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl ApiServer {
    pub async fn start() -> ApiServer {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().expect("tempdir");
        let pki_cfg = pki::PkiConfig::new(dir.path(), NODE, "10.152.183.1".parse().unwrap(), 0);
        pki::ensure(&pki_cfg).expect("pki");
        let paths = pki::Paths::new(dir.path());
        let config = apiserver::Config {
            bind: "127.0.0.1:0".parse().unwrap(),
            tls_cert: paths.server_crt.clone(),
            tls_key: paths.server_key.clone(),
            client_ca: Some(paths.ca_crt.clone()),
            token_file: Some(paths.known_tokens.clone()),
            service_account_keys: vec![paths.service_account_pub.clone()],
            service_account_signing_key: Some(paths.service_account_key.clone()),
            service_cidr: "10.152.183.0/24".into(),
            authorization_mode: apiserver::AuthorizationMode::NodeRbac,
            // No controller manager here to make each namespace's `default` account.
            disable_admission_plugins: vec!["ServiceAccount".into()],
            ..apiserver::Config::default()
        };
        let server = apiserver::Server::bind(config, store::engine::Engine::in_memory())
            .await
            .expect("bind");
        let addr = server.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = server
                .serve(async {
                    let _ = stopped.await;
                })
                .await;
        });
        let admin = Client::try_from(kube_config(&paths.client_config, addr).await).unwrap();
        let node = Client::try_from(kube_config(&paths.kubelet_config, addr).await).unwrap();
        let server = ApiServer {
            addr,
            dir,
            admin,
            node,
            stop: Some(stop),
            task: Some(task),
        };
        server.create_node().await;
        server
    }

    /// The kubelet's view: its client, a CRI client on `cri_socket` (connected lazily) and
    /// the layout under `data_dir`.
    pub fn node_context(
        &self,
        data_dir: &Path,
        cri_socket: &Path,
    ) -> Arc<kubelet::context::NodeContext> {
        Arc::new(kubelet::context::NodeContext {
            node_name: NODE.into(),
            client: self.node.clone(),
            cri: kubelet::cri::Cri::connect(cri_socket).expect("cri client"),
            layout: kubelet::layout::Layout::new(data_dir),
        })
    }

    async fn create_node(&self) {
        let node = json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE}},
            "status": {
                "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}
            }
        });
        let api: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(self.admin.clone());
        api.create(&Default::default(), &serde_json::from_value(node).unwrap())
            .await
            .expect("create node");
    }

    /// Creates any object from JSON as admin.
    pub async fn create<K>(&self, value: serde_json::Value) -> K
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let obj: K = serde_json::from_value(value).expect("object");
        let ns = obj
            .meta()
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let api: kube::Api<K> = kube::Api::namespaced(self.admin.clone(), &ns);
        api.create(&Default::default(), &obj).await.expect("create")
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

async fn kube_config(kubeconfig: &Path, addr: SocketAddr) -> kube::Config {
    let kc = Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let mut config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("client config");
    config.cluster_url = format!("https://127.0.0.1:{}", addr.port())
        .parse()
        .unwrap();
    config
}
