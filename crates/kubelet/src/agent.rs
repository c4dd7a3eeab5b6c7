//! The node agent as one piece: the container runtime (containerd started under the data dir,
//! or an existing one at `--container-runtime-endpoint`), the images dropped into
//! `<data-dir>/images/`, the kubelet's API client (its kubeconfig, `system:node:<name>`), and
//! the parts that run on them: the kubelet API ([`server`](crate::server)), the Node and its
//! lease ([`node`](crate::node)), the pod lifecycle ([`pods`](crate::pods)), node-pressure
//! eviction ([`eviction`](crate::eviction)) and container log rotation
//! ([`logs::spawn_rotation`](crate::logs::spawn_rotation)).
//!
//! [`start`] brings them up in that order; [`Agent::stop`] stops them in reverse and leaves the
//! pods' containers running in their shims (a managed containerd stops, its shims do not), so a
//! restarted agent adopts them. [`Agent::shutdown`] is the node going down
//! ([`shutdown`](crate::shutdown)): pods are ended first.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::containerd::{self, Runtime};
use crate::context::NodeContext;
use crate::cri::Cri;
use crate::eviction::{self, EvictionManager};
use crate::layout::Layout;
use crate::logs::{self, RotationPolicy};
use crate::node::{self, NodeAgent, NodeConfig};
use crate::pods::{self, Pods};
use crate::server::{self, ServerHandle};

/// What the agent is told.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub data_dir: PathBuf,
    /// The Node's name (the host name unless configured); must match the kubeconfig's
    /// `system:node:<name>` user.
    pub node_name: String,
    /// The kubelet's kubeconfig (pki's `credentials/kubelet.config`).
    pub kubeconfig: PathBuf,
    /// `--container-runtime-endpoint` (`unix:///run/containerd/containerd.sock`); `None`
    /// starts containerd under the data dir.
    pub container_runtime_endpoint: Option<String>,
    /// The managed containerd's metrics address (the port map's `containerd-metrics`).
    pub containerd_metrics: Option<SocketAddr>,
    /// The Node's settings.
    pub node: NodeConfig,
    /// The kubelet API's listeners and certificates; `None` serves no kubelet API.
    pub server: Option<server::Config>,
    /// Node-pressure eviction; `None` runs no eviction manager.
    pub eviction: Option<eviction::Config>,
    /// containerLogMaxSize / containerLogMaxFiles.
    pub log_rotation: RotationPolicy,
}

