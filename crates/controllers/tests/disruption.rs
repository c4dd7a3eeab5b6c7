//! PodDisruptionBudgets end to end: the disruption controller's status follows the pods (whose
//! readiness the tests set, playing the kubelet), and the API server's eviction subresource
//! honours it, through kube-rs and through the real `kubectl drain`.

mod support;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use kube::api::{EvictParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use support::{eventually, Cluster};

async fn pod(client: &Client, name: &str, node: &str, owner: Option<&ReplicaSet>) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let owners = owner.map(|rs| {
        json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs.metadata.name,
                "uid": rs.metadata.uid, "controller": true}])
    });
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"},
                     "ownerReferences": owners},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}
    });
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(pod).unwrap(),
    )
    .await
    .expect("create pod");
    set_ready(client, name, true).await;
}

/// The kubelet's report: running, and ready or not.
async fn set_ready(client: &Client, name: &str, ready: bool) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let status = json!({"status": {"phase": "Running", "conditions": [{
        "type": "Ready", "status": if ready { "True" } else { "False" },
        "lastTransitionTime": k8s_openapi::jiff::Timestamp::now().to_string()
    }]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Strategic(status))
        .await
        .expect("pod status");
}

async fn budget(client: &Client, name: &str, spec: serde_json::Value) {
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "default");
    let pdb = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                     "metadata": {"name": name, "namespace": "default"}, "spec": spec});
    pdbs.create(
        &PostParams::default(),
        &serde_json::from_value(pdb).unwrap(),
    )
    .await
    .expect("create pdb");
}

/// Waits until the budget's status has these (currentHealthy, desiredHealthy, expectedPods,
/// disruptionsAllowed) and is current.
async fn status_is(
    client: &Client,
    name: &str,
    want: (i32, i32, i32, i32),
) -> PodDisruptionBudgetStatus {
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "default");
    let what = format!("pdb {name} status {want:?}");
    eventually(&what, 20, || async {
        let pdb = pdbs.get(name).await.unwrap();
        let s = pdb.status?;
        let have = (
            s.current_healthy,
            s.desired_healthy,
            s.expected_pods,
            s.disruptions_allowed,
        );
        (have == want && s.observed_generation == pdb.metadata.generation).then_some(s)
    })
    .await
}

fn condition(status: &PodDisruptionBudgetStatus) -> (String, String) {
    let c = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "DisruptionAllowed")
        .expect("DisruptionAllowed condition");
    (c.status.clone(), c.reason.clone())
}

#[tokio::test]
async fn status_follows_the_pods_and_evictions_respect_it() {
    let mut cluster = Cluster::start().await;
    cluster.node("n1", json!({})).await;
    let admin = cluster.admin.clone();
    for name in ["web-0", "web-1", "web-2"] {
        pod(&admin, name, "n1", None).await;
    }
    budget(
        &admin,
        "web",
        json!({"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}),
    )
    .await;
    cluster.controllers(&["disruption"]).await;

    let status = status_is(&admin, "web", (3, 2, 3, 1)).await;
    assert_eq!(condition(&status), ("True".into(), "SufficientPods".into()));

    // An unready pod is not healthy.
    set_ready(&admin, "web-2", false).await;
    let status = status_is(&admin, "web", (2, 2, 3, 0)).await;
    assert_eq!(
        condition(&status),
        ("False".into(), "InsufficientPods".into())
    );
    set_ready(&admin, "web-2", true).await;
    status_is(&admin, "web", (3, 2, 3, 1)).await;

    // One eviction is allowed (kube-rs sends its delete options as `delete_options`, which the
    // API server ignores as upstream's does, so the pod is deleted gracefully and, with no
    // kubelet, stays terminating)...
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    pods.evict("web-0", &EvictParams::default())
        .await
        .expect("allowed eviction");
    let evicted = pods.get("web-0").await.unwrap();
    assert!(evicted.metadata.deletion_timestamp.is_some());
    status_is(&admin, "web", (2, 2, 3, 0)).await;
    // ...the next would break the budget: 429 (asked without kube-rs's default retries of 429).
    let mut config = support::kube_config(&cluster.kubeconfig, cluster.addr).await;
    config.default_retry = false;
    let once: Api<Pod> = Api::namespaced(Client::try_from(config).unwrap(), "default");
    let err = once
        .evict("web-1", &EvictParams::default())
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(e) => {
            assert_eq!(e.code, 429, "{e:?}");
            assert_eq!(e.reason, "TooManyRequests");
            assert_eq!(
                e.message,
                "Cannot evict pod as it would violate the pod's disruption budget."
            );
        }
        other => panic!("expected 429, got {other:?}"),
    }
    assert!(pods.get_opt("web-1").await.unwrap().is_some());
    cluster.stop().await;
}

/// maxUnavailable and percentages count the owners' scale, read through their scale
/// subresource, not the pods that happen to exist.
#[tokio::test]
async fn expected_pods_come_from_the_owners_scale() {
    let mut cluster = Cluster::start().await;
    cluster.node("n1", json!({})).await;
    let admin = cluster.admin.clone();
    let sets: Api<ReplicaSet> = Api::namespaced(admin.clone(), "default");
    let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}}});
    let rs = sets
        .create(&PostParams::default(), &serde_json::from_value(rs).unwrap())
        .await
        .expect("create replicaset");
    for name in ["web-a", "web-b", "web-c"] {
        pod(&admin, name, "n1", Some(&rs)).await;
    }
    budget(
        &admin,
        "half",
        json!({"maxUnavailable": "50%", "selector": {"matchLabels": {"app": "web"}}}),
    )
    .await;
    cluster.controllers(&["disruption"]).await;
    // 4 expected, at most ceil(50% of 4) = 2 unavailable: 2 must be healthy, 3 are.
    status_is(&admin, "half", (3, 2, 4, 1)).await;
    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 6}})),
    )
    .await
    .unwrap();
    status_is(&admin, "half", (3, 3, 6, 0)).await;
    cluster.stop().await;
}

#[tokio::test]
async fn kubectl_drain_waits_for_the_budget() {
    let mut cluster = Cluster::start().await;
    cluster.node("guarded", json!({})).await;
    cluster.node("free", json!({})).await;
    let admin = cluster.admin.clone();
    pod(&admin, "only", "guarded", None).await;
    pod(&admin, "loner", "free", None).await;
    // Selects only "only": its one pod must stay.
    budget(
        &admin,
        "keep",
        json!({"minAvailable": 1, "selector": {"matchExpressions": [
            {"key": "app", "operator": "In", "values": ["web"]}]}}),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    pods.patch(
        "loner",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "other"}}})),
    )
    .await
    .unwrap();
    cluster.controllers(&["disruption"]).await;
    status_is(&admin, "keep", (1, 1, 1, 0)).await;

    let args = ["drain", "--force", "--grace-period=0", "--timeout=8s"];
    let out = cluster
        .kubectl_v(None, &[&args[..], &["guarded"]].concat())
        .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "drain should time out");
    assert!(
        stderr.contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "{stderr}"
    );
    assert!(pods.get_opt("only").await.unwrap().is_some());

    let drained = cluster.kubectl(&[&args[..], &["free"]].concat()).await;
    assert!(drained.contains("pod/loner evicted"), "{drained}");
    assert!(drained.contains("node/free drained"), "{drained}");
    assert!(pods.get_opt("loner").await.unwrap().is_none());
    cluster.stop().await;
}
