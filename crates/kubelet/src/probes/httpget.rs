//! The HTTP GET of httpGet probes and hooks, as upstream's prober makes it: HTTPS without
//! certificate verification, `User-Agent: kube-probe/<major>.<minor>` and `Accept: */*` unless
//! the probe's httpHeaders say otherwise (a `Host` header names the virtual host), redirects
//! followed up to 10 times while they stay on the same host name, and at most 10 KiB of body.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::HTTPGetAction;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::action::Outcome;

/// The prober's User-Agent: upstream sends its own version.
const USER_AGENT: &str = "kube-probe/1.33";
const MAX_BODY: usize = 10 * 1024;
const MAX_REDIRECTS: usize = 10;

/// Where a GET goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        let hostport = join_host_port(&self.host, self.port);
        write!(f, "{scheme}://{hostport}{}", self.path)
    }
}

#[derive(Debug, Clone)]
pub struct Request {
    pub url: Url,
    pub headers: Vec<(String, String)>,
}

impl Request {
    pub fn from_action(get: &HTTPGetAction, host: &str, port: u16) -> Request {
        let path = get.path.clone().unwrap_or_default();
        let path = if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        };
        let https = get
            .scheme
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("https"));
        let headers = get
            .http_headers
            .iter()
            .flatten()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        Request {
            url: Url {
                https,
                host: host.to_string(),
                port,
                path,
            },
            headers,
        }
    }

    pub fn url(&self) -> String {
        self.url.to_string()
    }
}

/// The answer that ended the request: the last response, redirects included when not followed.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

/// Upstream's verdict on a response: 2xx success, 3xx (a redirect not followed) a warning,
/// anything else a failure with the status code.
pub fn judge(resp: &Response) -> Outcome {
    match resp.status {
        200..=299 => Outcome::Success,
        300..=399 => Outcome::Warning(format!(
            "Probe terminated redirects, Response body: {}",
            resp.body
        )),
        code => Outcome::Failure(format!("HTTP probe failed with statuscode: {code}")),
    }
}

/// GETs the URL, following same-host redirects; errors read as Go's client writes them.
pub async fn get(request: &Request) -> Result<Response, String> {
    let mut url = request.url.clone();
    let first_host = url.host.clone();
    let mut redirects = 0;
    loop {
        let (resp, location) = get_once(&url, &request.headers)
            .await
            .map_err(|e| format!("Get {:?}: {e}", url.to_string()))?;
        let Some(location) = location.filter(|_| (300..400).contains(&resp.status)) else {
            return Ok(resp);
        };
        let Some(next) = resolve(&url, &location) else {
            return Ok(resp);
        };
        if next.host != first_host {
            // Upstream does not follow a probe off the host: the redirect itself answers.
            return Ok(resp);
        }
        redirects += 1;
        if redirects >= MAX_REDIRECTS {
            return Err(format!(
                "Get {:?}: stopped after {MAX_REDIRECTS} redirects",
                next.to_string()
            ));
        }
        url = next;
    }
}

/// Where a Location header points, relative to `base`.
fn resolve(base: &Url, location: &str) -> Option<Url> {
    if let Some((scheme, rest)) = location.split_once("://") {
        let https = match scheme.to_ascii_lowercase().as_str() {
            "http" => false,
            "https" => true,
            _ => return None,
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].to_string()),
            None => (rest, "/".to_string()),
        };
        let uri: http::uri::Authority = authority.parse().ok()?;
        let host = uri.host().trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        return Some(Url {
            https,
            host: host.to_string(),
            port,
            path,
        });
    }
    let path = if location.starts_with('/') {
        location.to_string()
    } else {
        let dir = base.path.split('?').next().unwrap_or("/");
        let dir = &dir[..dir.rfind('/').map_or(0, |i| i + 1)];
        format!("{dir}{location}")
    };
    Some(Url {
        path,
        ..base.clone()
    })
}

async fn get_once(
    url: &Url,
    headers: &[(String, String)],
) -> Result<(Response, Option<String>), String> {
    let addr = join_host_port(&url.host, url.port);
    let tcp = dial(&addr, Duration::from_secs(3600)).await?;
    if url.https {
        let tls = tls_connect(tcp, &url.host).await?;
        exchange(tls, url, headers).await
    } else {
        exchange(tcp, url, headers).await
    }
}

