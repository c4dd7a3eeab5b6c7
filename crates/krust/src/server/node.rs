//! The node agent inside `krust server` (unless `--disable-agent`): `kubelet::agent` with the
//! kubelet kubeconfig `pki::ensure` wrote, the kubelet API on the port map's `kubelet`,
//! `kubelet-readonly` and `kubelet-healthz` rows with pki's kubelet serving certificate,
//! containerd managed under `<data-dir>/containerd/`
//! (metrics on the port map's `containerd-metrics` address) or the runtime at
//! `--container-runtime-endpoint`, and the server's node labelled as the control plane.
//!
//! It starts once the API server is up and lives across listener restarts (SIGHUP); it stops
//! before the control plane, leaving the pods' containers running for the next start to adopt.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{watcher, WatchStreamExt};
use kubelet::agent::{Agent, AgentConfig};
use ports::Service;

use crate::cli::ServerArgs;
use crate::settings::Settings;

/// The label kubeadm gives a control-plane node; a kubelet may not set it on itself
/// (NodeRestriction), so the server does, with its admin credentials.
pub const CONTROL_PLANE_LABEL: &str = "node-role.kubernetes.io/control-plane";

/// The default hard eviction thresholds: upstream's memory threshold, and k3s's 5% (instead of
/// upstream's 10%) of free disk, as a single-machine distribution's disk is shared with
/// everything else on it.
pub const EVICTION_HARD: &str = "memory.available<100Mi,nodefs.available<5%";

pub struct NodeAgent {
    agent: Agent,
    labeller: tokio::task::JoinHandle<()>,
    /// Set by --shutdown-grace-period: a stop is a node shutdown that ends the pods.
    shutdown: Option<kubelet::shutdown::Config>,
}

/// Starts the node agent unless `--disable-agent`.
pub async fn start(
    args: &ServerArgs,
    settings: &Settings,
    data_dir: &Path,
) -> Result<Option<NodeAgent>> {
    if args.disable_agent {
        tracing::info!("node agent disabled (--disable-agent)");
        return Ok(None);
    }
    let map = settings.port_map()?;
    let mut config = AgentConfig::new(data_dir, &settings.node_name);
    config.container_runtime_endpoint = args.container_runtime_endpoint.clone();
    config.containerd_metrics = map.addr(Service::ContainerdMetrics);
    config.node.kubelet_port = map.port(Service::Kubelet).unwrap_or(10250);
    let paths = pki::Paths::new(data_dir);
    config.server = Some(kubelet::server::Config {
        secure: map.addr(Service::Kubelet),
        read_only: map.addr(Service::KubeletReadonly),
        healthz: map.addr(Service::KubeletHealthz),
        cert: paths.kubelet_crt.clone(),
        key: paths.kubelet_key.clone(),
        client_ca: paths.ca_crt.clone(),
    });
    let thresholds = args.eviction_hard.as_deref().unwrap_or(EVICTION_HARD);
    config.node.eviction_hard = thresholds
        .parse()
        .map_err(|e| anyhow::anyhow!("--eviction-hard {thresholds:?}: {e}"))?;
    config.eviction = Some(eviction_config(args, thresholds)?);
    config.log_rotation = log_rotation(args)?;
    let shutdown = shutdown_config(args)?;
    let agent = kubelet::agent::start(config)
        .await
        .context("cannot start the node agent (--disable-agent runs the control plane alone)")?;
    let admin = admin_client(data_dir).await?;
    let labeller = tokio::spawn(label_control_plane(admin, settings.node_name.clone()));
    Ok(Some(NodeAgent {
        agent,
        labeller,
        shutdown,
    }))
}

fn duration(flag: &str, value: &str) -> Result<Duration> {
    kubelet::eviction::thresholds::go_duration(value)
        .ok_or_else(|| anyhow::anyhow!("{flag} {value:?} is not a duration (e.g. 30s, 1m30s)"))
}

fn eviction_config(args: &ServerArgs, hard: &str) -> Result<kubelet::eviction::Config> {
    // Signals the flag leaves out keep krust's defaults, as the Node's allocatable does.
    let thresholds = kubelet::eviction::thresholds::parse(
        &format!("{EVICTION_HARD},{hard}"),
        args.eviction_soft.as_deref().unwrap_or(""),
        args.eviction_soft_grace_period.as_deref().unwrap_or(""),
    )
    .map_err(|e| anyhow::anyhow!("eviction thresholds: {e}"))?;
    Ok(kubelet::eviction::Config {
        thresholds,
        pressure_transition_period: duration(
            "--eviction-pressure-transition-period",
            &args.eviction_pressure_transition_period,
        )?,
        max_pod_grace_period: args.eviction_max_pod_grace_period.max(0),
        ..Default::default()
    })
}

fn log_rotation(args: &ServerArgs) -> Result<kubelet::logs::RotationPolicy> {
    let size = &args.container_log_max_size;
    let max_size = component_base::quantity::value(&Quantity(size.clone()));
    if max_size <= 0 {
        anyhow::bail!("--container-log-max-size {size:?} is not a positive quantity (e.g. 10Mi)");
    }
    if args.container_log_max_files < 2 {
        anyhow::bail!("--container-log-max-files must be at least 2");
    }
    Ok(kubelet::logs::RotationPolicy {
        max_size: max_size as u64,
        max_files: args.container_log_max_files,
    })
}

fn shutdown_config(args: &ServerArgs) -> Result<Option<kubelet::shutdown::Config>> {
    let total = duration("--shutdown-grace-period", &args.shutdown_grace_period)?;
    let critical = duration(
        "--shutdown-grace-period-critical-pods",
        &args.shutdown_grace_period_critical_pods,
    )?;
    let config = kubelet::shutdown::Config::new(total, critical)?;
    Ok(config.enabled().then_some(config))
}

/// Stops the node agent: its containers keep running in their shims, unless
/// --shutdown-grace-period makes the stop a graceful node shutdown that ends them first.
pub async fn stop(node: Option<NodeAgent>) {
    if let Some(node) = node {
        node.labeller.abort();
        match node.shutdown {
            Some(config) => node.agent.shutdown(config).await,
            None => node.agent.stop().await,
        }
    }
}

async fn admin_client(data_dir: &Path) -> Result<kube::Client> {
    let path = pki::Paths::new(data_dir).client_config;
    let file = kube::config::Kubeconfig::read_from(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(file, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

/// Labels the server's node as the control plane once the agent registered it, and again
/// whenever the node shows up without the label (deleted and registered again by the agent).
async fn label_control_plane(admin: kube::Client, node: String) {
    let nodes: Api<Node> = Api::all(admin);
    let config = watcher::Config::default().fields(&format!("metadata.name={node}"));
    let mut events = watcher::watcher(nodes.clone(), config)
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(n) if !has_control_plane_label(&n) => label(&nodes, &node).await,
            Ok(_) => {}
            Err(e) => tracing::debug!(%node, "node watch for the control-plane label: {e}"),
        }
    }
}

fn has_control_plane_label(node: &Node) -> bool {
    node.metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(CONTROL_PLANE_LABEL))
}

async fn label(nodes: &Api<Node>, node: &str) {
    let patch = serde_json::json!({"metadata": {"labels": {CONTROL_PLANE_LABEL: ""}}});
    let mut delay = Duration::from_millis(200);
    for _ in 0..10 {
        match nodes
            .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return,
            Err(kube::Error::Api(e)) if e.code == 404 => return,
            Err(e) => tracing::debug!(%node, "cannot label the node yet: {e}"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
