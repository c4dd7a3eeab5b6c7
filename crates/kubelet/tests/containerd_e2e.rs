//! End to end on the real thing: Debian's containerd and runc, started by the `containerd`
//! module under a temporary data dir (its own socket, metrics on a free localhost port), the
//! locally built images imported through containerd's API, and a pod run through the CRI client.
//! Needs root (it is skipped, saying so, without).

mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use kubelet::containerd::{Config, Containerd, Runtime, SANDBOX_IMAGE};
use kubelet::cri::{api, image_spec, Cri};
use kubelet::images;

const BUSYBOX: &str = "localhost/krust/busybox:latest";

fn host_network() -> api::NamespaceOption {
    api::NamespaceOption {
        network: api::NamespaceMode::Node as i32,
        pid: api::NamespaceMode::Container as i32,
        ipc: api::NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

fn sandbox_config(log_dir: &std::path::Path) -> api::PodSandboxConfig {
    api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: "e2e".into(),
            uid: "e2e-uid-1".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        // No hostname: a pod on the node's network shares the node's UTS namespace too.
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

fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to metrics");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut body = String::new();
    let _ = stream.read_to_string(&mut body);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_runs_on_managed_containerd_with_imported_images() {
    if !support::can_run_containers() {
        return;
    }
    let images_dir = support::images_dir();
    let dir = tempfile::Builder::new()
        .prefix("krust-kubelet-e2e-")
        .tempdir_in("/tmp")
        .unwrap();
    let data_dir = dir.path().to_path_buf();
    let needle = data_dir.to_string_lossy().into_owned();

    let mut config = Config::new(&data_dir);
    let metrics: std::net::SocketAddr = format!("127.0.0.1:{}", support::free_port())
        .parse()
        .unwrap();
    config.metrics = Some(metrics);
    let _log = support::DumpLogOnPanic(data_dir.join("containerd/containerd.log"));
    let containerd = Containerd::start(config).await.expect("containerd starts");
    let pid = containerd.pid().expect("containerd runs");
    let socket = containerd.socket().to_path_buf();
    assert!(socket.starts_with(&data_dir));
    assert!(data_dir.join("containerd/root").is_dir());

    let metrics_page = http_get(metrics, "/v1/metrics");
    assert!(
        metrics_page.starts_with("HTTP/1.1 200"),
        "{metrics_page:.200}"
    );

    // Images, without a registry.
    for tarball in ["pause.tar", "busybox.tar"] {
        let imported = images::import(&socket, &images_dir.join(tarball), &ProgressBar::hidden())
            .await
            .unwrap_or_else(|e| panic!("import {tarball}: {e}"));
        assert!(!imported.is_empty());
    }
    // Importing again changes nothing and does not fail.
    images::import(
        &socket,
        &images_dir.join("busybox.tar"),
        &ProgressBar::hidden(),
    )
    .await
    .expect("second import");

    let cri = Cri::connect(&socket).unwrap();
    let listed = cri.list_images().await.unwrap();
    let tags: Vec<&str> = listed
        .iter()
        .flat_map(|i| i.repo_tags.iter().map(String::as_str))
        .collect();
    assert!(tags.contains(&SANDBOX_IMAGE), "{tags:?}");
    assert!(tags.contains(&BUSYBOX), "{tags:?}");
    assert!(listed
        .iter()
        .all(|i| i.id.starts_with("sha256:") && i.size > 0));

    // A pod: sandbox, container, exec, stop, remove.
    let logs = data_dir.join("pods/e2e");
    std::fs::create_dir_all(&logs).unwrap();
    let sandbox = sandbox_config(&logs);
    let sandbox_id = cri.run_pod_sandbox(sandbox.clone(), "").await.unwrap();
    let status = cri.pod_sandbox_status(&sandbox_id).await.unwrap();
    assert_eq!(status.state, api::PodSandboxState::SandboxReady as i32);

    let container = api::ContainerConfig {
        metadata: Some(api::ContainerMetadata {
            name: "main".into(),
            attempt: 0,
        }),
        image: Some(image_spec(BUSYBOX)),
        command: vec![
            "sh".into(),
            "-c".into(),
            "echo hi > /tmp/x; sleep 3600".into(),
        ],
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
    let container_id = cri
        .create_container(&sandbox_id, container, sandbox.clone())
        .await
        .unwrap();
    cri.start_container(&container_id).await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(20);
    let out = loop {
        let out = cri
            .exec_sync(&container_id, &["cat", "/tmp/x"], 10)
            .await
            .unwrap();
        if out.exit_code == 0 || Instant::now() > deadline {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(out.exit_code, 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    assert!(std::fs::read_to_string(logs.join("main.log")).is_ok());

    // An image imported from a (gzip-compressed) docker archive runs too.
    let docker_tar = data_dir.join("dockerbox.tar.gz");
    support::docker_archive_from_oci(&images_dir.join("busybox.tar"), &docker_tar, "dockerbox:1");
    let imported = images::import(&socket, &docker_tar, &ProgressBar::hidden())
        .await
        .expect("import a docker archive");
    assert_eq!(imported[0].name, "docker.io/library/dockerbox:1");
    let second = api::ContainerConfig {
        metadata: Some(api::ContainerMetadata {
            name: "docker".into(),
            attempt: 0,
        }),
        image: Some(image_spec("dockerbox:1")),
        command: vec!["sleep".into(), "3600".into()],
        linux: Some(api::LinuxContainerConfig {
            security_context: Some(api::LinuxContainerSecurityContext {
                namespace_options: Some(host_network()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let second_id = cri
        .create_container(&sandbox_id, second, sandbox.clone())
        .await
        .unwrap();
    cri.start_container(&second_id).await.unwrap();
    let out = cri
        .exec_sync(&second_id, &["echo", "ok"], 10)
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");

    cri.stop_container(&container_id, 1).await.unwrap();
    let status = cri.container_status(&container_id).await.unwrap();
    assert_eq!(status.state, api::ContainerState::ContainerExited as i32);
    cri.stop_pod_sandbox(&sandbox_id).await.unwrap();
    cri.remove_pod_sandbox(&sandbox_id).await.unwrap();
    assert!(cri.list_pod_sandboxes().await.unwrap().is_empty());
    assert!(cri.list_containers().await.unwrap().is_empty());

    containerd.stop().await;
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "containerd (pid {pid}) still runs"
    );
    let left = support::wait_none_mentioning(&needle, Duration::from_secs(10));
    assert!(left.is_empty(), "left running: {left:?}");
    let mounts = support::mounts_under(&data_dir);
    assert!(mounts.is_empty(), "left mounted: {mounts:?}");
}

/// Tarballs in <data-dir>/images/ are imported at start once: a second pass imports nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_dir_is_imported_once() {
    if !support::can_run_containers() {
        return;
    }
    let images_dir = support::images_dir();
    let dir = tempfile::Builder::new()
        .prefix("krust-kubelet-import-")
        .tempdir_in("/tmp")
        .unwrap();
    let data_dir = dir.path().to_path_buf();
    let drop_dir = images::image_dir(&data_dir);
    std::fs::create_dir_all(&drop_dir).unwrap();
    std::fs::copy(images_dir.join("pause.tar"), drop_dir.join("pause.tar")).unwrap();
    std::fs::write(drop_dir.join("broken.tar"), b"not a tarball").unwrap();
    std::fs::write(drop_dir.join("notes.txt"), b"ignored").unwrap();

    let _log = support::DumpLogOnPanic(data_dir.join("containerd/containerd.log"));
    let containerd = Containerd::start(Config::new(&data_dir)).await.unwrap();
    let socket = containerd.socket().to_path_buf();
    let first = images::import_dir(&socket, &data_dir).await.unwrap();
    assert_eq!(first.imported.len(), 1, "{first:?}");
    assert_eq!(first.imported[0].1[0].name, SANDBOX_IMAGE);
    assert_eq!(first.failed.len(), 1, "{first:?}");
    assert!(
        first.failed[0].1.contains("is not an image archive"),
        "{first:?}"
    );

    // The same content under another name is not imported again either.
    std::fs::copy(
        images_dir.join("pause.tar"),
        drop_dir.join("pause-copy.tar"),
    )
    .unwrap();
    let second = images::import_dir(&socket, &data_dir).await.unwrap();
    assert!(second.imported.is_empty(), "{second:?}");
    assert_eq!(second.already.len(), 2, "{second:?}");
    let cri = Cri::connect(&socket).unwrap();
    assert!(cri.image_status(SANDBOX_IMAGE).await.unwrap().is_some());

    // containerd killed behind krust's back is restarted, and keeps its images.
    let first_pid = containerd.pid().unwrap();
    // SAFETY: kill(2) on the containerd this test started.
    unsafe { libc::kill(first_pid as i32, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let restarted = containerd.pid().is_some_and(|p| p != first_pid);
        if restarted && cri.version().await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "containerd was not restarted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(cri.image_status(SANDBOX_IMAGE).await.unwrap().is_some());

    // A runtime given by its endpoint is used as it is, and left running when let go.
    let endpoint = format!("unix://{}", socket.display());
    let external = Runtime::start(Config::new(&data_dir.join("unused")), Some(&endpoint))
        .await
        .unwrap();
    assert!(matches!(external, Runtime::External { .. }));
    assert_eq!(external.socket(), socket);
    external.stop().await;
    assert!(containerd.pid().is_some());
    assert!(cri.version().await.is_ok());
    assert!(!data_dir.join("unused").exists());

    containerd.stop().await;
    let left = support::wait_none_mentioning(&data_dir.to_string_lossy(), Duration::from_secs(10));
    assert!(left.is_empty(), "left running: {left:?}");
}

/// The pause image's process, as PID 1 of its own PID namespace, exits at once on SIGTERM
/// (busybox `sleep` would ignore it there).
#[test]
fn pause_exits_on_sigterm_as_pid_1() {
    if !support::can_run_containers() {
        return;
    }
    let images_dir = support::images_dir();
    let dir = tempfile::tempdir().unwrap();
    let pause = dir.path().join("pause");
    extract_pause(&images_dir.join("pause.tar"), &pause);
    let mut unshare = std::process::Command::new("unshare")
        .args(["--fork", "--pid", "--kill-child"])
        .arg(&pause)
        .spawn()
        .expect("unshare");
    // The pause process is unshare's child, PID 1 in the new namespace.
    let deadline = Instant::now() + Duration::from_secs(5);
    let child = loop {
        let children =
            std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", unshare.id()))
                .unwrap_or_default();
        if let Some(pid) = children.split_whitespace().next() {
            break pid.parse::<i32>().unwrap();
        }
        assert!(Instant::now() < deadline, "pause did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    std::process::Command::new("kill")
        .args(["-TERM", &child.to_string()])
        .status()
        .unwrap();
    let status = unshare.wait().unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(status.success(), "{status:?}");
}

/// Takes /pause out of the pause image's single gzip layer.
fn extract_pause(tarball: &std::path::Path, to: &std::path::Path) {
    let mut outer = tar::Archive::new(std::fs::File::open(tarball).unwrap());
    for entry in outer.entries().unwrap() {
        let entry = entry.unwrap();
        if entry.size() < 100_000 {
            continue;
        }
        let mut layer = tar::Archive::new(flate2::read::GzDecoder::new(entry));
        for file in layer.entries().unwrap() {
            let mut file = file.unwrap();
            if file.path().unwrap().to_string_lossy() == "pause" {
                file.unpack(to).unwrap();
                return;
            }
        }
    }
    panic!("no /pause in {}", tarball.display());
}

/// The test's own network namespace holds only loopback, and the host's links stay out of it.
#[test]
fn a_test_network_namespace_has_only_loopback() {
    if !support::is_root() {
        return;
    }
    support::netns::run(async {
        let out = tokio::process::Command::new("ip")
            .args(["-o", "link", "show"])
            .output()
            .await
            .unwrap();
        let links = String::from_utf8_lossy(&out.stdout).to_string();
        assert_eq!(links.lines().count(), 1, "{links}");
        assert!(links.contains("lo:") && links.contains("UP"), "{links}");
    });
}
