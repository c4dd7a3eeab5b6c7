//! exec, attach, cp and port-forward as current kubectl does them: WebSocket first (remote
//! command `v5.channel.k8s.io` from 1.30, port-forward's SPDY tunnelled over WebSocket from
//! 1.31), SPDY for older ones, through `krust server` and its node agent on a real containerd.
//! kubectl's `-v=6` output tells which path a command took: "The subprotocol is
//! v5.channel.k8s.io" or "negotiated protocol: portforward.k8s.io" after a `101`, and
//! "fallback" if it had to retry with SPDY. A tokio-tungstenite client checks the v5 protocol
//! itself. Each test runs in a network namespace of its own.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use support::{stderr, stdout, Server};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

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

/// Whether this machine can run pods (root with containerd, runc and the kubectl versions
/// used here); says why not.
fn can_run_pods() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let tools = [
        "/usr/bin/containerd",
        "/usr/sbin/runc",
        "/usr/lib/cni/bridge",
    ]
    .into_iter()
    .map(PathBuf::from)
    .chain(["1.27", "1.30", "1.33"].map(kubectl_path))
    .all(|p| p.exists());
    if !(root && tools) {
        eprintln!(
            "skipped: needs root, containerd, runc, the CNI plugins and kubectl 1.27/1.30/1.33"
        );
    }
    root && tools
}

fn kubectl_path(version: &str) -> PathBuf {
    PathBuf::from(format!("/usr/lib/google-cloud-sdk/bin/kubectl.{version}"))
}

/// A server with its node agent and the node Ready; when dropped it deletes the pods (so the
/// agent stops their containers, which outlive the server by design), stops the server, and
/// kills by PID whatever is left that runs from its data dir (shims the agent did not stop).
struct Cluster(Server);

impl std::ops::Deref for Cluster {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.0
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.0.kubectl(&[
            "delete",
            "pods",
            "--all",
            "--grace-period=1",
            "--timeout=60s",
        ]);
        self.0.stop();
        let dir = self.0.data_dir().to_string_lossy().into_owned();
        for pid in processes_mentioning(&dir) {
            // SAFETY: signalling a process started for this test's own data dir, by its PID.
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

/// PIDs whose command line names `dir` (the data dir is a fresh temporary directory).
fn processes_mentioning(dir: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(dir))
                .unwrap_or(false)
        })
        .collect()
}

fn cluster() -> Cluster {
    support::isolate_network();
    // Shared CI disks run fuller than the default 5% threshold allows.
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

/// Creates the pods the tests use and waits until they are Ready: `web` serves /www on 8080,
/// `talker` answers each line on its stdin on stdout and stderr.
fn pods(server: &Server) {
    let web = "mkdir -p /www && echo served > /www/index.html && exec httpd -f -p 8080 -h /www";
    let talker = "while read l; do echo got-$l; echo err-$l >&2; done";
    for (name, script, stdin) in [("web", web, false), ("talker", talker, true)] {
        let pod = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                "name": "c", "image": BUSYBOX, "stdin": stdin,
                "command": ["sh", "-c", script]}]}
        });
        let file = server.path(&format!("{name}.json"));
        std::fs::write(&file, pod.to_string()).unwrap();
        let out = server.kubectl(&["apply", "-f", file.to_str().unwrap()]);
        assert!(out.status.success(), "apply {name}: {}", stderr(&out));
    }
    let out = server.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "pod/web",
        "pod/talker",
        "--timeout=120s",
    ]);
    if !out.status.success() {
        let described = server.kubectl(&["describe", "pods"]);
        let log = std::fs::read_to_string(server.path("server.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        panic!(
            "pods not Ready: {}\n{}\n--- server log (end) ---\n{}",
            stderr(&out),
            stdout(&described),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
}

fn kubectl_cmd(server: &Server, version: &str) -> Command {
    let mut cmd = Command::new(kubectl_path(version));
    cmd.arg("--kubeconfig")
        .arg(server.path("credentials/client.config"));
    cmd
}

/// Runs kubectl `version` with `input` on its stdin (closed after it), for at most 60 s.
fn kubectl_with_input(server: &Server, version: &str, args: &[&str], input: &[u8]) -> Output {
    kubectl_with_input_held(server, version, args, input, Duration::ZERO)
}

/// The same, stdin held open for `hold` after the input (an attach ends when stdin closes).
fn kubectl_with_input_held(
    server: &Server,
    version: &str,
    args: &[&str],
    input: &[u8],
    hold: Duration,
) -> Output {
    let mut child = kubectl_cmd(server, version)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    // Written from a thread: kubectl's output pipes are read below at the same time.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
        std::thread::sleep(hold);
    });
    let out = wait_at_most(child, Duration::from_secs(60), args);
    let _ = writer.join();
    out
}

