//! `krust server` end to end: first start, PKI on disk, restarts, refresh-certs, and the access
//! restrictions of the API server and datastore ports tested from outside.

mod support;

use std::collections::BTreeMap;
use std::process::Command;

use support::{stderr, stdout, Server};

/// Every file under certs/ and credentials/, with its bytes.
fn pki_files(server: &Server) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for dir in ["certs", "credentials"] {
        for entry in std::fs::read_dir(server.path(dir)).unwrap() {
            let path = entry.unwrap().path();
            files.insert(path.display().to_string(), std::fs::read(&path).unwrap());
        }
    }
    files
}

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl").args(args).output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
    stdout(&out)
}

#[test]
fn first_start_creates_the_pki_and_a_restart_changes_nothing() {
    let mut server = Server::new(&[]);
    server.start();
    let ca = server.path("certs/ca.crt");
    let crt = server.path("certs/server.crt");
    let verify = openssl(&[
        "verify",
        "-CAfile",
        ca.to_str().unwrap(),
        crt.to_str().unwrap(),
    ]);
    assert!(verify.contains(": OK"), "{verify}");
    let sans = openssl(&[
        "x509",
        "-noout",
        "-ext",
        "subjectAltName",
        "-in",
        crt.to_str().unwrap(),
    ]);
    for san in [
        "DNS:localhost",
        "IP Address:127.0.0.1",
        "IP Address:10.96.0.1",
        "DNS:kubernetes",
        "DNS:kubernetes.default",
        "DNS:kubernetes.default.svc",
        "DNS:kubernetes.default.svc.cluster",
        "DNS:kubernetes.default.svc.cluster.local",
    ] {
        assert!(sans.contains(san), "{san} missing from {sans}");
    }
    for addr in machine_ipv4_addresses() {
        assert!(
            sans.contains(&format!("IP Address:{addr}")),
            "{addr} missing from {sans}"
        );
    }
    let before = pki_files(&server);
    server.stop();
    server.start();
    assert_eq!(before, pki_files(&server), "a second start changed the PKI");
}

/// The machine's IPv4 addresses as `hostname -I` lists them (IPv6 is printed expanded by
/// openssl, so comparing it would test formatting rather than the certificate).
fn machine_ipv4_addresses() -> Vec<String> {
    let out = Command::new("hostname").arg("-I").output().unwrap();
    stdout(&out)
        .split_whitespace()
        .filter(|a| a.parse::<std::net::Ipv4Addr>().is_ok())
        .map(String::from)
        .collect()
}

