//! Graceful node shutdown's termination path end to end (`kubelet::shutdown::run` over
//! `kubelet::pods`, the real API server and containerd): the Node turns NotReady ("node is
//! shutting down"), regular pods end first within shutdownGracePeriod less
//! shutdownGracePeriodCriticalPods, critical pods after them, each Failed with reason
//! Terminated, upstream's message and the DisruptionTarget condition. Needs root.

mod pods_support;
mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kubelet::shutdown::{self, Config};
use pods_support::{Cluster, BUSYBOX, NODE};
use serde_json::json;

fn pod(name: &str, priority: i32) -> serde_json::Value {
    json!({
        "metadata": {"name": name},
        "spec": {
            "hostNetwork": true,
            "priority": priority,
            "terminationGracePeriodSeconds": 30,
            // PID 1 ignores SIGTERM: each pod takes its whole grace period to stop.
            "containers": [{"name": "main", "image": BUSYBOX, "command": ["sleep", "3600"]}]
        }
    })
}

fn phase(pod: &serde_json::Value) -> &str {
    pod["status"]["phase"].as_str().unwrap_or("")
}

#[test]
fn a_node_shutdown_ends_regular_pods_then_critical_ones() {
    if !support::can_run_containers() {
        return;
    }
    support::netns::run(async {
        let cluster = Cluster::start().await;
        cluster.create_pod(pod("regular", 0)).await;
        cluster.create_pod(pod("critical", 2_000_000_000)).await;
        for name in ["regular", "critical"] {
            cluster
                .wait_pod(name, 60, "Running", |p| phase(p) == "Running")
                .await;
        }
        let config = Config::new(Duration::from_secs(6), Duration::from_secs(3)).unwrap();
        let ctx = cluster.ctx.clone();
        let killer = cluster.pods.as_ref().unwrap().killer();
        let started = std::time::Instant::now();
        let run = tokio::spawn(async move { shutdown::run(&ctx, &killer, config).await });

        let nodes: Api<Node> = Api::all(cluster.admin.clone());
        let ready = pods_support::eventually("the node NotReady", 10, || async {
            let node = nodes.get(NODE).await.ok()?;
            let conditions = node.status?.conditions?;
            let ready = conditions.into_iter().find(|c| c.type_ == "Ready")?;
            (ready.status == "False").then_some(ready)
        })
        .await;
        assert_eq!(ready.reason.as_deref(), Some("KubeletNotReady"));
        assert_eq!(ready.message.as_deref(), Some(shutdown::NOT_READY_MESSAGE));

        let regular = cluster
            .wait_pod("regular", 30, "Failed", |p| phase(p) == "Failed")
            .await;
        // Within the regular pods' share (3 s, plus the stop), while the critical pod runs on.
        assert!(
            started.elapsed() >= Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        let critical = serde_json::to_value(cluster.get_pod("critical").await.unwrap()).unwrap();
        assert_eq!(phase(&critical), "Running", "{}", critical["status"]);
        let critical = cluster
            .wait_pod("critical", 30, "Failed", |p| phase(p) == "Failed")
            .await;
        tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .expect("shutdown returns")
            .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{:?}",
            started.elapsed()
        );
        for pod in [&regular, &critical] {
            let status = &pod["status"];
            assert_eq!(status["reason"], shutdown::REASON, "{status}");
            assert_eq!(status["message"], shutdown::MESSAGE);
            let conditions = status["conditions"].as_array().unwrap();
            assert!(
                conditions
                    .iter()
                    .any(|c| c["type"] == "DisruptionTarget"
                        && c["reason"] == "TerminationByKubelet"),
                "{status}"
            );
        }
        cluster.stop().await;
    });
}
