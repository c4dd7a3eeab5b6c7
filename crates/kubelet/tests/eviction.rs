//! Node-pressure eviction end to end (`kubelet::eviction` over `kubelet::pods`, the real API
//! server and containerd): with memory.available's threshold set above what the machine has
//! free, the pressure is real; the eviction manager reports MemoryPressure and evicts one pod
//! per interval in upstream's order (over its requests first, then lower priority, then larger
//! use): the pod filling a memory-backed emptyDir first, with phase Failed, reason Evicted,
//! upstream's message, the DisruptionTarget condition and an Evicted event, while the others
//! keep running. Disk pressure removes unused images before evicting the pod writing most to
//! disk; PID pressure evicts the pod running most processes. Each test runs in a network namespace of its own; needs root (skipped without).

mod pods_support;
mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Event;
use kube::api::ListParams;
use kube::Api;
use kubelet::eviction::{self, Config, EvictionManager};
use kubelet::stats;
use pods_support::{Cluster, BUSYBOX};
use serde_json::json;

fn pod(name: &str, priority: i32, memory_request: Option<&str>, script: &str) -> serde_json::Value {
    let resources = match memory_request {
        Some(r) => json!({"requests": {"memory": r}}),
        None => json!({}),
    };
    json!({
        "metadata": {"name": name},
        "spec": {
            "hostNetwork": true,
            "priority": priority,
            "terminationGracePeriodSeconds": 5,
            "volumes": [
                {"name": "mem", "emptyDir": {"medium": "Memory"}},
                {"name": "disk", "emptyDir": {}}
            ],
            "containers": [{
                "name": "main",
                "image": BUSYBOX,
                "command": ["sh", "-c", script],
                "resources": resources,
                "volumeMounts": [
                    {"name": "mem", "mountPath": "/mem"},
                    {"name": "disk", "mountPath": "/disk"}
                ]
            }]
        }
    })
}

fn phase(pod: &serde_json::Value) -> &str {
    pod["status"]["phase"].as_str().unwrap_or("")
}

async fn all_running(cluster: &Cluster, names: &[&str]) {
    for name in names {
        cluster
            .wait_pod(name, 60, "Running", |p| phase(p) == "Running")
            .await;
    }
}

/// Asserts each named pod is still Running.
async fn still_running(cluster: &Cluster, names: &[&str], after: &str) {
    for name in names {
        let pod = serde_json::to_value(cluster.get_pod(name).await.unwrap()).unwrap();
        assert_eq!(
            phase(&pod),
            "Running",
            "{name} should still run after {after} was evicted: {}",
            pod["status"]
        );
    }
}

async fn evicted(cluster: &Cluster, name: &str) -> serde_json::Value {
    cluster
        .wait_pod(name, 60, "evicted", |p| phase(p) == "Failed")
        .await
}

async fn observation(
    cluster: &Cluster,
    signal: eviction::Signal,
) -> eviction::signals::Observation {
    let summary = stats::summary(&cluster.ctx).await.expect("stats summary");
    eviction::signals::observe(&summary)[&signal]
}

fn spawn(cluster: &Cluster, thresholds: &str) -> EvictionManager {
    let config = Config {
        thresholds: eviction::thresholds::statements(thresholds).unwrap(),
        monitoring_interval: Duration::from_secs(2),
        pressure_transition_period: Duration::from_secs(30),
        max_pod_grace_period: 0,
    };
    let pods = cluster.pods.as_ref().unwrap();
    eviction::spawn(cluster.ctx.clone(), config, pods.killer(), pods.pressure())
}

async fn events_of(cluster: &Cluster, name: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(cluster.admin.clone(), "default");
    let params = ListParams::default().fields(&format!("involvedObject.name={name}"));
    api.list(&params).await.unwrap().items
}

