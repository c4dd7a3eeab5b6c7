//! The listeners: HTTPS (HTTP/1.1 and HTTP/2 by ALPN, client certificates requested but optional)
//! and, only when configured, the legacy localhost HTTP port without authentication (seed 003).
//! Every request passes through one dispatcher: authenticate, route (health, version, metrics,
//! discovery, resources), authorize, count.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use http::{header, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::allocators::{Allocators, Cidr, CidrError};
use crate::audit::{AuditError, AuditLog, Record};
use crate::authn::{Authenticator, AuthnError, Credentials, UserInfo};
use crate::authorization::{self, Switch};
use crate::authz::{Attributes, Authorizer, Decision};
use crate::config::Config;
use crate::metrics::{Metrics, RequestKind};
use crate::rbac::RbacAuthorizer;
use crate::registry::Registry;
use crate::request::{self, Query};
use crate::rest::{self, Call};
use crate::status::{ApiError, Subject};
use crate::storage::DynStore;
use crate::watch_cache::WatchCache;
use crate::{discovery, health, namespaces};

#[derive(Debug, Error)]
pub enum ServeError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: no {what} found in PEM")]
    Pem { path: String, what: &'static str },
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("client CA: {0}")]
    ClientCa(String),
    #[error(transparent)]
    Authn(#[from] AuthnError),
    #[error(transparent)]
    Cidr(#[from] CidrError),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("datastore: {0}")]
    Store(#[from] store::StoreError),
    #[error("creating the cluster's initial objects: {0}")]
    Bootstrap(ApiError),
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// Per-connection facts the dispatcher needs.
#[derive(Clone, Default)]
struct Connection {
    client_cert: Option<Arc<Vec<u8>>>,
    insecure: bool,
    /// The client's address, for the audit log.
    peer: Option<IpAddr>,
}

pub(crate) struct App {
    pub registry: Arc<Registry>,
    authn: Authenticator,
    authz: Arc<dyn Authorizer>,
    metrics: Metrics,
    server_address: String,
    pub store: DynStore,
    max_body: usize,
    audit: Option<AuditLog>,
    kubelet: crate::node_proxy::KubeletClient,
}

/// A bound, bootstrapped API server, ready to serve.
pub struct Server {
    app: Arc<App>,
    tls: Arc<rustls::ServerConfig>,
    listener: TcpListener,
    insecure: Option<TcpListener>,
    /// The RBAC policy follower and the mode follower; stopped with the server.
    background: Vec<JoinHandle<()>>,
}

/// Binds, bootstraps and serves until `shutdown` resolves.
pub async fn run(
    config: Config,
    store: DynStore,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    Server::bind(config, store).await?.serve(shutdown).await
}

impl Server {
    pub async fn bind(config: Config, store: DynStore) -> Result<Server, ServeError> {
        let tls = Arc::new(tls_config(&config)?);
        let listener = TcpListener::bind(config.bind)
            .await
            .map_err(|source| ServeError::Bind {
                addr: config.bind,
                source,
            })?;
        let insecure = match config.insecure_bind {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| ServeError::Bind { addr, source })?,
            ),
            None => None,
        };
        let local = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: config.bind,
            source,
        })?;
        let port = if config.advertise_port == 0 {
            local.port()
        } else {
            config.advertise_port
        };
        let advertise = config
            .advertise_address
            .unwrap_or_else(|| advertise_default(local.ip()));
        let cache = WatchCache::start(store.clone()).await?;
        let allocators = Arc::new(Allocators::new(
            Cidr::parse(&config.service_cidr)?,
            config.node_port_range.clone(),
        ));
        let rbac = Arc::new(RbacAuthorizer::default());
        let switch = Arc::new(Switch::new(config.authorization_mode, rbac.clone()));
        let registry = Arc::new(Registry {
            store: store.clone(),
            cache,
            allocators,
            authorization: switch.clone(),
            requester: None,
            resources: Default::default(),
            admission: Arc::new(crate::admission::Admission::without(
                &config.disable_admission_plugins,
            )),
        });
        namespaces::bootstrap(&registry, advertise, port)
            .await
            .map_err(ServeError::Bootstrap)?;
        authorization::bootstrap::reconcile_all(&registry)
            .await
            .map_err(ServeError::Bootstrap)?;
        let mut background = start_authorization(&registry, &switch, &config).await?;
        background.push(crate::crd::controller::start(registry.clone()).await);
        let app = Arc::new(App {
            registry,
            authn: Authenticator::from_config(&config, store.clone())?,
            authz: switch,
            metrics: Metrics::new(),
            server_address: SocketAddr::new(advertise, port).to_string(),
            store,
            max_body: config.max_request_bytes,
            kubelet: crate::node_proxy::KubeletClient::new(
                config
                    .kubelet_certificate_authority
                    .as_deref()
                    .or(config.client_ca.as_deref()),
                config.kubelet_client_cert.as_deref(),
                config.kubelet_client_key.as_deref(),
            )?,
            audit: match &config.audit_log {
                Some(path) => Some(AuditLog::open(path).await?),
                None => None,
            },
        });
        Ok(Server {
            app,
            tls,
            listener,
            insecure,
            background,
        })
    }

    /// The legacy insecure port's bound address, when configured.
    pub fn insecure_addr(&self) -> Option<SocketAddr> {
        self.insecure.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The secure port's bound address (useful when the configured port was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0))
    }

    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let router = Router::new()
            .fallback(dispatch)
            .with_state(self.app.clone());
        let mut conns = JoinSet::new();
        let acceptor = TlsAcceptor::from(self.tls);
        tokio::pin!(shutdown);
        tracing::info!(addr = %self.listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "API server listening");
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((tcp, peer)) => { conns.spawn(serve_tls(acceptor.clone(), tcp, peer.ip(), router.clone())); }
                    Err(e) => tracing::warn!(error = %e, "accept failed"),
                },
                accepted = accept_optional(self.insecure.as_ref()) => match accepted {
                    Ok((tcp, peer)) => { conns.spawn(serve_conn(TokioIo::new(tcp), Connection { client_cert: None, insecure: true, peer: Some(peer.ip()) }, router.clone())); }
                    Err(e) => tracing::warn!(error = %e, "accept failed"),
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        self.background.iter().for_each(JoinHandle::abort);
        // Watches never end by themselves; give ordinary requests a moment, then cut the rest.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while conns.join_next().await.is_some() {}
        })
        .await;
        conns.abort_all();
        Ok(())
    }
}

