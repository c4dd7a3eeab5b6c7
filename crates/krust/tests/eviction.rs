//! Node pressure and node shutdown as a user of `krust server` sees them, with the real kubectl
//! and containerd, each test in a network namespace of its own:
//! - a soft memory.available threshold above what the machine has free: the Node reports
//!   MemoryPressure at once, the node lifecycle controller taints it
//!   `node.kubernetes.io/memory-pressure:NoSchedule`, and after the grace period the pod using
//!   more than it requested is evicted (Failed, Evicted, an Evicted event) before the one within
//!   its request;
//! - `--shutdown-grace-period`: stopping the server is a node shutdown: the Node turns NotReady
//!   ("node is shutting down") and the pod ends Failed with reason Terminated (without the flag a
//!   restart leaves pods running: workloads.rs);
//! - the control-plane label comes back when the Node is deleted and registered again;
//! - the agent rotates container logs past `--container-log-max-size`, keeping
//!   `--container-log-max-files`, and `kubectl logs` still reads the newest lines.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{stderr, Server};

const BUSYBOX: &str = "localhost/krust/busybox:1.35.0";

fn images_dir() -> PathBuf {
    let dir = std::env::var("KRUST_IMAGES_DIR").unwrap_or("/var/cache/krust-images".into());
    let dir = PathBuf::from(dir);
    if !dir.join("busybox.tar").exists() || !dir.join("pause.tar").exists() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-images.sh");
        let ok = Command::new(script).arg(&dir).status().unwrap();
        assert!(ok.success(), "scripts/build-images.sh failed");
    }
    dir
}

fn can_run_pods() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let tools = [
        "/usr/bin/containerd",
        "/usr/sbin/runc",
        "/usr/lib/cni/bridge",
    ]
    .iter()
    .all(|p| Path::new(p).exists());
    if !(root && tools) {
        eprintln!("skipped: needs root, containerd, runc and the CNI plugins");
    }
    root && tools
}

/// The server with its agent, stopped and cleaned up (leftover shims, mounts) when dropped.
struct Cluster(Server);

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.0.kubectl(&[
            "delete",
            "pods",
            "--all",
            "--grace-period=1",
            "--timeout=30s",
        ]);
        self.0.stop();
        let dir = self.0.data_dir().to_string_lossy().into_owned();
        for (pid, _) in processes_mentioning(&dir) {
            // SAFETY: kill(2) on a process of this test's data dir.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        for mount in mounts.lines().filter_map(|l| l.split(' ').nth(1)) {
            if mount.starts_with(&dir) {
                let _ = Command::new("umount").args(["-l", mount]).status();
            }
        }
    }
}

fn processes_mentioning(needle: &str) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) && pid != std::process::id() as i32 {
            out.push((pid, cmdline));
        }
    }
    out
}

fn cluster(extra: &[&str]) -> Cluster {
    support::isolate_network();
    let mut flags = vec!["--eviction-hard", "nodefs.available<1%"];
    flags.extend_from_slice(extra);
    let mut server = Server::with_agent(&flags);
    let images = server.path("images");
    std::fs::create_dir_all(&images).unwrap();
    for tar in ["busybox.tar", "pause.tar"] {
        std::fs::copy(images_dir().join(tar), images.join(tar)).unwrap();
    }
    server.start();
    let out = server.kubectl_until_ok(
        &[
            "wait",
            "--for=condition=Ready",
            "node",
            "--all",
            "--timeout=5s",
        ],
        90,
    );
    assert!(out.status.success(), "node not Ready: {}", stderr(&out));
    Cluster(server)
}

fn apply(server: &Server, manifest: &Value) {
    let file = server.path(&format!(
        "manifest-{}.json",
        manifest["metadata"]["name"].as_str().unwrap()
    ));
    std::fs::write(&file, manifest.to_string()).unwrap();
    let out = server.kubectl(&["apply", "-f", file.to_str().unwrap()]);
    assert!(out.status.success(), "apply: {}", stderr(&out));
}

