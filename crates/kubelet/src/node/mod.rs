//! The Node object (owner: node): registration with capacity, allocatable, labels, addresses and
//! the kubelet's endpoint; conditions (Ready, MemoryPressure, DiskPressure, PIDPressure) and
//! status updates; heartbeats through a Lease in `kube-node-lease`; and, once the node has a
//! `spec.podCIDR`, the pods' CNI configuration ([`network`](crate::network)).
//!
//! Contract: [`spawn`]`(Arc<NodeContext>, NodeConfig) -> NodeAgent` registers the node (retrying
//! until the API server answers) and keeps it current; [`NodeAgent::stop`] stops the loops and
//! leaves the Node and its pods alone. Timings are upstream's: the status is computed every
//! `nodeStatusUpdateFrequency` (10 s) and sent only when it changed or
//! `nodeStatusReportFrequency` (5 min) passed, while the Lease (40 s, renewed every 10 s) is
//! the heartbeat the node lifecycle controller watches.

mod lease;
pub mod machine;
pub mod status;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerImage, Node, NodeSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::context::NodeContext;
use crate::network::PodNetwork;
pub use lease::NAMESPACE as LEASE_NAMESPACE;
use machine::Machine;
use status::{Identity, Observed};

/// The Kubernetes version the kubelet reports: the API version krust serves.
pub const KUBELET_VERSION: &str = "v1.33.0+krust";

/// The node agent's Node settings (upstream's kubelet flags of the same names).
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The data dir: its filesystem is the node's ephemeral storage.
    pub data_dir: PathBuf,
    /// Labels besides the kubelet's own (`--node-labels`), only those NodeRestriction lets a
    /// kubelet set.
    pub labels: BTreeMap<String, String>,
    /// The InternalIP address (`--node-ip`); the machine's primary address by default.
    pub address: IpAddr,
    /// The kubelet API port in `daemonEndpoints` (10250).
    pub kubelet_port: u16,
    /// `--max-pods`.
    pub max_pods: u32,
    /// `nodeStatusUpdateFrequency`.
    pub status_update_frequency: Duration,
    /// `nodeStatusReportFrequency`.
    pub status_report_frequency: Duration,
    /// `--eviction-hard`: allocatable is capacity less these, and the pressure conditions
    /// turn True below them.
    pub eviction_hard: status::Thresholds,
    /// `nodeLeaseDurationSeconds`; the lease is renewed every quarter of it.
    pub lease_duration_seconds: i32,
    /// Where the CNI configuration goes once the node has a pod CIDR.
    pub network: PodNetwork,
    /// The eviction manager's pressure conditions (a change updates the status at once).
    pub pressure: Option<watch::Receiver<crate::eviction::Pressure>>,
}

impl NodeConfig {
    pub fn new(data_dir: &std::path::Path) -> NodeConfig {
        NodeConfig {
            data_dir: data_dir.to_path_buf(),
            labels: BTreeMap::new(),
            address: pki::primary_address(),
            kubelet_port: 10250,
            max_pods: 110,
            status_update_frequency: Duration::from_secs(10),
            status_report_frequency: Duration::from_secs(300),
            lease_duration_seconds: 40,
            eviction_hard: Default::default(),
            network: PodNetwork::new(data_dir),
            pressure: None,
        }
    }

    fn lease_renew_interval(&self) -> Duration {
        Duration::from_millis(self.lease_duration_seconds.max(1) as u64 * 250)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("API request for node {node:?} failed: {source}")]
    Api { node: String, source: kube::Error },
}

/// The running Node loops.
pub struct NodeAgent {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    registered: watch::Receiver<bool>,
}

