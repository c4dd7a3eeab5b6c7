//! Node lifecycle and taint-based eviction, end to end: the tests play the kubelets (Leases in
//! kube-node-lease, node status), the controllers run with short timings.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use support::{eventually, Cluster, Running};

const GRACE: Duration = Duration::from_secs(3);

async fn manager(cluster: &Cluster) -> Running {
    cluster
        .manager(controllers::Config {
            controllers: vec!["nodelifecycle".into(), "taint-eviction-controller".into()],
            leader_election: false,
            node_lifecycle: controllers::node_lifecycle::Settings {
                monitor_period: Duration::from_millis(500),
                monitor_grace_period: GRACE,
                startup_grace_period: GRACE,
                ..Default::default()
            },
            ..Default::default()
        })
        .await
}

/// Renews the node's Lease now, creating it the first time, as the kubelet does.
async fn renew(client: &Client, node: &str) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": node, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": node, "leaseDurationSeconds": 40, "renewTime": now}
    });
    let renewed = leases
        .patch(node, &PatchParams::default(), &Patch::Merge(lease.clone()))
        .await;
    match renewed {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {
            let lease = serde_json::from_value(lease).unwrap();
            leases
                .create(&PostParams::default(), &lease)
                .await
                .expect("create lease");
        }
        Err(e) => panic!("renew lease: {e}"),
    }
}

/// A kubelet that keeps renewing `node`'s Lease every 500 ms until aborted.
fn kubelet(client: Client, node: &'static str) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            renew(&client, node).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

/// The kubelet posts Ready again.
async fn post_ready(client: &Client, node: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let status = json!({"status": {"conditions": [{
        "type": "Ready", "status": "True", "reason": "KubeletReady",
        "message": "kubelet is posting ready status",
        "lastHeartbeatTime": now, "lastTransitionTime": now
    }]}});
    nodes
        .patch_status(node, &PatchParams::default(), &Patch::Strategic(status))
        .await
        .expect("post node status");
}

async fn pod_on(client: &Client, name: &str, node: &str, tolerations: serde_json::Value) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "tolerations": tolerations,
                 "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}
    });
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(pod).unwrap(),
    )
    .await
    .expect("create pod");
}

/// `Some` once the pod is deleted or being deleted (with no kubelet to finish a graceful
/// deletion, a bound pod stays terminating): what it looked like then, if still there.
async fn evicted(pods: &Api<Pod>, name: &str) -> Option<Option<Pod>> {
    match pods.get_opt(name).await.unwrap() {
        None => Some(None),
        Some(p) if p.metadata.deletion_timestamp.is_some() => Some(Some(p)),
        Some(_) => None,
    }
}

fn taints(node: &Node) -> Vec<(String, String)> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|t| (t.key, t.effect))
        .collect()
}

fn unreachable(effect: &str) -> (String, String) {
    ("node.kubernetes.io/unreachable".into(), effect.into())
}

fn ready_condition(node: &Node) -> Option<k8s_openapi::api::core::v1::NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .cloned()
}

