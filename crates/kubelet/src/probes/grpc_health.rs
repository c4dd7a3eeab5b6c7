//! gRPC probes: the standard health service (`grpc.health.v1.Health/Check`) over plaintext
//! HTTP/2, with upstream's outputs (pkg/probe/grpc).

use std::time::Duration;

use http::uri::PathAndQuery;

use super::action::Outcome;
use super::httpget::join_host_port;

#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    service: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckResponse {
    #[prost(int32, tag = "1")]
    status: i32,
}

const SERVING: i32 = 1;

fn status_name(status: i32) -> &'static str {
    match status {
        0 => "UNKNOWN",
        1 => "SERVING",
        2 => "NOT_SERVING",
        3 => "SERVICE_UNKNOWN",
        _ => "UNKNOWN",
    }
}

/// Asks the health service at `host:port` about `service` ("" for the server as a whole).
pub async fn check(host: &str, port: u16, service: &str, timeout: Duration) -> Outcome {
    let addr = join_host_port(host, port);
    let secs = timeout.as_secs();
    let endpoint = match tonic::transport::Endpoint::from_shared(format!("http://{addr}")) {
        Ok(e) => e.connect_timeout(timeout).timeout(timeout),
        Err(e) => return Outcome::Failure(format!("error: {e}")),
    };
    let channel = match endpoint.connect().await {
        Ok(c) => c,
        Err(e) => {
            return Outcome::Failure(format!(
                "timeout: failed to connect service {addr:?} within {secs}s: {e}"
            ))
        }
    };
    let mut grpc = tonic::client::Grpc::new(channel);
    if let Err(e) = grpc.ready().await {
        return Outcome::Failure(format!("error: health rpc probe failed: {e}"));
    }
    let request = tonic::Request::new(HealthCheckRequest {
        service: service.to_string(),
    });
    let path = PathAndQuery::from_static("/grpc.health.v1.Health/Check");
    let codec = tonic_prost::ProstCodec::<HealthCheckRequest, HealthCheckResponse>::default();
    match grpc.unary(request, path, codec).await {
        Ok(resp) if resp.get_ref().status == SERVING => Outcome::Success,
        Ok(resp) => Outcome::Failure(format!(
            "service unhealthy (responded with {:?})",
            status_name(resp.get_ref().status)
        )),
        Err(s) if s.code() == tonic::Code::Unimplemented => Outcome::Failure(format!(
            "this server does not implement the grpc health protocol (grpc.health.v1.Health): {}",
            s.message()
        )),
        Err(s)
            if s.code() == tonic::Code::DeadlineExceeded || s.code() == tonic::Code::Cancelled =>
        {
            Outcome::Failure(format!(
                "timeout: health rpc did not complete within {secs}s"
            ))
        }
        Err(s) => Outcome::Failure(format!("error: health rpc probe failed: {s}")),
    }
}
