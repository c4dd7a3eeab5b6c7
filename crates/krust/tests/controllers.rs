//! `krust server` runs the controller manager: a Deployment's pods are created by the
//! deployment and replicaset controllers and bound by the scheduler to the Node the test
//! creates.

mod support;

use std::time::{Duration, Instant};

use support::{stderr, stdout, Server};

const NODE: &str = r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"worker-1","labels":{"kubernetes.io/hostname":"worker-1"}},
 "status":{"capacity":{"cpu":"4","memory":"8Gi","pods":"110"},"allocatable":{"cpu":"4","memory":"8Gi","pods":"110"},
 "conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","message":"ready"}]}}"#;

const DEPLOYMENT: &str = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},
 "spec":{"replicas":3,"selector":{"matchLabels":{"app":"web"}},
  "template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"web","image":"nginx"}]}}}}"#;

fn create(server: &Server, name: &str, json: &str) {
    let file = server.path(name);
    std::fs::write(&file, json).unwrap();
    let out = server.kubectl(&["create", "-f", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_deployments_pods_are_created_and_bound_to_the_node() {
    let mut server = Server::new(&[]);
    server.start();
    create(&server, "node.json", NODE);
    create(&server, "deployment.json", DEPLOYMENT);
    let deadline = Instant::now() + Duration::from_secs(60);
    let nodes = loop {
        let out = server.kubectl(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={range .items[*]}{.spec.nodeName}{\"\\n\"}{end}",
        ]);
        let nodes: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
        if nodes.len() == 3 && nodes.iter().all(|n| n == "worker-1") {
            break nodes;
        }
        assert!(
            Instant::now() < deadline,
            "pods not all bound after 60 s: {nodes:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(nodes.len(), 3);
    // The chain of owners: pods → ReplicaSet web-<hash> → Deployment web.
    let out = server.kubectl(&[
        "get",
        "rs",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[0].metadata.ownerReferences[0].name}",
    ]);
    assert_eq!(stdout(&out), "web");
    let out = server.kubectl(&[
        "get",
        "deployment",
        "web",
        "-o",
        "jsonpath={.status.replicas}",
    ]);
    assert_eq!(stdout(&out), "3");
}
