//! `krust enable rbac` / `krust disable rbac` on a running server: the mode changes without a
//! new server process and without cutting a running watch, `krust status` reports it, and it
//! survives a restart.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::{stderr, stdout, Server};

const JANE_FORBIDDEN: &str =
    r#"User "jane" cannot list resource "pods" in API group "" in the namespace "default""#;

/// `krust enable|disable FEATURE` for this server's data dir.
fn switch(server: &Server, verb: &str, feature: &str) -> Output {
    server.krust(&[verb, feature])
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl").args(args).output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
}

/// A client certificate for CN=jane (no groups), signed by the cluster's CA (no serial file:
/// a new file under certs/ would count as a certificate change and restart the listeners).
fn issue_jane(server: &Server) {
    let p = |f: &str| server.path(f).display().to_string();
    std::fs::write(server.path("jane.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=jane",
        "-keyout",
        &p("jane.key"),
        "-out",
        &p("jane.csr"),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p("jane.csr"),
        "-CA",
        &p("certs/ca.crt"),
        "-CAkey",
        &p("certs/ca.key"),
        "-set_serial",
        "4242",
        "-days",
        "1",
        "-extfile",
        &p("jane.ext"),
        "-out",
        &p("jane.crt"),
    ]);
}

fn jane(server: &Server, args: &[&str]) -> Output {
    let p = |f: &str| server.path(f).display().to_string();
    Command::new("kubectl")
        .arg(format!("--server=https://127.0.0.1:{}", server.api_port))
        .arg(format!("--certificate-authority={}", p("certs/ca.crt")))
        .arg(format!("--client-certificate={}", p("jane.crt")))
        .arg(format!("--client-key={}", p("jane.key")))
        .args(args)
        .output()
        .unwrap()
}

fn server_pid(server: &Server) -> String {
    std::fs::read_to_string(server.path("server.pid"))
        .unwrap()
        .trim()
        .to_string()
}

fn status_json(server: &Server) -> serde_json::Value {
    let out = server.krust(&["status", "-o", "json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)))
}

/// `kubectl get pods -w` as admin, its output lines forwarded to a channel.
struct Watch {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Watch {
    fn start(server: &Server) -> Watch {
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(server.path("credentials/client.config"))
            .args(["get", "pods", "-w", "-n", "default"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Watch { child, lines }
    }

    fn saw(&self, text: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(text) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn assert_switched(out: &Output, line: &str) {
    assert!(out.status.success(), "{}{}", stdout(out), stderr(out));
    assert_eq!(stdout(out).trim(), line);
}

#[test]
fn enable_and_disable_rbac_on_a_running_server() {
    let mut server = Server::new(&["--profile", "microk8s"]);
    server.start();
    issue_jane(&server);
    let pid = server_pid(&server);
    let jane_ok = jane(&server, &["get", "pods", "-n", "default"]);
    assert!(
        jane_ok.status.success(),
        "AlwaysAllow: {}",
        stderr(&jane_ok)
    );
    assert_eq!(status_json(&server)["rbac"], false);
    let watch = Watch::start(&server);
    std::thread::sleep(Duration::from_secs(1));

    let out = switch(&server, "enable", "rbac");
    assert_switched(&out, "RBAC is on: the authorization mode is Node,RBAC");
    let denied = jane(&server, &["get", "pods", "-n", "default"]);
    assert!(!denied.status.success(), "jane still allowed");
    assert!(
        stderr(&denied).contains(JANE_FORBIDDEN),
        "{}",
        stderr(&denied)
    );
    assert_eq!(server_pid(&server), pid, "the server process changed");
    assert_eq!(status_json(&server)["rbac"], true);
    let created = server.kubectl(&["run", "after-switch", "--image=nginx", "-n", "default"]);
    assert!(created.status.success(), "{}", stderr(&created));
    assert!(
        watch.saw("after-switch"),
        "the watch started before the switch stopped; server log:\n{}",
        std::fs::read_to_string(server.path("server.log")).unwrap_or_default()
    );

    let out = switch(&server, "disable", "rbac");
    assert_switched(&out, "RBAC is off: the authorization mode is AlwaysAllow");
    assert!(jane(&server, &["get", "pods", "-n", "default"])
        .status
        .success());
    assert_eq!(status_json(&server)["rbac"], false);
    assert_eq!(server_pid(&server), pid);

    assert_switched(
        &switch(&server, "enable", "rbac"),
        "RBAC is on: the authorization mode is Node,RBAC",
    );
    drop(watch);
    server.stop();
    server.start();
    assert_eq!(
        status_json(&server)["rbac"],
        true,
        "the mode did not persist"
    );
    let denied = jane(&server, &["get", "pods", "-n", "default"]);
    assert!(
        stderr(&denied).contains(JANE_FORBIDDEN),
        "after restart: {}",
        stderr(&denied)
    );
    let pods = server.kubectl(&["get", "pods", "-n", "default"]);
    assert!(stdout(&pods).contains("after-switch"), "an object was lost");
}

#[test]
fn unknown_features_are_refused() {
    let server = Server::new(&[]);
    let out = switch(&server, "enable", "foo");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("unknown feature \"foo\""), "{err}");
}
