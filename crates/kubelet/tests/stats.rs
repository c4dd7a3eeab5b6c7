//! /stats/summary and /metrics/resource for a real container on a managed containerd (host
//! network in the test's own namespace). Needs root (skipped, saying so, without).

mod probe_support;
mod support;

use std::time::Duration;

use kubelet::stats;
use probe_support::{eventually, Node};

#[test]
fn summary_lists_the_running_container() {
    if !support::can_run_containers() {
        return;
    }
    support::netns::run(async {
        let node = Node::start("krust-stats-").await;
        let sandbox = node.sandbox("stats").await;
        // Some memory of its own: a shell variable of ~4 MiB.
        let script =
            "x=$(head -c 4000000 /dev/zero | tr '\\0' a); echo ready; while :; do sleep 1; done";
        let id = node.container(&sandbox, "main", 0, script).await;
        let ready = eventually(Duration::from_secs(10), || async {
            std::fs::read_to_string(sandbox.log_dir.join("main/0.log"))
                .is_ok_and(|l| l.contains("ready"))
        })
        .await;
        assert!(ready);

        let summary = stats::summary_of("node-a", &node.cri, &node.layout)
            .await
            .unwrap();
        assert_eq!(summary.node.node_name, "node-a");
        let cpu = summary.node.cpu.as_ref().unwrap();
        assert!(cpu.usage_core_nano_seconds.unwrap() > 0);
        assert!(
            summary
                .node
                .memory
                .as_ref()
                .unwrap()
                .working_set_bytes
                .unwrap()
                > 0
        );
        let fs = summary.node.fs.as_ref().unwrap();
        assert!(fs.capacity_bytes.unwrap() >= fs.available_bytes.unwrap());
        let image_fs = summary
            .node
            .runtime
            .as_ref()
            .unwrap()
            .image_fs
            .as_ref()
            .unwrap();
        // containerd sums its snapshots every 10 s: the figure may still be 0 right after start.
        assert!(image_fs.used_bytes.is_some(), "{image_fs:?}");
        assert!(image_fs.capacity_bytes.unwrap() > 0);
        assert!(summary.node.rlimit.as_ref().unwrap().maxpid.unwrap() > 0);

        let pod = summary
            .pods
            .iter()
            .find(|p| p.pod_ref.uid == sandbox.uid)
            .expect("the pod is listed");
        assert_eq!(
            (pod.pod_ref.name.as_str(), pod.pod_ref.namespace.as_str()),
            ("stats", "default")
        );
        assert_eq!(pod.containers.len(), 1, "{pod:?}");
        let container = &pod.containers[0];
        assert_eq!(container.name, "main");
        let memory = container.memory.as_ref().unwrap();
        assert!(memory.working_set_bytes.unwrap() > 1_000_000, "{memory:?}");
        assert!(
            container
                .cpu
                .as_ref()
                .unwrap()
                .usage_core_nano_seconds
                .unwrap()
                > 0
        );
        assert!(container.rootfs.as_ref().unwrap().capacity_bytes.is_some());
        assert!(container.logs.as_ref().unwrap().used_bytes.unwrap() > 0);
        assert!(
            pod.memory.as_ref().unwrap().working_set_bytes.unwrap()
                >= memory.working_set_bytes.unwrap()
        );
        assert!(pod.ephemeral_storage.is_some());
        let _ = id;

        // The JSON upstream's clients read.
        let json = serde_json::to_value(&summary).unwrap();
        let node_json = &json["node"];
        assert_eq!(node_json["nodeName"], "node-a");
        assert!(node_json["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap() > 0);
        assert!(node_json["runtime"]["imageFs"]["usedBytes"]
            .as_u64()
            .is_some());
        assert!(node_json["startTime"].as_str().unwrap().ends_with('Z'));
        let pod_json = json["pods"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["podRef"]["name"] == "stats")
            .unwrap();
        assert!(
            pod_json["containers"][0]["memory"]["workingSetBytes"]
                .as_u64()
                .unwrap()
                > 0
        );
        assert!(pod_json["ephemeral-storage"].is_object());
        let back: stats::Summary = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back.pods.len(), summary.pods.len());

        // only_cpu_and_memory keeps just that.
        let small = serde_json::to_value(summary.clone().only_cpu_and_memory()).unwrap();
        assert!(small["node"]["cpu"].is_object() && small["node"]["memory"].is_object());
        assert!(small["node"].get("fs").is_none() && small["node"].get("runtime").is_none());
        let small_pod = small["pods"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["podRef"]["name"] == "stats")
            .unwrap();
        assert!(
            small_pod["containers"][0]["memory"]["workingSetBytes"]
                .as_u64()
                .unwrap()
                > 0
        );
        assert!(small_pod.get("ephemeral-storage").is_none());
        assert!(small_pod["containers"][0].get("rootfs").is_none());

        // /metrics/resource, as metrics-server reads it.
        let text = stats::render_resource_metrics(Some(&summary));
        let line = text
            .lines()
            .find(|l| l.starts_with("container_memory_working_set_bytes{container=\"main\",namespace=\"default\",pod=\"stats\"} "))
            .unwrap_or_else(|| panic!("{text}"));
        let value: f64 = line.split(' ').nth(1).unwrap().parse().unwrap();
        assert!(value > 1e6, "{line}");
        for name in [
            "container_cpu_usage_seconds_total{",
            "container_start_time_seconds{",
            "node_cpu_usage_seconds_total ",
            "node_memory_working_set_bytes ",
            "pod_cpu_usage_seconds_total{namespace=\"default\",pod=\"stats\"} ",
            "pod_memory_working_set_bytes{namespace=\"default\",pod=\"stats\"} ",
            "resource_scrape_error 0",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(name)),
                "{name} missing:\n{text}"
            );
        }
        node.stop().await;
    });
}

