//! The scheduler's API client over HTTP/2, as client-go speaks to the API server.
//!
//! kube-rs builds an HTTP/1.1-only client, which needs one TLS connection per request in
//! flight: with thousands of bindings and events in flight the scheduler (and the API server
//! in the same process) spent its time in TLS handshakes and connection setup. Offering `h2`
//! by ALPN lets every request share one connection as multiplexed streams; a server that only
//! speaks HTTP/1.1 still gets HTTP/1.1.

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::client::ConfigExt;
use kube::{Client, Config};
use tower::ServiceBuilder;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot build the API client: {0}")]
    Kube(#[from] kube::Error),
    #[error("invalid TLS server name {0:?}")]
    ServerName(String),
}

/// A client for `config` that negotiates HTTP/2 (falling back to HTTP/1.1).
pub fn http2(config: Config) -> Result<Client, ClientError> {
    let tls = config.rustls_client_config()?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(config.connect_timeout);
    let mut builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    if let Some(name) = &config.tls_server_name {
        let server_name = name
            .clone()
            .try_into()
            .map_err(|_| ClientError::ServerName(name.clone()))?;
        builder = builder
            .with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(server_name));
    }
    let https = builder.enable_all_versions().wrap_connector(http);
    let hyper = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        // Watches are long and quiet: pings keep the shared connection known to be alive.
        .http2_keep_alive_interval(std::time::Duration::from_secs(30))
        .http2_keep_alive_while_idle(true)
        .timer(hyper_util::rt::TokioTimer::new())
        .build(https);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(tower::BoxError::from)
        .service(hyper);
    Ok(Client::new(service, config.default_namespace))
}