#[test]
fn memory_pressure_evicts_the_greediest_lowest_priority_pod_first() {
    if !support::can_run_containers() {
        return;
    }
    support::netns::run(async {
        let cluster = Cluster::start().await;
        let fill = "dd if=/dev/zero of=/mem/fill bs=1M count=96 && exec sleep 3600";
        let small = "dd if=/dev/zero of=/mem/fill bs=1M count=8 && exec sleep 3600";
        cluster.create_pod(pod("greedy", 0, None, fill)).await;
        cluster.create_pod(pod("modest", 0, None, small)).await;
        cluster.create_pod(pod("important", 1000, None, fill)).await;
        cluster
            .create_pod(pod("within-request", 0, Some("512Mi"), fill))
            .await;
        let names = ["greedy", "modest", "important", "within-request"];
        all_running(&cluster, &names).await;
        // Let the stats see the filled emptyDirs.
        tokio::time::sleep(Duration::from_secs(3)).await;

        // Pressure for real: the threshold is 8 GiB above what is available now.
        let memory = observation(&cluster, eviction::Signal::MemoryAvailable).await;
        let threshold = memory.available + (8 << 30);
        let manager = spawn(&cluster, &format!("memory.available<{threshold}"));
        let mut pressure = manager.pressure();
        tokio::time::timeout(Duration::from_secs(20), pressure.wait_for(|p| p.memory))
            .await
            .expect("MemoryPressure reported")
            .unwrap();

        // A BestEffort pod new to the node is refused under memory pressure.
        cluster
            .create_pod(pod("late", 0, None, "exec sleep 3600"))
            .await;
        let late = cluster
            .wait_pod("late", 30, "rejected", |p| phase(p) == "Failed")
            .await;
        assert_eq!(late["status"]["reason"], "Evicted");
        assert_eq!(
            late["status"]["message"],
            "Pod was rejected: The node had condition: [MemoryPressure]. "
        );

        let first = evicted(&cluster, "greedy").await;
        still_running(
            &cluster,
            &["modest", "important", "within-request"],
            "greedy",
        )
        .await;
        let status = &first["status"];
        assert_eq!(status["reason"], "Evicted", "{status}");
        let message = status["message"].as_str().unwrap();
        assert!(
            message.starts_with("The node was low on resource: memory. Threshold quantity: "),
            "{message}"
        );
        assert!(
            message.contains("Container main was using ")
                && message.contains("request is 0, has larger consumption of memory."),
            "{message}"
        );
        let disruption = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "DisruptionTarget")
            .unwrap_or_else(|| panic!("no DisruptionTarget condition: {status}"));
        assert_eq!(disruption["reason"], "TerminationByKubelet");
        assert!(
            status["containerStatuses"][0]["state"]["terminated"].is_object(),
            "containers stopped: {status}"
        );
        let events = events_of(&cluster, "greedy").await;
        let event = events
            .iter()
            .find(|e| e.reason.as_deref() == Some("Evicted"))
            .unwrap_or_else(|| panic!("no Evicted event: {events:?}"));
        assert_eq!(event.type_.as_deref(), Some("Warning"));
        assert_eq!(event.message.as_deref(), Some(message));

        let node_events = events_of(&cluster, pods_support::NODE).await;
        assert!(
            node_events
                .iter()
                .any(|e| e.reason.as_deref() == Some("EvictionThresholdMet")
                    && e.message.as_deref() == Some("Attempting to reclaim memory")),
            "{node_events:?}"
        );

        // Then the one of the same priority using less, while the higher priority and the one
        // within its request stay.
        evicted(&cluster, "modest").await;
        still_running(&cluster, &["important", "within-request"], "modest").await;
        manager.stop().await;
        cluster.stop().await;
    });
}

#[test]
fn disk_pressure_removes_unused_images_then_evicts_the_pod_writing_most() {
    if !support::can_run_containers() {
        return;
    }
    support::netns::run(async {
        let cluster = Cluster::start().await;
        // An image no container uses: image garbage collection goes first.
        let unused = "localhost/krust/unused:eviction";
        let images = support::images_dir();
        let archive = cluster.dir.path().join("unused.tar");
        support::docker_archive_from_oci(&images.join("busybox.tar"), &archive, unused);
        kubelet::images::import(
            cluster.cri.socket(),
            &archive,
            &indicatif::ProgressBar::hidden(),
        )
        .await
        .expect("import the unused image");
        assert!(cluster.cri.image_status(unused).await.unwrap().is_some());

        // Into its disk-backed emptyDir, which counts as the pod's ephemeral storage.
        let write = "dd if=/dev/zero of=/disk/fill bs=1M count=64 && exec sleep 3600";
        // Into its writable layer, less.
        let quiet = "dd if=/dev/zero of=/fill bs=1M count=8 && exec sleep 3600";
        cluster.create_pod(pod("writer", 0, None, write)).await;
        cluster.create_pod(pod("quiet", 0, None, quiet)).await;
        all_running(&cluster, &["writer", "quiet"]).await;
        tokio::time::sleep(Duration::from_secs(3)).await;

        let disk = observation(&cluster, eviction::Signal::NodeFsAvailable).await;
        let threshold = disk.available + (1 << 30);
        let manager = spawn(&cluster, &format!("nodefs.available<{threshold}"));
        let mut pressure = manager.pressure();
        tokio::time::timeout(Duration::from_secs(20), pressure.wait_for(|p| p.disk))
            .await
            .expect("DiskPressure reported")
            .unwrap();

        let first = evicted(&cluster, "writer").await;
        still_running(&cluster, &["quiet"], "writer").await;
        assert!(
            cluster.cri.image_status(unused).await.unwrap().is_none(),
            "the unused image was removed first"
        );
        assert!(
            cluster.cri.image_status(BUSYBOX).await.unwrap().is_some(),
            "an image in use stays"
        );
        let message = first["status"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(
                "The node was low on resource: ephemeral-storage. Threshold quantity: "
            ),
            "{message}"
        );
        assert_eq!(first["status"]["reason"], "Evicted");
        manager.stop().await;
        cluster.stop().await;
    });
}

#[test]
fn pid_pressure_evicts_the_pod_running_most_processes() {
    if !support::can_run_containers() {
        return;
    }
    support::netns::run(async {
        let cluster = Cluster::start().await;
        let forky = "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16; do sleep 3600 & done; exec sleep 3600";
        cluster.create_pod(pod("forky", 0, None, forky)).await;
        cluster
            .create_pod(pod("alone", 0, None, "exec sleep 3600"))
            .await;
        all_running(&cluster, &["forky", "alone"]).await;
        tokio::time::sleep(Duration::from_secs(3)).await;

        let pids = observation(&cluster, eviction::Signal::PidAvailable).await;
        let manager = spawn(&cluster, &format!("pid.available<{}", pids.capacity + 1));
        let mut pressure = manager.pressure();
        tokio::time::timeout(Duration::from_secs(20), pressure.wait_for(|p| p.pid))
            .await
            .expect("PIDPressure reported")
            .unwrap();
        let first = evicted(&cluster, "forky").await;
        still_running(&cluster, &["alone"], "forky").await;
        let message = first["status"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("The node was low on resource: pids. Threshold quantity: "),
            "{message}"
        );
        manager.stop().await;
        cluster.stop().await;
    });
}
