//! The kubelet API, as upstream's kubelet serves it (pkg/kubelet/server):
//!
//! - `secure` (10250): TLS with the kubelet's serving certificate. Anonymous requests get 401
//!   (upstream's `--anonymous-auth=false`); a client certificate of the cluster CA names the
//!   user (CN) and groups (O), a bearer token is checked with a TokenReview; every request is
//!   then authorized with a SubjectAccessReview on `nodes/<subresource>` of this node
//!   ([`auth`]). Serves `/healthz`, `/pods`, `/metrics`, `/metrics/resource`,
//!   `/metrics/cadvisor` and `/stats/summary` (from [`crate::stats`]), `/spec/` ([`spec`]),
//!   `/configz` ([`configz`]), the node's `/logs/` ([`node_logs`]), `/containerLogs`, `/exec`,
//!   `/attach`, `/portForward` and `/run`.
//! - `read_only` (10255, only where the profile has it): no authentication, and only what
//!   upstream's read-only port serves (`/healthz`, `/pods`, `/metrics`, `/metrics/resource`,
//!   `/metrics/cadvisor`, `/stats/summary`, `/spec/`): never logs, configz, exec or anything that
//!   can reach a container.
//! - `healthz` (10248, bind it to localhost): plain HTTP `/healthz`.
//!
//! Containers are found over CRI by their [`labels`](crate::labels); logs are read from the path
//! CRI reports ([`crate::logs`]); exec, attach and port-forward ask CRI for a URL on the runtime's
//! streaming server and proxy the client's upgraded connection (SPDY or WebSocket) to it byte
//! for byte ([`streaming`]), as upstream's kubelet does.
//!
//! Contract for the agent: [`start`]`(ctx, config) -> `[`ServerHandle`], [`ServerHandle::stop`].

mod auth;
mod configz;
mod listen;
mod logs;
mod lookup;
mod metrics;
mod node_logs;
mod pods;
mod query;
mod routes;
mod spec;
mod streaming;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::context::NodeContext;

/// Where the kubelet API listens and with which certificates.
#[derive(Debug, Clone)]
pub struct Config {
    /// The authenticated API (10250, all addresses).
    pub secure: Option<SocketAddr>,
    /// The unauthenticated read-only port (10255), only where the profile has it.
    pub read_only: Option<SocketAddr>,
    /// Plain-HTTP `/healthz` (10248 on 127.0.0.1).
    pub healthz: Option<SocketAddr>,
    /// The kubelet's serving certificate and key (pki's `kubelet_crt` / `kubelet_key`).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA client certificates must chain to (the cluster `ca.crt`).
    pub client_ca: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the kubelet's TLS configuration: {0}")]
    Tls(#[from] component_base::ServeError),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The running listeners; [`ServerHandle::stop`] ends them.
pub struct ServerHandle {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    secure: Option<SocketAddr>,
    read_only: Option<SocketAddr>,
    healthz: Option<SocketAddr>,
}

impl ServerHandle {
    /// The bound addresses (useful when a configured port was 0).
    pub fn secure_addr(&self) -> Option<SocketAddr> {
        self.secure
    }
    pub fn read_only_addr(&self) -> Option<SocketAddr> {
        self.read_only
    }
    pub fn healthz_addr(&self) -> Option<SocketAddr> {
        self.healthz
    }

    /// Stops accepting and ends every connection (streams in flight included).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            task.abort();
            let _ = task.await;
        }
    }
}

/// Binds every configured listener and serves until [`ServerHandle::stop`].
pub async fn start(ctx: Arc<NodeContext>, config: Config) -> Result<ServerHandle, ServerError> {
    let (stop, stopped) = watch::channel(false);
    let state = routes::Shared::new(ctx, &config);
    let mut handle = ServerHandle {
        stop,
        tasks: Vec::new(),
        secure: None,
        read_only: None,
        healthz: None,
    };
    if let Some(addr) = config.secure {
        let tls = listen::tls(&config)?;
        let listener = listen::bind(addr).await?;
        handle.secure = listener.local_addr().ok();
        let router = routes::secure(state.clone());
        handle.tasks.push(tokio::spawn(listen::serve_tls(
            listener,
            tls,
            router,
            stopped.clone(),
        )));
    }
    if let Some(addr) = config.read_only {
        let listener = listen::bind(addr).await?;
        handle.read_only = listener.local_addr().ok();
        let router = routes::read_only(state.clone());
        handle.tasks.push(tokio::spawn(listen::serve_plain(
            listener,
            router,
            stopped.clone(),
        )));
    }
    if let Some(addr) = config.healthz {
        let listener = listen::bind(addr).await?;
        handle.healthz = listener.local_addr().ok();
        handle.tasks.push(tokio::spawn(listen::serve_plain(
            listener,
            routes::healthz_only(),
            stopped.clone(),
        )));
    }
    tracing::info!(
        secure = ?handle.secure,
        read_only = ?handle.read_only,
        healthz = ?handle.healthz,
        "kubelet API listening"
    );
    Ok(handle)
}
