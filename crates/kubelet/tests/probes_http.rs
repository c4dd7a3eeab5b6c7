//! httpGet, tcpSocket and grpc probe actions against real servers on loopback: a small HTTP/1.1
//! server of the test's own (status codes, redirects, slow answers, the headers it received)
//! and `openssl s_server` for HTTPS with a self-signed certificate. No containers, no root.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Probe};
use kubelet::cri::Cri;
use kubelet::probes::{run_probe, Outcome, Target};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Request heads the server received, in order.
type Seen = Arc<Mutex<Vec<String>>>;

async fn server() -> (u16, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).into_owned();
                let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                log.lock().unwrap().push(head);
                let (status, extra, body) = match path.as_str() {
                    "/ok" => ("200 OK", String::new(), "fine"),
                    "/fail" => ("500 Internal Server Error", String::new(), "broken"),
                    "/missing" => ("404 Not Found", String::new(), "no"),
                    "/same" => ("302 Found", "Location: /ok\r\n".into(), ""),
                    "/loop" => ("302 Found", "Location: /loop\r\n".into(), ""),
                    "/away" => (
                        "302 Found",
                        format!("Location: http://localhost:{port}/ok\r\n"),
                        "elsewhere",
                    ),
                    "/slow" => {
                        tokio::time::sleep(Duration::from_secs(3)).await;
                        ("200 OK", String::new(), "late")
                    }
                    _ => ("404 Not Found", String::new(), ""),
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(response.as_bytes()).await;
            });
        }
    });
    (port, seen)
}

fn http_probe(port: u16, path: &str, extra: serde_json::Value) -> Probe {
    let mut get = serde_json::json!({"port": port, "path": path});
    if let (Some(get), Some(extra)) = (get.as_object_mut(), extra.as_object()) {
        get.extend(extra.clone());
    }
    serde_json::from_value(serde_json::json!({"httpGet": get, "timeoutSeconds": 1})).unwrap()
}

/// A CRI client nobody listens to: these probe kinds never call the runtime.
fn no_runtime() -> Cri {
    Cri::connect(std::path::Path::new("/nonexistent/containerd.sock")).unwrap()
}

async fn probe(probe: &Probe) -> Outcome {
    let container = Container {
        name: "c".into(),
        ..Default::default()
    };
    let target = Target {
        container_id: "unused",
        container: &container,
        pod_ip: Some("127.0.0.1"),
    };
    run_probe(&no_runtime(), probe, target).await
}

#[tokio::test]
async fn http_probe_statuses_redirects_and_headers() {
    let (port, seen) = server().await;
    assert_eq!(
        probe(&http_probe(port, "/ok", serde_json::json!({}))).await,
        Outcome::Success
    );
    assert_eq!(
        probe(&http_probe(port, "/fail", serde_json::json!({}))).await,
        Outcome::Failure("HTTP probe failed with statuscode: 500".into())
    );
    assert_eq!(
        probe(&http_probe(port, "/missing", serde_json::json!({}))).await,
        Outcome::Failure("HTTP probe failed with statuscode: 404".into())
    );
    // Same-host redirects are followed; a loop stops after 10; another host is not followed
    // and the redirect itself counts as success with a warning.
    assert_eq!(
        probe(&http_probe(port, "/same", serde_json::json!({}))).await,
        Outcome::Success
    );
    let before = seen.lock().unwrap().len();
    let looped = probe(&http_probe(port, "/loop", serde_json::json!({}))).await;
    assert_eq!(
        looped,
        Outcome::Failure(format!(
            "Get \"http://127.0.0.1:{port}/loop\": stopped after 10 redirects"
        ))
    );
    assert_eq!(seen.lock().unwrap().len() - before, 10);
    assert_eq!(
        probe(&http_probe(port, "/away", serde_json::json!({}))).await,
        Outcome::Warning("Probe terminated redirects, Response body: elsewhere".into())
    );

    // Headers: upstream's User-Agent and Accept, a Host header naming the virtual host, extras.
    let with_headers = http_probe(
        port,
        "/ok",
        serde_json::json!({"httpHeaders": [
            {"name": "Host", "value": "example.test"},
            {"name": "X-Custom", "value": "yes"},
        ]}),
    );
    assert_eq!(probe(&with_headers).await, Outcome::Success);
    let head = seen.lock().unwrap().last().unwrap().to_lowercase();
    assert!(head.starts_with("get /ok http/1.1\r\n"), "{head}");
    for header in [
        "host: example.test",
        "user-agent: kube-probe/1.33",
        "accept: */*",
        "x-custom: yes",
    ] {
        assert!(head.contains(header), "{header} missing in {head}");
    }

    // timeoutSeconds bounds a slow server.
    let started = Instant::now();
    let slow = probe(&http_probe(port, "/slow", serde_json::json!({}))).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        matches!(&slow, Outcome::Failure(m) if m.starts_with(&format!("Get \"http://127.0.0.1:{port}/slow\": context deadline exceeded"))),
        "{slow:?}"
    );
    // A named port the container does not have.
    let named: Probe =
        serde_json::from_value(serde_json::json!({"httpGet": {"port": "web"}})).unwrap();
    assert_eq!(
        probe(&named).await,
        Outcome::Failure("couldn't find port: web".into())
    );
}

