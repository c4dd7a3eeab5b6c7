//! The node's container runtime, opt-in for now: with `KRUST_MANAGED_CONTAINERD=1`,
//! `krust server` starts containerd (kubelet::containerd) under `<data-dir>/containerd/` with
//! metrics on the port map's `containerd-metrics` address, imports the tarballs in
//! `<data-dir>/images/` it has not imported before, and stops containerd after the control
//! plane. It is off by default until the kubelet runs pods on it, so that servers which run no
//! pods (most tests) do not pay for a containerd.

use std::path::Path;

use anyhow::Result;
use kubelet::containerd::{Config, Runtime};

use crate::settings::Settings;

/// The environment variable that turns the managed containerd on.
pub const ENABLE_VAR: &str = "KRUST_MANAGED_CONTAINERD";

pub struct Node {
    runtime: Runtime,
}

/// Starts containerd when asked to; `None` when not.
pub async fn start(settings: &Settings, data_dir: &Path) -> Result<Option<Node>> {
    if std::env::var(ENABLE_VAR).as_deref() != Ok("1") {
        return Ok(None);
    }
    let mut config = Config::new(data_dir);
    config.metrics = settings.port_map()?.addr(ports::Service::ContainerdMetrics);
    let runtime = Runtime::start(config, None).await?;
    match kubelet::images::import_dir(runtime.socket(), data_dir).await {
        Ok(report) => {
            for (file, images) in &report.imported {
                let names: Vec<&str> = images.iter().map(|i| i.name.as_str()).collect();
                tracing::info!(file = %file.display(), images = ?names, "imported");
            }
            for (file, error) in &report.failed {
                tracing::warn!(file = %file.display(), "not imported (tried again at the next start): {error}");
            }
        }
        Err(e) => tracing::warn!(
            "images in {} not imported: {e}",
            kubelet::images::image_dir(data_dir).display()
        ),
    }
    Ok(Some(Node { runtime }))
}

/// Stops a managed containerd (its containers keep running in their shims).
pub async fn stop(node: Option<Node>) {
    if let Some(node) = node {
        node.runtime.stop().await;
    }
}
