//! The kubelet API end to end, in a network namespace of the test's own: an in-process API
//! server (Node,RBAC), a managed containerd with a busybox container created through CRI with
//! the kubelet's labels and log path, and `kubelet::server` on free ports, called with curl and
//! the cluster's real certificates. Needs root (skipped, saying so, without).

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
use kubelet::cri::{api, image_spec, Cri};
use kubelet::layout::Layout;
use kubelet::{images, labels, server};
use serde_json::json;
use tokio::sync::oneshot;

const NODE: &str = "kserver-node";
const BUSYBOX: &str = "localhost/krust/busybox:latest";

/// Everything one test runs; [`Env::stop`] ends it all.
struct Env {
    dir: tempfile::TempDir,
    paths: pki::Paths,
    api_addr: SocketAddr,
    api_stop: oneshot::Sender<()>,
    api_task: tokio::task::JoinHandle<()>,
    admin: kube::Client,
    containerd: Containerd,
    cri: Cri,
    kubelet: server::ServerHandle,
    kubeconfig: PathBuf,
    pod_uid: String,
}

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
            .prefix("krust-kserver-")
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
        std::fs::write(&kubeconfig, point_at(&admin_text, api_addr)).unwrap();
        let admin = client_from(&kubeconfig, api_addr).await;
        let kubelet_client = client_from(&paths.kubelet_config, api_addr).await;

        let data_dir = dir.path().join("data");
        let containerd = Containerd::start(ContainerdConfig::new(&data_dir))
            .await
            .expect("containerd starts");
        let socket = containerd.socket().to_path_buf();
        let images_dir = support::images_dir();
        for tarball in ["pause.tar", "busybox.tar"] {
            images::import(&socket, &images_dir.join(tarball), &ProgressBar::hidden())
                .await
                .expect("import");
        }
        let cri = Cri::connect(&socket).unwrap();
        let ctx = Arc::new(NodeContext {
            node_name: NODE.into(),
            client: kubelet_client,
            cri: cri.clone(),
            layout: Layout::new(&data_dir),
        });
        let kubelet = server::start(
            ctx,
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
            api_addr,
            api_stop,
            api_task,
            admin,
            containerd,
            cri,
            kubelet,
            kubeconfig,
            pod_uid: String::new(),
        };
        env.node().await;
        env.pod_uid = env.pod("box").await;
        env
    }

    /// The Node object, pointing at this kubelet's port on 127.0.0.1.
    async fn node(&self) {
        let port = self.kubelet.secure_addr().unwrap().port();
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": NODE},
            "status": {
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
            }
        }))
        .unwrap();
        let nodes: Api<Node> = Api::all(self.admin.clone());
        let created = nodes.create(&PostParams::default(), &node).await.unwrap();
        nodes
            .replace_status(NODE, &PostParams::default(), &created)
            .await
            .unwrap();
    }

    /// A pod bound to the node in the API, and its sandbox and container `main` over CRI, as
    /// the pod workers would make them: labels, log directory and log path per `Layout`.
    async fn pod(&self, name: &str) -> String {
        let script = "for i in 1 2 3 4 5; do echo line$i; done; sleep 1; echo oops >&2; \
                      mkdir -p /tmp/www; echo served > /tmp/www/index.html; \
                      httpd -p 127.0.0.1:18080 -h /tmp/www; \
                      i=0; while [ $i -lt 4 ]; do sleep 1; i=$((i+1)); echo tick$i; done; sleep 3600";
        self.pod_running(name, script).await
    }

    /// A pod whose one container `main` runs `script` with busybox's sh.
    async fn pod_running(&self, name: &str, script: &str) -> String {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": NODE, "containers": [{"name": "main", "image": BUSYBOX}]}
        }))
        .unwrap();
        let pods: Api<Pod> = Api::namespaced(self.admin.clone(), "default");
        let pod = pods.create(&PostParams::default(), &pod).await.unwrap();
        let uid = pod.metadata.uid.clone().unwrap();
        // Running, as the pod workers would report it (kubectl port-forward checks).
        let mut running = pod;
        running.status = Some(serde_json::from_value(json!({"phase": "Running"})).unwrap());
        pods.replace_status(name, &PostParams::default(), &running)
            .await
            .unwrap();
        let layout = Layout::new(&self.dir.path().join("data"));
        let log_dir = layout.pod_log_dir("default", name, &uid);
        std::fs::create_dir_all(&log_dir).unwrap();
        let pod_labels = std::collections::HashMap::from([
            (labels::POD_NAME.to_string(), name.to_string()),
            (labels::POD_NAMESPACE.to_string(), "default".to_string()),
            (labels::POD_UID.to_string(), uid.clone()),
        ]);
        let namespaces = api::NamespaceOption {
            network: api::NamespaceMode::Node as i32,
            pid: api::NamespaceMode::Container as i32,
            ipc: api::NamespaceMode::Pod as i32,
            ..Default::default()
        };
        let sandbox = api::PodSandboxConfig {
            metadata: Some(api::PodSandboxMetadata {
                name: name.into(),
                uid: uid.clone(),
                namespace: "default".into(),
                attempt: 0,
            }),
            log_directory: log_dir.to_string_lossy().into_owned(),
            labels: pod_labels.clone(),
            linux: Some(api::LinuxPodSandboxConfig {
                security_context: Some(api::LinuxSandboxSecurityContext {
                    namespace_options: Some(namespaces),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let sandbox_id = self.cri.run_pod_sandbox(sandbox.clone(), "").await.unwrap();
        let mut container_labels = pod_labels;
        container_labels.insert(labels::CONTAINER_NAME.into(), "main".into());
        let container = api::ContainerConfig {
            metadata: Some(api::ContainerMetadata {
                name: "main".into(),
                attempt: 0,
            }),
            image: Some(image_spec(BUSYBOX)),
            command: vec!["sh".into(), "-c".into(), script.into()],
            log_path: Layout::container_log("main", 0)
                .to_string_lossy()
                .into_owned(),
            labels: container_labels,
            linux: Some(api::LinuxContainerConfig {
                security_context: Some(api::LinuxContainerSecurityContext {
                    namespace_options: sandbox
                        .linux
                        .as_ref()
                        .and_then(|l| l.security_context.as_ref())
                        .and_then(|s| s.namespace_options.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let id = self
            .cri
            .create_container(&sandbox_id, container, sandbox)
            .await
            .unwrap();
        self.cri.start_container(&id).await.unwrap();
        uid
    }

    fn secure(&self, path: &str) -> String {
        format!(
            "https://127.0.0.1:{}{path}",
            self.kubelet.secure_addr().unwrap().port()
        )
    }

    async fn stop(self) {
        self.kubelet.stop().await;
        for sandbox in self.cri.list_pod_sandboxes().await.unwrap_or_default() {
            let _ = self.cri.stop_pod_sandbox(&sandbox.id).await;
            let _ = self.cri.remove_pod_sandbox(&sandbox.id).await;
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
async fn curl(url: &str, cert: Option<(&Path, &Path)>, extra: &[&str]) -> (u16, String) {
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args(["-sk", "--max-time", "20", "-w", "\n%{http_code}"]);
    if let Some((crt, key)) = cert {
        cmd.arg("--cert").arg(crt).arg("--key").arg(key);
    }
    let out = cmd
        .args(extra)
        .arg(url)
        .kill_on_drop(true)
        .output()
        .await
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// A client certificate of the cluster CA for a user no role names.
fn stranger_cert(env: &Env) -> (PathBuf, PathBuf) {
    let dir = env.dir.path();
    let (key, csr, crt) = (
        dir.join("stranger.key"),
        dir.join("stranger.csr"),
        dir.join("stranger.crt"),
    );
    let run = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "openssl {args:?}");
    };
    let s = |p: &Path| p.to_string_lossy().into_owned();
    run(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        &s(&key),
    ]);
    run(&[
        "req",
        "-new",
        "-key",
        &s(&key),
        "-subj",
        "/CN=stranger/O=strangers",
        "-out",
        &s(&csr),
    ]);
    let ext = dir.join("stranger.ext");
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
        &s(&env.paths.ca_crt),
        "-CAkey",
        &s(&env.paths.ca_key),
        "-CAcreateserial",
        "-days",
        "1",
        "-out",
        &s(&crt),
    ]);
    (crt, key)
}

async fn until<F, Fut>(what: &str, f: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn secure_port_authenticates_authorizes_and_serves() {
    if !support::can_run_containers() {
        return;
    }
    support::netns::run(async {
        let env = Env::start().await;
        let _log = support::DumpLogOnPanic(env.dir.path().join("data/containerd/containerd.log"));
        let master = (
            env.paths.apiserver_kubelet_client_crt.as_path(),
            env.paths.apiserver_kubelet_client_key.as_path(),
        );

        // Anonymous: 401, on every path.
        for path in ["/pods", "/healthz", "/containerLogs/default/box/main"] {
            let (code, body) = curl(&env.secure(path), None, &[]).await;
            assert_eq!((code, body.as_str()), (401, "Unauthorized"), "{path}");
        }
        // A certificate of the CA for a user without permission: 403 in upstream's words.
        let (crt, key) = stranger_cert(&env);
        let (code, body) = curl(&env.secure("/pods"), Some((&crt, &key)), &[]).await;
        assert_eq!(code, 403, "{body}");
        assert_eq!(
            body,
            "Forbidden (user=stranger, verb=get, resource=nodes, subresource=proxy)\n"
        );
        // A bearer token the API server does not know: 401.
        let (code, _) = curl(
            &env.secure("/pods"),
            None,
            &["-H", "Authorization: Bearer nope"],
        )
        .await;
        assert_eq!(code, 401);

        // A bearer token the API server knows (the admin's static token): its user is reviewed.
        let tokens = std::fs::read_to_string(&env.paths.known_tokens).unwrap();
        let admin_token = tokens
            .lines()
            .find(|l| l.contains("system:masters"))
            .and_then(|l| l.split(',').next())
            .unwrap()
            .to_string();
        let bearer = format!("Authorization: Bearer {admin_token}");
        let (code, _) = curl(&env.secure("/pods"), None, &["-H", &bearer]).await;
        assert_eq!(code, 200);

        // The API server's kubelet client certificate.
        let (code, body) = curl(&env.secure("/healthz"), Some(master), &[]).await;
        assert_eq!((code, body.as_str()), (200, "ok"));
        let (code, body) = curl(&env.secure("/pods"), Some(master), &[]).await;
        assert_eq!(code, 200, "{body}");
        let list: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(list["kind"], "PodList");
        assert_eq!(list["items"][0]["metadata"]["uid"], env.pod_uid.as_str());
        let (code, body) = curl(&env.secure("/metrics"), Some(master), &[]).await;
        assert_eq!(code, 200);
        assert!(
            body.contains(&format!("kubelet_node_name{{node=\"{NODE}\"}} 1")),
            "{body}"
        );

        // Usage, from kubelet::stats.
        let (code, body) = curl(&env.secure("/stats/summary"), Some(master), &[]).await;
        assert_eq!(code, 200, "{body}");
        let summary: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(summary["node"]["nodeName"], NODE);
        let (code, body) = curl(
            &env.secure("/stats/summary?only_cpu_and_memory=true"),
            Some(master),
            &[],
        )
        .await;
        assert_eq!(code, 200, "{body}");
        let (code, body) = curl(&env.secure("/metrics/resource"), Some(master), &[]).await;
        assert_eq!(code, 200, "{body}");
        assert!(body.contains("node_cpu_usage_seconds_total"), "{body}");
        let (code, _) = curl(&env.secure("/stats/summary"), Some((&crt, &key)), &[]).await;
        assert_eq!(code, 403);

        // Logs: whole, tail, timestamps, limitBytes.
        let logs = env.secure("/containerLogs/default/box/main");
        until("the container's first lines", || async {
            let body = curl(&logs, Some(master), &[]).await.1;
            body.contains("line5\n") && body.contains("oops\n")
        })
        .await;
        let (code, body) = curl(&format!("{logs}?tailLines=2"), Some(master), &[]).await;
        assert_eq!(code, 200);
        assert_eq!(body.lines().count(), 2, "{body}");
        let (_, body) = curl(&format!("{logs}?limitBytes=8"), Some(master), &[]).await;
        assert_eq!(body, "line1\nli");
        let (_, body) = curl(
            &format!("{logs}?timestamps=true&tailLines=1"),
            Some(master),
            &[],
        )
        .await;
        let (stamp, _) = body.split_once(' ').unwrap();
        assert!(
            stamp.parse::<k8s_openapi::jiff::Timestamp>().is_ok(),
            "{body}"
        );
        let (code, body) = curl(&format!("{logs}?previous=true"), Some(master), &[]).await;
        assert_eq!(code, 400);
        assert_eq!(
            body,
            "previous terminated container \"main\" in pod \"box\" not found"
        );
        let (code, _) = curl(
            &env.secure("/containerLogs/default/box/nothere"),
            Some(master),
            &[],
        )
        .await;
        assert_eq!(code, 400);
        // Followed: the lines written while following arrive, in order.
        let (_, body) = curl(
            &format!("{logs}?follow=true"),
            Some(master),
            &["--max-time", "6"],
        )
        .await;
        assert!(body.contains("tick3\ntick4\n"), "{body}");

        // /run: ExecSync's output.
        let (code, body) = curl(
            &env.secure("/run/default/box/main?cmd=cat%20/tmp/www/index.html"),
            Some(master),
            &["-X", "POST"],
        )
        .await;
        assert_eq!((code, body.as_str()), (200, "served\n"));

        // The read-only port: pods and health, never logs or exec.
        let ro = env.kubelet.read_only_addr().unwrap();
        let (code, body) = curl(&format!("http://{ro}/pods"), None, &[]).await;
        assert_eq!(code, 200);
        assert!(body.contains(&env.pod_uid));
        for path in [
            "/stats/summary",
            "/metrics/resource",
            "/metrics",
            "/healthz",
        ] {
            let (code, _) = curl(&format!("http://{ro}{path}"), None, &[]).await;
            assert_eq!(code, 200, "{path}");
        }
        for path in [
            "/containerLogs/default/box/main",
            "/run/default/box/main?cmd=ls",
            "/exec/default/box/main?command=ls&stdout=1",
        ] {
            let (code, _) = curl(&format!("http://{ro}{path}"), None, &["-X", "POST"]).await;
            assert_eq!(code, 404, "{path}");
        }
        // The healthz port.
        let hz = env.kubelet.healthz_addr().unwrap();
        let (code, body) = curl(&format!("http://{hz}/healthz"), None, &[]).await;
        assert_eq!((code, body.as_str()), (200, "ok"));
        let (code, _) = curl(&format!("http://{hz}/pods"), None, &[]).await;
        assert_eq!(code, 404);

        env.stop().await;
    });
}

/// kubectl (`None`: 1.33) with the admin kubeconfig, killed when dropped.
fn kubectl_cmd(env: &Env, version: Option<&str>) -> tokio::process::Command {
    let bin = match version {
        None => "/usr/bin/kubectl".to_string(),
        Some(v) => format!("/usr/lib/google-cloud-sdk/bin/kubectl.{v}"),
    };
    let mut cmd = tokio::process::Command::new(bin);
    cmd.arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .env("HOME", env.dir.path())
        .kill_on_drop(true);
    cmd
}

impl Env {
    /// Runs kubectl (`None`: /usr/bin/kubectl 1.33, `Some("1.27")`: that version) against the
    /// in-process API server.
    async fn kubectl(&self, version: Option<&str>, args: &[&str]) -> std::process::Output {
        let bin = match version {
            None => "/usr/bin/kubectl".to_string(),
            Some(v) => format!("/usr/lib/google-cloud-sdk/bin/kubectl.{v}"),
        };
        let cache = self
            .dir
            .path()
            .join(format!("cache-{}", version.unwrap_or("default")));
        tokio::time::timeout(
            Duration::from_secs(60),
            tokio::process::Command::new(bin)
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .arg("--cache-dir")
                .arg(&cache)
                .args(args)
                .env("HOME", self.dir.path())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .unwrap_or_else(|_| panic!("kubectl {args:?} timed out"))
        .expect("run kubectl")
    }

    async fn kubectl_ok(&self, version: Option<&str>, args: &[&str]) -> String {
        let out = self.kubectl(version, args).await;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "kubectl {version:?} {args:?} failed:\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }
}

#[test]
fn kubectl_reaches_pods_through_the_api_server() {
    if !support::can_run_containers() {
        return;
    }
    support::netns::run(async {
        let env = Env::start().await;
        let _log = support::DumpLogOnPanic(env.dir.path().join("data/containerd/containerd.log"));
        assert!(env.api_addr.ip().is_loopback());

        // nodes/proxy to the kubelet's own paths.
        let raw = format!("/api/v1/nodes/{NODE}/proxy/healthz");
        assert_eq!(env.kubectl_ok(None, &["get", "--raw", &raw]).await, "ok");
        let raw = format!("/api/v1/nodes/{NODE}/proxy/pods");
        let pods: serde_json::Value =
            serde_json::from_str(&env.kubectl_ok(None, &["get", "--raw", &raw]).await).unwrap();
        assert_eq!(pods["kind"], "PodList");

        // pods/log, with the kubelet's options.
        let mut all = String::new();
        for _ in 0..50 {
            all = env.kubectl_ok(None, &["logs", "box"]).await;
            if all.contains("line5\n") && all.contains("oops\n") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // (stderr a second after stdout: the runtime copies the two streams separately.)
        assert!(
            all.starts_with("line1\nline2\nline3\nline4\nline5\noops\n"),
            "{all}"
        );
        let tail = env.kubectl_ok(None, &["logs", "box", "--tail", "2"]).await;
        assert_eq!(tail.lines().count(), 2, "{tail}");
        let out = env.kubectl(None, &["logs", "box", "-c", "nothere"]).await;
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .contains("container nothere is not valid for pod box"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // -f ends when the container does.
        env.pod_running("short", "echo first; sleep 2; echo last")
            .await;
        let followed = env.kubectl_ok(None, &["logs", "-f", "short"]).await;
        assert_eq!(followed, "first\nlast\n");

        // pods/exec with SPDY (1.27) and with 1.33 (WebSocket v5, translated by the kubelet).
        for version in [Some("1.27"), None] {
            let out = env
                .kubectl_ok(
                    version,
                    &["exec", "box", "--", "sh", "-c", "echo hi; echo err >&2"],
                )
                .await;
            assert_eq!(out, "hi\n", "kubectl {version:?}");
        }
        let out = env
            .kubectl(None, &["exec", "box", "--", "sh", "-c", "exit 3"])
            .await;
        assert_eq!(out.status.code(), Some(3));

        // stdin, and kubectl cp (tar over exec).
        for version in [Some("1.27"), None] {
            let mut child = kubectl_cmd(&env, version)
                .args(["exec", "-i", "box", "--", "cat"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            tokio::io::AsyncWriteExt::write_all(&mut stdin, b"piped\n")
                .await
                .unwrap();
            drop(stdin);
            let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
                .await
                .expect("kubectl exec -i ends with its stdin")
                .unwrap();
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                "piped\n",
                "kubectl {version:?}"
            );
        }
        let copied = env.dir.path().join("copied.html");
        env.kubectl_ok(
            None,
            &[
                "cp",
                "default/box:/tmp/www/index.html",
                &copied.to_string_lossy(),
            ],
        )
        .await;
        assert_eq!(std::fs::read_to_string(&copied).unwrap(), "served\n");

        // Authorization as upstream: get pods/log and create pods/exec are separate rights.
        let rbac = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: log-reader, namespace: default}
rules:
- {apiGroups: [""], resources: [pods, pods/log], verbs: [get, list]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: jane-logs, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: log-reader}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: jane}
"#;
        let manifest = env.dir.path().join("rbac.yaml");
        std::fs::write(&manifest, rbac).unwrap();
        env.kubectl_ok(None, &["apply", "-f", &manifest.to_string_lossy()])
            .await;
        let mut logs_ok = false;
        for _ in 0..50 {
            if env
                .kubectl(None, &["--as", "jane", "logs", "box", "--tail", "1"])
                .await
                .status
                .success()
            {
                logs_ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(logs_ok, "jane may read logs once the role is in");
        for version in [Some("1.27"), None] {
            let out = env
                .kubectl(version, &["--as", "jane", "exec", "box", "--", "true"])
                .await;
            assert!(!out.status.success());
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains(r#"User "jane" cannot create resource "pods/exec" in API group "" in the namespace "default""#),
                "kubectl {version:?}: {err}"
            );
        }
        // The API's own container defaulting: several containers and none named.
        let multi: Pod = serde_json::from_value(json!({
            "metadata": {"name": "multi", "namespace": "default"},
            "spec": {"nodeName": NODE, "containers": [{"name": "a", "image": BUSYBOX}, {"name": "b", "image": BUSYBOX}]}
        }))
        .unwrap();
        Api::<Pod>::namespaced(env.admin.clone(), "default")
            .create(&PostParams::default(), &multi)
            .await
            .unwrap();
        let out = env
            .kubectl(
                None,
                &["get", "--raw", "/api/v1/namespaces/default/pods/multi/log"],
            )
            .await;
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("a container name must be specified for pod multi, choose one of: [a b]"),
            "{err}"
        );

        // WebSocket straight through (remotecommand v4, which containerd speaks), and v5, which
        // the kubelet translates to containerd's SPDY.
        let tokens = std::fs::read_to_string(&env.paths.known_tokens).unwrap();
        let admin_token = tokens
            .lines()
            .find(|l| l.contains("system:masters"))
            .and_then(|l| l.split(',').next())
            .unwrap()
            .to_string();
        let bearer = format!("Authorization: Bearer {admin_token}");
        let exec_url = format!(
            "https://127.0.0.1:{}/api/v1/namespaces/default/pods/box/exec?command=echo&command=ws&stdout=true",
            env.api_addr.port()
        );
        let websocket = |protocol: &'static str| {
            let (bearer, exec_url) = (bearer.clone(), exec_url.clone());
            async move {
                curl(
                    &exec_url,
                    None,
                    &[
                        "--http1.1",
                        "--max-time",
                        "5",
                        "-o",
                        "/dev/null",
                        "-H",
                        &bearer,
                        "-H",
                        "Connection: Upgrade",
                        "-H",
                        "Upgrade: websocket",
                        "-H",
                        "Sec-WebSocket-Version: 13",
                        "-H",
                        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                        "-H",
                        &format!("Sec-WebSocket-Protocol: {protocol}"),
                    ],
                )
                .await
                .0
            }
        };
        assert_eq!(websocket("v4.channel.k8s.io").await, 101);
        assert_eq!(websocket("v5.channel.k8s.io").await, 101);

        // pods/portforward to busybox httpd in the pod.
        for version in [Some("1.27"), None] {
            let local = support::free_port();
            let mut child = kubectl_cmd(&env, version)
                .args(["port-forward", "pod/box", &format!("{local}:18080")])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            let url = format!("http://127.0.0.1:{local}/index.html");
            let mut got = (0, String::new());
            for _ in 0..50 {
                got = curl(&url, None, &[]).await;
                if got.0 == 200 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            if got.0 != 200 {
                let _ = child.start_kill();
                let out = child.wait_with_output().await.unwrap();
                panic!(
                    "kubectl {version:?} port-forward: {got:?}\n{}\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            // A second connection over the same port-forward.
            assert_eq!(curl(&url, None, &[]).await, (200, "served\n".to_string()));
            if let Some(pid) = child.id() {
                // SAFETY: signalling the kubectl this test started, by its PID.
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            }
            let _ = child.wait().await;
        }

        env.stop().await;
    });
}