/// A pod on a CNI bridge: its network figures come from its own namespace (eth0), and an
/// httpGet probe without a host reaches it at its pod IP.
#[test]
fn summary_has_the_network_of_a_bridged_pod() {
    if !support::can_run_containers() {
        return;
    }
    support::netns::run(async {
        let node = Node::start_with_bridge("krust-stats-net-").await;
        let sandbox = node.sandbox_on("bridged", false).await;
        let status = node.cri.pod_sandbox_status(&sandbox.id).await.unwrap();
        let pod_ip = status
            .network
            .as_ref()
            .map(|n| n.ip.clone())
            .unwrap_or_default();
        assert!(pod_ip.starts_with("10.244.7."), "{status:?}");
        let script = "mkdir -p /www; echo hello > /www/index.html; exec httpd -f -p 8080 -h /www";
        let id = node.container(&sandbox, "web", 0, script).await;

        let container: k8s_openapi::api::core::v1::Container = serde_json::from_value(
            serde_json::json!({"name": "web", "ports": [{"name": "http", "containerPort": 8080}]}),
        )
        .unwrap();
        let probe: k8s_openapi::api::core::v1::Probe =
            serde_json::from_value(serde_json::json!({"httpGet": {"port": "http", "path": "/"}}))
                .unwrap();
        let target = kubelet::probes::Target {
            container_id: &id,
            container: &container,
            pod_ip: Some(&pod_ip),
        };
        let reached = eventually(Duration::from_secs(10), || async {
            kubelet::probes::run_probe(&node.cri, &probe, target).await
                == kubelet::probes::Outcome::Success
        })
        .await;
        assert!(reached, "httpGet at the pod IP {pod_ip}");

        let summary = stats::summary_of("node-a", &node.cri, &node.layout)
            .await
            .unwrap();
        let pod = summary
            .pods
            .iter()
            .find(|p| p.pod_ref.name == "bridged")
            .unwrap();
        let network = pod.network.as_ref().expect("the pod's network");
        assert_eq!(network.default.name, "eth0");
        assert!(network.default.rx_bytes.unwrap() > 0, "{network:?}");
        assert!(network.default.tx_bytes.unwrap() > 0, "{network:?}");
        let json = serde_json::to_value(pod).unwrap();
        assert_eq!(json["network"]["name"], "eth0");
        assert!(json["network"]["rxBytes"].as_u64().unwrap() > 0);
        node.stop().await;
    });
}
