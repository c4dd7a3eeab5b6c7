//! The node agent against a real API server in process (Node,RBAC: the kubelet acts as
//! system:node:e2e through the Node authorizer and NodeRestriction) and a managed containerd,
//! in a network namespace of the test's own: the Node is registered with its labels, capacity,
//! addresses and node info, stays NotReady until it has a pod CIDR and then turns Ready with the
//! CNI configuration written, its status is sent only when it changes (and at the report
//! interval), its Lease is renewed, and stopping the agent leaves no process behind.

#[path = "support/apiserver.rs"]
mod apiserver;
mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::Api;
use kubelet::agent::{self, AgentConfig};
use serde_json::json;

const POD_CIDR: &str = "10.244.9.0/24";

fn condition<'a>(
    node: &'a Node,
    type_: &str,
) -> Option<&'a k8s_openapi::api::core::v1::NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

async fn wait_for<T, F, Fut>(what: &str, secs: u64, f: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn the_agent_registers_a_node_that_turns_ready_with_a_pod_cidr_and_keeps_its_lease() {
    if !support::can_run_containers() {
        return;
    }
    support::netns::run(agent_node());
}

async fn agent_node() {
    let server = apiserver::ApiServer::start().await;
    let nodes: Api<Node> = Api::all(server.admin.clone());
    // The support server pre-creates the node for other tests; the agent registers its own.
    nodes
        .delete(apiserver::NODE, &DeleteParams::default())
        .await
        .unwrap();
    let dir = tempfile::Builder::new()
        .prefix("krust-kubelet-node-")
        .tempdir_in("/tmp")
        .unwrap();
    let data_dir = dir.path().to_path_buf();
    let images = kubelet::images::image_dir(&data_dir);
    std::fs::create_dir_all(&images).unwrap();
    std::fs::copy(
        support::images_dir().join("pause.tar"),
        images.join("pause.tar"),
    )
    .unwrap();
    let _log = support::DumpLogOnPanic(data_dir.join("containerd/containerd.log"));

    // The kubelet kubeconfig pki wrote, pointed at this server.
    let paths = pki::Paths::new(server.dir.path());
    let text = std::fs::read_to_string(&paths.kubelet_config).unwrap();
    let kubeconfig = data_dir.join("kubelet.config");
    let text: String = text
        .lines()
        .map(|l| match l.trim_start().strip_prefix("server:") {
            Some(_) => format!("    server: https://127.0.0.1:{}\n", server.addr.port()),
            None => format!("{l}\n"),
        })
        .collect();
    std::fs::write(&kubeconfig, text).unwrap();

    let mut config = AgentConfig::new(&data_dir, apiserver::NODE);
    config.kubeconfig = kubeconfig;
    config.node.address = "10.0.0.7".parse().unwrap();
    config.node.status_update_frequency = Duration::from_millis(500);
    config.node.status_report_frequency = Duration::from_secs(6);
    config.node.lease_duration_seconds = 4;
    // This machine's disk may be fuller than upstream's 10% allows: what is tested here is the
    // conditions' shape, not the disk (the pressure logic has unit tests).
    config.node.eviction_hard = "nodefs.available<1%".parse().unwrap();
    let agent = agent::start(config).await.expect("agent starts");
    let containerd = agent.containerd_pid().expect("a managed containerd");
    assert!(agent.registered(Duration::from_secs(20)).await);

    let node = nodes.get(apiserver::NODE).await.unwrap();
    let labels = node.metadata.labels.clone().unwrap();
    assert_eq!(labels["kubernetes.io/hostname"], apiserver::NODE);
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert_eq!(labels["kubernetes.io/arch"], "amd64");
    let status = node.status.clone().unwrap();
    let capacity = status.capacity.unwrap();
    assert_eq!(capacity["pods"].0, "110");
    for resource in ["cpu", "memory", "ephemeral-storage"] {
        assert!(capacity.contains_key(resource), "{resource}");
        assert!(status.allocatable.as_ref().unwrap().contains_key(resource));
    }
    let addresses = status.addresses.unwrap();
    assert!(addresses
        .iter()
        .any(|a| a.type_ == "InternalIP" && a.address == "10.0.0.7"));
    assert!(addresses
        .iter()
        .any(|a| a.type_ == "Hostname" && a.address == apiserver::NODE));
    let endpoint = status.daemon_endpoints.unwrap().kubelet_endpoint.unwrap();
    assert_eq!(endpoint.port, 10250);
    let info = status.node_info.unwrap();
    assert!(
        info.container_runtime_version.starts_with("containerd://"),
        "{info:?}"
    );
    assert_eq!(info.kubelet_version, kubelet::node::KUBELET_VERSION);
    assert_eq!(info.operating_system, "linux");
    assert!(!info.kernel_version.is_empty());
    // The image dir was imported.
    let images = status.images.unwrap_or_default();
    assert!(
        images.iter().any(|i| i
            .names
            .iter()
            .flatten()
            .any(|n| n == kubelet::containerd::SANDBOX_IMAGE)),
        "{images:?}"
    );

    // No pod CIDR yet: no pod network, so not Ready, with the runtime's reason.
    let ready = condition(&node, "Ready").unwrap();
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason.as_deref(), Some("KubeletNotReady"));
    assert!(
        ready
            .message
            .as_deref()
            .unwrap()
            .contains("network not ready"),
        "{ready:?}"
    );
    let memory = condition(&node, "MemoryPressure").unwrap();
    assert_eq!(memory.reason.as_deref(), Some("KubeletHasSufficientMemory"));
    assert_eq!(condition(&node, "DiskPressure").unwrap().status, "False");
    assert_eq!(condition(&node, "PIDPressure").unwrap().status, "False");

    // The node IPAM controller's part, played by the test.
    let patch = json!({"spec": {"podCIDR": POD_CIDR, "podCIDRs": [POD_CIDR]}});
    nodes
        .patch(
            apiserver::NODE,
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
        .unwrap();
    let ready = wait_for("the node to turn Ready", 30, || async {
        let node = nodes.get(apiserver::NODE).await.ok()?;
        let ready = condition(&node, "Ready")?;
        (ready.status == "True").then(|| (node.clone(), ready.clone()))
    })
    .await;
    assert_eq!(ready.1.reason.as_deref(), Some("KubeletReady"));
    assert_eq!(
        ready.1.message.as_deref(),
        Some("kubelet is posting ready status")
    );
    let conflist =
        std::fs::read_to_string(kubelet::network::PodNetwork::new(&data_dir).conflist_path())
            .unwrap();
    assert!(conflist.contains(POD_CIDR), "{conflist}");

    // Nothing changes: no status update for a while (10 update periods)...
    let rv = ready.0.metadata.resource_version.clone();
    let heartbeat = ready.1.last_heartbeat_time.clone();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let node = nodes.get(apiserver::NODE).await.unwrap();
    assert_eq!(
        node.metadata.resource_version, rv,
        "status sent though nothing changed"
    );
    // ...until the report interval passes.
    wait_for("a status report", 10, || async {
        let node = nodes.get(apiserver::NODE).await.ok()?;
        let now = condition(&node, "Ready")?.last_heartbeat_time.clone();
        (now != heartbeat).then_some(())
    })
    .await;

    // The lease: 4 s, owned by the node, renewed every second.
    let leases: Api<Lease> = Api::namespaced(server.admin.clone(), "kube-node-lease");
    let first = leases.get(apiserver::NODE).await.unwrap();
    let spec = first.spec.clone().unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some(apiserver::NODE));
    assert_eq!(spec.lease_duration_seconds, Some(4));
    let owner = &first.metadata.owner_references.clone().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Node", apiserver::NODE)
    );
    assert_eq!(Some(&owner.uid), node.metadata.uid.as_ref());
    wait_for("the lease renewed", 10, || async {
        let lease = leases.get(apiserver::NODE).await.ok()?;
        (lease.spec?.renew_time != spec.renew_time).then_some(())
    })
    .await;

    // A node deleted behind the agent's back is registered again.
    nodes
        .delete(apiserver::NODE, &DeleteParams::default())
        .await
        .unwrap();
    let again = wait_for("the node registered again", 20, || async {
        let node = nodes.get(apiserver::NODE).await.ok()?;
        (node.metadata.uid != ready.0.metadata.uid).then_some(node)
    })
    .await;
    assert_eq!(again.metadata.labels.unwrap()["kubernetes.io/os"], "linux");

    agent.stop().await;
    assert!(
        !std::path::Path::new(&format!("/proc/{containerd}")).exists(),
        "containerd (pid {containerd}) still runs"
    );
    let left = support::wait_none_mentioning(&data_dir.to_string_lossy(), Duration::from_secs(10));
    assert!(left.is_empty(), "left running: {left:?}");
    // The lease is no longer renewed.
    let before = leases
        .get(apiserver::NODE)
        .await
        .unwrap()
        .spec
        .unwrap()
        .renew_time;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = leases
        .get(apiserver::NODE)
        .await
        .unwrap()
        .spec
        .unwrap()
        .renew_time;
    assert_eq!(before, after);
    server.stop().await;
}
