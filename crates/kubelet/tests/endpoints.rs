//! The kubelet API's remaining endpoints from the outside: `/metrics/cadvisor`, `/configz`,
//! `/spec/` and `/logs/`, over TLS with the cluster's client certificates, each authorized with
//! upstream's SubjectAccessReview attributes (nodes/metrics, nodes/proxy, nodes/spec, nodes/log),
//! and `/configz` through the API server's nodes/proxy with the real kubectl. An in-process API
//! server (Node,RBAC), a managed containerd and the pod lifecycle run one busybox pod. Runs in a
//! network namespace of its own; needs root (skipped, saying so, without).

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use indicatif::ProgressBar;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kubelet::containerd::{Config as ContainerdConfig, Containerd};
use kubelet::context::NodeContext;
use kubelet::layout::Layout;
use kubelet::{images, pods, server};
use serde_json::json;
use tokio::sync::oneshot;

const NODE: &str = "kendpoints-node";
const BUSYBOX: &str = "localhost/krust/busybox:latest";

struct Env {
    dir: tempfile::TempDir,
    paths: pki::Paths,
    api_stop: oneshot::Sender<()>,
    api_task: tokio::task::JoinHandle<()>,
    admin: kube::Client,
    containerd: Containerd,
    ctx: Arc<NodeContext>,
    pods: Option<pods::Pods>,
    kubelet: server::ServerHandle,
    kubeconfig: PathBuf,
}

async fn client_from(kubeconfig: &Path, addr: SocketAddr) -> kube::Client {
    let kc = Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let mut config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("client config");
    config.cluster_url = format!("https://127.0.0.1:{}", addr.port())
        .parse()
        .unwrap();
    kube::Client::try_from(config).expect("client")
}

impl Env {
    async fn start() -> Env {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let dir = tempfile::Builder::new()
            .prefix("krust-kendpoints-")
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
            kubelet_client_cert: Some(paths.apiserver_kubelet_client_crt.clone()),
            kubelet_client_key: Some(paths.apiserver_kubelet_client_key.clone()),
            ..apiserver::Config::default()
        };
        let api = apiserver::Server::bind(config, store::engine::Engine::in_memory())
            .await
            .expect("bind the API server");
        let api_addr = api.local_addr();
        let (api_stop, stopped) = oneshot::channel::<()>();
        let api_task = tokio::spawn(async move {
            let _ = api
                .serve(async {
                    let _ = stopped.await;
                })
                .await;
        });
        let kubeconfig = dir.path().join("admin.kubeconfig");
        let admin_text = std::fs::read_to_string(&paths.client_config).unwrap();
        let pointed: Vec<String> = admin_text
            .lines()
            .map(|l| match l.trim_start().strip_prefix("server:") {
                Some(_) => format!("    server: https://127.0.0.1:{}", api_addr.port()),
                None => l.to_string(),
            })
            .collect();
        std::fs::write(&kubeconfig, pointed.join("\n")).unwrap();
        let admin = client_from(&kubeconfig, api_addr).await;
        let kubelet_client = client_from(&paths.kubelet_config, api_addr).await;

