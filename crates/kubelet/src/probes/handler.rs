//! postStart and preStop handlers (pkg/kubelet/lifecycle/handlers.go): exec in the container
//! (no timeout of its own: the caller bounds it by the grace period), an HTTP GET whose status
//! code does not matter (only reaching the server does), or a sleep.

use std::time::Duration;

use k8s_openapi::api::core::v1::LifecycleHandler;

use super::action::{exec_sync, Target};
use super::httpget;
use crate::cri::Cri;

/// Runs a lifecycle hook against `target`; the error says why it failed, in upstream's words.
pub async fn run_handler(
    cri: &Cri,
    handler: &LifecycleHandler,
    target: Target<'_>,
) -> Result<(), String> {
    if let Some(exec) = &handler.exec {
        let cmd = exec.command.clone().unwrap_or_default();
        let out = exec_sync(cri, target.container_id, &cmd, Duration::ZERO).await;
        let out = out.map_err(|e| format!("command '{}' failed: {e}", cmd.join(" ")))?;
        if out.exit_code != 0 {
            return Err(format!(
                "command '{}' exited with {}: {}",
                cmd.join(" "),
                out.exit_code,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    } else if let Some(get) = &handler.http_get {
        let port = target.port(&get.port)?;
        let request = httpget::Request::from_action(get, &target.host(get.host.as_ref()), port);
        httpget::get(&request).await.map(|_| ())
    } else if let Some(sleep) = &handler.sleep {
        tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64)).await;
        Ok(())
    } else if handler.tcp_socket.is_some() {
        Err("invalid handler: tcpSocket is not supported as a lifecycle handler".into())
    } else {
        Err("invalid handler".into())
    }
}