fn get_json(server: &Server, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    let out = server.kubectl(&all);
    assert!(out.status.success(), "get {args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn eventually<T>(what: &str, secs: u64, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn condition(node: &Value, type_: &str) -> Value {
    node["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_).cloned())
        .unwrap_or(Value::Null)
}

fn node(server: &Server) -> Value {
    get_json(server, &["nodes"])["items"][0].clone()
}

/// MemAvailable now, bytes.
fn mem_available() -> u64 {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap();
    let line = info
        .lines()
        .find(|l| l.starts_with("MemAvailable:"))
        .unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

fn pod(name: &str, request: Option<&str>, script: &str) -> Value {
    let resources = match request {
        Some(r) => json!({"requests": {"memory": r}}),
        None => json!({}),
    };
    json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {
            "terminationGracePeriodSeconds": 30,
            "tolerations": [{"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"}],
            "volumes": [{"name": "mem", "emptyDir": {"medium": "Memory"}}],
            "containers": [{
                "name": "main", "image": BUSYBOX, "command": ["sh", "-c", script],
                "resources": resources,
                "volumeMounts": [{"name": "mem", "mountPath": "/mem"}]
            }]
        }
    })
}

#[test]
fn memory_pressure_taints_the_node_and_evicts_the_pod_over_its_request_first() {
    if !can_run_pods() {
        return;
    }
    // Soft: the condition is set at once, evictions wait for the grace period, by which time
    // both pods run. 8 GiB above what is free: the pressure is real whatever else runs.
    let threshold = format!("memory.available<{}", mem_available() + (8 << 30));
    let server = cluster(&[
        "--eviction-soft",
        &threshold,
        "--eviction-soft-grace-period",
        "memory.available=40s",
        "--eviction-max-pod-grace-period",
        "2",
    ]);
    let server = &server.0;
    let pressure = condition(&node(server), "MemoryPressure");
    assert_eq!(pressure["status"], "True", "{pressure}");
    assert_eq!(pressure["reason"], "KubeletHasInsufficientMemory");
    eventually("the memory-pressure taint", 30, || {
        let taints = node(server)["spec"]["taints"].clone();
        taints
            .as_array()?
            .iter()
            .any(|t| {
                t["key"] == "node.kubernetes.io/memory-pressure" && t["effect"] == "NoSchedule"
            })
            .then_some(())
    });

    // The kubelet's node event for the transition, as `kubectl describe node` lists it.
    eventually("the NodeHasInsufficientMemory event", 30, || {
        let events = get_json(
            server,
            &[
                "events",
                "--field-selector",
                "reason=NodeHasInsufficientMemory",
            ],
        );
        let event = events["items"].as_array()?.first()?.clone();
        (event["involvedObject"]["kind"] == "Node").then_some(())
    });

    apply(server, &pod("within", Some("1Gi"), "exec sleep 3600"));
    apply(
        server,
        &pod(
            "greedy",
            None,
            "dd if=/dev/zero of=/mem/fill bs=1M count=64 && exec sleep 3600",
        ),
    );
    for name in ["within", "greedy"] {
        let out = server.kubectl(&[
            "wait",
            "--for=condition=Ready",
            &format!("pod/{name}"),
            "--timeout=60s",
        ]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
    }
    let greedy = eventually("greedy evicted", 90, || {
        let p = get_json(server, &["pod", "greedy"]);
        (p["status"]["phase"] == "Failed").then_some(p)
    });
    let within = get_json(server, &["pod", "within"]);
    assert_eq!(within["status"]["phase"], "Running", "{}", within["status"]);
    assert_eq!(greedy["status"]["reason"], "Evicted");
    let message = greedy["status"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("The node was low on resource: memory. Threshold quantity: "),
        "{message}"
    );
    assert!(message.contains("Container main was using "), "{message}");
    let events = get_json(
        server,
        &[
            "events",
            "--field-selector",
            "involvedObject.name=greedy,reason=Evicted",
        ],
    );
    assert_eq!(events["items"][0]["type"], "Warning", "{events}");
}

#[test]
fn with_a_shutdown_grace_period_stopping_the_server_ends_the_pods() {
    if !can_run_pods() {
        return;
    }
    let mut cluster = cluster(&[
        "--shutdown-grace-period",
        "8s",
        "--shutdown-grace-period-critical-pods",
        "3s",
    ]);
    let server = &mut cluster.0;
    apply(
        server,
        &json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sleeper"},
            "spec": {
                "terminationGracePeriodSeconds": 30,
                "containers": [{"name": "main", "image": BUSYBOX, "command": ["sleep", "3600"]}]
            }
        }),
    );
    let out = server.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "pod/sleeper",
        "--timeout=60s",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let kubeconfig = server.path("credentials/client.config");
    let started = Instant::now();
    // The node goes NotReady while the server ends its pods (PID 1 sleep ignores SIGTERM, so
    // the pod takes its 5 s share).
    let watcher = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let out = Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .args(["get", "nodes", "-o", "json"])
                .output()
                .unwrap();
            if let Ok(list) = serde_json::from_slice::<Value>(&out.stdout) {
                let ready = condition(&list["items"][0], "Ready");
                if ready["status"] == "False" {
                    return Some(ready);
                }
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        None
    });
    server.stop();
    let stopped_after = started.elapsed();
    let ready = watcher
        .join()
        .unwrap()
        .expect("the node turned NotReady during the shutdown");
    assert_eq!(ready["message"], "node is shutting down", "{ready}");
    assert!(
        stopped_after >= Duration::from_secs(4),
        "stopped after {stopped_after:?}"
    );

    // Failed with upstream's reason, its container stopped, once the server is back.
    server.start();
    let pod = get_json(server, &["pod", "sleeper"]);
    let status = &pod["status"];
    assert_eq!(status["phase"], "Failed", "{status}");
    assert_eq!(status["reason"], "Terminated");
    assert_eq!(
        status["message"],
        "Pod was terminated in response to imminent node shutdown."
    );
    assert!(
        status["containerStatuses"][0]["state"]["terminated"].is_object(),
        "{status}"
    );
}