impl NodeAgent {
    /// Waits until the Node is registered (or `limit` passes); true when it is.
    pub async fn registered(&self, limit: Duration) -> bool {
        let mut rx = self.registered.clone();
        tokio::time::timeout(limit, rx.wait_for(|r| *r))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// A handle whose loops already ended (what is left once [`NodeAgent::stop`] ran).
    pub fn stopped() -> NodeAgent {
        let (stop, _) = watch::channel(true);
        let (_, registered) = watch::channel(false);
        NodeAgent {
            stop,
            task: tokio::spawn(async {}),
            registered,
        }
    }

    /// Stops renewing the lease and updating the status; the Node stays.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Registers the node and keeps its status and lease current until stopped.
pub fn spawn(ctx: Arc<NodeContext>, config: NodeConfig) -> NodeAgent {
    let (stop, stop_rx) = watch::channel(false);
    let (registered_tx, registered) = watch::channel(false);
    let task = tokio::spawn(async move {
        let machine = Machine::read(&config.data_dir);
        let mut stopped = stop_rx.clone();
        let node = tokio::select! {
            node = register_until_done(&ctx, &config, &machine) => node,
            _ = stopped.wait_for(|s| *s) => return,
        };
        let _ = registered_tx.send(true);
        let status = status_loop(ctx.clone(), config.clone(), machine, stop_rx.clone());
        let lease = lease_loop(ctx, config, node, stop_rx);
        tokio::join!(status, lease);
    });
    NodeAgent {
        stop,
        task,
        registered,
    }
}

async fn register_until_done(ctx: &NodeContext, config: &NodeConfig, machine: &Machine) -> Node {
    let mut delay = Duration::from_millis(200);
    loop {
        match register(ctx, config, machine).await {
            Ok(node) => return node,
            Err(e) => tracing::warn!("cannot register the node yet: {e}; retrying in {delay:?}"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(7));
    }
}

/// The labels the kubelet sets on its Node (upstream's `initialNode`).
pub fn default_labels(node_name: &str) -> BTreeMap<String, String> {
    let arch = machine::go_arch();
    BTreeMap::from([
        ("kubernetes.io/hostname".into(), node_name.to_string()),
        ("kubernetes.io/os".into(), "linux".into()),
        ("kubernetes.io/arch".into(), arch.into()),
        ("beta.kubernetes.io/os".into(), "linux".into()),
        ("beta.kubernetes.io/arch".into(), arch.into()),
    ])
}

/// Creates the Node with its first status; an existing one (a restarted agent) gets the
/// kubelet's labels put back, as upstream's reconcile of an existing node.
pub async fn register(
    ctx: &NodeContext,
    config: &NodeConfig,
    machine: &Machine,
) -> Result<Node, NodeError> {
    let name = ctx.node_name.clone();
    let api_err = |source| NodeError::Api {
        node: name.clone(),
        source,
    };
    let api: Api<Node> = Api::all(ctx.client.clone());
    let mut labels = default_labels(&name);
    labels.extend(config.labels.clone());
    let observed = observe(ctx, config).await;
    let status = status::desired(
        &identity(ctx, config),
        machine,
        &observed,
        None,
        Timestamp::now(),
    );
    let node = Node {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some(labels.clone()),
            ..Default::default()
        },
        spec: Some(NodeSpec::default()),
        status: Some(status),
    };
    match api.create(&PostParams::default(), &node).await {
        Ok(node) => {
            tracing::info!(node = %name, "registered the node");
            Ok(node)
        }
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let patch = json!({"metadata": {"labels": labels}});
            let node = api
                .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .map_err(api_err)?;
            tracing::info!(node = %name, "the node was registered before");
            Ok(node)
        }
        Err(e) => Err(api_err(e)),
    }
}

fn identity(ctx: &NodeContext, config: &NodeConfig) -> Identity {
    Identity {
        hostname: ctx.node_name.clone(),
        address: config.address,
        kubelet_port: config.kubelet_port,
        max_pods: config.max_pods,
        kubelet_version: KUBELET_VERSION.into(),
        thresholds: config.eviction_hard,
    }
}

/// What the runtime and the kernel say now.
pub async fn observe(ctx: &NodeContext, config: &NodeConfig) -> Observed {
    let runtime_version = match ctx.cri.version().await {
        Ok(v) => format!("{}://{}", v.runtime_name, v.runtime_version),
        Err(_) => String::new(),
    };
    let images = ctx
        .cri
        .list_images()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|i| ContainerImage {
            names: Some(i.repo_tags.into_iter().chain(i.repo_digests).collect()),
            size_bytes: Some(i.size as i64),
        })
        .collect();
    Observed {
        runtime_version,
        runtime_errors: runtime_errors(ctx).await,
        memory_available: machine::meminfo("MemAvailable"),
        nodefs: machine::filesystem(&config.data_dir),
        images,
        pressure: config.pressure.as_ref().map(|p| *p.borrow()),
    }
}

/// Upstream's runtime-state errors for the Ready condition, from CRI Status.
async fn runtime_errors(ctx: &NodeContext) -> Vec<String> {
    let status = match ctx.cri.status().await {
        Ok(s) => s,
        Err(e) => return vec![format!("container runtime is down: {e}")],
    };
    let conditions = status.status.map(|s| s.conditions).unwrap_or_default();
    let mut errors = Vec::new();
    for (type_, what) in [
        ("RuntimeReady", "container runtime not ready"),
        ("NetworkReady", "container runtime network not ready"),
    ] {
        match conditions.iter().find(|c| c.r#type == type_) {
            Some(c) if c.status => {}
            Some(c) => errors.push(format!(
                "{what}: {type_}=false reason:{} message:{}",
                c.reason, c.message
            )),
            None => errors.push(format!("{what}: {type_} missing")),
        }
    }
    errors
}

