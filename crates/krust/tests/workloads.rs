//! Issue 8's "must show", as a user sees it: `krust server` with its node agent on a real
//! containerd, driven by the real kubectl. Each test runs in a network namespace of its own (the
//! CNI bridge, iptables rules and pod addresses never reach the host), with the locally built
//! busybox and pause images dropped into the data dir's `images/` so the agent imports them.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{stderr, stdout, Server};

const BUSYBOX: &str = "localhost/krust/busybox:1.35.0";

fn images_dir() -> std::path::PathBuf {
    let dir = std::env::var("KRUST_IMAGES_DIR").unwrap_or("/var/cache/krust-images".into());
    let dir = std::path::PathBuf::from(dir);
    if !dir.join("busybox.tar").exists() || !dir.join("pause.tar").exists() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-images.sh");
        let ok = Command::new(script).arg(&dir).status().unwrap();
        assert!(ok.success(), "scripts/build-images.sh failed");
    }
    dir
}

/// Whether this machine can run pods (root with containerd and runc); says why not.
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

/// A server with its node agent; when dropped it deletes every workload (so the agent stops their
/// containers, which outlive the server by design), stops the server and kills whatever is left
/// that mentions its data dir (shims of containers the agent did not get to).
struct Cluster(Server);

impl std::ops::Deref for Cluster {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.0
    }
}

impl std::ops::DerefMut for Cluster {
    fn deref_mut(&mut self) -> &mut Server {
        &mut self.0
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.0.kubectl(&[
            "delete",
            "deployments,jobs,pods",
            "--all",
            "--grace-period=1",
            "--timeout=60s",
        ]);
        self.0.stop();
        let dir = self.0.data_dir().to_string_lossy().into_owned();
        let _ = Command::new("pkill").args(["-9", "-f", &dir]).status();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        for mount in mounts.lines().filter_map(|l| l.split(' ').nth(1)) {
            if mount.starts_with(&dir) {
                let _ = Command::new("umount").args(["-l", mount]).status();
            }
        }
    }
}

