//! The scheduler's health and metrics ports as a client sees them: the secure port (10259 in
//! the presets) with authentication and authorization delegated to the API server, and the
//! legacy insecure localhost port of the microk8s profile. Judged with curl.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{stdout, Server};

/// How curl should authenticate.
enum As<'a> {
    Anonymous,
    Token(&'a str),
    /// `certs/<stem>.crt` and `.key`.
    Cert(&'a str),
}

/// An HTTPS GET of the scheduler's secure port trusting the cluster CA: (status code, body).
fn curl_secure(server: &Server, path: &str, who: As<'_>) -> (String, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-w", "\n%{http_code}", "--cacert"])
        .arg(server.path("certs/ca.crt"));
    match who {
        As::Anonymous => {}
        As::Token(token) => {
            cmd.args(["-H", &format!("Authorization: Bearer {token}")]);
        }
        As::Cert(stem) => {
            cmd.arg("--cert")
                .arg(server.path(&format!("certs/{stem}.crt")))
                .arg("--key")
                .arg(server.path(&format!("certs/{stem}.key")));
        }
    }
    cmd.arg(format!("https://127.0.0.1:{}{path}", server.scheduler_port));
    split(&stdout(&cmd.output().unwrap()))
}

fn curl_plain(url: &str) -> (String, String) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", url])
        .output()
        .unwrap();
    split(&stdout(&out))
}

fn split(text: &str) -> (String, String) {
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", text));
    (code.to_string(), body.to_string())
}

/// Retries `get` until it answers 200 (the port starts with the API server, not before it).
fn wait_ok(get: impl Fn() -> (String, String)) -> (String, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = get();
        if answer.0 == "200" || Instant::now() > deadline {
            return answer;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The token of `user` in credentials/known_tokens.csv (`token,user,uid,"groups"`).
fn token_of(server: &Server, user: &str) -> String {
    let csv = std::fs::read_to_string(server.path("credentials/known_tokens.csv")).unwrap();
    csv.lines()
        .map(|l| l.split(',').collect::<Vec<_>>())
        .find(|f| f.get(1) == Some(&user))
        .map(|f| f[0].to_string())
        .unwrap_or_else(|| panic!("no token for {user} in {csv}"))
}

fn log(server: &Server) -> String {
    std::fs::read_to_string(server.path("server.log")).unwrap_or_default()
}

#[test]
fn secure_port_delegates_authentication_and_authorization() {
    let mut server = Server::new(&["--profile", "upstream"]);
    server.start();

    let health = wait_ok(|| curl_secure(&server, "/healthz", As::Anonymous));
    assert_eq!(health, ("200".into(), "ok".into()), "{}", log(&server));
    for path in ["/livez", "/readyz"] {
        assert_eq!(curl_secure(&server, path, As::Anonymous).0, "200", "{path}");
    }

    let (code, body) = curl_secure(&server, "/metrics", As::Anonymous);
    assert_eq!((code.as_str(), body.trim()), ("401", "Unauthorized"));
    let (code, _) = curl_secure(&server, "/metrics", As::Token("not-a-token"));
    assert_eq!(code, "401");

    let (code, body) = curl_secure(&server, "/metrics", As::Cert("admin"));
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("scheduler_leader 1"), "{body}");

    // kube-proxy's token is valid, but RBAC gives system:kube-proxy no /metrics.
    let proxy = token_of(&server, "system:kube-proxy");
    let (code, body) = curl_secure(&server, "/metrics", As::Token(&proxy));
    assert_eq!(code, "403", "{body}");
    assert!(
        body.starts_with(r#"Forbidden: User "system:kube-proxy" cannot get path "/metrics""#),
        "{body}"
    );
    // The scheduler's insecure port is off outside the microk8s profile.
    let ports = ports_json(&server);
    assert_eq!(row(&ports, "scheduler-insecure")["enabled"], false);
    assert_eq!(row(&ports, "scheduler")["listening"], true, "{ports}");
    server.stop();
}

#[test]
fn microk8s_insecure_port_serves_health_and_metrics_on_localhost() {
    let mut server = Server::new(&["--profile", "microk8s"]);
    server.start();
    let base = format!("http://127.0.0.1:{}", server.scheduler_insecure_port);

    let health = wait_ok(|| curl_plain(&format!("{base}/healthz")));
    assert_eq!(health, ("200".into(), "ok".into()), "{}", log(&server));
    let (code, body) = curl_plain(&format!("{base}/metrics"));
    assert_eq!(code, "200");
    assert!(body.contains("scheduler_leader 1"), "{body}");

    let ports = ports_json(&server);
    let insecure = row(&ports, "scheduler-insecure");
    assert_eq!(insecure["listening"], true, "{ports}");
    assert_eq!(insecure["bind"], "localhost");
    // Bound to loopback only: the machine's other addresses refuse the connection.
    for host in host_ipv4s() {
        let url = format!("http://{host}:{}/healthz", server.scheduler_insecure_port);
        assert_eq!(curl_plain(&url).0, "000", "{url} answered");
    }
    // The secure port still refuses strangers.
    assert_eq!(curl_secure(&server, "/metrics", As::Anonymous).0, "401");
    server.stop();
}

/// The machine's non-loopback IPv4 addresses (`hostname -I`), possibly none.
fn host_ipv4s() -> Vec<String> {
    let out = Command::new("hostname").arg("-I").output().unwrap();
    stdout(&out)
        .split_whitespace()
        .filter(|a| {
            a.parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| !ip.is_loopback())
        })
        .map(str::to_string)
        .collect()
}

fn ports_json(server: &Server) -> Value {
    let out = server.krust(&["ports", "-o", "json"]);
    assert!(out.status.success(), "{}", support::stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn row<'a>(ports: &'a Value, key: &str) -> &'a Value {
    ports["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == key)
        .unwrap_or_else(|| panic!("no {key} row in {ports}"))
}
