//! The scheduler's and the controller manager's health and metrics ports as a client sees them:
//! the secure ports (10259 and 10257 in the presets) with authentication and authorization
//! delegated to the API server, and the legacy insecure localhost ports (10251 and 10252) of the
//! microk8s profile. Judged with curl.

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

/// A component with health and metrics ports, as the tests see it.
struct Component {
    /// Its key in the port map, e.g. `scheduler`; the insecure port's is `<key>-insecure`.
    key: &'static str,
    secure: u16,
    insecure: u16,
    /// The metrics line a component that holds its lease serves.
    leading: &'static str,
}

fn components(server: &Server) -> [Component; 2] {
    [
        Component {
            key: "scheduler",
            secure: server.scheduler_port,
            insecure: server.scheduler_insecure_port,
            leading: "scheduler_leader 1",
        },
        Component {
            key: "controller-manager",
            secure: server.controller_manager_port,
            insecure: server.controller_manager_insecure_port,
            leading: "controller_manager_leader 1",
        },
    ]
}

/// An HTTPS GET of a secure port trusting the cluster CA: (status code, body).
fn curl_secure(server: &Server, port: u16, path: &str, who: As<'_>) -> (String, String) {
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
    cmd.arg(format!("https://127.0.0.1:{port}{path}"));
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

/// Retries `get` until it answers 200 with a body containing `want` (the port starts with the
/// API server, not before it, and the lease is taken a moment later).
fn wait_ok(want: &str, get: impl Fn() -> (String, String)) -> (String, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = get();
        if (answer.0 == "200" && answer.1.contains(want)) || Instant::now() > deadline {
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
fn secure_ports_delegate_authentication_and_authorization() {
    let mut server = Server::new(&["--profile", "upstream"]);
    server.start();
    let proxy = token_of(&server, "system:kube-proxy");
    let ports = ports_json(&server);
    for c in components(&server) {
        let get = |path: &str, who: As<'_>| curl_secure(&server, c.secure, path, who);
        let health = wait_ok("ok", || get("/healthz", As::Anonymous));
        assert_eq!(
            health,
            ("200".into(), "ok".into()),
            "{}: {}",
            c.key,
            log(&server)
        );
        for path in ["/livez", "/readyz"] {
            assert_eq!(get(path, As::Anonymous).0, "200", "{} {path}", c.key);
        }

        let (code, body) = get("/metrics", As::Anonymous);
        assert_eq!(
            (code.as_str(), body.trim()),
            ("401", "Unauthorized"),
            "{}",
            c.key
        );
        assert_eq!(
            get("/metrics", As::Token("not-a-token")).0,
            "401",
            "{}",
            c.key
        );

        let (code, body) = wait_ok(c.leading, || get("/metrics", As::Cert("admin")));
        assert_eq!(code, "200", "{}: {body}", c.key);
        assert!(body.contains(c.leading), "{}: {body}", c.key);

        // kube-proxy's token is valid, but RBAC gives system:kube-proxy no /metrics.
        let (code, body) = get("/metrics", As::Token(&proxy));
        assert_eq!(code, "403", "{}: {body}", c.key);
        assert!(
            body.starts_with(r#"Forbidden: User "system:kube-proxy" cannot get path "/metrics""#),
            "{}: {body}",
            c.key
        );
        // The insecure port is off outside the microk8s profile.
        let insecure = format!("{}-insecure", c.key);
        assert_eq!(row(&ports, &insecure)["enabled"], false, "{insecure}");
        assert_eq!(row(&ports, c.key)["listening"], true, "{ports}");
    }
    server.stop();
}

#[test]
fn microk8s_insecure_ports_serve_health_and_metrics_on_localhost() {
    let mut server = Server::new(&["--profile", "microk8s"]);
    server.start();
    let ports = ports_json(&server);
    for c in components(&server) {
        let base = format!("http://127.0.0.1:{}", c.insecure);
        let health = wait_ok("ok", || curl_plain(&format!("{base}/healthz")));
        assert_eq!(
            health,
            ("200".into(), "ok".into()),
            "{}: {}",
            c.key,
            log(&server)
        );
        let (code, body) = wait_ok(c.leading, || curl_plain(&format!("{base}/metrics")));
        assert_eq!(code, "200", "{}", c.key);
        assert!(body.contains(c.leading), "{}: {body}", c.key);

        let insecure = row(&ports, &format!("{}-insecure", c.key));
        assert_eq!(insecure["listening"], true, "{ports}");
        assert_eq!(insecure["bind"], "localhost");
        // Bound to loopback only: the machine's other addresses refuse the connection.
        for host in host_ipv4s() {
            let url = format!("http://{host}:{}/healthz", c.insecure);
            assert_eq!(curl_plain(&url).0, "000", "{url} answered");
        }
        // The secure port still refuses strangers.
        let (code, _) = curl_secure(&server, c.secure, "/metrics", As::Anonymous);
        assert_eq!(code, "401", "{}", c.key);
    }
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