fn advertise_default(bound: IpAddr) -> IpAddr {
    if bound.is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        bound
    }
}

/// Loads the RBAC policy before the first request, then keeps it (and, when the caller can
/// change it, the mode) current in the background.
async fn start_authorization(
    registry: &Arc<Registry>,
    switch: &Arc<Switch>,
    config: &Config,
) -> Result<Vec<JoinHandle<()>>, ServeError> {
    let revision = crate::storage::current_revision(&registry.store).await?;
    let policy = authorization::policy_sync::load(registry, revision)
        .await
        .map_err(ServeError::Bootstrap)?;
    switch.rbac().replace(policy);
    // In memory now, so the first requests see `admin`/`edit`/`view` whole; the follower
    // writes the same rules into the store.
    switch.rbac().update(|p| p.aggregate());
    authorization::node_graph::load(registry, switch.node_graph(), revision)
        .await
        .map_err(ServeError::Bootstrap)?;
    let mut background = vec![
        tokio::spawn(authorization::policy_sync::run(
            registry.clone(),
            switch.rbac().clone(),
        )),
        tokio::spawn(authorization::node_graph::follow(
            registry.clone(),
            switch.node_graph().clone(),
        )),
    ];
    if let Some(updates) = config.authorization_updates.clone() {
        background.push(tokio::spawn(authorization::follow_mode(
            switch.clone(),
            updates,
        )));
    }
    Ok(background)
}

