//! `krust ports -o json` against DESIGN.md's services-and-ports table, row by row, for every
//! preset; and the refusals of bad `--port` values, as a user sees them.

use std::process::Command;

use serde_json::Value;

fn krust(args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_krust"))
        .args(args)
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap()
}

/// A preset's (port, bind) for one service; port `None` means off.
type Cell = (Option<&'static str>, &'static str);

/// DESIGN.md's table: key, then (port, bind) for microk8s, canonical, upstream. `None` = off.
/// network-health's "4240, 9879" row is split into two keys so each port can be overridden.
#[rustfmt::skip]
const DESIGN_TABLE: &[(&str, [Cell; 3])] = &[
    ("apiserver",                   [(Some("16443"), "host"), (Some("6443"), "host"), (Some("6443"), "host")]),
    ("apiserver-insecure",          [(None, "localhost"), (None, "localhost"), (None, "localhost")]),
    ("kubelet",                     [(Some("10250"), "host"), (Some("10250"), "host"), (Some("10250"), "host")]),
    ("kubelet-readonly",            [(Some("10255"), "host"), (None, "host"), (None, "host")]),
    ("kubelet-healthz",             [(Some("10248"), "localhost"), (Some("10248"), "localhost"), (Some("10248"), "localhost")]),
    ("proxy-metrics",               [(Some("10249"), "localhost"), (Some("10249"), "localhost"), (Some("10249"), "localhost")]),
    ("proxy-healthz",               [(Some("10256"), "host"), (Some("10256"), "host"), (Some("10256"), "host")]),
    ("scheduler",                   [(Some("10259"), "host"), (Some("10259"), "host"), (Some("10259"), "host")]),
    ("scheduler-insecure",          [(Some("10251"), "localhost"), (None, "localhost"), (None, "localhost")]),
    ("controller-manager",          [(Some("10257"), "host"), (Some("10257"), "host"), (Some("10257"), "host")]),
    ("controller-manager-insecure", [(Some("10252"), "localhost"), (None, "localhost"), (None, "localhost")]),
    ("datastore",                   [(Some("12379"), "host"), (Some("9000"), "host"), (Some("2379"), "host")]),
    ("datastore-peer",              [(Some("19001"), "host"), (Some("2380"), "localhost"), (Some("2380"), "host")]),
    ("cluster-agent",               [(Some("25000"), "host"), (Some("6400"), "host"), (Some("25000"), "host")]),
    ("containerd",                  [(Some("socket"), "local"), (Some("socket"), "local"), (Some("socket"), "local")]),
    ("containerd-metrics",          [(Some("1338"), "localhost"), (None, "localhost"), (None, "localhost")]),
    ("vxlan",                       [(Some("4789"), "host"), (Some("8472"), "host"), (Some("4789"), "host")]),
    ("network-health",              [(None, "host"), (Some("4240"), "host"), (None, "host")]),
    ("network-health-local",        [(None, "localhost"), (Some("9879"), "localhost"), (None, "localhost")]),
    ("nodeport",                    [(Some("30000-32767"), "host"), (Some("30000-32767"), "host"), (Some("30000-32767"), "host")]),
];

fn port_of(row: &Value) -> Option<String> {
    if row["enabled"] != Value::Bool(true) {
        return None;
    }
    if row["protocol"] == "unix" {
        return Some("socket".into());
    }
    match (&row["port"], &row["port_range"]) {
        (Value::Number(n), _) => Some(n.to_string()),
        (_, Value::Array(r)) => Some(format!("{}-{}", r[0], r[1])),
        _ => panic!("row without port: {row}"),
    }
}

#[test]
fn every_preset_matches_the_design_table() {
    for (i, profile) in ["microk8s", "canonical", "upstream"]
        .into_iter()
        .enumerate()
    {
        let out = krust(&["ports", "--profile", profile, "-o", "json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["profile"], profile);
        let rows = json["services"].as_array().unwrap();
        assert_eq!(
            rows.len(),
            DESIGN_TABLE.len(),
            "{profile}: one row per service"
        );
        for (row, (key, expected)) in rows.iter().zip(DESIGN_TABLE) {
            assert_eq!(row["key"], *key, "{profile}: table order");
            let (port, bind) = expected[i];
            assert_eq!(port_of(row).as_deref(), port, "{profile} {key} port");
            assert_eq!(row["bind"], bind, "{profile} {key} bind");
            let unauth = row["unauthenticated"].as_bool().unwrap();
            assert!(!row["access"].as_str().unwrap().is_empty());
            if key.ends_with("insecure") || *key == "kubelet-readonly" {
                assert!(
                    unauth && row["legacy"] == true,
                    "{key} is legacy and unauthenticated"
                );
            }
        }
    }
}

#[test]
fn canonical_on_etcd_uses_etcd_ports() {
    // The datastore port follows the datastore type in the canonical preset; `--port` is how a
    // user moves it, and `krust ports` shows the effect.
    let out = krust(&[
        "ports",
        "--profile",
        "canonical",
        "--port",
        "datastore=2379",
        "-o",
        "json",
    ]);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["services"][11]["port"], 2379);
}

#[test]
fn out_of_range_port_is_refused_with_a_clear_message() {
    let out = krust(&["ports", "--port", "apiserver=70000"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--port apiserver=70000 is not a valid port"),
        "{err}"
    );
}

#[test]
fn two_services_on_one_port_are_refused() {
    let out = krust(&["ports", "--port", "scheduler=6443"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim(),
        "krust: apiserver and scheduler would both use TCP port 6443: give one of them another port with --port"
    );
}

#[test]
fn unknown_service_key_is_refused() {
    let out = krust(&["ports", "--port", "apiservr=1234"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown service \"apiservr\""));
}

#[test]
fn listening_column_sees_a_real_listener() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let out = krust(&[
        "ports",
        "--port",
        &format!("apiserver={port}"),
        "-o",
        "json",
    ]);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["services"][0]["listening"], true);
    // A service that is off has no listening state at all.
    assert_eq!(json["services"][1]["listening"], Value::Null);
}

#[test]
fn unbuilt_components_say_so() {
    let out = Command::new(env!("CARGO_BIN_EXE_krust"))
        .args(["remove-node", "n1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not available yet"));
}

#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    use std::io::Read;
    let mut child = Command::new(env!("CARGO_BIN_EXE_krust"))
        .args(["ports", "--data-dir", "/nonexistent-krust-test"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader goes away, like `| head -0`
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    child.wait().unwrap();
    assert!(!err.contains("panicked"), "{err}");
}
