//! `activeDeadlineSeconds` end to end (`kubelet::pods` with the real API server and
//! containerd): a pod running past its deadline is killed by the kubelet with phase Failed,
//! reason DeadlineExceeded and upstream's message (what Jobs' activeDeadlineSeconds rests on),
//! and a pod within its deadline keeps running. Needs root (skipped without).

mod pods_support;
mod support;

use std::time::{Duration, Instant};

use pods_support::{Cluster, BUSYBOX};
use serde_json::json;

fn pod(name: &str, deadline: i64) -> serde_json::Value {
    json!({
        "metadata": {"name": name},
        "spec": {
            "hostNetwork": true,
            "activeDeadlineSeconds": deadline,
            "terminationGracePeriodSeconds": 2,
            "containers": [{"name": "main", "image": BUSYBOX, "command": ["sleep", "3600"]}]
        }
    })
}

fn phase(pod: &serde_json::Value) -> &str {
    pod["status"]["phase"].as_str().unwrap_or("")
}

#[test]
fn a_pod_past_its_active_deadline_fails_with_deadline_exceeded() {
    if !support::can_run_containers() {
        return;
    }
    support::netns::run(async {
        let cluster = Cluster::start().await;
        cluster.create_pod(pod("short", 4)).await;
        cluster.create_pod(pod("long", 3600)).await;
        let running = cluster
            .wait_pod("short", 60, "Running", |p| phase(p) == "Running")
            .await;
        let started = Instant::now();
        assert!(running["status"]["startTime"].is_string());
        let failed = cluster
            .wait_pod("short", 30, "Failed", |p| phase(p) == "Failed")
            .await;
        // Not before its deadline (counted from startTime, whole seconds), nor long after.
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{:?}",
            started.elapsed()
        );
        let status = &failed["status"];
        assert_eq!(status["reason"], "DeadlineExceeded", "{status}");
        assert_eq!(
            status["message"],
            "Pod was active on the node longer than the specified deadline"
        );
        let terminated = &status["containerStatuses"][0]["state"]["terminated"];
        assert!(terminated.is_object(), "container stopped: {status}");
        // Its containers really stopped.
        let uid = failed["metadata"]["uid"].as_str().unwrap();
        let containers = cluster.cri.list_containers().await.unwrap();
        let running_left = containers.iter().filter(|c| {
            c.labels.get("io.kubernetes.pod.uid").map(String::as_str) == Some(uid)
                && c.state == kubelet::cri::api::ContainerState::ContainerRunning as i32
        });
        assert_eq!(running_left.count(), 0);
        let long = serde_json::to_value(cluster.get_pod("long").await.unwrap()).unwrap();
        assert_eq!(phase(&long), "Running");
        // It stays Failed with its reason (the status is not rewritten without it).
        tokio::time::sleep(Duration::from_secs(3)).await;
        let later = serde_json::to_value(cluster.get_pod("short").await.unwrap()).unwrap();
        assert_eq!(later["status"]["reason"], "DeadlineExceeded");
        assert_eq!(phase(&later), "Failed");
        cluster.stop().await;
    });
}
