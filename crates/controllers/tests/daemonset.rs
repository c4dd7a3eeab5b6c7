//! The DaemonSet controller end to end: Node objects without kubelets; the test plays the
//! kubelet by marking pods Running and Ready.

mod support;

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use support::{eventually, Cluster};

fn daemonset(name: &str, spec: serde_json::Value) -> DaemonSet {
    let mut ds = json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "agent", "image": "agent:v1"}]}
            }
        }
    });
    support::merge(&mut ds, json!({ "spec": spec }));
    serde_json::from_value(ds).unwrap()
}

async fn live_pods(pods: &Api<Pod>, app: &str) -> Vec<Pod> {
    pods.list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

/// The node a daemon pod is pinned to by its required node affinity.
fn pinned_node(pod: &Pod) -> String {
    let required = pod
        .spec
        .as_ref()
        .unwrap()
        .affinity
        .as_ref()
        .unwrap()
        .node_affinity
        .as_ref()
        .unwrap()
        .required_during_scheduling_ignored_during_execution
        .as_ref()
        .unwrap();
    let field = &required.node_selector_terms[0]
        .match_fields
        .as_ref()
        .unwrap()[0];
    assert_eq!(
        (field.key.as_str(), field.operator.as_str()),
        ("metadata.name", "In")
    );
    field.values.as_ref().unwrap()[0].clone()
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Plays the kubelet: the pod runs and is ready.
async fn make_ready(pods: &Api<Pod>, pod: &Pod) {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let status = json!({"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": now}
    ]}});
    pods.patch_status(
        &pod.name_any(),
        &PatchParams::default(),
        &Patch::Merge(status),
    )
    .await
    .unwrap();
}

async fn make_all_ready(pods: &Api<Pod>, app: &str) {
    for pod in live_pods(pods, app).await {
        if !is_ready(&pod) {
            make_ready(pods, &pod).await;
        }
    }
}

fn image(pod: &Pod) -> String {
    pod.spec.as_ref().unwrap().containers[0]
        .image
        .clone()
        .unwrap_or_default()
}