#[tokio::test]
async fn a_silent_node_is_tainted_its_pods_evicted_and_a_renewed_one_untainted() {
    let cluster = Cluster::start().await;
    let admin = cluster.admin.clone();
    cluster.node("alive", json!({})).await;
    cluster.node("silent", json!({})).await;
    let alive = kubelet(admin.clone(), "alive");
    renew(&admin, "silent").await;
    pod_on(&admin, "doomed", "silent", json!([])).await;
    let patient = json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                          "effect": "NoExecute", "tolerationSeconds": 6}]);
    pod_on(&admin, "patient", "silent", patient).await;
    let loyal = json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                        "effect": "NoExecute"}]);
    pod_on(&admin, "loyal", "silent", loyal).await;
    pod_on(&admin, "safe", "alive", json!([])).await;
    let manager = manager(&cluster).await;

    let nodes: Api<Node> = Api::all(admin.clone());
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    let node = eventually("the silent node to be Unknown and tainted", 30, || async {
        let node = nodes.get("silent").await.unwrap();
        let t = taints(&node);
        (t.contains(&unreachable("NoSchedule")) && t.contains(&unreachable("NoExecute")))
            .then_some(node)
    })
    .await;
    let tainted_at = Instant::now();
    let ready = ready_condition(&node).expect("Ready condition");
    assert_eq!(ready.status, "Unknown");
    assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
    assert_eq!(
        ready.message.as_deref(),
        Some("Kubelet stopped posting node status.")
    );

    let doomed = eventually("the pod without toleration to be evicted", 10, || async {
        evicted(&pods, "doomed").await
    })
    .await;
    let reason = doomed
        .and_then(|p| p.status?.conditions)
        .and_then(|cs| cs.into_iter().find(|c| c.type_ == "DisruptionTarget"))
        .and_then(|c| c.reason);
    assert_eq!(reason.as_deref(), Some("DeletionByTaintManager"));
    // tolerationSeconds: 6 keeps the patient pod for that long, then it goes too.
    assert!(evicted(&pods, "patient").await.is_none());
    eventually("the tolerating pod to be evicted", 20, || async {
        evicted(&pods, "patient").await
    })
    .await;
    assert!(
        tainted_at.elapsed() >= Duration::from_secs(4),
        "evicted after {:?}, before its tolerationSeconds",
        tainted_at.elapsed()
    );
    assert!(evicted(&pods, "loyal").await.is_none());
    assert!(evicted(&pods, "safe").await.is_none());
    assert!(taints(&nodes.get("alive").await.unwrap()).is_empty());

    // The kubelet comes back: Lease renewed, Ready posted; the taints go.
    let back = kubelet(admin.clone(), "silent");
    post_ready(&admin, "silent").await;
    eventually("the taints to be removed", 20, || async {
        taints(&nodes.get("silent").await.unwrap())
            .is_empty()
            .then_some(())
    })
    .await;
    alive.abort();
    back.abort();
    manager.stop().await;
    cluster.stop().await;
}

#[tokio::test]
async fn cordon_adds_the_unschedulable_taint() {
    let cluster = Cluster::start().await;
    cluster.node("n1", json!({})).await;
    let alive = kubelet(cluster.admin.clone(), "n1");
    let manager = manager(&cluster).await;
    let nodes: Api<Node> = Api::all(cluster.admin.clone());
    let unschedulable = (
        "node.kubernetes.io/unschedulable".to_string(),
        "NoSchedule".to_string(),
    );
    cluster.kubectl(&["cordon", "n1"]).await;
    eventually("the unschedulable taint", 20, || async {
        taints(&nodes.get("n1").await.unwrap())
            .contains(&unschedulable)
            .then_some(())
    })
    .await;
    cluster.kubectl(&["uncordon", "n1"]).await;
    eventually("the unschedulable taint to go", 20, || async {
        taints(&nodes.get("n1").await.unwrap())
            .is_empty()
            .then_some(())
    })
    .await;
    alive.abort();
    manager.stop().await;
    cluster.stop().await;
}

/// When every node goes silent at once the controller suspects itself (upstream's full
/// disruption): NoSchedule taints, but no NoExecute taint and no eviction.
#[tokio::test]
async fn no_eviction_when_every_node_is_down() {
    let cluster = Cluster::start().await;
    let admin = cluster.admin.clone();
    for name in ["a", "b"] {
        cluster.node(name, json!({})).await;
        renew(&admin, name).await;
    }
    pod_on(&admin, "p", "a", json!([])).await;
    let manager = manager(&cluster).await;
    let nodes: Api<Node> = Api::all(admin.clone());
    for name in ["a", "b"] {
        eventually("both nodes unreachable", 30, || async {
            taints(&nodes.get(name).await.unwrap())
                .contains(&unreachable("NoSchedule"))
                .then_some(())
        })
        .await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    for name in ["a", "b"] {
        let t = taints(&nodes.get(name).await.unwrap());
        assert!(!t.contains(&unreachable("NoExecute")), "{name}: {t:?}");
    }
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    assert!(evicted(&pods, "p").await.is_none());
    manager.stop().await;
    cluster.stop().await;
}
