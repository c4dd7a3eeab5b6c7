//! The API server's client towards kubelets: TLS with its kubelet client certificate
//! (`apiserver-kubelet-client`, system:masters), the kubelet's serving certificate verified
//! against the cluster CA, HTTP/1.1 (upgrades need it), one connection per request so that a
//! stream owns it. A response the kubelet upgrades is joined to the client's upgraded
//! connection and bytes are copied both ways.

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http::{header, HeaderName, HeaderValue, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_rustls::rustls;
use tokio_rustls::TlsConnector;

use super::locations::Target;
use crate::serving::ServeError;

pub(crate) struct KubeletClient {
    connector: TlsConnector,
}

fn read(path: &Path) -> Result<Vec<u8>, ServeError> {
    std::fs::read(path).map_err(|source| ServeError::Read {
        path: path.display().to_string(),
        source,
    })
}

impl KubeletClient {
    /// `ca`: what kubelets' serving certificates chain to; `cert`/`key`: the client
    /// certificate presented to them (none: requests reach kubelets anonymously and get 401).
    pub fn new(
        ca: Option<&Path>,
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<KubeletClient, ServeError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        if let Some(ca) = ca {
            for c in rustls_pemfile::certs(&mut read(ca)?.as_slice()).filter_map(Result::ok) {
                roots.add(c)?;
            }
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let mut tls = match (cert, key) {
            (Some(cert), Some(key)) => {
                let chain: Vec<_> = rustls_pemfile::certs(&mut read(cert)?.as_slice())
                    .filter_map(Result::ok)
                    .collect();
                let key = rustls_pemfile::private_key(&mut read(key)?.as_slice())
                    .ok()
                    .flatten()
                    .ok_or_else(|| ServeError::Pem {
                        path: key.display().to_string(),
                        what: "private key",
                    })?;
                builder.with_client_auth_cert(chain, key)?
            }
            _ => builder.with_no_client_auth(),
        };
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(KubeletClient {
            connector: TlsConnector::from(Arc::new(tls)),
        })
    }

    /// Sends `req` to `path_and_query` on the kubelet at `target`; `Err` says why the kubelet
    /// could not be reached.
    pub async fn forward(
        &self,
        target: &Target,
        path_and_query: &str,
        mut req: Request,
    ) -> Result<Response, String> {
        let authority = if target.host.contains(':') {
            format!("[{}]:{}", target.host, target.port)
        } else {
            format!("{}:{}", target.host, target.port)
        };
        let name = rustls::pki_types::ServerName::try_from(target.host.clone())
            .map_err(|e| format!("bad kubelet address {}: {e}", target.host))?;
        let tcp = tokio::net::TcpStream::connect(&authority)
            .await
            .map_err(|e| format!("dial tcp {authority}: {e}"))?;
        let tls = self
            .connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("tls with {authority}: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "kubelet connection ended");
            }
        });
        let client_upgrade = hyper::upgrade::on(&mut req);
        let (parts, body) = req.into_parts();
        let mut out = http::Request::builder()
            .method(parts.method.clone())
            .uri(path_and_query)
            .body(body)
            .map_err(|e| e.to_string())?;
        for (name, value) in &parts.headers {
            if forwardable(name) {
                out.headers_mut().append(name, value.clone());
            }
        }
        if let Ok(host) = HeaderValue::from_str(&authority) {
            out.headers_mut().insert(header::HOST, host);
        }
        let mut resp = sender.send_request(out).await.map_err(|e| e.to_string())?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            let (mut parts, body) = resp.into_parts();
            for hop in [
                header::CONNECTION,
                header::TRANSFER_ENCODING,
                header::UPGRADE,
            ] {
                parts.headers.remove(hop);
            }
            return Ok(Response::from_parts(parts, Body::new(body)));
        }
        let kubelet_upgrade = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            match tokio::try_join!(client_upgrade, kubelet_upgrade) {
                Ok((client, kubelet)) => {
                    let (mut a, mut b) = (TokioIo::new(client), TokioIo::new(kubelet));
                    let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                }
                Err(e) => tracing::debug!(error = %e, "upgrading a kubelet stream failed"),
            }
        });
        let (parts, _) = resp.into_parts();
        Ok(Response::from_parts(parts, Body::empty()))
    }
}

/// The client's headers the kubelet gets: not its credentials (the API server authenticates
/// as itself) nor the host it addressed.
fn forwardable(name: &HeaderName) -> bool {
    let n = name.as_str();
    name != header::HOST
        && name != header::AUTHORIZATION
        && !n.starts_with("impersonate-")
        && !n.starts_with("proxy-")
}
