//! One probe attempt: what a probe's action (exec, httpGet, tcpSocket, grpc) says about the
//! container right now, with upstream's outputs (pkg/probe/{exec,http,tcp,grpc}).

use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, ExecAction, GRPCAction, HTTPGetAction, Probe, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{grpc_health, httpget as http};
use crate::cri::{api, Cri};

/// What one attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Counts as success (a redirect to another host that was not followed); the text says why.
    Warning(String),
    /// The output upstream puts after "Liveness probe failed: ".
    Failure(String),
}

impl Outcome {
    pub fn is_success(&self) -> bool {
        !matches!(self, Outcome::Failure(_))
    }
}

/// Who a probe or hook acts on.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub container_id: &'a str,
    /// The container's spec (for named ports).
    pub container: &'a Container,
    /// The default host of httpGet and tcpSocket; 127.0.0.1 when the pod has none yet.
    pub pod_ip: Option<&'a str>,
}

impl Target<'_> {
    pub(crate) fn host(&self, explicit: Option<&String>) -> String {
        match explicit {
            Some(h) if !h.is_empty() => h.clone(),
            _ => self.pod_ip.unwrap_or("127.0.0.1").to_string(),
        }
    }

    /// A port given by number or by the name of one of the container's ports.
    pub(crate) fn port(&self, port: &IntOrString) -> Result<u16, String> {
        let number = match port {
            IntOrString::Int(n) => i64::from(*n),
            IntOrString::String(name) => match name.parse::<i64>() {
                Ok(n) => n,
                Err(_) => self
                    .container
                    .ports
                    .iter()
                    .flatten()
                    .find(|p| p.name.as_deref() == Some(name.as_str()))
                    .map(|p| i64::from(p.container_port))
                    .ok_or_else(|| format!("couldn't find port: {name}"))?,
            },
        };
        u16::try_from(number)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("invalid port number: {number}"))
    }
}

/// Runs the probe's action once, giving up after its timeoutSeconds.
pub async fn run(cri: &Cri, probe: &Probe, target: Target<'_>) -> Outcome {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    if let Some(exec) = &probe.exec {
        exec_probe(cri, exec, target.container_id, timeout).await
    } else if let Some(get) = &probe.http_get {
        http_probe(get, target, timeout).await
    } else if let Some(tcp) = &probe.tcp_socket {
        tcp_probe(tcp, target, timeout).await
    } else if let Some(g) = &probe.grpc {
        grpc_probe(g, target, timeout).await
    } else {
        Outcome::Failure("missing probe handler".into())
    }
}

async fn exec_probe(cri: &Cri, exec: &ExecAction, id: &str, timeout: Duration) -> Outcome {
    let cmd = exec.command.clone().unwrap_or_default();
    match exec_sync(cri, id, &cmd, timeout).await {
        Ok(out) if out.exit_code == 0 => Outcome::Success,
        Ok(out) => Outcome::Failure(combined(&out)),
        Err(e) => Outcome::Failure(e),
    }
}

/// ExecSync bounded by `timeout` (zero: unbounded); a timeout reads as upstream's `command "…" timed out`.
pub(crate) async fn exec_sync(
    cri: &Cri,
    id: &str,
    cmd: &[String],
    timeout: Duration,
) -> Result<api::ExecSyncResponse, String> {
    let timed_out = || format!("command {:?} timed out", cmd.join(" "));
    let req = api::ExecSyncRequest {
        container_id: id.into(),
        cmd: cmd.to_vec(),
        timeout: timeout.as_secs() as i64,
    };
    let mut runtime = cri.runtime();
    let call = runtime.exec_sync(req);
    let result = if timeout.is_zero() {
        call.await
    } else {
        // The runtime enforces the timeout; the margin covers a runtime that does not answer.
        match tokio::time::timeout(timeout + Duration::from_secs(5), call).await {
            Ok(result) => result,
            Err(_) => return Err(timed_out()),
        }
    };
    match result {
        Ok(resp) => Ok(resp.into_inner()),
        Err(status) if is_timeout(&status) => Err(timed_out()),
        Err(status) => Err(status.message().to_string()),
    }
}

fn is_timeout(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::DeadlineExceeded
        || status.message().contains("deadline exceeded")
        || (status.message().starts_with("timeout ") && status.message().contains("exceeded"))
}

/// stdout then stderr, as CombinedOutput gives them, at most 10 KiB (upstream's limit).
fn combined(out: &api::ExecSyncResponse) -> String {
    const MAX_OUTPUT: usize = 10 * 1024;
    let mut bytes = out.stdout.clone();
    bytes.extend_from_slice(&out.stderr);
    bytes.truncate(MAX_OUTPUT);
    String::from_utf8_lossy(&bytes).into_owned()
}

async fn http_probe(get: &HTTPGetAction, target: Target<'_>, timeout: Duration) -> Outcome {
    let port = match target.port(&get.port) {
        Ok(p) => p,
        Err(e) => return Outcome::Failure(e),
    };
    let request = http::Request::from_action(get, &target.host(get.host.as_ref()), port);
    match tokio::time::timeout(timeout, http::get(&request)).await {
        Err(_) => Outcome::Failure(format!(
            "Get {:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
            request.url()
        )),
        Ok(Err(e)) => Outcome::Failure(e),
        Ok(Ok(resp)) => http::judge(&resp),
    }
}

async fn tcp_probe(tcp: &TCPSocketAction, target: Target<'_>, timeout: Duration) -> Outcome {
    let port = match target.port(&tcp.port) {
        Ok(p) => p,
        Err(e) => return Outcome::Failure(e),
    };
    let addr = http::join_host_port(&target.host(tcp.host.as_ref()), port);
    match http::dial(&addr, timeout).await {
        Ok(_) => Outcome::Success,
        Err(e) => Outcome::Failure(e),
    }
}

async fn grpc_probe(g: &GRPCAction, target: Target<'_>, timeout: Duration) -> Outcome {
    let Ok(port) = u16::try_from(g.port) else {
        return Outcome::Failure(format!("invalid port number: {}", g.port));
    };
    let host = target.host(None);
    let service = g.service.clone().unwrap_or_default();
    grpc_health::check(&host, port, &service, timeout).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ContainerPort;

    #[test]
    fn named_and_numbered_ports() {
        let container = Container {
            name: "c".into(),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..Default::default()
            }]),
            ..Default::default()
        };
        let t = Target {
            container_id: "x",
            container: &container,
            pod_ip: None,
        };
        assert_eq!(t.port(&IntOrString::String("http".into())), Ok(8080));
        assert_eq!(t.port(&IntOrString::Int(81)), Ok(81));
        assert_eq!(t.port(&IntOrString::String("90".into())), Ok(90));
        assert!(t.port(&IntOrString::String("nope".into())).is_err());
        assert!(t.port(&IntOrString::Int(70000)).is_err());
        assert_eq!(t.host(None), "127.0.0.1");
    }
}