        let data_dir = dir.path().join("data");
        let containerd = Containerd::start(ContainerdConfig::new(&data_dir))
            .await
            .expect("containerd starts");
        let socket = containerd.socket().to_path_buf();
        for tarball in ["pause.tar", "busybox.tar"] {
            images::import(
                &socket,
                &support::images_dir().join(tarball),
                &ProgressBar::hidden(),
            )
            .await
            .expect("import");
        }
        let ctx = Arc::new(NodeContext {
            node_name: NODE.into(),
            client: kubelet_client,
            cri: kubelet::cri::Cri::connect(&socket).unwrap(),
            layout: Layout::new(&data_dir),
        });
        let kubelet = server::start(
            ctx.clone(),
            server::Config {
                secure: Some("127.0.0.1:0".parse().unwrap()),
                read_only: Some("127.0.0.1:0".parse().unwrap()),
                healthz: Some("127.0.0.1:0".parse().unwrap()),
                cert: paths.kubelet_crt.clone(),
                key: paths.kubelet_key.clone(),
                client_ca: paths.ca_crt.clone(),
            },
        )
        .await
        .expect("kubelet server starts");
        let mut env = Env {
            dir,
            paths,
            api_stop,
            api_task,
            admin,
            containerd,
            ctx,
            pods: None,
            kubelet,
            kubeconfig,
        };
        env.node().await;
        env.pods = Some(pods::spawn(env.ctx.clone()));
        env
    }

    /// The Node, pointing at this kubelet's port on 127.0.0.1.
    async fn node(&self) {
        let port = self.kubelet.secure_addr().unwrap().port();
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE}},
            "status": {
                "capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]
            }
        }))
        .unwrap();
        let nodes: Api<Node> = Api::all(self.admin.clone());
        let created = nodes.create(&PostParams::default(), &node).await.unwrap();
        let mut with_status = created;
        with_status.status = node.status;
        nodes
            .replace_status(NODE, &PostParams::default(), &with_status)
            .await
            .unwrap();
    }

    /// A host-network busybox pod run by the pod lifecycle, waited for until Running.
    async fn running_pod(&self, name: &str) {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "nodeName": NODE,
                "hostNetwork": true,
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "main", "image": BUSYBOX, "command": ["sleep", "3600"]}]
            }
        }))
        .unwrap();
        let api: Api<Pod> = Api::namespaced(self.admin.clone(), "default");
        api.create(&PostParams::default(), &pod).await.unwrap();
        for _ in 0..300 {
            let pod = api.get(name).await.unwrap();
            let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
            if phase.as_deref() == Some("Running") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("pod {name} never ran");
    }

    fn secure(&self, path: &str) -> String {
        format!(
            "https://127.0.0.1:{}{path}",
            self.kubelet.secure_addr().unwrap().port()
        )
    }

    fn read_only(&self, path: &str) -> String {
        format!(
            "http://127.0.0.1:{}{path}",
            self.kubelet.read_only_addr().unwrap().port()
        )
    }

    /// A client certificate of the cluster CA for `user`.
    fn cert(&self, user: &str) -> (PathBuf, PathBuf) {
        let dir = self.dir.path();
        let (key, csr, crt, ext) = (
            dir.join(format!("{user}.key")),
            dir.join(format!("{user}.csr")),
            dir.join(format!("{user}.crt")),
            dir.join(format!("{user}.ext")),
        );
        let s = |p: &Path| p.to_string_lossy().into_owned();
        let run = |args: &[&str]| {
            let status = std::process::Command::new("openssl")
                .args(args)
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(status.success(), "openssl {args:?}");
        };
        run(&[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            &s(&key),
        ]);
        let subject = format!("/CN={user}");
        run(&[
            "req",
            "-new",
            "-key",
            &s(&key),
            "-subj",
            &subject,
            "-out",
            &s(&csr),
        ]);
        std::fs::write(
            &ext,
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n",
        )
        .unwrap();
        run(&[
            "x509",
            "-req",
            "-extfile",
            &s(&ext),
            "-in",
            &s(&csr),
            "-CA",
            &s(&self.paths.ca_crt),
            "-CAkey",
            &s(&self.paths.ca_key),
            "-CAcreateserial",
            "-days",
            "1",
            "-out",
            &s(&crt),
        ]);
        (crt, key)
    }

    /// Lets `user` use `subresources` of nodes (a ClusterRole and its binding).
    async fn grant(&self, user: &str, subresources: &[&str]) {
        let resources: Vec<String> = subresources.iter().map(|s| format!("nodes/{s}")).collect();
        let role = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": user},
            "rules": [{"apiGroups": [""], "resources": resources, "verbs": ["get"]}]
        });
        let binding = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": user},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": user},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]
        });
        use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
        Api::<ClusterRole>::all(self.admin.clone())
            .create(
                &PostParams::default(),
                &serde_json::from_value(role).unwrap(),
            )
            .await
            .unwrap();
        Api::<ClusterRoleBinding>::all(self.admin.clone())
            .create(
                &PostParams::default(),
                &serde_json::from_value(binding).unwrap(),
            )
            .await
            .unwrap();
    }

    async fn kubectl(&self, args: &[&str]) -> std::process::Output {
        tokio::time::timeout(
            Duration::from_secs(60),
            tokio::process::Command::new("/usr/bin/kubectl")
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .arg("--cache-dir")
                .arg(self.dir.path().join("cache"))
                .args(args)
                .env("HOME", self.dir.path())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .unwrap_or_else(|_| panic!("kubectl {args:?} timed out"))
        .expect("run kubectl")
    }

    async fn stop(mut self) {
        if let Some(p) = self.pods.take() {
            p.stop().await;
        }
        self.kubelet.stop().await;
        let cri = &self.ctx.cri;
        for sandbox in cri.list_pod_sandboxes().await.unwrap_or_default() {
            let _ = cri.stop_pod_sandbox(&sandbox.id).await;
            let _ = cri.remove_pod_sandbox(&sandbox.id).await;
        }
        self.containerd.stop().await;
        let _ = self.api_stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(10), self.api_task).await;
        let needle = self.dir.path().to_string_lossy().into_owned();
        let left = support::wait_none_mentioning(&needle, Duration::from_secs(10));
        assert!(left.is_empty(), "left running: {left:?}");
    }
}

