//! The etcd v3 gRPC endpoint: serves any [`Store`] as etcd's KV, Watch, Lease, Maintenance
//! (Status, alarm list) and Cluster.MemberList services over TLS with client certificates
//! required, so `etcdctl` and etcd client libraries can talk to krust's datastore whichever
//! backend is behind it.

mod cluster;
mod errors;
mod kv;
mod lease;
mod maintenance;
pub mod validate;
mod watch;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use thiserror::Error;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::proto::etcdserverpb::cluster_server::ClusterServer;
use crate::proto::etcdserverpb::kv_server::KvServer;
use crate::proto::etcdserverpb::lease_server::LeaseServer;
use crate::proto::etcdserverpb::maintenance_server::MaintenanceServer;
use crate::proto::etcdserverpb::watch_server::WatchServer;
use crate::Store;

pub use errors::status_from_store_error;

/// etcd's gRPC receive limit is its request limit plus this much room for framing; messages
/// beyond it are refused by the transport before they are decoded.
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// PEM-encoded TLS material of the endpoint. `client_ca` signs the certificates clients must
/// present: a connection without one is refused during the handshake.
#[derive(Clone)]
pub struct TlsPems {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    pub client_ca: Vec<u8>,
}

/// Why the endpoint could not start or stopped with an error.
#[derive(Debug, Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid TLS configuration for the datastore endpoint: {0}")]
    Tls(tonic::transport::Error),
    #[error("datastore endpoint failed: {0}")]
    Transport(tonic::transport::Error),
}

/// Accepted connections without Nagle's algorithm (small responses would otherwise wait for the
/// client's delayed ACK, ~40 ms) and with TCP keepalive so dead peers are noticed.
fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(std::time::Duration::from_secs(60)))
}

/// Binds `addr` and serves `store` until `shutdown` completes.
pub async fn serve(
    store: Arc<dyn Store>,
    addr: SocketAddr,
    tls: TlsPems,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    serve_listener(store, listener, tls, shutdown).await
}

/// Serves `store` on an already bound listener (tests bind port 0 and read the address first).
pub async fn serve_listener(
    store: Arc<dyn Store>,
    listener: TcpListener,
    tls: TlsPems,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let tls_config = ServerTlsConfig::new()
        .identity(Identity::from_pem(&tls.cert, &tls.key))
        .client_ca_root(Certificate::from_pem(&tls.client_ca))
        .client_auth_optional(false);
    let max_msg = validate::MAX_REQUEST_BYTES + GRPC_OVERHEAD_BYTES;
    let mut server = Server::builder()
        .tls_config(tls_config)
        .map_err(ServeError::Tls)?;
    tracing::info!(addr = ?listener.local_addr().ok(), "serving the etcd v3 API");
    server
        .add_service(
            KvServer::new(kv::KvService::new(store.clone())).max_decoding_message_size(max_msg),
        )
        .add_service(
            WatchServer::new(watch::WatchService::new(store.clone()))
                .max_decoding_message_size(max_msg),
        )
        .add_service(
            LeaseServer::new(lease::LeaseService::new(store.clone()))
                .max_decoding_message_size(max_msg),
        )
        .add_service(
            MaintenanceServer::new(maintenance::MaintenanceService::new(store.clone()))
                .max_decoding_message_size(max_msg),
        )
        .add_service(
            ClusterServer::new(cluster::ClusterService::new(store))
                .max_decoding_message_size(max_msg),
        )
        .serve_with_incoming_shutdown(incoming(listener), shutdown)
        .await
        .map_err(ServeError::Transport)
}
