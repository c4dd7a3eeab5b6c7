//! `krust server --audit-log PATH`: one audit.k8s.io/v1 Event per request as a JSON line, with
//! the user, verb, resource and response code, and never a credential.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{stderr, stdout, Server};

/// The audit events so far, once `done` holds for them (the writer runs behind the requests).
fn events_until(path: &std::path::Path, done: impl Fn(&[Value]) -> bool) -> (String, Vec<Value>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let events: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        if done(&events) || Instant::now() > deadline {
            return (text, events);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn is_admin_list_namespaces(e: &Value) -> bool {
    e["verb"] == "list"
        && e["objectRef"]["resource"] == "namespaces"
        && e["responseStatus"]["code"] == 200
        && e["user"]["username"] == "admin"
}

fn is_unauthorized(e: &Value) -> bool {
    e["responseStatus"]["code"] == 401
}

#[test]
fn audit_log_has_one_line_per_request_without_credentials() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("audit.log");
    let mut server = Server::new(&["--audit-log", log.to_str().unwrap()]);
    server.start();

    let out = server.kubectl(&["get", "ns"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // A service-account token in a response body must not reach the log either (the account
    // is the controller manager's serviceaccount controller's to make).
    let issued = server.kubectl_until_ok(&["create", "token", "default"], 30);
    assert!(issued.status.success(), "{}", stderr(&issued));
    let jwt = stdout(&issued).trim().to_string();
    assert_eq!(jwt.split('.').count(), 3, "not a JWT: {jwt}");
    // No credentials at all (curl: kubectl would prompt for a password): 401.
    let anonymous = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(server.path("certs/ca.crt"))
        .arg(server.url("/api/v1/namespaces/default/pods"))
        .output()
        .unwrap();
    assert_eq!(stdout(&anonymous), "401", "{}", stderr(&anonymous));

    let (text, events) = events_until(&log, |ev| {
        ev.iter().any(is_admin_list_namespaces) && ev.iter().any(is_unauthorized)
    });
    let list = events
        .iter()
        .find(|e| is_admin_list_namespaces(e))
        .unwrap_or_else(|| panic!("no admin list of namespaces in:\n{text}"));
    assert_eq!(list["kind"], "Event");
    assert_eq!(list["apiVersion"], "audit.k8s.io/v1");
    assert_eq!(list["level"], "Metadata");
    assert_eq!(list["stage"], "ResponseComplete");
    assert!(list["auditID"].as_str().is_some_and(|id| !id.is_empty()));
    assert!(list["requestURI"]
        .as_str()
        .is_some_and(|u| u.starts_with("/api/v1/namespaces")));
    assert_eq!(list["objectRef"]["apiVersion"], "v1");
    assert!(list["user"]["groups"]
        .as_array()
        .is_some_and(|g| g.iter().any(|g| g == "system:masters")));
    assert_eq!(list["sourceIPs"][0], "127.0.0.1");
    assert!(list["userAgent"]
        .as_str()
        .is_some_and(|a| a.starts_with("kubectl")));
    assert!(list["requestReceivedTimestamp"].is_string() && list["stageTimestamp"].is_string());

    let refused = events
        .iter()
        .find(|e| is_unauthorized(e))
        .unwrap_or_else(|| panic!("no 401 ({}) in:\n{text}", stderr(&anonymous)));
    assert_eq!(refused["user"]["username"], "system:anonymous");

    assert!(events
        .iter()
        .any(|e| e["objectRef"]["subresource"] == "token" && e["responseStatus"]["code"] == 201));
    assert!(!text.contains(&jwt), "the issued token is in the audit log");
    // No token from the credentials file, and no bodies, ever reach the log.
    let tokens = std::fs::read_to_string(server.path("credentials/known_tokens.csv")).unwrap();
    for token in tokens.lines().filter_map(|l| l.split(',').next()) {
        assert!(
            token.is_empty() || !text.contains(token),
            "a token is in the audit log"
        );
    }
    assert!(!text.contains("\"requestObject\"") && !text.contains("\"responseObject\""));
}