/// curl's status code and body; `cert` is (certificate, key) or none for anonymous.
async fn curl(url: &str, cert: Option<(&Path, &Path)>) -> (u16, String) {
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args([
        "-sk",
        "--path-as-is",
        "--max-time",
        "20",
        "-w",
        "\n%{http_code}",
    ]);
    if let Some((crt, key)) = cert {
        cmd.arg("--cert").arg(crt).arg("--key").arg(key);
    }
    let out = cmd
        .arg(url)
        .kill_on_drop(true)
        .output()
        .await
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// A file of the test's own under /var/log, removed when dropped.
struct LogFile(PathBuf);

impl Drop for LogFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn endpoints_are_served_and_authorized_as_upstream() {
    if !support::can_run_containers() {
        return;
    }
    support::netns::run(async {
        let env = Env::start().await;
        let _log = support::DumpLogOnPanic(env.dir.path().join("data/containerd/containerd.log"));
        env.running_pod("web").await;
        let master = (
            env.paths.apiserver_kubelet_client_crt.as_path(),
            env.paths.apiserver_kubelet_client_key.as_path(),
        );

        // /metrics/cadvisor: the running container with cAdvisor's labels, and the root.
        let mut body = String::new();
        for _ in 0..50 {
            let (code, text) = curl(&env.secure("/metrics/cadvisor"), Some(master)).await;
            assert_eq!(code, 200, "{text}");
            body = text;
            if body.contains("container=\"main\"") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let line = body
            .lines()
            .find(|l| l.starts_with("container_cpu_usage_seconds_total{container=\"main\""))
            .unwrap_or_else(|| panic!("no cpu sample for main:\n{body}"));
        for label in [
            "namespace=\"default\"",
            "pod=\"web\"",
            &format!("image=\"{BUSYBOX}\""),
        ] {
            assert!(line.contains(label), "{label} missing: {line}");
        }
        let id = line.split("id=\"").nth(1).and_then(|r| r.split('"').next());
        assert!(
            id.is_some_and(|id| id.starts_with('/') && id.len() > 1),
            "{line}"
        );
        for metric in [
            "container_memory_working_set_bytes{container=\"main\"",
            "container_fs_usage_bytes{container=\"main\",device=",
            "container_cpu_usage_seconds_total{container=\"\",id=\"/\"",
            "container_scrape_error 0",
        ] {
            assert!(body.contains(metric), "{metric} missing:\n{body}");
        }
        // The read-only port has it too (no authentication there, as upstream).
        let (code, _) = curl(&env.read_only("/metrics/cadvisor"), None).await;
        assert_eq!(code, 200);

        // /configz: the effective configuration.
        let (code, text) = curl(&env.secure("/configz"), Some(master)).await;
        assert_eq!(code, 200, "{text}");
        let configz: serde_json::Value = serde_json::from_str(&text).unwrap();
        let config = &configz["kubeletconfig"];
        // As configured (the test asks for any free port: 0), as upstream reports it.
        assert_eq!(
            (config["address"].as_str(), config["port"].as_u64()),
            (Some("127.0.0.1"), Some(0))
        );
        assert_eq!(
            config["tlsCertFile"],
            env.paths.kubelet_crt.to_string_lossy().as_ref()
        );
        assert_eq!(config["authentication"]["anonymous"]["enabled"], false);
        assert_eq!(config["authorization"]["mode"], "Webhook");
        assert_eq!(config["healthzBindAddress"], "127.0.0.1");
        assert_eq!(
            config["staticPodPath"],
            env.ctx.layout.manifests_dir().to_string_lossy().as_ref()
        );

        // /spec/: the machine.
        let (code, text) = curl(&env.secure("/spec/"), Some(master)).await;
        assert_eq!(code, 200, "{text}");
        let spec: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(spec["num_cores"].as_u64().unwrap() >= 1, "{spec}");
        assert!(spec["memory_capacity"].as_u64().unwrap() > 0, "{spec}");

        // /logs/: listing, a file, and no way out of /var/log.
        let name = format!("krust-endpoints-{}.log", std::process::id());
        let file = LogFile(Path::new("/var/log").join(&name));
        std::fs::write(&file.0, "node log line\n").unwrap();
        let (code, text) = curl(&env.secure("/logs/"), Some(master)).await;
        assert_eq!(code, 200, "{text}");
        assert!(
            text.contains(&format!("<a href=\"{name}\">{name}</a>")),
            "{text}"
        );
        let (code, text) = curl(&env.secure(&format!("/logs/{name}")), Some(master)).await;
        assert_eq!((code, text.as_str()), (200, "node log line\n"));
        for escape in ["/logs/../../etc/passwd", "/logs/%2e%2e/%2e%2e/etc/passwd"] {
            let (code, text) = curl(&env.secure(escape), Some(master)).await;
            assert_eq!(code, 400, "{escape}: {text}");
            assert!(!text.contains("root:"), "{escape}: {text}");
        }
        // Never on the read-only port.
        let (code, _) = curl(&env.read_only("/logs/"), None).await;
        assert_eq!(code, 404);
        let (code, _) = curl(&env.read_only("/configz"), None).await;
        assert_eq!(code, 404);

        // Authorization per subresource: a user allowed nodes/metrics reads the cAdvisor
        // metrics only; configz is nodes/proxy, spec nodes/spec, logs nodes/log.
        env.grant("metrics-reader", &["metrics"]).await;
        env.grant("log-reader", &["log"]).await;
        let (mcrt, mkey) = env.cert("metrics-reader");
        let metrics_reader = Some((mcrt.as_path(), mkey.as_path()));
        let (code, _) = curl(&env.secure("/metrics/cadvisor"), metrics_reader).await;
        assert_eq!(code, 200);
        for (path, sub) in [("/configz", "proxy"), ("/spec/", "spec"), ("/logs/", "log")] {
            let (code, text) = curl(&env.secure(path), metrics_reader).await;
            assert_eq!(code, 403, "{path}: {text}");
            assert!(
                text.contains(&format!(
                    "Forbidden (user=metrics-reader, verb=get, resource=nodes, subresource={sub})"
                )),
                "{path}: {text}"
            );
        }
        let (lcrt, lkey) = env.cert("log-reader");
        let log_reader = Some((lcrt.as_path(), lkey.as_path()));
        let (code, text) = curl(&env.secure(&format!("/logs/{name}")), log_reader).await;
        assert_eq!((code, text.as_str()), (200, "node log line\n"));
        let (code, _) = curl(&env.secure("/metrics/cadvisor"), log_reader).await;
        assert_eq!(code, 403);
        let (code, _) = curl(&env.secure("/configz"), None).await;
        assert_eq!(code, 401);

        // Through the API server with the real kubectl.
        let raw = format!("/api/v1/nodes/{NODE}/proxy/configz");
        let out = env.kubectl(&["get", "--raw", &raw]).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let through: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(through, configz);
        let raw = format!("/api/v1/nodes/{NODE}/proxy/metrics/cadvisor");
        let out = env.kubectl(&["get", "--raw", &raw]).await;
        assert!(String::from_utf8_lossy(&out.stdout).contains("container_cpu_usage_seconds_total"));
        let raw = format!("/api/v1/nodes/{NODE}/proxy/logs/{name}");
        let out = env.kubectl(&["get", "--raw", &raw]).await;
        assert_eq!(String::from_utf8_lossy(&out.stdout), "node log line\n");

        drop(file);
        env.stop().await;
    });
}