#[test]
fn the_control_plane_label_comes_back_after_the_node_registers_again() {
    if !can_run_pods() {
        return;
    }
    let cluster = cluster(&[]);
    let server = &cluster.0;
    let name = node(server)["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    eventually("the control-plane label", 30, || {
        node(server)["metadata"]["labels"]
            .get("node-role.kubernetes.io/control-plane")
            .map(|_| ())
    });
    let out = server.kubectl(&["delete", "node", &name]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The agent registers the node again (its next status round) and the server labels it.
    eventually("the node registered again with its label", 60, || {
        let out = server.kubectl(&["get", "node", &name, "-o", "json"]);
        let node: Value = serde_json::from_slice(&out.stdout).ok()?;
        node["metadata"]["labels"]
            .get("node-role.kubernetes.io/control-plane")
            .map(|_| ())
    });
}

#[test]
fn the_agent_rotates_container_logs_past_the_max_size() {
    if !can_run_pods() {
        return;
    }
    let cluster = cluster(&[
        "--container-log-max-size",
        "256Ki",
        "--container-log-max-files",
        "3",
    ]);
    let server = &cluster.0;
    // About 1.2 MB of log in 1 KB lines, then quiet.
    let line = "x".repeat(1000);
    let script = format!(
        "i=0; while [ $i -lt 1200 ]; do echo \"line-$i {line}\"; i=$((i+1)); done; \
         sleep 25; echo after-rotation; exec sleep 3600"
    );
    apply(
        server,
        &json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "chatty"},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "main", "image": BUSYBOX, "command": ["sh", "-c", script]}]
            }
        }),
    );
    let out = server.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "pod/chatty",
        "--timeout=60s",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let pod = get_json(server, &["pod", "chatty"]);
    let uid = pod["metadata"]["uid"].as_str().unwrap();
    let dir = server.path(&format!("logs/pods/default_chatty_{uid}/main"));
    // The rotation looks every 10 s: a rotated file appears, at most 3 files stay.
    let files = eventually("a rotated log", 60, || {
        let names: Vec<String> = std::fs::read_dir(&dir)
            .ok()?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names
            .iter()
            .any(|n| n.starts_with("0.log."))
            .then_some(names)
    });
    assert!(files.len() <= 3, "{files:?}");
    assert!(files.iter().any(|n| n == "0.log"), "{files:?}");
    // kubectl logs reads the current file, as upstream's: what was written after the rotation.
    eventually("the newest line through kubectl logs", 60, || {
        let out = server.kubectl(&["logs", "chatty", "--tail=1"]);
        (support::stdout(&out).trim() == "after-rotation").then_some(())
    });
}