/// HTTPS probes do not verify the certificate (a self-signed one here, from openssl s_server).
#[tokio::test]
async fn https_probe_skips_verification() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=self-signed",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl");
    assert!(status.success());
    let port = support::free_port();
    let mut server = tokio::process::Command::new("openssl")
        .args(["s_server", "-quiet", "-www", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl s_server");
    let https = http_probe(port, "/", serde_json::json!({"scheme": "HTTPS"}));
    let mut outcome = Outcome::Failure("not probed".into());
    for _ in 0..50 {
        outcome = probe(&https).await;
        if outcome == Outcome::Success {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let plain = probe(&http_probe(port, "/", serde_json::json!({}))).await;
    server.kill().await.unwrap();
    assert_eq!(outcome, Outcome::Success);
    assert!(
        matches!(plain, Outcome::Failure(_)),
        "plain HTTP to a TLS port: {plain:?}"
    );
}

#[tokio::test]
async fn tcp_and_grpc_probes_on_closed_and_open_ports() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let open = listener.local_addr().unwrap().port();
    let closed = support::free_port();
    let tcp = |port: u16| -> Probe {
        serde_json::from_value(serde_json::json!({"tcpSocket": {"port": port}})).unwrap()
    };
    assert_eq!(probe(&tcp(open)).await, Outcome::Success);
    assert_eq!(
        probe(&tcp(closed)).await,
        Outcome::Failure(format!(
            "dial tcp 127.0.0.1:{closed}: connect: connection refused"
        ))
    );
    let grpc: Probe =
        serde_json::from_value(serde_json::json!({"grpc": {"port": closed}})).unwrap();
    let outcome = probe(&grpc).await;
    assert!(
        matches!(&outcome, Outcome::Failure(m) if m.starts_with(&format!("timeout: failed to connect service \"127.0.0.1:{closed}\" within 1s"))),
        "{outcome:?}"
    );
    drop(listener);
}

/// The standard gRPC health service, answering every check with one status.
mod health {
    use std::convert::Infallible;
    use std::task::{Context, Poll};

    use tonic::codegen::{BoxFuture, Service, StdError};

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Request {
        #[prost(string, tag = "1")]
        pub service: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Response {
        #[prost(int32, tag = "1")]
        pub status: i32,
    }

    #[derive(Clone)]
    pub struct Health(pub i32);

    impl tonic::server::NamedService for Health {
        const NAME: &'static str = "grpc.health.v1.Health";
    }

    struct Check(i32);

    impl tonic::server::UnaryService<Request> for Check {
        type Response = Response;
        type Future = BoxFuture<tonic::Response<Response>, tonic::Status>;
        fn call(&mut self, _req: tonic::Request<Request>) -> Self::Future {
            let status = self.0;
            Box::pin(async move { Ok(tonic::Response::new(Response { status })) })
        }
    }

    impl<B> Service<http::Request<B>> for Health
    where
        B: tonic::codegen::Body + Send + 'static,
        B::Error: Into<StdError> + Send + 'static,
    {
        type Response = http::Response<tonic::body::Body>;
        type Error = Infallible;
        type Future = BoxFuture<Self::Response, Infallible>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: http::Request<B>) -> Self::Future {
            let status = self.0;
            Box::pin(async move {
                let codec = tonic_prost::ProstCodec::<Response, Request>::default();
                let mut grpc = tonic::server::Grpc::new(codec);
                Ok(grpc.unary(Check(status), req).await)
            })
        }
    }
}

/// A grpc probe asks the health service: SERVING succeeds, NOT_SERVING fails as upstream says.
#[tokio::test]
async fn grpc_probe_asks_the_health_service() {
    let mut ports = Vec::new();
    for status in [1, 2] {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        ports.push(listener.local_addr().unwrap().port());
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(health::Health(status))
                .serve_with_incoming(incoming),
        );
    }
    let grpc = |port: u16| -> Probe {
        serde_json::from_value(serde_json::json!({"grpc": {"port": port, "service": "x"}})).unwrap()
    };
    assert_eq!(probe(&grpc(ports[0])).await, Outcome::Success);
    assert_eq!(
        probe(&grpc(ports[1])).await,
        Outcome::Failure("service unhealthy (responded with \"NOT_SERVING\")".into())
    );
}
