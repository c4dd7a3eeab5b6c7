//! The node agent inside `krust server`, through the real binary and the real kubectl: the
//! server registers its node, which gets a pod CIDR from nodeipam, turns Ready and keeps its
//! Lease renewed; `--disable-agent` registers none; stopping the server leaves no containerd or
//! shim behind. Servers with the agent run in a network namespace of the test's own.

mod support;

use std::time::{Duration, Instant};

use support::{stderr, stdout, Server};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// PIDs of processes whose command line mentions `needle` (containerd's --config, each shim's
/// -address are under the data dir).
fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter_map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline.contains(needle).then_some((pid, cmdline))
        })
        .collect()
}

fn until<T>(what: &str, secs: u64, server: &Server, f: impl Fn() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n--- server log ---\n{}",
            std::fs::read_to_string(server.path("server.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn json(server: &Server, args: &[&str]) -> Option<serde_json::Value> {
    let out = server.kubectl(args);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

#[test]
fn server_runs_a_ready_node_with_a_pod_cidr_and_a_renewed_lease() {
    if !is_root() {
        eprintln!("skipped: the node agent needs root");
        return;
    }
    support::isolate_network();
    // The machine's disk may be fuller than the default threshold: not what is tested here.
    let mut server = Server::with_agent(&["--eviction-hard", "nodefs.available<1%"]);
    server.start();
    let data_dir = server.data_dir().to_string_lossy().into_owned();
    let containerd = until("containerd", 30, &server, || {
        std::fs::read_to_string(server.path("containerd/containerd.pid"))
            .ok()?
            .trim()
            .parse::<u32>()
            .ok()
    });

    // Ready, with a range of the upstream profile's pod CIDR.
    let node = until("a Ready node", 90, &server, || {
        let list = json(&server, &["get", "nodes", "-o", "json"])?;
        let node = list["items"].as_array()?.first()?.clone();
        let ready = node["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        ready.then_some(node)
    });
    let name = node["metadata"]["name"].as_str().unwrap().to_string();
    let cidr = node["spec"]["podCIDR"].as_str().unwrap_or_default();
    assert!(
        cidr.starts_with("10.244.") && cidr.ends_with("/24"),
        "{cidr}"
    );
    assert!(server.path("cni/net.d/10-krust.conflist").exists());
    let labels = &node["metadata"]["labels"];
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert_eq!(labels["kubernetes.io/hostname"], name.as_str());

    // kubectl's own view: Ready, and the control-plane role the server gives its node.
    let table = until("the control-plane role", 30, &server, || {
        let out = stdout(&server.kubectl(&["get", "nodes"]));
        out.contains("control-plane").then_some(out)
    });
    let row = table.lines().nth(1).unwrap_or_default().to_string();
    assert!(row.contains(" Ready "), "{table}");

    // The kubelet API: through the API server's node proxy (its kubelet client certificate),
    // and refused to anonymous callers on 10250.
    let out = server.kubectl(&[
        "get",
        "--raw",
        &format!("/api/v1/nodes/{name}/proxy/healthz"),
    ]);
    assert_eq!(stdout(&out).trim(), "ok", "{}", stderr(&out));
    let out = std::process::Command::new("curl")
        .args([
            "-sk",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "https://127.0.0.1:10250/pods",
        ])
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "401");

    // krust status shows it.
    let out = server.krust(&["status", "-o", "json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&out), stderr(&out)));
    assert_eq!(status["nodes"][0]["name"], name.as_str());
    assert_eq!(status["nodes"][0]["ready"], "True");
    assert_eq!(status["nodes"][0]["pod_cidr"], cidr);
    assert!(stdout(&server.krust(&["status"])).contains("Ready"));

    // The lease: 40 s, renewed every 10 s.
    let lease_args = ["-n", "kube-node-lease", "get", "lease", &name, "-o", "json"];
    let first = until("the node lease", 30, &server, || json(&server, &lease_args));
    assert_eq!(first["spec"]["leaseDurationSeconds"], 40);
    assert_eq!(first["spec"]["holderIdentity"], name.as_str());
    until("the lease renewed", 30, &server, || {
        let now = json(&server, &lease_args)?;
        (now["spec"]["renewTime"] != first["spec"]["renewTime"]).then_some(())
    });

    // Stopping the server stops containerd and leaves no process of this data dir.
    server.stop();
    assert!(
        !std::path::Path::new(&format!("/proc/{containerd}")).exists(),
        "containerd (pid {containerd}) still runs"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = processes_mentioning(&data_dir);
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "left running: {left:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn disable_agent_registers_no_node_and_starts_no_containerd() {
    let mut server = Server::new(&["--disable-agent"]);
    server.start();
    // Long enough for an agent to have registered, had one started.
    std::thread::sleep(Duration::from_secs(3));
    let out = server.kubectl(&["get", "nodes", "-o", "name"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "");
    assert!(
        processes_mentioning(&format!("{}/containerd", server.data_dir().display())).is_empty()
    );
    assert!(!server.path("containerd").exists());
    assert!(stdout(&server.krust(&["status"])).contains("nodes: none"));
}

/// The node's heartbeat stops with its agent: a server restarted on the same data dir with
/// `--disable-agent` keeps the Node, which the node lifecycle controller turns Unknown after its
/// 40 s grace period and taints unreachable.
#[test]
fn a_node_whose_agent_stopped_turns_not_ready_and_is_tainted() {
    if !is_root() {
        eprintln!("skipped: the node agent needs root");
        return;
    }
    support::isolate_network();
    let mut server = Server::with_agent(&["--eviction-hard", "nodefs.available<1%"]);
    server.start();
    let ready = |server: &Server| {
        let out = server.kubectl(&["get", "nodes", "--no-headers"]);
        stdout(&out).contains(" Ready ").then_some(())
    };
    until("a Ready node", 90, &server, || ready(&server));
    server.stop();
    server.set_agent(false);
    server.start();
    let started = Instant::now();
    let node = until("the node tainted unreachable", 120, &server, || {
        let list = json(&server, &["get", "nodes", "-o", "json"])?;
        let node = list["items"].as_array()?.first()?.clone();
        let tainted = node["spec"]["taints"]
            .as_array()?
            .iter()
            .any(|t| t["key"] == "node.kubernetes.io/unreachable");
        tainted.then_some(node)
    });
    // Not before the grace period: the lease was fresh when the agent stopped.
    assert!(
        started.elapsed() > Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let ready = node["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert_eq!(ready["status"], "Unknown", "{ready}");
    assert_eq!(ready["reason"], "NodeStatusUnknown", "{ready}");
    let table = stdout(&server.kubectl(&["get", "nodes", "--no-headers"]));
    assert!(table.contains("NotReady"), "{table}");
}
