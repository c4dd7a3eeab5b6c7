//! Listeners and connections: TLS on the secure port (the verified client certificate's user
//! travels with each request), plain HTTP on the read-only and healthz ports; HTTP/1.1 with
//! upgrades (exec, attach and port-forward streams) or HTTP/2.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use component_base::delegated::User;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::{Config, ServerError};

/// Who a connection's client certificate names, if it presented one the CA signed.
#[derive(Clone, Debug, Default)]
pub struct CertUser(pub Option<User>);

pub async fn bind(addr: std::net::SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, ServerError> {
    std::fs::read(path).map_err(|source| ServerError::Read {
        path: path.to_path_buf(),
        source,
    })
}

pub fn tls(config: &Config) -> Result<TlsAcceptor, ServerError> {
    let tls = component_base::delegated::server_tls(
        &read(&config.cert)?,
        &read(&config.key)?,
        &read(&config.client_ca)?,
    )?;
    Ok(TlsAcceptor::from(Arc::new(tls)))
}

pub async fn serve_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    stopped: watch::Receiver<bool>,
) {
    accept_loop(listener, stopped, move |tcp| {
        let (acceptor, router) = (acceptor.clone(), router.clone());
        async move {
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "kubelet API: TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
            let user = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(component_base::delegated::user_of_cert);
            serve_connection(tls, CertUser(user), router).await;
        }
    })
    .await;
}

pub async fn serve_plain(listener: TcpListener, router: Router, stopped: watch::Receiver<bool>) {
    accept_loop(listener, stopped, move |tcp| {
        serve_connection(tcp, CertUser::default(), router.clone())
    })
    .await;
}

/// One task per connection until the stop signal, then every connection is ended.
async fn accept_loop<F, Fut>(listener: TcpListener, mut stopped: watch::Receiver<bool>, handle: F)
where
    F: Fn(tokio::net::TcpStream) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let stop = async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    tokio::pin!(stop);
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => { conns.spawn(handle(tcp)); }
                Err(e) => {
                    tracing::warn!(error = %e, "kubelet API: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.abort_all();
}

async fn serve_connection<I>(io: I, user: CertUser, router: Router)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service =
        hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(user.clone());
            router.clone().oneshot(req.map(Body::new))
        });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    if let Err(e) = builder
        .serve_connection_with_upgrades(TokioIo::new(io), service)
        .await
    {
        tracing::debug!(error = %e, "kubelet API: connection ended");
    }
}