impl AgentConfig {
    /// Defaults for a data dir laid out by `pki::ensure`.
    pub fn new(data_dir: &Path, node_name: &str) -> AgentConfig {
        AgentConfig {
            data_dir: data_dir.to_path_buf(),
            node_name: node_name.to_string(),
            kubeconfig: pki::Paths::new(data_dir).kubelet_config,
            container_runtime_endpoint: None,
            containerd_metrics: None,
            node: NodeConfig::new(data_dir),
            server: None,
            eviction: Some(eviction::Config::default()),
            log_rotation: RotationPolicy::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot start the container runtime: {0:#}")]
    Runtime(anyhow::Error),
    #[error("cannot connect to the container runtime at {0}: {1:#}")]
    Cri(PathBuf, anyhow::Error),
    #[error("the kubelet kubeconfig {path} is not usable: {reason}")]
    Kubeconfig { path: PathBuf, reason: String },
    #[error("cannot serve the kubelet API: {0}")]
    Server(#[from] server::ServerError),
}

/// The running node agent.
pub struct Agent {
    ctx: Arc<NodeContext>,
    runtime: Runtime,
    server: Option<ServerHandle>,
    node: NodeAgent,
    pods: Pods,
    eviction: Option<EvictionManager>,
    log_rotation: tokio::task::JoinHandle<()>,
}

/// Upstream's containerLogMonitorInterval.
const LOG_ROTATION_PERIOD: Duration = Duration::from_secs(10);

/// Starts the runtime, imports the image dir, and starts the node and pod loops.
pub async fn start(config: AgentConfig) -> Result<Agent, AgentError> {
    // The client first: a bad kubeconfig should not leave a containerd behind.
    let client = client(&config.kubeconfig).await?;
    let mut containerd_config = containerd::Config::new(&config.data_dir);
    containerd_config.metrics = config.containerd_metrics;
    let runtime = Runtime::start(
        containerd_config,
        config.container_runtime_endpoint.as_deref(),
    )
    .await
    .map_err(AgentError::Runtime)?;
    let cri = match Cri::connect(runtime.socket()) {
        Ok(cri) => cri,
        Err(e) => {
            let socket = runtime.socket().to_path_buf();
            runtime.stop().await;
            return Err(AgentError::Cri(socket, e));
        }
    };
    import_images(runtime.socket(), &config.data_dir).await;
    let ctx = Arc::new(NodeContext {
        node_name: config.node_name.clone(),
        client,
        cri,
        layout: Layout::new(&config.data_dir),
    });
    // The API first: a port in use is an error before the node says it serves there.
    let server = match config.server.clone() {
        Some(server_config) => match server::start(ctx.clone(), server_config).await {
            Ok(handle) => Some(handle),
            Err(e) => {
                runtime.stop().await;
                return Err(e.into());
            }
        },
        None => None,
    };
    let pods = pods::spawn(ctx.clone());
    let eviction = config
        .eviction
        .clone()
        .map(|c| eviction::spawn(ctx.clone(), c, pods.killer(), pods.pressure()));
    let mut node_config = config.node.clone();
    node_config.pressure = eviction.as_ref().map(|e| e.pressure());
    let node = node::spawn(ctx.clone(), node_config);
    let log_rotation = logs::spawn_rotation(
        ctx.cri.clone(),
        ctx.layout.clone(),
        config.log_rotation,
        LOG_ROTATION_PERIOD,
    );
    tracing::info!(node = %config.node_name, socket = %runtime.socket().display(), "node agent started");
    Ok(Agent {
        ctx,
        runtime,
        server,
        node,
        pods,
        eviction,
        log_rotation,
    })
}

impl Agent {
    pub fn context(&self) -> &Arc<NodeContext> {
        &self.ctx
    }

    /// The container runtime's socket.
    pub fn runtime_socket(&self) -> &Path {
        self.runtime.socket()
    }

    /// The managed containerd's PID (none for an external runtime).
    pub fn containerd_pid(&self) -> Option<u32> {
        match &self.runtime {
            Runtime::Managed(c) => c.pid(),
            Runtime::External { .. } => None,
        }
    }

    /// The kubelet API's bound secure address (useful when its port was 0).
    pub fn server_addr(&self) -> Option<std::net::SocketAddr> {
        self.server.as_ref().and_then(|s| s.secure_addr())
    }

    /// Waits until the Node is registered (or `limit` passes).
    pub async fn registered(&self, limit: Duration) -> bool {
        self.node.registered(limit).await
    }

    /// The node is going down (upstream's graceful node shutdown): the node loops stop, the Node
    /// turns NotReady, the pods are ended within the grace periods, then the agent stops.
    pub async fn shutdown(mut self, config: crate::shutdown::Config) {
        if let Some(e) = self.eviction.take() {
            e.stop().await;
        }
        let node = std::mem::replace(&mut self.node, NodeAgent::stopped());
        node.stop().await;
        crate::shutdown::run(&self.ctx, &self.pods.killer(), config).await;
        self.stop().await;
    }

    /// Stops the pod and node loops and a managed containerd; containers keep running.
    pub async fn stop(self) {
        if let Some(server) = self.server {
            server.stop().await;
        }
        self.log_rotation.abort();
        if let Some(e) = self.eviction {
            e.stop().await;
        }
        self.pods.stop().await;
        self.node.stop().await;
        self.runtime.stop().await;
        tracing::info!("node agent stopped");
    }
}

async fn client(kubeconfig: &Path) -> Result<kube::Client, AgentError> {
    let bad = |reason: String| AgentError::Kubeconfig {
        path: kubeconfig.to_path_buf(),
        reason,
    };
    let file = kube::config::Kubeconfig::read_from(kubeconfig).map_err(|e| bad(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
        .await
        .map_err(|e| bad(e.to_string()))?;
    kube::Client::try_from(config).map_err(|e| bad(e.to_string()))
}

/// Imports the tarballs of `<data-dir>/images/` not imported before; failures are logged (the
/// file is tried again at the next start), never fatal.
async fn import_images(socket: &Path, data_dir: &Path) {
    match crate::images::import_dir(socket, data_dir).await {
        Ok(report) => {
            for (file, images) in &report.imported {
                let names: Vec<&str> = images.iter().map(|i| i.name.as_str()).collect();
                tracing::info!(file = %file.display(), images = ?names, "imported");
            }
            for (file, error) in &report.failed {
                tracing::warn!(file = %file.display(), "not imported (tried again at the next start): {error}");
            }
        }
        Err(e) => tracing::warn!(
            "images in {} not imported: {e}",
            crate::images::image_dir(data_dir).display()
        ),
    }
}
