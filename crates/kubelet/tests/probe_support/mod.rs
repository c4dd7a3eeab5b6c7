//! A managed containerd in a temporary data dir with the local images imported, and
//! host-network pods made through CRI directly, for the probes, logs and stats tests (run them
//! inside `support::netns::run`, so the pods' "host" network is the test's own namespace).
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use kubelet::containerd::{Config, Containerd};
use kubelet::cri::{api, image_spec, Cri};
use kubelet::images;
use kubelet::labels;
use kubelet::layout::Layout;

use crate::support;

pub const BUSYBOX: &str = "localhost/krust/busybox:latest";

pub struct Node {
    pub dir: tempfile::TempDir,
    pub containerd: Containerd,
    pub cri: Cri,
    pub layout: Layout,
}

/// A pod sandbox on the node's network.
pub struct Sandbox {
    pub id: String,
    pub config: api::PodSandboxConfig,
    pub uid: String,
    pub log_dir: PathBuf,
}

/// A bridge with host-local addresses, written before containerd starts so it sees it.
fn write_bridge_conf(data_dir: &std::path::Path) {
    let conf_dir = data_dir.join("cni/net.d");
    std::fs::create_dir_all(&conf_dir).unwrap();
    let conf = serde_json::json!({
        "cniVersion": "0.4.0",
        "name": "probes-test",
        "plugins": [{
            "type": "bridge",
            "bridge": "cni-probes0",
            "isGateway": true,
            "ipMasq": false,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": "10.244.7.0/24"}]],
                "dataDir": data_dir.join("cni/ipam").to_string_lossy(),
            },
        }],
    });
    std::fs::write(conf_dir.join("10-probes-test.conflist"), conf.to_string()).unwrap();
}

fn namespaces(host_network: bool) -> api::NamespaceOption {
    let network = if host_network {
        api::NamespaceMode::Node
    } else {
        api::NamespaceMode::Pod
    };
    api::NamespaceOption {
        network: network as i32,
        pid: api::NamespaceMode::Container as i32,
        ipc: api::NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

impl Node {
    /// containerd under a fresh data dir, with pause and busybox imported.
    pub async fn start(prefix: &str) -> Node {
        Node::start_in(prefix, false).await
    }

    /// As [`Node::start`], with a CNI bridge network (10.244.7.0/24, no iptables) for pods not
    /// on the host's network: call it inside `support::netns::run` only.
    pub async fn start_with_bridge(prefix: &str) -> Node {
        Node::start_in(prefix, true).await
    }

    async fn start_in(prefix: &str, bridge: bool) -> Node {
        let images_dir = support::images_dir();
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in("/tmp")
            .unwrap();
        if bridge {
            write_bridge_conf(dir.path());
        }
        let containerd = Containerd::start(Config::new(dir.path()))
            .await
            .expect("containerd starts");
        let socket = containerd.socket().to_path_buf();
        for tarball in ["pause.tar", "busybox.tar"] {
            images::import(&socket, &images_dir.join(tarball), &ProgressBar::hidden())
                .await
                .unwrap_or_else(|e| panic!("import {tarball}: {e}"));
        }
        let cri = Cri::connect(&socket).unwrap();
        let layout = Layout::new(dir.path());
        Node {
            dir,
            containerd,
            cri,
            layout,
        }
    }

    /// A host-network sandbox labelled as the kubelet labels them, logging where the layout says.
    pub async fn sandbox(&self, name: &str) -> Sandbox {
        self.sandbox_on(name, true).await
    }

    /// A sandbox on the node's network or (`host_network` false) on the CNI bridge.
    pub async fn sandbox_on(&self, name: &str, host_network: bool) -> Sandbox {
        let uid = format!("uid-{name}");
        let log_dir = self.layout.pod_log_dir("default", name, &uid);
        std::fs::create_dir_all(&log_dir).unwrap();
        let config = api::PodSandboxConfig {
            metadata: Some(api::PodSandboxMetadata {
                name: name.into(),
                uid: uid.clone(),
                namespace: "default".into(),
                attempt: 0,
            }),
            log_directory: log_dir.to_string_lossy().into_owned(),
            labels: [
                (labels::POD_NAME.to_string(), name.to_string()),
                (labels::POD_NAMESPACE.to_string(), "default".to_string()),
                (labels::POD_UID.to_string(), uid.clone()),
            ]
            .into(),
            linux: Some(api::LinuxPodSandboxConfig {
                security_context: Some(api::LinuxSandboxSecurityContext {
                    namespace_options: Some(namespaces(host_network)),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let id = self.cri.run_pod_sandbox(config.clone(), "").await.unwrap();
        Sandbox {
            id,
            config,
            uid,
            log_dir,
        }
    }

    /// Creates and starts a busybox container running `script` with `sh -c`, attempt `attempt`,
    /// logging to `<container>/<attempt>.log` under the pod's log directory.
    pub async fn container(
        &self,
        sandbox: &Sandbox,
        name: &str,
        attempt: u32,
        script: &str,
    ) -> String {
        let meta = sandbox.config.metadata.clone().unwrap();
        std::fs::create_dir_all(sandbox.log_dir.join(name)).unwrap();
        let config = api::ContainerConfig {
            metadata: Some(api::ContainerMetadata {
                name: name.into(),
                attempt,
            }),
            image: Some(image_spec(BUSYBOX)),
            command: vec!["sh".into(), "-c".into(), script.into()],
            log_path: Layout::container_log(name, attempt)
                .to_string_lossy()
                .into_owned(),
            labels: [
                (labels::POD_NAME.to_string(), meta.name.clone()),
                (labels::POD_NAMESPACE.to_string(), meta.namespace.clone()),
                (labels::POD_UID.to_string(), meta.uid.clone()),
                (labels::CONTAINER_NAME.to_string(), name.to_string()),
            ]
            .into(),
            annotations: [(labels::RESTART_COUNT.to_string(), attempt.to_string())].into(),
            linux: Some(api::LinuxContainerConfig {
                security_context: Some(api::LinuxContainerSecurityContext {
                    namespace_options: sandbox
                        .config
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
            .create_container(&sandbox.id, config, sandbox.config.clone())
            .await
            .unwrap();
        self.cri.start_container(&id).await.unwrap();
        id
    }

    /// Runs `script` in the container; its exit code.
    pub async fn exec(&self, id: &str, script: &str) -> i32 {
        let out = self
            .cri
            .exec_sync(id, &["sh", "-c", script], 10)
            .await
            .unwrap();
        out.exit_code
    }

    /// Waits until the container has exited.
    pub async fn wait_exited(&self, id: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let status = self.cri.container_status(id).await.unwrap();
            if status.state == api::ContainerState::ContainerExited as i32 {
                return;
            }
            assert!(Instant::now() < deadline, "container {id} still runs");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Removes every pod, stops containerd and checks nothing it started is left.
    pub async fn stop(self) {
        for sandbox in self.cri.list_pod_sandboxes().await.unwrap() {
            let _ = self.cri.stop_pod_sandbox(&sandbox.id).await;
            let _ = self.cri.remove_pod_sandbox(&sandbox.id).await;
        }
        let needle = self.dir.path().to_string_lossy().into_owned();
        self.containerd.stop().await;
        let left = support::wait_none_mentioning(&needle, Duration::from_secs(10));
        assert!(left.is_empty(), "left running: {left:?}");
        let mounts = support::mounts_under(self.dir.path());
        assert!(mounts.is_empty(), "left mounted: {mounts:?}");
    }
}

/// Polls `check` every 100 ms until it holds or `limit` passes; whether it held.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
