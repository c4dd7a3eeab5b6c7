//! Node IPAM end to end: nodes get distinct /24s of the cluster pod CIDR, a node that came with
//! one keeps it (and it is never handed out again), a deleted node's range is released, and a
//! restarted controller remembers the ranges in use from the nodes.

mod support;

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Node;
use kube::api::{DeleteParams, PostParams};
use kube::Api;
use serde_json::json;
use support::{eventually, Cluster, Running};

const CLUSTER_CIDR: &str = "10.244.0.0/22";

async fn manager(cluster: &Cluster) -> Running {
    cluster
        .manager(controllers::Config {
            controllers: vec!["nodeipam".into()],
            leader_election: false,
            node_ipam: controllers::node_ipam::Settings {
                cluster_cidr: Some(CLUSTER_CIDR.into()),
                node_cidr_mask_size: None,
            },
            ..Default::default()
        })
        .await
}

async fn create(nodes: &Api<Node>, name: &str, pod_cidr: Option<&str>) {
    let mut spec = json!({});
    if let Some(c) = pod_cidr {
        spec = json!({"podCIDR": c, "podCIDRs": [c]});
    }
    let node =
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": spec});
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(node).unwrap(),
        )
        .await
        .expect("create node");
}

async fn cidr_of(nodes: &Api<Node>, name: &str) -> String {
    eventually(&format!("a pod CIDR for {name}"), 20, || async {
        let node = nodes.get(name).await.ok()?;
        let spec = node.spec?;
        let cidr = spec.pod_cidr.filter(|c| !c.is_empty())?;
        assert_eq!(spec.pod_cidrs, Some(vec![cidr.clone()]));
        Some(cidr)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_get_distinct_ranges_released_on_delete() {
    let cluster = Cluster::start().await;
    let nodes: Api<Node> = Api::all(cluster.admin.clone());
    // One node comes with a range already: it is kept and never handed out.
    create(&nodes, "preset", Some("10.244.0.0/24")).await;
    let ipam = manager(&cluster).await;
    create(&nodes, "a", None).await;
    create(&nodes, "b", None).await;
    let a = cidr_of(&nodes, "a").await;
    let b = cidr_of(&nodes, "b").await;
    let preset = cidr_of(&nodes, "preset").await;
    assert_eq!(preset, "10.244.0.0/24");
    let all: BTreeSet<_> = [&a, &b, &preset].into_iter().cloned().collect();
    assert_eq!(all.len(), 3, "{all:?}");
    for c in [&a, &b] {
        assert!(c.starts_with("10.244.") && c.ends_with(".0/24"), "{c}");
    }

    // The /22 has four /24s: the fourth node takes the last, a fifth finds none.
    create(&nodes, "c", None).await;
    let c = cidr_of(&nodes, "c").await;
    create(&nodes, "d", None).await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let d = nodes.get("d").await.unwrap();
    assert_eq!(d.spec.and_then(|s| s.pod_cidr), None);
    let events = cluster
        .kubectl(&[
            "get",
            "events",
            "-A",
            "--field-selector",
            "involvedObject.name=d",
        ])
        .await;
    assert!(events.contains("CIDRNotAvailable"), "{events}");

    // Deleting a node frees its range for the waiting node.
    nodes.delete("b", &DeleteParams::default()).await.unwrap();
    let d = cidr_of(&nodes, "d").await;
    assert_eq!(d, b, "the released range goes to the waiting node");

    // A restarted controller rebuilds what is in use from the nodes: no duplicate.
    ipam.stop().await;
    let ipam = manager(&cluster).await;
    create(&nodes, "e", None).await;
    nodes.delete("c", &DeleteParams::default()).await.unwrap();
    let e = cidr_of(&nodes, "e").await;
    assert_eq!(e, c, "only c's range was free");
    let all: BTreeSet<_> = [&a, &d, &e, &preset].into_iter().cloned().collect();
    assert_eq!(all.len(), 4, "{all:?}");

    ipam.stop().await;
    cluster.stop().await;
}