/// A server with its node agent, in this test's own network namespace, with the node Ready.
fn cluster() -> Cluster {
    support::isolate_network();
    // Shared CI disks run fuller than the default 5% threshold allows; DiskPressure would taint
    // the node and nothing would schedule.
    let mut server = Server::with_agent(&["--eviction-hard", "nodefs.available<1%"]);
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
    let file = server.path(&format!("manifest-{}.json", rand_suffix()));
    std::fs::write(&file, manifest.to_string()).unwrap();
    let out = server.kubectl(&["apply", "-f", file.to_str().unwrap()]);
    assert!(out.status.success(), "apply: {}", stderr(&out));
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn get_json(server: &Server, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    let out = server.kubectl(&all);
    assert!(out.status.success(), "get {args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Polls `check` every half second until it gives a value, for up to `secs`.
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

fn pod(name: &str, spec: Value) -> Value {
    serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
}

fn container_status(server: &Server, pod: &str) -> Value {
    let p = get_json(server, &["pod", pod]);
    p["status"]["containerStatuses"][0].clone()
}

#[test]
fn a_deployment_runs_and_serves_logs_exec_port_forward_and_cp() {
    if !can_run_pods() {
        return;
    }
    let server = cluster();
    let script = "mkdir -p /www && echo hello-from-pod > /www/index.html && echo started && exec httpd -f -p 8080 -h /www";
    apply(
        &server,
        &serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "web", "image": BUSYBOX,
                        "command": ["sh", "-c", script],
                        "ports": [{"containerPort": 8080}]}]}}}
        }),
    );
    let out = server.kubectl(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    assert!(out.status.success(), "rollout: {}", stderr(&out));
    let pods = get_json(&server, &["pods", "-l", "app=web"]);
    let items = pods["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    for p in items {
        assert_eq!(p["status"]["phase"], "Running", "{p}");
        let ip = p["status"]["podIP"].as_str().unwrap();
        assert!(ip.starts_with("10."), "pod IP {ip} from the pod range");
    }
    let name = items[0]["metadata"]["name"].as_str().unwrap().to_string();

    let logs = eventually("the pod's log", 30, || {
        let out = server.kubectl(&["logs", &name]);
        stdout(&out).contains("started").then_some(stdout(&out))
    });
    assert_eq!(logs.trim(), "started");

    let out = server.kubectl(&["exec", &name, "--", "sh", "-c", "echo hi-$((1+2))"]);
    assert!(out.status.success(), "exec: {}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "hi-3");

    assert_eq!(
        port_forward_get(&server, &name, 8080).trim(),
        "hello-from-pod"
    );

    let copy = server.path("copied.html");
    let out = server.kubectl(&[
        "cp",
        &format!("{name}:/www/index.html"),
        copy.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "cp: {}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(&copy).unwrap().trim(),
        "hello-from-pod"
    );
}

/// Runs `kubectl port-forward` to the pod and fetches `/` through it.
fn port_forward_get(server: &Server, pod: &str, port: u16) -> String {
    let local = support::free_port();
    let mut forward: Child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(server.path("credentials/client.config"))
        .args([
            "port-forward",
            &format!("pod/{pod}"),
            &format!("{local}:{port}"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let body = eventually("an answer through port-forward", 30, || {
        let mut conn = TcpStream::connect(("127.0.0.1", local)).ok()?;
        conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        conn.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
        let mut answer = String::new();
        conn.read_to_string(&mut answer).ok()?;
        answer
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_string())
    });
    let _ = forward.kill();
    let _ = forward.wait();
    body
}

#[test]
fn a_pod_sees_its_configmap_volume_secret_env_and_downward_api() {
    if !can_run_pods() {
        return;
    }
    let server = cluster();
    for args in [
        vec![
            "create",
            "configmap",
            "settings",
            "--from-literal=color=blue",
        ],
        vec![
            "create",
            "secret",
            "generic",
            "creds",
            "--from-literal=password=s3cret",
        ],
    ] {
        let out = server.kubectl(&args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    let script = "echo color=$(cat /etc/settings/color); echo password=$PASSWORD; echo node=$NODE; echo name=$(cat /etc/podinfo/name); sleep 3600";
    apply(
        &server,
        &pod(
            "reader",
            serde_json::json!({
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "c", "image": BUSYBOX, "command": ["sh", "-c", script],
                    "env": [
                        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                    "volumeMounts": [
                        {"name": "settings", "mountPath": "/etc/settings"},
                        {"name": "podinfo", "mountPath": "/etc/podinfo"}]}],
                "volumes": [
                    {"name": "settings", "configMap": {"name": "settings"}},
                    {"name": "podinfo", "downwardAPI": {"items": [
                        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}}]
            }),
        ),
    );
    let node = get_json(&server, &["nodes"])["items"][0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let logs = eventually("the reader's output", 90, || {
        let out = server.kubectl(&["logs", "reader"]);
        stdout(&out).contains("name=").then(|| stdout(&out))
    });
    assert_eq!(
        logs.lines().collect::<Vec<_>>(),
        [
            "color=blue",
            "password=s3cret",
            &format!("node={node}"),
            "name=reader"
        ]
    );
    // The configMap volume follows the object.
    let out = server.kubectl(&[
        "patch",
        "configmap",
        "settings",
        "-p",
        r#"{"data":{"color":"green"}}"#,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    eventually("the updated configMap in the volume", 120, || {
        let out = server.kubectl(&["exec", "reader", "--", "cat", "/etc/settings/color"]);
        (stdout(&out).trim() == "green").then_some(())
    });
}

#[test]
fn a_failing_liveness_probe_restarts_the_container() {
    if !can_run_pods() {
        return;
    }
    let server = cluster();
    apply(
        &server,
        &pod(
            "live",
            serde_json::json!({
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "c", "image": BUSYBOX,
                    "command": ["sh", "-c", "touch /tmp/healthy; sleep 4; rm /tmp/healthy; sleep 3600"],
                    "livenessProbe": {"exec": {"command": ["cat", "/tmp/healthy"]},
                        "periodSeconds": 1, "failureThreshold": 2}}]
            }),
        ),
    );
    let status = eventually("a restart by the liveness probe", 90, || {
        let s = container_status(&server, "live");
        (s["restartCount"].as_i64() >= Some(1)).then_some(s)
    });
    assert_eq!(
        status["lastState"]["terminated"]["exitCode"], 137,
        "{status}"
    );
    let events = stdout(&server.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=live",
    ]));
    assert!(events.contains("Liveness probe failed"), "{events}");
}

#[test]
fn a_crashing_container_backs_off_and_keeps_its_previous_log() {
    if !can_run_pods() {
        return;
    }
    let server = cluster();
    apply(
        &server,
        &pod(
            "crash",
            serde_json::json!({
                "containers": [{"name": "c", "image": BUSYBOX,
                    "command": ["sh", "-c", "echo run-at-$(date +%s%N); exit 3"]}]
            }),
        ),
    );
    let status = eventually("CrashLoopBackOff after two restarts", 120, || {
        let s = container_status(&server, "crash");
        let waiting = s["state"]["waiting"]["reason"] == "CrashLoopBackOff";
        (waiting && s["restartCount"].as_i64() >= Some(2)).then_some(s)
    });
    assert_eq!(status["lastState"]["terminated"]["exitCode"], 3, "{status}");
    let message = status["state"]["waiting"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("back-off 20s restarting failed container=c pod=crash_default("),
        "{message}"
    );
    let previous = stdout(&server.kubectl(&["logs", "crash", "--previous"]));
    assert!(previous.starts_with("run-at-"), "{previous}");
}

#[test]
fn deleting_a_pod_stops_it_within_its_grace_period() {
    if !can_run_pods() {
        return;
    }
    let server = cluster();
    // sleep as PID 1 ignores SIGTERM: only the kill at the end of the grace period stops it.
    apply(
        &server,
        &pod(
            "stubborn",
            serde_json::json!({
                "terminationGracePeriodSeconds": 3,
                "containers": [{"name": "c", "image": BUSYBOX, "command": ["sleep", "31415"]}]
            }),
        ),
    );
    let out = server.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "pod/stubborn",
        "--timeout=90s",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let start = Instant::now();
    let out = server.kubectl(&["delete", "pod", "stubborn", "--timeout=30s"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "deleted after {took:?}, before the grace period"
    );
    assert!(took < Duration::from_secs(15), "deleted after {took:?}");
    let left = Command::new("pgrep")
        .args(["-f", "sleep 31415"])
        .output()
        .unwrap();
    assert!(
        stdout(&left).trim().is_empty(),
        "still running: {}",
        stdout(&left)
    );
}

#[test]
fn a_job_pod_exits_zero_and_the_job_completes() {
    if !can_run_pods() {
        return;
    }
    let server = cluster();
    let out = server.kubectl(&[
        "create",
        "job",
        "once",
        &format!("--image={BUSYBOX}"),
        "--",
        "sh",
        "-c",
        "echo done",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = server.kubectl(&[
        "wait",
        "--for=condition=Complete",
        "job/once",
        "--timeout=120s",
    ]);
    assert!(out.status.success(), "job: {}", stderr(&out));
    let logs = stdout(&server.kubectl(&["logs", "job/once"]));
    assert_eq!(logs.trim(), "done");
}

#[test]
fn a_restarted_server_adopts_running_pods_without_restarting_them() {
    if !can_run_pods() {
        return;
    }
    let mut server = cluster();
    apply(
        &server,
        &pod(
            "steady",
            serde_json::json!({
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "c", "image": BUSYBOX, "command": ["sleep", "3600"]}]
            }),
        ),
    );
    let out = server.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "pod/steady",
        "--timeout=90s",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let before = container_status(&server, "steady");
    server.stop();
    server.start();
    std::thread::sleep(Duration::from_secs(5));
    let after = container_status(&server, "steady");
    assert_eq!(after["containerID"], before["containerID"], "{after}");
    assert_eq!(after["restartCount"], 0, "{after}");
    assert!(after["state"]["running"].is_object(), "{after}");
}