#[tokio::test]
async fn daemonset_places_one_pod_per_untainted_node_and_rolls_an_image_update() {
    let mut cluster = Cluster::start().await;
    for name in ["node-a", "node-b", "node-c"] {
        cluster.node(name, json!({})).await;
    }
    let nodes: Api<Node> = Api::all(cluster.admin.clone());
    let taint = json!({"spec": {"taints": [{"key": "dedicated", "value": "infra", "effect": "NoSchedule"}]}});
    nodes
        .patch("node-c", &PatchParams::default(), &Patch::Merge(taint))
        .await
        .unwrap();
    cluster.controllers(&["daemonset"]).await;
    let daemonsets: Api<DaemonSet> = Api::namespaced(cluster.admin.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(cluster.admin.clone(), "default");
    daemonsets
        .create(&PostParams::default(), &daemonset("agent", json!({})))
        .await
        .unwrap();
    let placed = eventually("a pod on each untainted node", 20, || async {
        let list = live_pods(&pods, "agent").await;
        (list.len() == 2).then_some(list)
    })
    .await;
    let on: BTreeSet<String> = placed.iter().map(pinned_node).collect();
    assert_eq!(on, ["node-a", "node-b"].map(String::from).into());
    let tolerations = placed[0]
        .spec
        .as_ref()
        .unwrap()
        .tolerations
        .clone()
        .unwrap();
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
        "node.kubernetes.io/disk-pressure",
        "node.kubernetes.io/memory-pressure",
        "node.kubernetes.io/pid-pressure",
        "node.kubernetes.io/unschedulable",
    ] {
        assert!(
            tolerations.iter().any(|t| t.key.as_deref() == Some(key)),
            "{key}"
        );
    }
    assert!(placed[0].labels().contains_key("controller-revision-hash"));
    make_all_ready(&pods, "agent").await;
    eventually("status counts every node", 20, || async {
        let s = daemonsets.get("agent").await.unwrap().status?;
        (s.desired_number_scheduled == 2
            && s.current_number_scheduled == 2
            && s.number_ready == 2
            && s.number_available == Some(2)
            && s.updated_number_scheduled == Some(2)
            && s.number_misscheduled == 0)
            .then_some(())
    })
    .await;
    let out = cluster
        .kubectl(&[
            "rollout",
            "status",
            "ds/agent",
            "-n",
            "default",
            "--timeout=20s",
        ])
        .await;
    assert!(out.contains("successfully rolled out"), "{out}");

    // An image change rolls node by node (maxUnavailable 1).
    let change = json!({"spec": {"template": {"spec": {"containers": [{"name": "agent", "image": "agent:v2"}]}}}});
    daemonsets
        .patch("agent", &PatchParams::default(), &Patch::Strategic(change))
        .await
        .unwrap();
    eventually("every pod on v2", 40, || async {
        make_all_ready(&pods, "agent").await;
        let list = live_pods(&pods, "agent").await;
        let old = list.iter().filter(|p| image(p) == "agent:v1").count();
        // Never both nodes without a serving pod at once.
        assert!(!list.is_empty(), "{list:?}");
        (old == 0 && list.len() == 2).then_some(())
    })
    .await;
    let out = cluster
        .kubectl(&[
            "rollout",
            "status",
            "ds/agent",
            "-n",
            "default",
            "--timeout=20s",
        ])
        .await;
    assert!(out.contains("successfully rolled out"), "{out}");
    let history = cluster
        .kubectl(&["rollout", "history", "ds/agent", "-n", "default"])
        .await;
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revisions, vec!["1", "2"], "{history}");
    let out = cluster
        .kubectl(&["get", "pods", "-n", "default", "-l", "app=agent"])
        .await;
    assert_eq!(out.lines().count(), 3, "{out}");
    cluster.stop().await;
}

#[tokio::test]
async fn node_selector_limits_the_nodes_and_new_matching_nodes_get_a_pod() {
    let mut cluster = Cluster::start().await;
    cluster.node("fast", json!({"disk": "ssd"})).await;
    cluster.node("slow", json!({"disk": "hdd"})).await;
    cluster.controllers(&["daemonset"]).await;
    let daemonsets: Api<DaemonSet> = Api::namespaced(cluster.admin.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(cluster.admin.clone(), "default");
    let spec = json!({"template": {"spec": {"nodeSelector": {"disk": "ssd"}}}});
    daemonsets
        .create(&PostParams::default(), &daemonset("cache", spec))
        .await
        .unwrap();
    let placed = eventually("one pod on the ssd node", 20, || async {
        let list = live_pods(&pods, "cache").await;
        (list.len() == 1).then_some(list)
    })
    .await;
    assert_eq!(pinned_node(&placed[0]), "fast");
    // A node that starts matching gets its pod.
    let nodes: Api<Node> = Api::all(cluster.admin.clone());
    let relabel = json!({"metadata": {"labels": {"disk": "ssd"}}});
    nodes
        .patch("slow", &PatchParams::default(), &Patch::Merge(relabel))
        .await
        .unwrap();
    let placed = eventually("a pod on each ssd node", 20, || async {
        let list = live_pods(&pods, "cache").await;
        (list.len() == 2).then_some(list)
    })
    .await;
    let on: BTreeSet<String> = placed.iter().map(pinned_node).collect();
    assert_eq!(on, ["fast", "slow"].map(String::from).into());
    let s = eventually("desired 2", 20, || async {
        let s = daemonsets.get("cache").await.unwrap().status?;
        (s.desired_number_scheduled == 2 && s.current_number_scheduled == 2).then_some(s)
    })
    .await;
    assert_eq!(s.number_ready, 0);
    assert_eq!(s.number_unavailable, Some(2));
    cluster.stop().await;
}
