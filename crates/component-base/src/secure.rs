//! The secure port (10259 scheduler, 10257 controller manager): HTTPS where the health paths are
//! open to anyone and every other path needs an authenticated, authorized caller.
//!
//! A client certificate signed by the cluster CA authenticates locally (CN is the user, O the
//! groups), as upstream's `--client-ca-file`; otherwise a bearer token is reviewed by the API
//! server. Anonymous callers are refused with 401 rather than authorized as
//! `system:anonymous`, so that nothing but health ever leaks to an unauthenticated caller.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{header, Request, Response, StatusCode};
use prometheus_client::registry::Registry;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::delegated::{Decision, Delegated, User};
use crate::health::{self, Health};
use crate::routes::{self, Body};
use crate::{accept, ServeError};

/// What a component's secure port needs.
pub struct SecureConfig {
    /// Serving certificate (chain) and key, PEM.
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// CA whose client certificates authenticate without a review (the cluster CA).
    pub client_ca_pem: Vec<u8>,
    /// The component's own client, for TokenReviews and SubjectAccessReviews.
    pub client: kube::Client,
    pub registry: Arc<Registry>,
    pub health: Health,
}

/// Per-server state shared by every connection.
struct Shared {
    delegated: Delegated,
    registry: Arc<Registry>,
    health: Health,
}

/// Serves until `shutdown` resolves; fails when the TLS material is unusable or `addr` cannot
/// be bound.
pub async fn serve_secure(
    addr: SocketAddr,
    config: SecureConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let acceptor = TlsAcceptor::from(Arc::new(tls_config(&config)?));
    let listener = accept::bind(addr).await?;
    let shared = Arc::new(Shared {
        delegated: Delegated::new(config.client),
        registry: config.registry,
        health: config.health,
    });
    tracing::info!(%addr, "serving securely (authentication and authorization delegated)");
    accept::run(listener, shutdown, move |stream| {
        connection(stream, acceptor.clone(), shared.clone())
    })
    .await;
    Ok(())
}

fn tls_config(config: &SecureConfig) -> Result<rustls::ServerConfig, ServeError> {
    server_tls(&config.cert_pem, &config.key_pem, &config.client_ca_pem)
}

/// A serving TLS configuration (HTTP/2 and HTTP/1.1) that verifies client certificates against
/// `client_ca_pem` when a client presents one, and lets callers without one through (they then
/// need a bearer token); the kubelet's 10250 uses it too.
pub fn server_tls(
    cert_pem: &[u8],
    key_pem: &[u8],
    client_ca_pem: &[u8],
) -> Result<rustls::ServerConfig, ServeError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = client_roots(client_ca_pem)?;
    // Client certificates are optional: token and health callers present none.
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| ServeError::ClientCa(e.to_string()))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(cert_pem)?, key(key_pem)?)?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tls)
}

fn certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, ServeError> {
    let certs = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServeError::Certificate(e.to_string()))?;
    if certs.is_empty() {
        return Err(ServeError::Certificate("no certificate in PEM".into()));
    }
    Ok(certs)
}

fn key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, ServeError> {
    rustls_pemfile::private_key(&mut &pem[..])
        .map_err(|e| ServeError::Certificate(e.to_string()))?
        .ok_or_else(|| ServeError::Certificate("no private key in PEM".into()))
}

fn client_roots(pem: &[u8]) -> Result<RootCertStore, ServeError> {
    let mut roots = RootCertStore::empty();
    let certs = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServeError::ClientCa(e.to_string()))?;
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| ServeError::ClientCa(e.to_string()))?;
    }
    Ok(roots)
}

/// One TLS connection: the handshake (which verified any client certificate), then HTTP.
async fn connection(stream: TcpStream, acceptor: TlsAcceptor, shared: Arc<Shared>) {
    let tls = match acceptor.accept(stream).await {
        Ok(tls) => tls,
        Err(e) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            return;
        }
    };
    let cert_user = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|leaf| user_of_cert(leaf));
    accept::serve_connection(tls, move |req| {
        let (shared, cert_user) = (shared.clone(), cert_user.clone());
        async move { answer(&shared, cert_user, req).await }
    })
    .await;
}

/// Access control, then the shared routes.
async fn answer<B>(shared: &Shared, cert_user: Option<User>, req: Request<B>) -> Response<Body> {
    let path = req.uri().path().to_string();
    if health::is_health_path(&path) {
        return routes::serve(&path, &shared.registry, &shared.health);
    }
    let user = match cert_user {
        Some(user) => user,
        None => match authenticate_bearer(shared, &req).await {
            Some(user) => user,
            None => return routes::text(StatusCode::UNAUTHORIZED, "Unauthorized\n".into()),
        },
    };
    match shared.delegated.authorize(&user, "get", &path).await {
        Ok(Decision::Allow) => routes::serve(&path, &shared.registry, &shared.health),
        Ok(Decision::Deny(reason)) => forbidden(&user, &path, &reason),
        Err(e) => {
            tracing::warn!(error = %e, user = %user.name, path, "cannot authorize");
            routes::text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Server Error: authorization failed\n".into(),
            )
        }
    }
}

/// The caller of a `Authorization: Bearer` request, if the API server knows its token.
async fn authenticate_bearer<B>(shared: &Shared, req: &Request<B>) -> Option<User> {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?
        .trim();
    if token.is_empty() {
        return None;
    }
    match shared.delegated.authenticate_token(token).await {
        Ok(user) => user,
        Err(e) => {
            tracing::warn!(error = %e, "cannot authenticate a bearer token");
            None
        }
    }
}

/// Upstream's wording for a denied non-resource request.
fn forbidden(user: &User, path: &str, reason: &str) -> Response<Body> {
    let mut body = format!("Forbidden: User {:?} cannot get path {:?}", user.name, path);
    if !reason.is_empty() {
        body.push_str(": ");
        body.push_str(reason);
    }
    body.push('\n');
    routes::text(StatusCode::FORBIDDEN, body)
}

/// The user a verified client certificate names: CN the name, every O a group.
pub fn user_of_cert(der: &CertificateDer<'_>) -> Option<User> {
    let id = pki::cert_identity(der.as_ref())?;
    // As upstream's authenticator chain, every authenticated user is in system:authenticated.
    let mut groups = id.groups;
    groups.push("system:authenticated".to_string());
    Some(User {
        name: id.user,
        uid: String::new(),
        groups,
    })
}
