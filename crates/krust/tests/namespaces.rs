//! `krust server`'s controller manager owns namespace life, as upstream's: a new namespace gets
//! its `default` ServiceAccount and the `kube-root-ca.crt` ConfigMap promptly, and
//! `kubectl delete namespace` (the real kubectl) empties it and removes it; a Deployment deleted
//! with `--cascade=foreground` takes its ReplicaSet and pods with it, before it goes.

mod support;

use support::{stderr, stdout, Server};

#[test]
fn a_namespace_gets_its_account_and_ca_and_kubectl_delete_empties_and_removes_it() {
    let mut server = Server::new(&[]);
    server.start();
    let out = server.kubectl(&["create", "namespace", "team"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let started = std::time::Instant::now();
    let sa = server.kubectl_until_ok(&["get", "serviceaccount", "default", "-n", "team"], 30);
    assert!(
        sa.status.success(),
        "no default ServiceAccount: {}",
        stderr(&sa)
    );
    eprintln!("default ServiceAccount after {:?}", started.elapsed());
    let ca = server.kubectl_until_ok(
        &[
            "get",
            "configmap",
            "kube-root-ca.crt",
            "-n",
            "team",
            "-o",
            "jsonpath={.data.ca\\.crt}",
        ],
        30,
    );
    assert!(stdout(&ca).contains("BEGIN CERTIFICATE"), "{}", stderr(&ca));
    let out = server.kubectl(&[
        "create",
        "configmap",
        "c",
        "-n",
        "team",
        "--from-literal=a=b",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = server.kubectl(&["create", "deployment", "d", "-n", "team", "--image=busybox"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = server.kubectl(&["delete", "namespace", "team", "--timeout=60s"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = server.kubectl(&["get", "namespace", "team"]);
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
    server.stop();
}

#[test]
fn foreground_deletion_of_a_deployment_takes_its_replicaset_and_pods_first() {
    let mut server = Server::new(&[]);
    server.start();
    let out = server.kubectl(&[
        "create",
        "deployment",
        "web",
        "--image=nginx",
        "--replicas=2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let count = |what: &str| {
        let out = server.kubectl(&["get", what, "-l", "app=web", "-o", "name"]);
        stdout(&out).lines().count()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while count("pods") < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no pods for the Deployment"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    assert_eq!(count("replicasets"), 1);
    let out = server.kubectl(&[
        "delete",
        "deployment",
        "web",
        "--cascade=foreground",
        "--timeout=60s",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // kubectl waited for the Deployment itself, which foreground deletion removes last.
    assert_eq!(count("replicasets"), 0);
    assert_eq!(count("pods"), 0);
    server.stop();
}
