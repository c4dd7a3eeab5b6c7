//! `krust add-node` and `krust agent` from the outside: a `krust server --disable-agent` and a
//! `krust agent` with its own data dir and ports joining it over loopback with the printed
//! token, in the test's own network namespace. The node registers and turns Ready, a pod runs
//! on it (and `kubectl logs` reaches its kubelet through the API server), the CSRs are
//! Approved and Issued, the kubelet certificate is `system:node:NAME` in `system:nodes`, and a
//! restart reuses it. Wrong and expired tokens are refused with 401, a CA mismatch before the
//! token is sent, each with one sentence and exit code 1.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{free_port, stderr, stdout, Server, KRUST};

const NODE: &str = "joined-node";

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn can_run_pods() -> bool {
    let tools = [
        "/usr/bin/containerd",
        "/usr/sbin/runc",
        "/usr/lib/cni/bridge",
    ];
    let ok = is_root() && tools.iter().all(|p| Path::new(p).exists());
    if !ok {
        eprintln!("skipped: needs root, containerd, runc and the CNI plugins");
    }
    ok
}

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

/// `krust add-node` on the server: the printed server URL and token.
fn add_node(server: &Server, ttl: &str) -> (String, String) {
    let out = server.krust(&["add-node", "--ttl", ttl]);
    assert!(out.status.success(), "add-node: {}", stderr(&out));
    let text = stdout(&out);
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("krust agent --server https://"))
        .unwrap_or_else(|| panic!("no join command in:\n{text}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |flag: &str| {
        let i = words.iter().position(|w| *w == flag).unwrap();
        words[i + 1].to_string()
    };
    let token = after("--token");
    assert!(token.starts_with("K10"), "{token}");
    // The printed address is the machine's; in this namespace the server is on loopback.
    let url = format!("https://127.0.0.1:{}", server.api_port);
    (url, token)
}

/// The bootstrap token inside a join token.
fn bootstrap_token(join: &str) -> &str {
    join.split_once("::").unwrap().1
}

/// A `krust agent` process with its own data dir and free ports.
struct Agent {
    dir: tempfile::TempDir,
    ports: Vec<String>,
    child: Option<Child>,
}

impl Agent {
    fn new() -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().join("images");
        std::fs::create_dir_all(&images).unwrap();
        for tar in ["busybox.tar", "pause.tar"] {
            std::fs::copy(images_dir().join(tar), images.join(tar)).unwrap();
        }
        let ports = ["kubelet", "kubelet-healthz", "containerd-metrics"]
            .iter()
            .flat_map(|k| ["--port".to_string(), format!("{k}={}", free_port())])
            .chain(["--port".to_string(), "kubelet-readonly=off".to_string()])
            .collect();
        Agent {
            dir,
            ports,
            child: None,
        }
    }

    fn command(&self, join: Option<(&str, &str)>) -> Command {
        let mut cmd = Command::new(KRUST);
        cmd.arg("agent")
            .arg("--data-dir")
            .arg(self.dir.path())
            .args(["--node-name", NODE])
            // Shared CI disks run fuller than the default 5% threshold allows.
            .args(["--eviction-hard", "nodefs.available<1%"])
            .args(&self.ports);
        if let Some((url, token)) = join {
            cmd.args(["--server", url, "--token", token]);
        }
        cmd
    }

    fn start(&mut self, join: Option<(&str, &str)>) {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = self
            .command(join)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("agent.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// SIGTERM, then waits (SIGKILL after 20 s).
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on the pid of our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Agent {
    /// Stops the agent, then kills by PID what still runs from its data dir (the shims of
    /// containers, which outlive the agent by design) and unmounts what is left under it.
    fn drop(&mut self) {
        self.stop();
        let dir = self.dir.path().to_string_lossy().into_owned();
        for pid in processes_mentioning(&dir) {
            // SAFETY: kill(2) on a process started under this test's data dir.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        for mount in mounts.lines().filter_map(|l| l.split(' ').nth(1)) {
            if mount.starts_with(&dir) {
                let _ = Command::new("umount").args(["-l", mount]).status();
            }
        }
    }
}

fn processes_mentioning(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .collect()
}

fn eventually<T>(what: &str, secs: u64, diag: impl Fn() -> String, f: impl Fn() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            diag()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn json(server: &Server, args: &[&str]) -> Option<Value> {
    let out = server.kubectl(args);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

/// The HTTP status the API server answers a request with this bearer token.
fn status_with_token(server: &Server, token: &str) -> String {
    let out = Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .arg(server.url("/apis/certificates.k8s.io/v1/certificatesigningrequests"))
        .output()
        .unwrap();
    stdout(&out)
}

/// A CSR for the kubelet client signer (not a node's name: nobody approves it) created with
/// `token`, as the API server stored it.
fn csr_with_token(server: &Server, token: &str) -> Value {
    let (_, request) = pki::new_request("not-a-node", "system:nodes", &[]).unwrap();
    let csr = serde_json::json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"generateName": "test-csr-"},
        "spec": {
            "request": base64_encode(request.as_bytes()),
            "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
            "usages": ["digital signature", "client auth"],
        },
    });
    let out = Command::new("curl")
        .args(["-sk", "-X", "POST", "-H", "Content-Type: application/json"])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args(["--data-binary", &csr.to_string()])
        .arg(server.url("/apis/certificates.k8s.io/v1/certificatesigningrequests"))
        .output()
        .unwrap();
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(created["kind"], "CertificateSigningRequest", "{created:#}");
    created
}

/// POSTs a CSR for `subject` (CN, O) to `signer` with `token`: the status code and answer.
fn post_csr(server: &Server, token: &str, subject: (&str, &str), signer: &str) -> (String, String) {
    let (_, request) = pki::new_request(subject.0, subject.1, &[]).unwrap();
    let csr = serde_json::json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"generateName": "test-csr-"},
        "spec": {
            "request": base64_encode(request.as_bytes()),
            "signerName": signer,
            "usages": ["digital signature", "client auth"],
        },
    });
    let out = Command::new("curl")
        .args(["-sk", "-X", "POST", "-H", "Content-Type: application/json"])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args(["--data-binary", &csr.to_string()])
        .args(["-w", "\n%{http_code}"])
        .arg(server.url("/apis/certificates.k8s.io/v1/certificatesigningrequests"))
        .output()
        .unwrap();
    let text = stdout(&out);
    let (body, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
    (code.to_string(), body.to_string())
}