#[test]
fn admin_kubeconfig_works_with_the_real_kubectl() {
    let mut server = Server::new(&[]);
    server.start();
    let out = server.kubectl(&["config", "view"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("certificate-authority-data: DATA+OMITTED"));
    let out = server.kubectl(&["get", "namespaces", "-o", "name"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(
            stdout(&out).contains(&format!("namespace/{ns}")),
            "{}",
            stdout(&out)
        );
    }
    // `krust config` prints a kubeconfig kubectl parses, pointed at the machine's address.
    let out = server.krust(&["config"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let file = server.path("printed.config");
    std::fs::write(&file, &out.stdout).unwrap();
    let view = Command::new("kubectl")
        .args(["config", "view", "--kubeconfig", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(view.status.success(), "{}", stderr(&view));
    assert!(stdout(&view).contains(&format!(":{}", server.api_port)));
}

#[test]
fn a_san_added_to_the_template_is_served_after_refresh_certs() {
    let mut server = Server::new(&[]);
    server.start();
    let template = server.path("certs/csr.conf.template");
    let text = std::fs::read_to_string(&template).unwrap();
    let text = text.replace("[ alt_names ]", "[ alt_names ]\nDNS.99 = mydomain.example");
    std::fs::write(&template, text).unwrap();
    let out = server.krust(&["refresh-certs", "--cert", "server.crt"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let crt = server.path("certs/server.crt");
    let sans = openssl(&[
        "x509",
        "-noout",
        "-ext",
        "subjectAltName",
        "-in",
        crt.to_str().unwrap(),
    ]);
    assert!(sans.contains("DNS:mydomain.example"), "{sans}");
    // The running server serves the new certificate without a restart by the user.
    let served = wait_for_served_san(&server, "mydomain.example");
    assert!(
        served,
        "the running server still serves the old certificate"
    );
    let out = server.kubectl(&["get", "ns", "default"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

fn wait_for_served_san(server: &Server, san: &str) -> bool {
    for _ in 0..50 {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "openssl s_client -connect 127.0.0.1:{} </dev/null 2>/dev/null | openssl x509 -noout -ext subjectAltName",
                server.api_port
            ))
            .output()
            .unwrap();
        if stdout(&out).contains(san) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    false
}

#[test]
fn refresh_certs_check_prints_every_certificate() {
    let mut server = Server::new(&[]);
    server.start();
    let out = server.krust(&["refresh-certs", "--check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for cert in [
        "ca.crt",
        "server.crt",
        "front-proxy-client.crt",
        "datastore.crt",
    ] {
        assert!(text.contains(cert), "{cert} missing from:\n{text}");
    }
    assert!(text.contains("days left"));
}

#[test]
fn corrupt_ca_key_is_a_clear_error_not_a_panic() {
    let mut server = Server::new(&[]);
    server.start();
    server.stop();
    std::fs::write(server.path("certs/ca.key"), "not a key").unwrap();
    let out = server.start_expecting_failure();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("krust: ") && last.contains("ca.key"),
        "{err}"
    );
    assert!(
        last.contains("refresh-certs --cert ca.crt"),
        "says what to do: {last}"
    );
}

#[test]
fn missing_ca_key_is_a_clear_error_not_a_panic() {
    let mut server = Server::new(&[]);
    server.start();
    server.stop();
    std::fs::remove_file(server.path("certs/ca.key")).unwrap();
    let out = server.start_expecting_failure();
    let err = stderr(&out);
    assert!(!out.status.success() && !err.contains("panicked"), "{err}");
    assert!(
        err.lines().last().unwrap_or_default().contains("ca.key"),
        "{err}"
    );
}

/// An anonymous HTTPS GET that trusts the cluster CA: (status code, body).
fn curl(server: &Server, path: &str) -> (String, String) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "--cacert"])
        .arg(server.path("certs/ca.crt"))
        .arg(server.url(path))
        .output()
        .unwrap();
    let text = stdout(&out);
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.to_string(), body.to_string())
}

/// kubectl with no credentials but the CA, and optionally a bearer token.
fn kubectl_as_stranger(server: &Server, token: &str) -> std::process::Output {
    let empty = server.path("empty.kubeconfig");
    std::fs::write(&empty, "apiVersion: v1\nkind: Config\n").unwrap();
    let mut cmd = Command::new("kubectl");
    cmd.arg("--kubeconfig")
        .arg(&empty)
        .args(["--server", &server.url("")])
        .arg("--certificate-authority")
        .arg(server.path("certs/ca.crt"));
    cmd.args(["--token", token])
        .args(["get", "namespaces"])
        .output()
        .unwrap()
}

#[test]
fn api_server_rejects_anonymous_and_wrong_tokens_and_accepts_the_admin_token() {
    let mut server = Server::new(&[]);
    server.start();
    // kubectl with no credentials at all prompts for a password (against upstream too), so the
    // anonymous request is made raw.
    let (code, body) = curl(&server, "/api");
    assert_eq!(code, "401", "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "Unauthorized");
    // Health and version stay open to anonymous callers, as upstream.
    assert_eq!(curl(&server, "/healthz"), ("200".into(), "ok".into()));
    assert_eq!(curl(&server, "/version").0, "200");
    let out = kubectl_as_stranger(&server, "not-a-real-token");
    assert!(!out.status.success());
    // kubectl's wording for a 401, the same as against upstream.
    assert!(
        stderr(&out).contains("You must be logged in to the server"),
        "{}",
        stderr(&out)
    );
    let tokens = std::fs::read_to_string(server.path("credentials/known_tokens.csv")).unwrap();
    let admin = tokens
        .lines()
        .find(|l| l.contains(",admin,"))
        .and_then(|l| l.split(',').next())
        .expect("an admin token in known_tokens.csv");
    let out = kubectl_as_stranger(&server, admin);
    assert!(out.status.success(), "{}", stderr(&out));
}

fn etcdctl(server: &Server, with_client_cert: bool, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new("etcdctl");
    cmd.env("ETCDCTL_API", "3")
        .arg(format!(
            "--endpoints=https://127.0.0.1:{}",
            server.datastore_port
        ))
        .arg(format!(
            "--cacert={}",
            server.path("certs/datastore-ca.crt").display()
        ))
        .arg("--dial-timeout=3s")
        .arg("--command-timeout=5s");
    if with_client_cert {
        cmd.arg(format!(
            "--cert={}",
            server.path("certs/datastore-client.crt").display()
        ))
        .arg(format!(
            "--key={}",
            server.path("certs/datastore-client.key").display()
        ));
    }
    cmd.args(args).output().unwrap()
}

#[test]
fn datastore_port_requires_a_client_certificate() {
    let mut server = Server::new(&[]);
    server.start();
    let out = etcdctl(
        &server,
        true,
        &["get", "/registry/namespaces/default", "--print-value-only"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("\"default\""),
        "the API server's objects are in the datastore"
    );
    let out = etcdctl(&server, false, &["get", "/registry/namespaces/default"]);
    assert!(
        !out.status.success(),
        "a connection without a client certificate was accepted"
    );
}

#[test]
fn ports_shows_what_the_running_server_listens_on() {
    let mut server = Server::new(&[]);
    server.start();
    let out = server.krust(&["ports", "-o", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = |key: &str| {
        json["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == key)
            .cloned()
            .unwrap()
    };
    assert_eq!(row("apiserver")["port"], server.api_port);
    assert_eq!(row("apiserver")["listening"], true);
    assert_eq!(row("datastore")["listening"], true);
    assert_eq!(
        row("apiserver-insecure")["listening"],
        serde_json::Value::Null
    );
}

#[test]
fn a_second_server_on_the_same_data_dir_is_refused() {
    let mut server = Server::new(&[]);
    server.start();
    let out = server.start_expecting_failure();
    assert!(stderr(&out).contains("already runs"), "{}", stderr(&out));
}