/// Computes the status every update period and sends it when it changed or the report period
/// passed; writes the CNI configuration when the node's pod CIDR appears or changes.
async fn status_loop(
    ctx: Arc<NodeContext>,
    config: NodeConfig,
    machine: Machine,
    mut stop: watch::Receiver<bool>,
) {
    let api: Api<Node> = Api::all(ctx.client.clone());
    let mut last_report: Option<Instant> = None;
    let mut network_written = false;
    let mut pressure = config.pressure.clone();
    loop {
        match sync_status(&ctx, &config, &machine, &api, &mut last_report).await {
            Ok(Some(cidr)) => match config.network.write(&cidr) {
                Ok(_) => network_written = true,
                Err(e) => tracing::warn!("{e}"),
            },
            Ok(None) => {}
            Err(e) => tracing::warn!("node status update failed: {e}"),
        }
        // Until the pod network exists the node is not Ready: look again soon.
        let wait = if network_written {
            config.status_update_frequency
        } else {
            config.status_update_frequency.min(Duration::from_secs(1))
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = pressure_changed(&mut pressure) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Resolves when the eviction manager's pressure changes; never without one (or once it ended).
async fn pressure_changed(pressure: &mut Option<watch::Receiver<crate::eviction::Pressure>>) {
    let ended = match pressure {
        Some(rx) => rx.changed().await.is_err(),
        None => true,
    };
    if ended {
        *pressure = None;
        std::future::pending::<()>().await
    }
}

/// One status round; returns the node's pod CIDR.
async fn sync_status(
    ctx: &NodeContext,
    config: &NodeConfig,
    machine: &Machine,
    api: &Api<Node>,
    last_report: &mut Option<Instant>,
) -> Result<Option<String>, kube::Error> {
    let node = match api.get_opt(&ctx.node_name).await? {
        Some(node) => node,
        None => {
            // Deleted behind our back (kubectl delete node): register again, as a restarted
            // kubelet would.
            tracing::warn!(node = %ctx.node_name, "the node is gone; registering it again");
            if let Err(e) = register(ctx, config, machine).await {
                tracing::warn!("{e}");
            }
            *last_report = Some(Instant::now());
            return Ok(None);
        }
    };
    let pod_cidr = node
        .spec
        .as_ref()
        .and_then(|s| s.pod_cidr.clone())
        .filter(|c| !c.is_empty());
    // The CNI config first, so that the network is ready when the status is computed.
    if let Some(cidr) = &pod_cidr {
        if let Err(e) = config.network.write(cidr) {
            tracing::warn!("{e}");
        }
    }
    let observed = observe(ctx, config).await;
    let old = node.status.as_ref();
    let desired = status::desired(
        &identity(ctx, config),
        machine,
        &observed,
        old,
        Timestamp::now(),
    );
    for reason in status::condition_events(old, &desired) {
        let message = format!("Node {} status is now: {reason}", ctx.node_name);
        crate::eviction::node_event(ctx, false, reason, &message);
    }
    let due = last_report.is_none_or(|t| t.elapsed() >= config.status_report_frequency);
    if status::changed(old, &desired) || due {
        let patch = json!({ "status": desired });
        api.patch_status(
            &ctx.node_name,
            &PatchParams::default(),
            &Patch::Strategic(patch),
        )
        .await?;
        *last_report = Some(Instant::now());
        tracing::debug!(node = %ctx.node_name, "node status updated");
    }
    Ok(pod_cidr)
}

/// Renews the lease every quarter of its duration, faster (as upstream's backoff starts at
/// 200 ms) after a failure.
async fn lease_loop(
    ctx: Arc<NodeContext>,
    config: NodeConfig,
    node: Node,
    mut stop: watch::Receiver<bool>,
) {
    let mut heartbeat = lease::Heartbeat::new(
        ctx.client.clone(),
        &ctx.node_name,
        config.lease_duration_seconds,
    );
    let mut retry = Duration::from_millis(200);
    loop {
        let wait = match heartbeat.renew(Some(&node)).await {
            Ok(()) => {
                retry = Duration::from_millis(200);
                config.lease_renew_interval()
            }
            Err(e) => {
                tracing::warn!(node = %ctx.node_name, "cannot renew the node lease: {e}");
                retry = (retry * 2).min(config.lease_renew_interval());
                retry
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