/// The output of `child`, killed (by PID) if it runs longer than `limit`.
fn wait_at_most(child: Child, limit: Duration, what: &[&str]) -> Output {
    let pid = child.id() as i32;
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let out = child.wait_with_output();
        let _ = done_tx.send(());
        out
    });
    if done_rx.recv_timeout(limit).is_err() {
        // SAFETY: signalling the kubectl this test started, by its PID.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let out = waiter.join().unwrap().unwrap();
        panic!(
            "kubectl {what:?} still running after {limit:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
    }
    waiter.join().unwrap().unwrap()
}

/// Asserts that kubectl's `-v=6` log shows a WebSocket upgrade with `evidence` and no
/// fallback to SPDY.
fn assert_websocket(out: &Output, evidence: &str, what: &str) {
    let log = stderr(out);
    assert!(
        log.contains("101 Switching Protocols") && log.contains(evidence),
        "{what}: no WebSocket upgrade ({evidence}) in kubectl's log:\n{log}"
    );
    assert!(
        !log.to_lowercase().contains("fallback"),
        "{what}: kubectl fell back to SPDY:\n{log}"
    );
}

#[test]
fn kubectl_exec_attach_cp_and_port_forward_over_websocket() {
    if !can_run_pods() {
        return;
    }
    let server = cluster();
    pods(&server);
    const V5: &str = "The subprotocol is v5.channel.k8s.io";

    for version in ["1.33", "1.30"] {
        // Output on its streams and the exit code.
        let out = kubectl_with_input(
            &server,
            version,
            &[
                "-v=6",
                "exec",
                "web",
                "--",
                "sh",
                "-c",
                "echo out; echo err >&2; exit 7",
            ],
            b"",
        );
        assert_websocket(&out, V5, &format!("{version} exec"));
        assert_eq!(out.status.code(), Some(7), "{version}: {}", stderr(&out));
        assert_eq!(stdout(&out), "out\n", "{version}");
        assert!(
            stderr(&out).contains("\nerr\n"),
            "{version}: {}",
            stderr(&out)
        );

        // Stdin, closed with v5's close signal: cat ends.
        let out = kubectl_with_input(
            &server,
            version,
            &["-v=6", "exec", "-i", "web", "--", "cat"],
            b"piped\nlines\n",
        );
        assert_websocket(&out, V5, &format!("{version} exec -i"));
        assert!(out.status.success(), "{version}: {}", stderr(&out));
        assert_eq!(stdout(&out), "piped\nlines\n", "{version}");
    }

    // A megabyte each way through kubectl cp (tar over exec, stdin closed at the end).
    let payload: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 7 % 251) as u8).collect();
    let local = server.path("payload.bin");
    std::fs::write(&local, &payload).unwrap();
    let out = kubectl_with_input(
        &server,
        "1.33",
        &[
            "-v=6",
            "cp",
            local.to_str().unwrap(),
            "web:/tmp/payload.bin",
        ],
        b"",
    );
    assert_websocket(&out, V5, "cp to the pod");
    assert!(out.status.success(), "cp to the pod: {}", stderr(&out));
    let back = server.path("back.bin");
    let out = kubectl_with_input(
        &server,
        "1.33",
        &["cp", "web:/tmp/payload.bin", back.to_str().unwrap()],
        b"",
    );
    assert!(out.status.success(), "cp from the pod: {}", stderr(&out));
    assert!(
        std::fs::read(&back).unwrap() == payload,
        "cp round trip differs"
    );

    // Attach: stdin to the container's, its stdout and stderr back.
    let out = kubectl_with_input_held(
        &server,
        "1.33",
        &["-v=6", "attach", "-i", "talker"],
        b"one\n",
        Duration::from_secs(3),
    );
    assert_websocket(&out, V5, "attach");
    assert!(stdout(&out).contains("got-one"), "attach: {}", stderr(&out));
    assert!(stderr(&out).contains("err-one"), "attach: {}", stderr(&out));

    // Port-forward tunnelled over WebSocket (1.33), and SPDY (1.27).
    let log = port_forward_get(&server, "1.33");
    assert!(
        log.contains("101 Switching Protocols")
            && log.contains("negotiated protocol: portforward.k8s.io")
            && !log.to_lowercase().contains("fallback"),
        "port-forward did not tunnel over WebSocket:\n{log}"
    );
    let log = port_forward_get(&server, "1.27");
    assert!(log.contains("POST"), "1.27 port-forward over SPDY:\n{log}");

    // kubectl 1.27 knows only SPDY, and still works.
    let out = kubectl_with_input(
        &server,
        "1.27",
        &["-v=6", "exec", "-i", "web", "--", "sh", "-c", "cat; exit 3"],
        b"spdy\n",
    );
    assert_eq!(out.status.code(), Some(3), "1.27: {}", stderr(&out));
    assert_eq!(stdout(&out), "spdy\n");
    assert!(
        stderr(&out).contains("POST"),
        "1.27 uses SPDY: {}",
        stderr(&out)
    );
}

