//! End-to-end harness for the controllers: a real krust API server in process (in-memory
//! datastore, PKI from `pki::ensure`, Node,RBAC), Node objects with no kubelet behind them, and
//! the controller manager connecting with its own certificate (`credentials/controller.config`)
//! and acting through per-controller service accounts, exactly as in `krust server`.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct Cluster {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    /// system:masters, for setting up and inspecting.
    pub admin: Client,
    /// Admin kubeconfig pointing at this server, for the real kubectl.
    pub kubeconfig: PathBuf,
    server: Running,
    managers: Vec<Running>,
}

/// A task and the signal that stops it.
pub struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Running {
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

impl Cluster {
    /// The API server only; start controllers with [`Cluster::controllers`].
    pub async fn start() -> Cluster {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().expect("tempdir");
        let pki_cfg = pki::PkiConfig::new(dir.path(), "e2e", "10.152.183.1".parse().unwrap(), 0);
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
            // No serviceaccount controller makes each namespace's `default` account here, and
            // the node lifecycle tests need pods that do not tolerate unreachable nodes, which
            // DefaultTolerationSeconds would give 300 s.
            disable_admission_plugins: vec![
                "ServiceAccount".into(),
                "DefaultTolerationSeconds".into(),
            ],
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
        let kubeconfig = dir.path().join("admin.kubeconfig");
        let admin_config = std::fs::read_to_string(&paths.client_config).expect("client.config");
        std::fs::write(&kubeconfig, point_at(&admin_config, addr)).expect("write kubeconfig");
        let admin = Client::try_from(kube_config(&kubeconfig, addr).await).expect("client");
        Cluster {
            addr,
            dir,
            admin,
            kubeconfig,
            server: Running {
                stop: Some(stop),
                task: Some(task),
            },
            managers: Vec::new(),
        }
    }

    /// Starts a controller manager running only `names` (upstream's `--controllers` names),
    /// without leader election; it stops with the cluster.
    pub async fn controllers(&mut self, names: &[&str]) {
        let config = controllers::Config {
            controllers: names.iter().map(|s| s.to_string()).collect(),
            leader_election: false,
            ..Default::default()
        };
        let handle = self.manager(config).await;
        self.managers.push(handle);
    }

    /// Starts a controller manager with `config`; the caller stops it.
    pub async fn manager(&self, config: controllers::Config) -> Running {
        let paths = pki::Paths::new(self.dir.path());
        let kube_config = kube_config(&paths.controller_config, self.addr).await;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            controllers::run(kube_config, config, async {
                let _ = stopped.await;
            })
            .await
            .expect("controller manager");
        });
        Running {
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn stop(self) {
        for m in self.managers {
            m.stop().await;
        }
        self.server.stop().await;
    }

    /// Creates a Ready node with the given labels and room for 110 pods.
    pub async fn node(&self, name: &str, labels: serde_json::Value) {
        let mut all = json!({"kubernetes.io/hostname": name});
        merge(&mut all, labels);
        let node = json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": all},
            "spec": {},
            "status": {
                "capacity": {"cpu": "8", "memory": "32Gi", "pods": "110"},
                "allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]
            }
        });
        let api: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(self.admin.clone());
        let node = serde_json::from_value(node).expect("node");
        api.create(&Default::default(), &node)
            .await
            .expect("create node");
    }

    /// Runs the real kubectl (`None`: /usr/bin/kubectl, 1.33; `Some("1.27")`: that version).
    pub async fn kubectl_v(&self, version: Option<&str>, args: &[&str]) -> Output {
        let bin = match version {
            None => "/usr/bin/kubectl".to_string(),
            Some(v) => format!("/usr/lib/google-cloud-sdk/bin/kubectl.{v}"),
        };
        let cache = self
            .dir
            .path()
            .join(format!("cache-{}", version.unwrap_or("default")));
        tokio::process::Command::new(bin)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&cache)
            .args(args)
            .env("HOME", self.dir.path())
            .kill_on_drop(true)
            .output()
            .await
            .expect("run kubectl")
    }

    /// kubectl 1.33 that must succeed; returns stdout.
    pub async fn kubectl(&self, args: &[&str]) -> String {
        let out = self.kubectl_v(None, args).await;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }
}

/// The kubeconfig text with its server replaced by this test's address.
fn point_at(kubeconfig: &str, addr: SocketAddr) -> String {
    kubeconfig
        .lines()
        .map(|l| match l.trim_start().strip_prefix("server:") {
            Some(_) => format!("    server: https://127.0.0.1:{}", addr.port()),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub async fn kube_config(kubeconfig: &Path, addr: SocketAddr) -> kube::Config {
    let kc = Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let mut config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("client config");
    config.cluster_url = format!("https://127.0.0.1:{}", addr.port())
        .parse()
        .unwrap();
    config
}

pub fn merge(base: &mut serde_json::Value, extra: serde_json::Value) {
    match (base, extra) {
        (serde_json::Value::Object(b), serde_json::Value::Object(e)) => {
            for (k, v) in e {
                merge(b.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (b, e) => *b = e,
    }
}

/// Polls `f` every 100 ms until it returns `Some`, for up to `secs` seconds.
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
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
