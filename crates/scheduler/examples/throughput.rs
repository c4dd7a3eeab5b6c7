//! The scheduling algorithm alone at scheduler_perf's SchedulingBasic size: 5,000 nodes
//! (4 cpu, 32Gi, 110 pods) and 10,000 pods requesting 100m cpu and 500Mi memory, placed through
//! the cache (snapshot, filter, score, assume) with no API server, so it measures the
//! scheduler's own cost per pod. Run with `cargo run --release -p scheduler --example throughput
//! [NODES PODS]`; the end-to-end benchmark through the API server is separate.

use std::time::Instant;

use k8s_openapi::api::core::v1::{Container, Node, NodeStatus, Pod, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use scheduler::cache::Cache;
use scheduler::placement;

fn quantities(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
        .collect()
}

fn node(i: usize) -> Node {
    let name = format!("node-{i}");
    let alloc = quantities(&[("cpu", "4"), ("memory", "32Gi"), ("pods", "110")]);
    Node {
        metadata: ObjectMeta {
            labels: Some([("kubernetes.io/hostname".to_string(), name.clone())].into()),
            name: Some(name),
            ..Default::default()
        },
        status: Some(NodeStatus {
            allocatable: Some(alloc.clone()),
            capacity: Some(alloc),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn pod(i: usize) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("pod-{i}")),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{i}")),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                resources: Some(ResourceRequirements {
                    requests: Some(quantities(&[("cpu", "100m"), ("memory", "500Mi")])),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    }
}

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<usize>().unwrap_or(0));
    let nodes = args.next().filter(|n| *n > 0).unwrap_or(5000);
    let pods = args.next().filter(|n| *n > 0).unwrap_or(10_000);
    let mut cache = Cache::default();
    for i in 0..nodes {
        cache.set_node(node(i));
    }
    let mut latencies = Vec::with_capacity(pods);
    let mut next_start = 0;
    let started = Instant::now();
    for i in 0..pods {
        let t = Instant::now();
        let p = pod(i);
        let snapshot = cache.snapshot();
        match placement::schedule(&p, &snapshot, &mut next_start) {
            Ok(chosen) => cache.assume(&p, &chosen.node),
            Err(e) => eprintln!("pod-{i}: {e}"),
        }
        latencies.push(t.elapsed());
    }
    let total = started.elapsed();
    latencies.sort();
    let p99 = latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)];
    println!(
        "{nodes} nodes, {pods} pods: {:.0} pods/s, p99 {:.2} ms per pod",
        pods as f64 / total.as_secs_f64(),
        p99.as_secs_f64() * 1000.0
    );
}
