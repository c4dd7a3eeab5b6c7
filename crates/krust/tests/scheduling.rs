//! `krust server` runs the scheduler: a pod created with kubectl is bound to a node that fits,
//! and a pod that fits nowhere gets upstream's FailedScheduling event.

mod support;

use std::time::{Duration, Instant};

use support::{stderr, stdout, Server};

const NODE: &str = r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"worker-1","labels":{"kubernetes.io/hostname":"worker-1"}},
 "status":{"capacity":{"cpu":"2","memory":"4Gi","pods":"110"},"allocatable":{"cpu":"2","memory":"4Gi","pods":"110"},
 "conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","message":"ready"}]}}"#;

fn pod(name: &str, cpu: &str) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}"}},
 "spec":{{"containers":[{{"name":"c","image":"busybox","resources":{{"requests":{{"cpu":"{cpu}"}}}}}}]}}}}"#
    )
}

fn apply(server: &Server, name: &str, json: &str) {
    let file = server.path(name);
    std::fs::write(&file, json).unwrap();
    let out = server.kubectl(&["create", "-f", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Polls `kubectl get ARGS -o jsonpath=PATH` until it prints something non-empty.
fn wait_for(server: &Server, args: &[&str], path: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let jsonpath = format!("jsonpath={path}");
        let mut all = args.to_vec();
        all.extend(["-o", &jsonpath]);
        let out = server.kubectl(&all);
        let text = stdout(&out);
        if !text.trim().is_empty() {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "nothing at {path} of {args:?} after 30 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn pods_are_placed_on_nodes_that_fit() {
    let mut server = Server::new(&[]);
    server.start();
    apply(&server, "node.json", NODE);
    apply(&server, "small.json", &pod("small", "500m"));
    let node = wait_for(&server, &["get", "pod", "small"], "{.spec.nodeName}");
    assert_eq!(node, "worker-1");

    apply(&server, "huge.json", &pod("huge", "16"));
    let message = wait_for(
        &server,
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=huge,reason=FailedScheduling",
        ],
        "{.items[0].message}",
    );
    assert!(
        message.starts_with("0/1 nodes are available: 1 Insufficient cpu."),
        "{message}"
    );
}
