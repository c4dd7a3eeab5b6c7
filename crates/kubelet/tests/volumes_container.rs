//! Volumes seen from inside a real container: managed containerd in a temporary data dir, a
//! host-network sandbox and a busybox container made through CRI with the mounts
//! `PodVolumes::mounts` returns; the container reads a configMap file and then sees the
//! configMap's update in place (through `..data`), without a restart, and cannot write to the
//! read-only volume. Runs in a network namespace of its own. Needs root.

#[path = "support/apiserver.rs"]
mod apiserver;
mod support;

use std::time::{Duration, Instant};

use apiserver::{ApiServer, NODE};
use indicatif::ProgressBar;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, Patch, PatchParams};
use kubelet::containerd::{Config, Containerd};
use kubelet::cri::{api, image_spec, Cri};
use kubelet::images;
use kubelet::volumes::Volumes;
use serde_json::json;

const BUSYBOX: &str = "localhost/krust/busybox:latest";

fn host_network() -> api::NamespaceOption {
    api::NamespaceOption {
        network: api::NamespaceMode::Node as i32,
        pid: api::NamespaceMode::Container as i32,
        ipc: api::NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

fn sandbox_config(pod: &Pod, log_dir: &std::path::Path) -> api::PodSandboxConfig {
    api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: pod.metadata.name.clone().unwrap(),
            uid: pod.metadata.uid.clone().unwrap(),
            namespace: "default".into(),
            attempt: 0,
        }),
        // No hostname: a host-network pod shares the node's UTS namespace.
        log_directory: log_dir.to_string_lossy().into_owned(),
        linux: Some(api::LinuxPodSandboxConfig {
            security_context: Some(api::LinuxSandboxSecurityContext {
                namespace_options: Some(host_network()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Runs `cmd` in the container until it exits 0 with `want` (up to 20 s); returns its output.
async fn exec_until(cri: &Cri, id: &str, cmd: &[&str], want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = cri.exec_sync(id, cmd, 10).await.unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if (out.exit_code == 0 && stdout == want) || Instant::now() > deadline {
            return stdout;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn a_container_reads_a_config_map_volume_and_sees_updates_in_place() {
    if !support::can_run_containers() {
        return;
    }
    support::netns::run(async {
        let images_dir = support::images_dir();
        let dir = tempfile::Builder::new()
            .prefix("krust-volumes-ctr-")
            .tempdir_in("/tmp")
            .unwrap();
        let data_dir = dir.path().to_path_buf();
        let needle = data_dir.to_string_lossy().into_owned();
        let _log = support::DumpLogOnPanic(data_dir.join("containerd/containerd.log"));
        let containerd = Containerd::start(Config::new(&data_dir))
            .await
            .expect("containerd starts");
        let socket = containerd.socket().to_path_buf();
        for tarball in ["pause.tar", "busybox.tar"] {
            images::import(&socket, &images_dir.join(tarball), &ProgressBar::hidden())
                .await
                .unwrap_or_else(|e| panic!("import {tarball}: {e}"));
        }

        let server = ApiServer::start().await;
        let _: ConfigMap = server
            .create(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "greeting", "namespace": "default"},
                "data": {"message": "hello"}}))
            .await;
        let pod: Pod = server
            .create(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "reader", "namespace": "default"},
                "spec": {"nodeName": NODE, "hostNetwork": true,
                    "volumes": [{"name": "cfg", "configMap": {"name": "greeting"}}],
                    "containers": [{"name": "main", "image": BUSYBOX,
                        "volumeMounts": [{"name": "cfg", "mountPath": "/etc/greeting"}]}]}}))
            .await;
        let ctx = server.node_context(&data_dir, &socket);
        let cri = Cri::connect(&socket).unwrap();
        let volumes = Volumes::new(ctx);
        let pod_volumes = volumes.setup(&pod).await.expect("setup");
        let container = &pod.spec.as_ref().unwrap().containers[0];
        let mounts = pod_volumes.mounts(container).expect("mounts");
        assert_eq!(mounts.len(), 1);

        let logs = data_dir.join("logs/pods/reader");
        std::fs::create_dir_all(&logs).unwrap();
        let sandbox = sandbox_config(&pod, &logs);
        let sandbox_id = cri.run_pod_sandbox(sandbox.clone(), "").await.unwrap();
        let config = api::ContainerConfig {
            metadata: Some(api::ContainerMetadata {
                name: "main".into(),
                attempt: 0,
            }),
            image: Some(image_spec(BUSYBOX)),
            command: vec!["sleep".into(), "3600".into()],
            mounts,
            log_path: "main.log".into(),
            linux: Some(api::LinuxContainerConfig {
                security_context: Some(api::LinuxContainerSecurityContext {
                    namespace_options: Some(host_network()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let id = cri
            .create_container(&sandbox_id, config, sandbox.clone())
            .await
            .unwrap();
        cri.start_container(&id).await.unwrap();

        let read = ["cat", "/etc/greeting/message"];
        assert_eq!(exec_until(&cri, &id, &read, "hello").await, "hello");
        let write = cri
            .exec_sync(&id, &["sh", "-c", "echo x > /etc/greeting/new"], 10)
            .await
            .unwrap();
        assert_ne!(write.exit_code, 0, "configMap volumes are read-only");

        // The configMap changes; the next sync rewrites the volume; the running container
        // sees the new content at the same path.
        let api: Api<ConfigMap> = Api::namespaced(server.admin.clone(), "default");
        api.patch(
            "greeting",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"message": "bonjour"}})),
        )
        .await
        .unwrap();
        volumes.setup(&pod).await.expect("setup after the update");
        assert_eq!(exec_until(&cri, &id, &read, "bonjour").await, "bonjour");

        cri.stop_container(&id, 1).await.unwrap();
        cri.stop_pod_sandbox(&sandbox_id).await.unwrap();
        cri.remove_pod_sandbox(&sandbox_id).await.unwrap();
        volumes
            .teardown(pod.metadata.uid.as_deref().unwrap())
            .await
            .unwrap();
        assert!(!data_dir
            .join("kubelet/pods")
            .join(pod.metadata.uid.as_deref().unwrap())
            .join("volumes")
            .exists());
        server.stop().await;
        containerd.stop().await;
        let left = support::wait_none_mentioning(&needle, Duration::from_secs(10));
        assert!(left.is_empty(), "left running: {left:?}");
        let mounts = support::mounts_under(&data_dir);
        assert!(mounts.is_empty(), "left mounted: {mounts:?}");
    });
}
