//! Learning the cluster CA from the server itself, trusting only the join token's hash: one TLS
//! handshake that records the server's chain (the API server sends the CA after its leaf) and
//! sends nothing; then the CA whose SHA-256 is the pinned one must have signed the leaf for the
//! URL's host, as any TLS client would check it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::{ca_hash, BootstrapError};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The pinned CA (PEM), once the server at `url` proved it holds a certificate it signed.
pub async fn fetch_ca(url: &str, pinned: &str) -> Result<String, BootstrapError> {
    let (host, port) = host_port(url)?;
    let server_name =
        ServerName::try_from(host.clone()).map_err(|_| BootstrapError::BadUrl(url.to_string()))?;
    let chain = handshake(url, &host, port, server_name.clone()).await?;
    let mismatch = |reason: String| BootstrapError::CaMismatch {
        url: url.to_string(),
        reason,
    };
    let (leaf, rest) = chain
        .split_first()
        .ok_or_else(|| mismatch("no certificate".into()))?;
    let ca = rest
        .iter()
        .chain(std::iter::once(leaf))
        .find(|c| ca_hash(c.as_ref()) == pinned)
        .ok_or_else(|| mismatch(format!("no certificate in its chain has sha256 {pinned}")))?;
    verify_leaf(leaf, rest, ca, &server_name).map_err(|e| mismatch(e.to_string()))?;
    Ok(pem("CERTIFICATE", ca.as_ref()))
}

/// `https://HOST:PORT[/...]` → (HOST, PORT); IPv6 hosts in brackets.
fn host_port(url: &str) -> Result<(String, u16), BootstrapError> {
    let bad = || BootstrapError::BadUrl(url.to_string());
    let rest = url.strip_prefix("https://").ok_or_else(bad)?;
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']').ok_or_else(bad)?;
            (host, after.strip_prefix(':').unwrap_or("443"))
        }
        None => authority.rsplit_once(':').unwrap_or((authority, "443")),
    };
    let port = port.parse().map_err(|_| bad())?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

async fn handshake(
    url: &str,
    host: &str,
    port: u16,
    server_name: ServerName<'static>,
) -> Result<Vec<CertificateDer<'static>>, BootstrapError> {
    let unreachable = |reason: String| BootstrapError::Unreachable {
        url: url.to_string(),
        reason,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let recorder = Arc::new(Recorder {
        chain: Mutex::default(),
        provider: provider.clone(),
    });
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| unreachable(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let addr = (host.trim_matches(|c| c == '[' || c == ']'), port);
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| unreachable(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs())))?
        .map_err(|e| unreachable(e.to_string()))?;
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(server_name, tcp))
        .await
        .map_err(|_| unreachable("the TLS handshake did not finish".into()))?
        .map_err(|e| unreachable(format!("TLS handshake failed: {e}")))?;
    drop(stream);
    let chain = recorder.chain.lock().map(|c| c.clone()).unwrap_or_default();
    Ok(chain)
}

/// The leaf checked against `ca` as the only root, for the URL's host.
fn verify_leaf(
    leaf: &CertificateDer<'static>,
    intermediates: &[CertificateDer<'static>],
    ca: &CertificateDer<'static>,
    server_name: &ServerName<'static>,
) -> Result<(), rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
    verifier.verify_server_cert(leaf, intermediates, server_name, &[], UnixTime::now())?;
    Ok(())
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// Accepts any chain for the first handshake and keeps it; the handshake's signatures are still
/// checked, so the peer holds the leaf's key.
#[derive(Debug)]
struct Recorder {
    chain: Mutex<Vec<CertificateDer<'static>>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.clone().into_owned())
            .collect();
        if let Ok(mut held) = self.chain.lock() {
            *held = chain;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            host_port("https://10.0.0.1:6443").unwrap(),
            ("10.0.0.1".into(), 6443)
        );
        assert_eq!(
            host_port("https://[::1]:16443/").unwrap(),
            ("::1".into(), 16443)
        );
        assert_eq!(
            host_port("https://example").unwrap(),
            ("example".into(), 443)
        );
        assert!(host_port("http://10.0.0.1:6443").is_err());
    }
}
