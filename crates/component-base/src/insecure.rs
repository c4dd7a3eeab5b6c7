//! The legacy insecure port (MicroK8s' 10251 and 10252): plain HTTP, no authentication, the
//! health paths and `/metrics`. Only safe on a localhost address, which the port map enforces.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::registry::Registry;

use crate::health::Health;
use crate::{accept, routes, ServeError};

/// Serves until `shutdown` resolves; fails only when `addr` cannot be bound.
pub async fn serve_insecure(
    addr: SocketAddr,
    registry: Arc<Registry>,
    health: Health,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let listener = accept::bind(addr).await?;
    tracing::info!(%addr, "serving insecurely (health and metrics, no authentication)");
    accept::run(listener, shutdown, move |stream| {
        let (registry, health) = (registry.clone(), health.clone());
        accept::serve_connection(stream, move |req| {
            let res = routes::serve(req.uri().path(), &registry, &health);
            async move { res }
        })
    })
    .await;
    Ok(())
}
