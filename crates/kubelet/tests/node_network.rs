//! Pod networking on the real thing, in a network namespace of the test's own: a managed
//! containerd, the CNI configuration `kubelet::network` writes for a pod CIDR, Debian's bridge,
//! host-local and portmap plugins, and busybox pods that talk to each other, to the host and
//! through a hostPort. Needs root (skipped, saying so, without).

mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use kubelet::containerd::{Config, Containerd};
use kubelet::cri::{api, image_spec, Cri};
use kubelet::images;
use kubelet::network::PodNetwork;

const BUSYBOX: &str = "localhost/krust/busybox:latest";
const POD_CIDR: &str = "10.244.7.0/24";
const GATEWAY: &str = "10.244.7.1";

fn sandbox_config(name: &str, log_dir: &Path, host_port: Option<i32>) -> api::PodSandboxConfig {
    api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: name.into(),
            uid: format!("{name}-uid"),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: log_dir.join(name).to_string_lossy().into_owned(),
        port_mappings: host_port
            .map(|host_port| api::PortMapping {
                protocol: api::Protocol::Tcp as i32,
                container_port: 80,
                host_port,
                host_ip: String::new(),
            })
            .into_iter()
            .collect(),
        linux: Some(api::LinuxPodSandboxConfig {
            security_context: Some(api::LinuxSandboxSecurityContext {
                namespace_options: Some(api::NamespaceOption {
                    network: api::NamespaceMode::Pod as i32,
                    pid: api::NamespaceMode::Container as i32,
                    ipc: api::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Runs a sandbox and one busybox container in it running `script`; returns (sandbox, container, pod IP).
async fn run_pod(
    cri: &Cri,
    sandbox: api::PodSandboxConfig,
    script: &str,
) -> (String, String, IpAddr) {
    std::fs::create_dir_all(&sandbox.log_directory).unwrap();
    let sandbox_id = cri.run_pod_sandbox(sandbox.clone(), "").await.unwrap();
    let container = api::ContainerConfig {
        metadata: Some(api::ContainerMetadata {
            name: "main".into(),
            attempt: 0,
        }),
        image: Some(image_spec(BUSYBOX)),
        command: vec!["sh".into(), "-c".into(), script.into()],
        log_path: "main.log".into(),
        ..Default::default()
    };
    let container_id = cri
        .create_container(&sandbox_id, container, sandbox)
        .await
        .unwrap();
    cri.start_container(&container_id).await.unwrap();
    let status = cri.pod_sandbox_status(&sandbox_id).await.unwrap();
    let ip = status
        .network
        .map(|n| n.ip)
        .unwrap_or_default()
        .parse()
        .expect("the sandbox has an IP");
    (sandbox_id, container_id, ip)
}

/// `sh -c script` in a container until it exits 0 (or 20 s pass); returns its stdout.
async fn exec_until_ok(cri: &Cri, container_id: &str, script: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = cri
            .exec_sync(container_id, &["sh", "-c", script], 10)
            .await
            .unwrap();
        if out.exit_code == 0 {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(
            Instant::now() < deadline,
            "{script}: exit {} {}",
            out.exit_code,
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A tiny HTTP server on the host side (in the test's namespace) answering `body`.
fn serve_host(body: &'static str) -> u16 {
    let listener = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// GET / from the host side; the body, or an error text.
fn http_get(addr: SocketAddr) -> String {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(3)) else {
        return format!("cannot connect to {addr}");
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let _ = write!(
        stream,
        "GET / HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    );
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text.split("\r\n\r\n").nth(1).unwrap_or(&text).to_string()
}

fn http_get_until(addr: SocketAddr, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = http_get(addr);
        if got.contains(want) || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn pods_get_addresses_from_the_pod_cidr_and_reach_each_other_the_host_and_host_ports() {
    if !support::can_run_containers() {
        return;
    }
    support::netns::run(pod_network());
}

async fn pod_network() {
    let images_dir = support::images_dir();
    let dir = tempfile::Builder::new()
        .prefix("krust-kubelet-net-")
        .tempdir_in("/tmp")
        .unwrap();
    let data_dir = dir.path().to_path_buf();
    let _log = support::DumpLogOnPanic(data_dir.join("containerd/containerd.log"));
    let containerd = Containerd::start(Config::new(&data_dir))
        .await
        .expect("containerd starts");
    let socket = containerd.socket().to_path_buf();
    for tarball in ["pause.tar", "busybox.tar"] {
        images::import(&socket, &images_dir.join(tarball), &ProgressBar::hidden())
            .await
            .unwrap();
    }
    let cri = Cri::connect(&socket).unwrap();

    // The configuration arrives after containerd started, as it does once the node gets its
    // pod CIDR: containerd picks it up from its conf dir.
    let network = PodNetwork::new(&data_dir);
    assert!(network.write(POD_CIDR).unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = cri.status().await.unwrap();
        let ready = status.status.is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.r#type == "NetworkReady" && c.status)
        });
        if ready {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "containerd never reported NetworkReady"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let logs = data_dir.join("pods");
    let host_port = support::free_port() as i32;
    let (sandbox_a, web, ip_a) = run_pod(
        &cri,
        sandbox_config("web", &logs, Some(host_port)),
        "mkdir -p /www && echo hello-from-web > /www/index.html && exec httpd -f -p 80 -h /www",
    )
    .await;
    let (sandbox_b, client, ip_b) = run_pod(
        &cri,
        sandbox_config("client", &logs, None),
        "exec sleep 3600",
    )
    .await;

    let cidr = kubelet::network::parse_cidr(POD_CIDR).unwrap();
    assert!(cidr.contains(&ip_a), "{ip_a} outside {POD_CIDR}");
    assert!(cidr.contains(&ip_b), "{ip_b} outside {POD_CIDR}");
    assert_ne!(ip_a, ip_b);
    assert_ne!(ip_a.to_string(), GATEWAY);

    // Each pod's loopback is up (containerd's loopback plugin) and its httpd answers there.
    let own = exec_until_ok(&cri, &web, "wget -q -O - http://127.0.0.1:80/").await;
    assert_eq!(own.trim(), "hello-from-web");
    // The pod's default route goes through the bridge.
    let routes = exec_until_ok(&cri, &client, "ip route").await;
    assert!(
        routes.contains(&format!("default via {GATEWAY}")),
        "{routes}"
    );

    // Pod to pod.
    let other = exec_until_ok(&cri, &client, &format!("wget -q -O - http://{ip_a}:80/")).await;
    assert_eq!(other.trim(), "hello-from-web");

    // Pod to host: the bridge's address is the node's.
    let host_port_served = serve_host("hello-from-host");
    let host = exec_until_ok(
        &cri,
        &client,
        &format!("wget -q -O - http://{GATEWAY}:{host_port_served}/"),
    )
    .await;
    assert_eq!(host.trim(), "hello-from-host");

    // Host to pod, directly and through its hostPort (portmap), on the node's address and on
    // localhost (portmap's SNAT makes 127.0.0.1 work).
    let direct = http_get_until(SocketAddr::new(ip_a, 80), "hello-from-web");
    assert_eq!(direct.trim(), "hello-from-web");
    for host_ip in [GATEWAY, "127.0.0.1"] {
        let addr = SocketAddr::new(host_ip.parse().unwrap(), host_port as u16);
        let got = http_get_until(addr, "hello-from-web");
        assert_eq!(got.trim(), "hello-from-web", "through {addr}");
    }
    // And from the other pod through the hostPort on the node's address.
    let via_host_port = exec_until_ok(
        &cri,
        &client,
        &format!("wget -q -O - http://{GATEWAY}:{host_port}/"),
    )
    .await;
    assert_eq!(via_host_port.trim(), "hello-from-web");

    // Removing the pods gives their addresses back (host-local's reservations under the data dir).
    for sandbox in [&sandbox_a, &sandbox_b] {
        cri.stop_pod_sandbox(sandbox).await.unwrap();
        cri.remove_pod_sandbox(sandbox).await.unwrap();
    }
    let reservations = data_dir
        .join("cni/networks")
        .join(kubelet::network::NETWORK_NAME);
    let left: Vec<String> = std::fs::read_dir(&reservations)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.parse::<IpAddr>().is_ok())
        .collect();
    assert!(left.is_empty(), "addresses still reserved: {left:?}");

    containerd.stop().await;
    let left = support::wait_none_mentioning(&data_dir.to_string_lossy(), Duration::from_secs(10));
    assert!(left.is_empty(), "left running: {left:?}");
}
