//! A one-node cluster for the pod lifecycle tests: the krust API server in process (in-memory
//! datastore, PKI from `pki::ensure`, Node,RBAC), a Node object, Debian's containerd managed under
//! a temporary data dir with the locally built images imported, and `kubelet::pods` running as
//! `system:node:<NODE>` with the kubelet's own credentials.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use indicatif::ProgressBar;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use kubelet::containerd::{Config, Containerd};
use kubelet::context::NodeContext;
use kubelet::cri::Cri;
use kubelet::layout::Layout;
use kubelet::pods::{self, Pods};
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::support;

pub const NODE: &str = "node1";
pub const BUSYBOX: &str = "localhost/krust/busybox:latest";

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub data_dir: PathBuf,
    pub admin: Client,
    pub ctx: Arc<NodeContext>,
    pub cri: Cri,
    pub pods: Option<Pods>,
    containerd: Option<Containerd>,
    server_stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    _log: support::DumpLogOnPanic,
}

impl Cluster {
    /// The API server, a Node, containerd with the images, and the pod lifecycle started.
    pub async fn start() -> Cluster {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "kubelet=debug".into()),
            )
            .with_test_writer()
            .try_init();
        let images_dir = support::images_dir();
        let dir = tempfile::Builder::new()
            .prefix("krust-pods-")
            .tempdir_in("/tmp")
            .unwrap();
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
            disable_admission_plugins: vec!["ServiceAccount".into()],
            ..apiserver::Config::default()
        };
        let server = apiserver::Server::bind(config, store::engine::Engine::in_memory())
            .await
            .expect("bind");
        let addr = server.local_addr();
        let (server_stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let _ = server
                .serve(async {
                    let _ = stopped.await;
                })
                .await;
        });
        let admin = Client::try_from(kube_config(&paths.client_config, addr).await).unwrap();
        let node_client = Client::try_from(kube_config(&paths.kubelet_config, addr).await).unwrap();
        create_node(&admin).await;

        let data_dir = dir.path().join("data");
        let log = support::DumpLogOnPanic(data_dir.join("containerd/containerd.log"));
        let containerd = Containerd::start(Config::new(&data_dir))
            .await
            .expect("containerd starts");
        let socket = containerd.socket().to_path_buf();
        for tarball in ["pause.tar", "busybox.tar"] {
            kubelet::images::import(&socket, &images_dir.join(tarball), &ProgressBar::hidden())
                .await
                .unwrap_or_else(|e| panic!("import {tarball}: {e}"));
        }
        let cri = Cri::connect(&socket).unwrap();
        let ctx = Arc::new(NodeContext {
            node_name: NODE.into(),
            client: node_client,
            cri: cri.clone(),
            layout: Layout::new(&data_dir),
        });
        let pods = pods::spawn(ctx.clone());
        Cluster {
            dir,
            data_dir,
            admin,
            ctx,
            cri,
            pods: Some(pods),
            containerd: Some(containerd),
            server_stop: Some(server_stop),
            server: Some(server),
            _log: log,
        }
    }

    pub fn pods_api(&self) -> Api<Pod> {
        Api::namespaced(self.admin.clone(), "default")
    }

    /// Creates a pod bound to the node from its JSON (namespace default).
    pub async fn create_pod(&self, pod: serde_json::Value) -> Pod {
        let mut pod = pod;
        pod["apiVersion"] = json!("v1");
        pod["kind"] = json!("Pod");
        pod["spec"]["nodeName"] = json!(NODE);
        let pod: Pod = serde_json::from_value(pod).unwrap();
        self.pods_api()
            .create(&Default::default(), &pod)
            .await
            .expect("create pod")
    }

    pub async fn get_pod(&self, name: &str) -> Option<Pod> {
        self.pods_api().get_opt(name).await.unwrap()
    }

    /// Waits until `check` holds for the pod (as JSON) and returns it.
    pub async fn wait_pod(
        &self,
        name: &str,
        secs: u64,
        what: &str,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let mut last = serde_json::Value::Null;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(pod) = self.get_pod(name).await {
                last = serde_json::to_value(&pod).unwrap();
                if check(&last) {
                    return last;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for pod {name}: {what}; last seen:\n{}",
                serde_json::to_string_pretty(&last["status"]).unwrap()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops the pod lifecycle (containers keep running).
    pub async fn stop_pods(&mut self) {
        if let Some(p) = self.pods.take() {
            p.stop().await;
        }
    }

    pub fn restart_pods(&mut self) {
        assert!(self.pods.is_none());
        self.pods = Some(pods::spawn(self.ctx.clone()));
    }

    /// Stops everything: pods (their sandboxes removed), containerd, the API server; checks that
    /// no process of the test is left.
    pub async fn stop(mut self) {
        self.stop_pods().await;
        for s in self.cri.list_pod_sandboxes().await.unwrap_or_default() {
            let _ = self.cri.stop_pod_sandbox(&s.id).await;
            let _ = self.cri.remove_pod_sandbox(&s.id).await;
        }
        if let Some(c) = self.containerd.take() {
            c.stop().await;
        }
        if let Some(s) = self.server_stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
        let needle = self.data_dir.to_string_lossy().into_owned();
        let left = support::wait_none_mentioning(&needle, Duration::from_secs(10));
        assert!(left.is_empty(), "left running: {left:?}");
        unmount_everything_under(&self.data_dir);
    }

    pub fn pod_log_dir(&self, pod: &serde_json::Value) -> PathBuf {
        self.ctx.layout.pod_log_dir(
            "default",
            pod["metadata"]["name"].as_str().unwrap(),
            pod["metadata"]["uid"].as_str().unwrap(),
        )
    }

    pub fn manifests_dir(&self) -> PathBuf {
        self.ctx.layout.manifests_dir()
    }
}

/// The kubelet keeps its tmpfs volumes (memory emptyDirs, secrets) mounted while the node lives;
/// the test's node ends here, so they go too, or the temporary directory could not be removed.
fn unmount_everything_under(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut targets: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .filter(|t| Path::new(t).starts_with(dir))
        .collect();
    // Deepest first: a mount inside another goes before it.
    targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
    for t in targets {
        if let Ok(c) = std::ffi::CString::new(t) {
            // SAFETY: a valid NUL-terminated path; MNT_DETACH cannot fail on a busy mount.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

async fn create_node(admin: &Client) {
    let node = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE}},
        "spec": {},
        "status": {
            "capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"},
            "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": NODE}],
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]
        }
    });
    let api: Api<Node> = Api::all(admin.clone());
    let node: Node = serde_json::from_value(node).unwrap();
    let created = api
        .create(&Default::default(), &node)
        .await
        .expect("create node");
    // The status given at creation may be dropped (status is a subresource): write it.
    let patch = json!({"status": serde_json::to_value(&node.status).unwrap()});
    api.patch_status(NODE, &Default::default(), &kube::api::Patch::Merge(&patch))
        .await
        .expect("node status");
    let _ = created;
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

/// Polls `f` every 200 ms until it returns `Some`, for up to `secs` seconds.
pub async fn eventually<T, F, Fut>(what: &str, secs: u64, f: F) -> T
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The container ID (without `containerd://`) of container `name` in the pod's status.
pub fn container_id(pod: &serde_json::Value, name: &str) -> String {
    let statuses = pod["status"]["containerStatuses"].as_array().unwrap();
    let s = statuses.iter().find(|s| s["name"] == name).unwrap();
    s["containerID"]
        .as_str()
        .unwrap()
        .trim_start_matches("containerd://")
        .to_string()
}

pub fn container_status<'a>(pod: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    for key in ["containerStatuses", "initContainerStatuses"] {
        if let Some(s) = pod["status"][key]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["name"] == name))
        {
            return s;
        }
    }
    &serde_json::Value::Null
}

pub fn condition<'a>(pod: &'a serde_json::Value, kind: &str) -> &'a serde_json::Value {
    pod["status"]["conditions"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["type"] == kind))
        .unwrap_or(&serde_json::Value::Null)
}