/// Runs `kubectl port-forward` (at -v=6) to the web pod, fetches its page twice through it
/// (two connections over one tunnel) and returns kubectl's log.
fn port_forward_get(server: &Server, version: &str) -> String {
    let local = support::free_port();
    let log_path = server.path(&format!("port-forward-{version}.log"));
    let mut forward = kubectl_cmd(server, version)
        .args(["-v=6", "port-forward", "pod/web", &format!("{local}:8080")])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut bodies = Vec::new();
    while bodies.len() < 2 && Instant::now() < deadline {
        match http_get(local) {
            Some(body) => bodies.push(body),
            None => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    // SAFETY: signalling the kubectl this test started, by its PID.
    unsafe { libc::kill(forward.id() as i32, libc::SIGKILL) };
    let _ = forward.wait();
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert_eq!(
        bodies,
        ["served\n", "served\n"],
        "{version} port-forward:\n{log}"
    );
    log
}

fn http_get(port: u16) -> Option<String> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    conn.write_all(b"GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer).ok()?;
    answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
}

/// What a v5 client reads until the server closes: bytes per channel, the first message, and
/// the close code.
#[derive(Default)]
struct Received {
    channels: [Vec<u8>; 5],
    first: Option<Vec<u8>>,
    close: Option<CloseCode>,
}

#[test]
fn a_websocket_client_speaks_remote_command_v5() {
    if !can_run_pods() {
        return;
    }
    let server = cluster();
    pods(&server);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // stdin read line by line, stderr apart, stdin's close ends cat, and the exit code.
        let script = "read l; echo in:$l; echo to-err >&2; cat; exit 3";
        let got = exec_v5(
            &server,
            &[("stdin", "true"), ("stdout", "true"), ("stderr", "true")],
            &["sh", "-c", script],
            vec![
                [&[0u8][..], b"piped\n"].concat(),
                [&[0u8][..], b"rest"].concat(),
                vec![255, 0],
            ],
        )
        .await;
        assert_eq!(
            got.first.as_deref(),
            Some(&[1u8][..]),
            "empty stdout message first"
        );
        assert_eq!(String::from_utf8_lossy(&got.channels[1]), "in:piped\nrest");
        assert_eq!(String::from_utf8_lossy(&got.channels[2]), "to-err\n");
        let status: Value = serde_json::from_slice(&got.channels[3]).unwrap();
        assert_eq!(status["status"], "Failure", "{status}");
        assert_eq!(status["reason"], "NonZeroExitCode", "{status}");
        assert_eq!(
            status["details"]["causes"][0],
            serde_json::json!({"reason": "ExitCode", "message": "3"}),
            "{status}"
        );
        assert_eq!(got.close, Some(CloseCode::Normal));

        // Success, and a TTY sized through the resize channel.
        let got = exec_v5(
            &server,
            &[("stdin", "true"), ("stdout", "true"), ("tty", "true")],
            &["sh", "-c", "sleep 1; stty size"],
            vec![[&[4u8][..], br#"{"Width":77,"Height":33}"#].concat()],
        )
        .await;
        assert!(
            String::from_utf8_lossy(&got.channels[1]).contains("33 77"),
            "{:?}",
            String::from_utf8_lossy(&got.channels[1])
        );
        let status: Value = serde_json::from_slice(&got.channels[3]).unwrap();
        assert_eq!(status["status"], "Success", "{status}");
        assert_eq!(got.close, Some(CloseCode::Normal));
    });
}

/// Execs `command` in the web pod over WebSocket v5 through the API server (admin token),
/// sends `messages`, and reads everything until the server closes.
async fn exec_v5(
    server: &Server,
    flags: &[(&str, &str)],
    command: &[&str],
    messages: Vec<Vec<u8>>,
) -> Received {
    let mut query: Vec<String> = flags.iter().map(|(k, v)| format!("{k}={v}")).collect();
    query.extend(command.iter().map(|c| format!("command={}", encode(c))));
    let url = format!(
        "wss://127.0.0.1:{}/api/v1/namespaces/default/pods/web/exec?{}",
        server.api_port,
        query.join("&")
    );
    let mut request = url.into_client_request().unwrap();
    let headers = request.headers_mut();
    headers.insert(
        "Authorization",
        format!("Bearer {}", admin_token(server)).parse().unwrap(),
    );
    headers.insert(
        "Sec-WebSocket-Protocol",
        "v5.channel.k8s.io".parse().unwrap(),
    );
    let tls = tls_to(server).await;
    let (ws, response) = tokio_tungstenite::client_async(request, tls)
        .await
        .expect("WebSocket handshake");
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        "v5.channel.k8s.io"
    );
    let (mut tx, mut rx) = ws.split();
    for m in messages {
        tx.send(Message::Binary(m.into())).await.unwrap();
    }
    let mut got = Received::default();
    let read_all = async {
        while let Some(msg) = rx.next().await {
            match msg.expect("a WebSocket message") {
                Message::Binary(data) => {
                    if got.first.is_none() {
                        got.first = Some(data.to_vec());
                    }
                    if let Some((&channel, rest)) = data.split_first() {
                        got.channels[usize::from(channel).min(4)].extend_from_slice(rest);
                    }
                }
                Message::Close(frame) => {
                    got.close = frame.map(|f| f.code);
                    break;
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read_all)
        .await
        .expect("the exec ends within a minute");
    got
}

/// Percent-encodes a query value (what a shell command needs).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn admin_token(server: &Server) -> String {
    let tokens = std::fs::read_to_string(server.path("credentials/known_tokens.csv")).unwrap();
    tokens
        .lines()
        .find(|l| l.contains("system:masters"))
        .and_then(|l| l.split(',').next())
        .expect("an admin token")
        .to_string()
}

/// TLS to the API server, its certificate checked against the cluster CA.
async fn tls_to(server: &Server) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use tokio_rustls::rustls;
    let ca = std::fs::read(server.path("certs/ca.crt")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.api_port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap()
}