async fn accept_optional(
    l: Option<&TcpListener>,
) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

async fn serve_tls(
    acceptor: TlsAcceptor,
    tcp: tokio::net::TcpStream,
    peer: IpAddr,
    router: Router,
) {
    let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => return,
    };
    let client_cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| Arc::new(c.to_vec()));
    serve_conn(
        TokioIo::new(tls),
        Connection {
            client_cert,
            insecure: false,
            peer: Some(peer),
        },
        router,
    )
    .await;
}

async fn serve_conn<I>(io: TokioIo<I>, conn: Connection, router: Router)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(conn.clone());
        router.clone().oneshot(req.map(Body::new))
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // client-go multiplexes every watch of a process over one HTTP/2 connection; upstream allows
    // 1000 streams per connection (--http2-max-streams-per-connection).
    builder.http2().max_concurrent_streams(1000);
    if let Err(e) = builder.serve_connection_with_upgrades(io, svc).await {
        tracing::debug!(error = %e, "connection ended");
    }
}

fn read_pem(path: &std::path::Path) -> Result<Vec<u8>, ServeError> {
    std::fs::read(path).map_err(|source| ServeError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn tls_config(config: &Config) -> Result<rustls::ServerConfig, ServeError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<_> = rustls_pemfile::certs(&mut read_pem(&config.tls_cert)?.as_slice())
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(ServeError::Pem {
            path: config.tls_cert.display().to_string(),
            what: "certificate",
        });
    }
    let key = rustls_pemfile::private_key(&mut read_pem(&config.tls_key)?.as_slice())
        .ok()
        .flatten()
        .ok_or_else(|| ServeError::Pem {
            path: config.tls_key.display().to_string(),
            what: "private key",
        })?;
    let certs = with_client_ca(certs, config)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match &config.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls_pemfile::certs(&mut read_pem(ca)?.as_slice()).filter_map(Result::ok) {
                roots.add(c)?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| ServeError::ClientCa(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut tls = builder.with_single_cert(certs, key)?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tls)
}

/// The serving chain with the cluster CA (the client CA) after the leaf: a joining node
/// (`krust agent --token K10<hash>::...`) pins the CA by that hash and checks the server against
/// it before it sends its token, with nothing else to learn the CA from. Clients that trust the
/// CA already ignore the extra certificate.
fn with_client_ca(
    mut certs: Vec<rustls::pki_types::CertificateDer<'static>>,
    config: &Config,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, ServeError> {
    if let Some(ca) = &config.client_ca {
        for c in rustls_pemfile::certs(&mut read_pem(ca)?.as_slice()).filter_map(Result::ok) {
            if !certs.contains(&c) {
                certs.push(c);
            }
        }
    }
    Ok(certs)
}

/// Paths upstream serves to `system:anonymous` (the `system:public-info-viewer` role).
fn anonymous_allowed(path: &str) -> bool {
    let base = path.split('/').nth(1).unwrap_or("");
    matches!(base, "healthz" | "livez" | "readyz") || path == "/version" || path == "/version/"
}

/// The requester; `authorization` is the header's value, copied out because a borrowed
/// request cannot be held across the store lookups service-account tokens need.
async fn user_for(app: &App, conn: &Connection, authorization: Option<String>) -> Option<UserInfo> {
    if conn.insecure {
        return Some(UserInfo {
            name: "system:unsecured".into(),
            uid: String::new(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
            extra: Default::default(),
        });
    }
    app.authn
        .authenticate(&Credentials {
            client_cert: conn.client_cert.as_deref().map(Vec::as_slice),
            authorization: authorization.as_deref(),
        })
        .await
}

/// The user a request acts as: its requester, or whom its `Impersonate-*` headers name when the
/// requester may impersonate them.
async fn acting_as(
    app: &App,
    user: &UserInfo,
    headers: &http::HeaderMap,
) -> Result<UserInfo, ApiError> {
    Ok(
        authorization::impersonation::impersonate(app.authz.as_ref(), user, headers)
            .await?
            .unwrap_or_else(|| user.clone()),
    )
}

/// What the audit log needs from a request, copied before the request is consumed.
struct Seen {
    received: time::OffsetDateTime,
    uri: String,
    method: String,
    user_agent: Option<String>,
    peer: Option<IpAddr>,
}

impl Seen {
    fn of(req: &Request, conn: &Connection) -> Seen {
        Seen {
            received: time::OffsetDateTime::now_utc(),
            // HTTP/2 requests carry scheme and authority too; upstream logs path and query.
            uri: req
                .uri()
                .path_and_query()
                .map_or_else(|| req.uri().path().to_string(), |p| p.to_string()),
            method: req.method().to_string(),
            user_agent: req
                .headers()
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(String::from),
            peer: conn.peer,
        }
    }
}

fn audit(
    log: &AuditLog,
    seen: &Seen,
    user: Option<&UserInfo>,
    info: Option<&request::RequestInfo>,
    code: u16,
) {
    log.record(&Record {
        received: seen.received,
        uri: &seen.uri,
        method: &seen.method,
        info,
        user,
        source_ip: seen.peer,
        user_agent: seen.user_agent.as_deref(),
        code,
    });
}

async fn dispatch(State(app): State<Arc<App>>, req: Request) -> Response {
    let started = Instant::now();
    let conn = req
        .extensions()
        .get::<Connection>()
        .cloned()
        .unwrap_or_default();
    let seen = app.audit.as_ref().map(|_| Seen::of(&req, &conn));
    let mut kind = RequestKind {
        verb: req.method().to_string(),
        ..Default::default()
    };
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let user = user_for(&app, &conn, authorization).await;
    let mut info = None;
    let response = match &user {
        Some(user) if !user.is_anonymous() || anonymous_allowed(req.uri().path()) => {
            match acting_as(&app, user, req.headers()).await {
                Ok(acting) => route(&app, acting, req, &mut kind, &mut info)
                    .await
                    .unwrap_or_else(IntoResponse::into_response),
                Err(e) => e.into_response(),
            }
        }
        _ => ApiError::Unauthorized.into_response(),
    };
    let code = response.status().as_u16();
    app.metrics
        .observe(&kind, code, started.elapsed().as_secs_f64());
    if let (Some(log), Some(seen)) = (&app.audit, &seen) {
        audit(log, seen, user.as_ref(), info.as_ref(), code);
    }
    response
}

async fn route(
    app: &App,
    user: UserInfo,
    req: Request,
    kind: &mut RequestKind,
    audited: &mut Option<request::RequestInfo>,
) -> Result<Response, ApiError> {
    let path = req.uri().path().to_string();
    if let Some((group, version, rest)) =
        request::split_api_path(&path).filter(|(_, _, rest)| !rest.is_empty())
    {
        let query = Query::parse(req.uri().query())?;
        let info = request::resolve(
            req.method(),
            group,
            version,
            &rest,
            &query,
            &app.registry.resources,
        )?;
        *kind = metric_kind(&info);
        if app.audit.is_some() {
            *audited = Some(info.clone());
        }
        authorize(app, &user, &info, &query, &path).await?;
        if crate::node_proxy::handles(&info) {
            return crate::node_proxy::serve(&app.registry, &app.kubelet, &info, req).await;
        }
        let (parts, body) = req.into_parts();
        let body = read_body(body, &parts.headers, app.max_body).await?;
        let registry = app.registry.acting_for(&user);
        let call = Call {
            registry: &registry,
            user: &user,
            authn: &app.authn,
            authz: app.authz.as_ref(),
            info,
            query,
            parts: &parts,
            body,
        };
        return rest::serve(call).await;
    }
    let verb = req.method().as_str().to_ascii_lowercase();
    let attrs = non_resource_attributes(&user, &verb, &path);
    if let Decision::Deny(reason) = app.authz.authorize(&attrs).await {
        return Err(ApiError::Forbidden(
            Subject::default(),
            crate::authz::forbidden_message(&attrs, &reason),
        ));
    }
    non_resource(app, &path, req).await
}

async fn non_resource(app: &App, path: &str, req: Request) -> Result<Response, ApiError> {
    if let Some(resp) = health::serve(path, req.uri().query(), &app.store).await {
        return Ok(resp);
    }
    let table = &app.registry.resources;
    if let Some(resp) = crate::openapi::serve(path, req.headers(), table)
        .or_else(|| crate::openapi::serve_v2(path, req.headers(), table))
    {
        return Ok(resp);
    }
    match path {
        "/version" | "/version/" => Ok(health::version()),
        "/metrics" => Ok(crate::content::raw(
            StatusCode::OK,
            Bytes::from(app.metrics.encode()),
            "text/plain; version=0.0.4; charset=utf-8",
        )),
        _ => match discovery::serve(
            path,
            req.headers(),
            &app.server_address,
            &app.registry.resources,
        ) {
            Some(r) => r,
            None => Err(ApiError::NoSuchResource),
        },
    }
}

fn metric_kind(info: &request::RequestInfo) -> RequestKind {
    let verb = match info.verb {
        request::Verb::Get => "GET",
        request::Verb::List => "LIST",
        request::Verb::Watch => "WATCH",
        request::Verb::Create => "POST",
        request::Verb::Update => "PUT",
        request::Verb::Patch => "PATCH",
        request::Verb::Delete => "DELETE",
        request::Verb::DeleteCollection => "DELETECOLLECTION",
    };
    RequestKind {
        verb: verb.into(),
        group: info.res.group.into(),
        resource: info.res.plural.into(),
        subresource: info.subresource.clone().unwrap_or_default(),
    }
}

fn non_resource_attributes(user: &UserInfo, verb: &str, path: &str) -> Attributes {
    Attributes {
        user: user.clone(),
        verb: verb.into(),
        resource_request: false,
        api_group: String::new(),
        api_version: String::new(),
        resource: String::new(),
        subresource: String::new(),
        namespace: String::new(),
        name: String::new(),
        path: path.into(),
        field_selector: String::new(),
    }
}

async fn authorize(
    app: &App,
    user: &UserInfo,
    info: &request::RequestInfo,
    query: &Query,
    path: &str,
) -> Result<(), ApiError> {
    let attrs = Attributes::for_request(user, info, &query.field_selector, path);
    match app.authz.authorize(&attrs).await {
        Decision::Allow => Ok(()),
        Decision::Deny(reason) => Err(ApiError::Forbidden(
            Subject::new(info.res.group, info.res.plural, &attrs.name),
            crate::authz::forbidden_message(&attrs, &reason),
        )),
    }
}

/// Reads the body, refusing more than `max` bytes (upstream: 413 above 3 MiB).
async fn read_body(body: Body, headers: &http::HeaderMap, max: usize) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max) {
        discard(body).await;
        return Err(ApiError::TooLarge(max));
    }
    let limited = http_body_util::Limited::new(body, max);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ApiError::TooLarge(max))
        }
        Err(e) => Err(ApiError::BadRequest(format!(
            "reading the request body: {e}"
        ))),
    }
}

/// Reads and drops an oversized body (up to a bound) so the client, still sending, gets the 413
/// instead of a reset connection.
async fn discard(mut body: Body) {
    const DRAIN_LIMIT: usize = 64 << 20;
    let mut seen = 0;
    while let Some(Ok(frame)) = body.frame().await {
        seen += frame.data_ref().map_or(0, Bytes::len);
        if seen > DRAIN_LIMIT {
            return;
        }
    }
}
