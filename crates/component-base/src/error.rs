//! Why a component's port could not be served.

use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid serving certificate or key: {0}")]
    Certificate(String),
    #[error("invalid client CA: {0}")]
    ClientCa(String),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}