/// PUT `body` to `path` with `token`: the status code and the answer.
fn put_with_token(server: &Server, token: &str, path: &str, body: &Value) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sk", "-X", "PUT", "-H", "Content-Type: application/json"])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args(["--data-binary", &body.to_string()])
        .args(["-w", "\n%{http_code}"])
        .arg(server.url(path))
        .output()
        .unwrap();
    let text = stdout(&out);
    let (body, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
    (code.to_string(), body.to_string())
}

fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Runs `krust agent` to its end (it must fail fast); its output.
fn failing_agent(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(KRUST)
        .arg("agent")
        .arg("--data-dir")
        .arg(dir.path())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("krust agent kept running although it should have failed");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// Exit code 1 and exactly one error sentence (`krust: ...`) that says `expected`.
fn assert_refused(out: &Output, expected: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("krust:")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(errors[0].contains(expected), "{err}");
}

#[test]
fn an_agent_joins_with_a_token_registers_a_ready_node_and_runs_a_pod() {
    if !can_run_pods() {
        return;
    }
    support::isolate_network();
    let mut server = Server::new(&[]);
    server.start();
    let (url, token) = add_node(&server, "1h");
    let mut agent = Agent::new();
    agent.start(Some((&url, &token)));
    let log_path = agent.log_path();
    let diag = || {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        format!("--- agent log ---\n{log}")
    };

    // Ready, as the joined node.
    let out = server.kubectl_until_ok(
        &[
            "wait",
            "--for=condition=Ready",
            &format!("node/{NODE}"),
            "--timeout=5s",
        ],
        120,
    );
    assert!(
        out.status.success(),
        "node not Ready: {}\n{}",
        stderr(&out),
        diag()
    );
    let log = agent.log();
    assert!(
        log.contains("The server presents the pinned cluster CA"),
        "{log}"
    );
    assert!(log.contains("approved and issued"), "{log}");

    // Both requests Approved and Issued: the client one made with the token, the serving one
    // by the node itself.
    let csrs = json(&server, &["get", "csr", "-o", "json"]).unwrap();
    let items = csrs["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{csrs:#}");
    let id = bootstrap_token(&token).split('.').next().unwrap();
    for csr in items {
        let signer = csr["spec"]["signerName"].as_str().unwrap();
        let requester = csr["spec"]["username"].as_str().unwrap();
        match signer {
            "kubernetes.io/kube-apiserver-client-kubelet" => {
                assert_eq!(requester, format!("system:bootstrap:{id}"));
                let groups = csr["spec"]["groups"].to_string();
                assert!(
                    groups.contains("system:bootstrappers:krust:default-node-token"),
                    "{groups}"
                );
            }
            "kubernetes.io/kubelet-serving" => assert_eq!(requester, format!("system:node:{NODE}")),
            other => panic!("unexpected signer {other}"),
        }
        let approved = csr["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Approved" && c["reason"] == "AutoApproved");
        assert!(approved, "{csr:#}");
        assert!(!csr["status"]["certificate"]
            .as_str()
            .unwrap_or("")
            .is_empty());
    }
    let table = stdout(&server.kubectl(&["get", "csr"]));
    assert_eq!(table.matches("Approved,Issued").count(), 2, "{table}");

    // The kubelet's client certificate: system:node:NAME in system:nodes, signed by the CA.
    let info = pki::inspect(&agent.dir.path().join("certs/kubelet-client.crt")).unwrap();
    assert!(
        info.subject.contains(&format!("CN=system:node:{NODE}")),
        "{}",
        info.subject
    );
    assert!(info.subject.contains("O=system:nodes"), "{}", info.subject);
    let ca = std::fs::read(agent.dir.path().join("certs/ca.crt")).unwrap();
    assert_eq!(ca, std::fs::read(server.path("certs/ca.crt")).unwrap());

    // A pod runs on it, and its log comes through the API server from the node's kubelet
    // (serving certificate checked against the cluster CA).
    let out = server.kubectl(&[
        "run",
        "hello",
        "--image=localhost/krust/busybox:1.35.0",
        "--image-pull-policy=Never",
        "--restart=Never",
        "--",
        "sh",
        "-c",
        "echo hello from the joined node; sleep 3600",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = server.kubectl_until_ok(
        &["wait", "--for=condition=Ready", "pod/hello", "--timeout=5s"],
        120,
    );
    assert!(
        out.status.success(),
        "pod not Ready: {}\n{}",
        stderr(&out),
        diag()
    );
    let pod = json(&server, &["get", "pod", "hello", "-o", "json"]).unwrap();
    assert_eq!(pod["spec"]["nodeName"], NODE);
    let logs = eventually("the pod's log", 30, diag, || {
        let out = stdout(&server.kubectl(&["logs", "hello"]));
        out.contains("hello from the joined node").then_some(out)
    });
    assert!(logs.contains("hello"));

    // A restart reuses the certificates: no token, no new request, the node stays Ready.
    agent.stop();
    agent.start(None);
    eventually("the restarted agent", 60, diag, || {
        agent
            .log()
            .contains("Using the credentials of an earlier join")
            .then_some(())
    });
    let out = server.kubectl_until_ok(
        &[
            "wait",
            "--for=condition=Ready",
            &format!("node/{NODE}"),
            "--timeout=5s",
        ],
        60,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let csrs = json(&server, &["get", "csr", "-o", "json"]).unwrap();
    assert_eq!(csrs["items"].as_array().unwrap().len(), 2);
    let _ = server.kubectl(&[
        "delete",
        "pod",
        "hello",
        "--grace-period=1",
        "--timeout=60s",
    ]);
}

#[test]
fn wrong_expired_and_mispinned_tokens_are_refused() {
    let audit = tempfile::tempdir().unwrap();
    let audit_log = audit.path().join("audit.log");
    let mut server = Server::new(&["--audit-log", audit_log.to_str().unwrap()]);
    server.start();
    let (url, token) = add_node(&server, "1h");
    let (hash, bootstrap) = token.split_once("::").unwrap();
    let (id, secret) = bootstrap.split_once('.').unwrap();

    // The right token authenticates; a wrong secret is refused with 401 and by the agent.
    let ok = status_with_token(&server, bootstrap);
    assert!(ok == "200" || ok == "403", "a valid token got {ok}");
    let wrong = format!("{id}.{}", "0".repeat(16));
    assert_ne!(wrong, bootstrap);
    assert_eq!(status_with_token(&server, &wrong), "401");
    let out = failing_agent(&["--server", &url, "--token", &format!("{hash}::{wrong}")]);
    assert_refused(&out, "refused the join token");

    // The token may ask for a certificate but not approve one: RBAC refuses the approval
    // subresource, and with it allowed, CertificateApproval admission still wants `approve` on
    // the signer.
    let csr = csr_with_token(&server, bootstrap);
    let name = csr["metadata"]["name"].as_str().unwrap().to_string();
    let mut approved = csr.clone();
    // No precondition: the write goes over whatever is stored.
    approved["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    approved["status"] = serde_json::json!({"conditions": [{"type": "Approved", "status": "True",
        "reason": "SelfApproved", "message": "no"}]});
    let (code, body) = put_with_token(
        &server,
        bootstrap,
        &format!("/apis/certificates.k8s.io/v1/certificatesigningrequests/{name}/approval"),
        &approved,
    );
    assert_eq!(code, "403", "{body}");
    assert!(body.contains("cannot update resource"), "{body}");
    for args in [
        &[
            "create",
            "clusterrole",
            "csr-approval-writer",
            "--verb=update",
            "--resource=certificatesigningrequests.certificates.k8s.io/approval",
        ][..],
        &[
            "create",
            "clusterrolebinding",
            "csr-approval-writer",
            "--clusterrole=csr-approval-writer",
            "--group=system:bootstrappers",
        ][..],
    ] {
        let out = server.kubectl(args);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let (code, body) = eventually("the binding to apply", 10, String::new, || {
        let (code, body) = put_with_token(
            &server,
            bootstrap,
            &format!("/apis/certificates.k8s.io/v1/certificatesigningrequests/{name}/approval"),
            &approved,
        );
        (!body.contains("cannot update resource")).then_some((code, body))
    });
    assert_eq!(code, "403", "{body}");
    assert!(
        body.contains("user not permitted to approve requests with signerName"),
        "{body}"
    );
    let _ = server.kubectl(&["delete", "csr", &name]);

    // Nobody may ask for a system:masters client certificate (CertificateSubjectRestriction).
    let (code, body) = post_csr(
        &server,
        bootstrap,
        ("admin", "system:masters"),
        "kubernetes.io/kube-apiserver-client",
    );
    assert_eq!(code, "403", "{body}");
    assert!(
        body.contains("use of kubernetes.io/kube-apiserver-client signer with system:masters group is not allowed"),
        "{body}"
    );

    // A token past its TTL is refused the same way, and the token cleaner deletes it.
    let (_, short) = add_node(&server, "2s");
    let short_bootstrap = bootstrap_token(&short).to_string();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(status_with_token(&server, &short_bootstrap), "401");
    let out = failing_agent(&["--server", &url, "--token", &short]);
    assert_refused(&out, "refused the join token");
    let short_id = short_bootstrap.split('.').next().unwrap();
    let secret_name = format!("secret/bootstrap-token-{short_id}");
    eventually("the token cleaner", 30, String::new, || {
        let out = server.kubectl(&["get", "-n", "kube-system", &secret_name]);
        stderr(&out).contains("NotFound").then_some(())
    });

    // A CA hash that is not the cluster CA's: refused before anything is sent, so the valid
    // token never reaches the server (no request of system:bootstrap:<id> in the audit log).
    let flipped = if hash.ends_with('0') { "1" } else { "0" };
    let mispinned = format!("{}{flipped}::{id}.{secret}", &hash[..hash.len() - 1]);
    let before = std::fs::read_to_string(&audit_log).unwrap_or_default();
    let out = failing_agent(&["--server", &url, "--token", &mispinned]);
    assert_refused(&out, "does not present the cluster CA the join token pins");
    std::thread::sleep(Duration::from_secs(1));
    let after = std::fs::read_to_string(&audit_log).unwrap_or_default();
    let user = format!("system:bootstrap:{id}");
    let new_events = &after[before.len().min(after.len())..];
    assert!(
        !new_events.contains(&user),
        "the token was sent: {new_events}"
    );
    let csrs = json(&server, &["get", "csr", "-o", "json"]).unwrap();
    assert!(csrs["items"].as_array().unwrap().is_empty(), "{csrs:#}");

    // Nothing listening, and a malformed token: one sentence each.
    let closed = format!("https://127.0.0.1:{}", free_port());
    let out = failing_agent(&["--server", &closed, "--token", &token]);
    assert_refused(&out, "cannot reach the server");
    let out = failing_agent(&["--server", &url, "--token", bootstrap]);
    assert_refused(&out, "the join token is malformed");
    let out = failing_agent(&[]);
    assert_refused(&out, "has not joined a cluster yet");
}
