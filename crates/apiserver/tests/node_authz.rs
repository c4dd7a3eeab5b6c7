//! The Node authorizer and NodeRestriction admission with the real kubectl and a kubelet's client
//! certificate (`system:node:n1` in `system:nodes`, signed by the cluster CA) under Node,RBAC:
//! the kubelet reads the secrets and configmaps of pods bound to its node and nothing else, and
//! writes only its own Node, its own Lease and the status of its own pods.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use apiserver::AuthorizationMode;
use common::TestServer;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

/// A 403's message (panics on anything else).
fn forbidden(err: kube::Error) -> String {
    match err {
        kube::Error::Api(e) if e.code == 403 => e.message,
        other => panic!("expected a 403, got {other:?}"),
    }
}

async fn server() -> TestServer {
    TestServer::start_with(|c| c.authorization_mode = AuthorizationMode::NodeRbac).await
}

fn kubelet(s: &TestServer, node: &str) -> PathBuf {
    s.cert_kubeconfig(
        &format!("{node}.kubeconfig"),
        &format!("system:node:{node}"),
        "system:nodes",
    )
}

/// kubectl as `kubeconfig`: Ok(stdout) or Err(stderr).
async fn run(s: &TestServer, kubeconfig: &Path, args: &[&str]) -> Result<String, String> {
    let out = s.kubectl_with(kubeconfig, args).await;
    match out.status.success() {
        true => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

/// Retries until the graph has caught up with a pod just written (it follows the watch).
async fn eventually(s: &TestServer, kubeconfig: &Path, args: &[&str]) -> String {
    let mut last = String::new();
    for _ in 0..50 {
        match run(s, kubeconfig, args).await {
            Ok(out) => return out,
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("kubectl {args:?} kept failing: {last}");
}

const OBJECTS: &str = r#"
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Node, metadata: {name: n1, labels: {kubernetes.io/hostname: n1}}}
- {apiVersion: v1, kind: Node, metadata: {name: n2}}
- {apiVersion: v1, kind: Secret, metadata: {name: used}, stringData: {k: v}}
- {apiVersion: v1, kind: Secret, metadata: {name: unused}, stringData: {k: v}}
- {apiVersion: v1, kind: Secret, metadata: {name: on-n2}, stringData: {k: v}}
- {apiVersion: v1, kind: ConfigMap, metadata: {name: settings}, data: {k: v}}
- apiVersion: v1
  kind: Pod
  metadata: {name: on-n1}
  spec:
    nodeName: n1
    containers:
    - name: c
      image: registry.k8s.io/pause:3.10
      envFrom: [{configMapRef: {name: settings}}]
    volumes: [{name: s, secret: {secretName: used}}]
- apiVersion: v1
  kind: Pod
  metadata: {name: on-n2}
  spec:
    nodeName: n2
    containers: [{name: c, image: registry.k8s.io/pause:3.10}]
    volumes: [{name: s, secret: {secretName: on-n2}}]
"#;

async fn setup(s: &TestServer) {
    // The default ServiceAccount may come from the server or a controller: make sure it is there.
    let _ = s.kubectl(&["create", "serviceaccount", "default"]).await;
    let objects = s.file("objects.yaml", OBJECTS);
    s.ok(&["create", "-f", &objects]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubelet_reads_only_what_its_pods_use() {
    let s = server().await;
    setup(&s).await;
    let n1 = kubelet(&s, "n1");

    let out = eventually(&s, &n1, &["get", "secret", "used", "-o", "name"]).await;
    assert_eq!(out.trim(), "secret/used");
    run(&s, &n1, &["get", "configmap", "settings"])
        .await
        .expect("the pod's configmap");
    run(&s, &n1, &["get", "pod", "on-n1"])
        .await
        .expect("its own pod");

    let err = run(&s, &n1, &["get", "secret", "unused"])
        .await
        .expect_err("a secret no pod on n1 uses");
    assert!(
        err.contains(r#"Error from server (Forbidden): secrets "unused" is forbidden: User "system:node:n1" cannot get resource "secrets" in API group "" in the namespace "default": no relationship found between node 'n1' and this object"#),
        "{err}"
    );
    let err = run(&s, &n1, &["get", "secret", "on-n2"]).await.unwrap_err();
    assert!(err.contains("(Forbidden)"), "another node's secret: {err}");
    let err = run(&s, &n1, &["get", "secrets"]).await.unwrap_err();
    assert!(err.contains("(Forbidden)"), "listing all secrets: {err}");
    let err = run(&s, &n1, &["get", "pod", "on-n2"]).await.unwrap_err();
    assert!(err.contains("(Forbidden)"), "another node's pod: {err}");

    // Pods only with its own spec.nodeName selector; Nodes only its own.
    let out = run(
        &s,
        &n1,
        &[
            "get",
            "pods",
            "-A",
            "--field-selector",
            "spec.nodeName=n1",
            "-o",
            "name",
        ],
    )
    .await
    .expect("its pods by field selector");
    assert_eq!(out.trim(), "pod/on-n1");
    let err = run(&s, &n1, &["get", "pods", "-A"]).await.unwrap_err();
    assert!(
        err.contains("can only list/watch pods with spec.nodeName field selector"),
        "{err}"
    );
    run(&s, &n1, &["get", "node", "n1"])
        .await
        .expect("its Node");
    let err = run(&s, &n1, &["get", "node", "n2"]).await.unwrap_err();
    assert!(
        err.contains(r#"nodes "n2" is forbidden: User "system:node:n1" cannot get resource "nodes" in API group "" at the cluster scope: node 'n1' cannot read 'n2', only its own Node object"#),
        "{err}"
    );

    // Deleting the pod takes the secret away from the node.
    s.ok(&["delete", "pod", "on-n1", "--grace-period=0", "--force"])
        .await;
    let mut refused = false;
    for _ in 0..50 {
        if run(&s, &n1, &["get", "secret", "used"]).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused, "the secret stayed readable after its pod went");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubelet_writes_only_its_own_node_lease_and_pods() {
    let s = server().await;
    setup(&s).await;
    let n1 = kubelet(&s, "n1");
    let ready = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ok"}]}});
    // As the kubelet does it: a PATCH of nodes/status (kubectl would GET nodes/status first,
    // which upstream's Node authorizer does not allow either).
    let client = s.client_from(&n1).await;
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch_status("n1", &PatchParams::default(), &Patch::Merge(&ready))
        .await
        .expect("its own Node's status");
    let status = s
        .ok(&[
            "get",
            "node",
            "n1",
            "-o",
            "jsonpath={.status.conditions[0].reason}",
        ])
        .await;
    assert_eq!(status, "KubeletReady");
    let err = nodes
        .patch_status("n2", &PatchParams::default(), &Patch::Merge(&ready))
        .await
        .expect_err("another Node's status");
    assert_eq!(
        forbidden(err),
        r#"nodes "n2" is forbidden: node "n1" is not allowed to modify node "n2""#
    );
    let err = run(
        &s,
        &n1,
        &[
            "label",
            "node",
            "n1",
            "node-restriction.kubernetes.io/trusted=yes",
        ],
    )
    .await
    .expect_err("a node-restriction label");
    assert!(
        err.contains("is not allowed to modify labels: node-restriction.kubernetes.io/trusted"),
        "{err}"
    );
    run(&s, &n1, &["label", "node", "n1", "team=blue"])
        .await
        .expect("an ordinary label");
    let err = run(&s, &n1, &["taint", "node", "n1", "k=v:NoSchedule"])
        .await
        .unwrap_err();
    assert!(
        err.contains(r#"node "n1" is not allowed to modify taints"#),
        "{err}"
    );

    // Pods: status of its own only; no other writes but mirror pods and deletes of its own.
    let running = json!({"status": {"phase": "Running"}});
    let pods: Api<Pod> = Api::namespaced(client, "default");
    pods.patch_status("on-n1", &PatchParams::default(), &Patch::Merge(&running))
        .await
        .expect("its own pod's status");
    let err = pods
        .patch_status("on-n2", &PatchParams::default(), &Patch::Merge(&running))
        .await
        .expect_err("another node's pod");
    assert_eq!(
        forbidden(err),
        r#"pods "on-n2" is forbidden: node "n1" can only update pod status for pods with spec.nodeName set to itself"#
    );
    let err = run(&s, &n1, &["label", "pod", "on-n1", "x=y"])
        .await
        .unwrap_err();
    assert!(
        err.contains(
            r#"unexpected operation "UPDATE", node "n1" can only create and delete mirror pods"#
        ) || err.contains("(Forbidden)"),
        "{err}"
    );
    let err = run(&s, &n1, &["delete", "pod", "on-n2"]).await.unwrap_err();
    assert!(
        err.contains(r#"node "n1" can only delete pods with spec.nodeName set to itself"#),
        "{err}"
    );
    let err = run(
        &s,
        &n1,
        &["run", "sneaky", "--image=registry.k8s.io/pause:3.10"],
    )
    .await
    .unwrap_err();
    assert!(
        err.contains(r#"node "n1" can only create mirror pods"#),
        "{err}"
    );

    // Leases: its own, in kube-node-lease.
    let _ = s.kubectl(&["create", "namespace", "kube-node-lease"]).await;
    let lease = |name: &str| {
        format!(
            r#"{{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{{"name":"{name}","namespace":"kube-node-lease"}},"spec":{{"holderIdentity":"{name}"}}}}"#
        )
    };
    let own = s.file("own-lease.json", &lease("n1"));
    run(&s, &n1, &["create", "-f", &own])
        .await
        .expect("its lease");
    let other = s.file("other-lease.json", &lease("n2"));
    let err = run(&s, &n1, &["create", "-f", &other]).await.unwrap_err();
    assert!(
        err.contains("can only access node lease with the same name as the requesting node"),
        "{err}"
    );
    s.stop().await;
}