async fn exchange<S>(
    stream: S,
    url: &Url,
    headers: &[(String, String)],
) -> Result<(Response, Option<String>), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let conn = tokio::spawn(conn);
    let result = async {
        let req = build(url, headers)?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = read_at_most(resp.into_body(), MAX_BODY).await;
        Ok((Response { status, body }, location))
    }
    .await;
    conn.abort();
    result
}

fn build(url: &Url, headers: &[(String, String)]) -> Result<http::Request<Empty<Bytes>>, String> {
    let mut builder = http::Request::get(url.path.as_str());
    let mut host = join_host_port(&url.host, url.port);
    let mut user_agent = Some(USER_AGENT.to_string());
    let mut accept = Some("*/*".to_string());
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("host") {
            host = value.clone();
        } else if name.eq_ignore_ascii_case("user-agent") {
            // An empty User-Agent header removes it, as in Go.
            user_agent = Some(value.clone()).filter(|v| !v.is_empty());
        } else if name.eq_ignore_ascii_case("accept") {
            accept = Some(value.clone()).filter(|v| !v.is_empty());
        } else {
            builder = builder.header(name.as_str(), value.as_str());
        }
    }
    builder = builder.header(http::header::HOST, host);
    if let Some(ua) = user_agent {
        builder = builder.header(http::header::USER_AGENT, ua);
    }
    if let Some(accept) = accept {
        builder = builder.header(http::header::ACCEPT, accept);
    }
    builder.body(Empty::new()).map_err(|e| e.to_string())
}

async fn read_at_most(mut body: hyper::body::Incoming, limit: usize) -> String {
    let mut data = Vec::new();
    while data.len() < limit {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(chunk) = frame.data_ref() {
                    data.extend_from_slice(chunk);
                }
            }
            _ => break,
        }
    }
    data.truncate(limit);
    String::from_utf8_lossy(&data).into_owned()
}

/// `host:port`, with brackets around an IPv6 host.
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A TCP connection within `timeout`; errors as Go's dialer words them.
pub async fn dial(addr: &str, timeout: Duration) -> Result<TcpStream, String> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => Err(format!("dial tcp {addr}: i/o timeout")),
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(format!("dial tcp {addr}: {}", go_error(&e))),
    }
}

fn go_error(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connect: connection refused".into(),
        HostUnreachable => "connect: no route to host".into(),
        NetworkUnreachable => "connect: network is unreachable".into(),
        TimedOut => "i/o timeout".into(),
        _ => e.to_string(),
    }
}

async fn tls_connect(
    tcp: TcpStream,
    host: &str,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("tls: {e}"))?;
    let connector = tokio_rustls::TlsConnector::from(insecure_config());
    connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("tls: {e}"))
}

/// Probes do not verify the server's certificate (upstream: InsecureSkipVerify).
fn insecure_config() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Arc::new(config)
}

#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url {
            https: false,
            host: "10.0.0.1".into(),
            port: 8080,
            path: "/a/b?x=1".into(),
        }
    }

    #[test]
    fn redirects_resolve() {
        assert_eq!(resolve(&base(), "/c").unwrap().path, "/c");
        assert_eq!(resolve(&base(), "c").unwrap().path, "/a/c");
        let abs = resolve(&base(), "https://example.com/x").unwrap();
        assert_eq!(
            (abs.https, abs.host.as_str(), abs.port),
            (true, "example.com", 443)
        );
        let v6 = resolve(&base(), "http://[::1]:81").unwrap();
        assert_eq!(
            (v6.host.as_str(), v6.port, v6.path.as_str()),
            ("::1", 81, "/")
        );
        assert_eq!(v6.to_string(), "http://[::1]:81/");
    }

    #[test]
    fn verdicts() {
        let r = |status| Response {
            status,
            body: "b".into(),
        };
        assert_eq!(judge(&r(204)), Outcome::Success);
        assert!(judge(&r(302)).is_success());
        assert_eq!(
            judge(&r(500)),
            Outcome::Failure("HTTP probe failed with statuscode: 500".into())
        );
    }

    #[tokio::test]
    async fn refused_reads_as_go() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let req = Request {
            url: Url {
                https: false,
                host: "127.0.0.1".into(),
                port,
                path: "/".into(),
            },
            headers: vec![],
        };
        let err = get(&req).await.unwrap_err();
        assert_eq!(
            err,
            format!("Get \"http://127.0.0.1:{port}/\": dial tcp 127.0.0.1:{port}: connect: connection refused")
        );
    }
}
