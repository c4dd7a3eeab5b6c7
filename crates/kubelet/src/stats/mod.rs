//! Resource usage as the kubelet API serves it (owner: probes work; the kubelet-server work
//! serves it over HTTP): `/stats/summary` in upstream's JSON shape and `/metrics/resource` in
//! upstream's Prometheus text, which metrics-server and `kubectl top` read.
//!
//! Contract: [`summary`]`(&NodeContext) -> Result<Summary, StatsError>` (the node from /proc
//! and statvfs, the runtime's image filesystem from CRI ImageFsInfo, pods and containers from
//! CRI ListContainerStats / ListPodSandboxStats); [`resource_metrics`]`(&NodeContext) -> String`
//! (never fails: a runtime error is `resource_scrape_error 1`); [`summary_of`] and
//! [`render_resource_metrics`] for callers without a whole context; [`cadvisor_metrics`]
//! (`/metrics/cadvisor`, from CRI and the containers' cgroups); `Summary::only_cpu_and_memory`
//! for `?only_cpu_and_memory=true`.

mod cadvisor;
mod node;
mod pods;
mod resource;
mod types;

pub use resource::render as render_resource_metrics;
pub use types::*;

use crate::context::NodeContext;
use crate::cri::Cri;
use crate::layout::Layout;

#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("{0}")]
    Runtime(String),
}

/// The summary of the node and its pods.
pub async fn summary(ctx: &NodeContext) -> Result<Summary, StatsError> {
    summary_of(&ctx.node_name, &ctx.cri, &ctx.layout).await
}

/// `/metrics/cadvisor`'s text (the runtime's containers with cAdvisor's names and labels).
pub async fn cadvisor_metrics(ctx: &NodeContext) -> String {
    cadvisor::metrics(&ctx.cri).await
}

/// `/metrics/resource`'s text.
pub async fn resource_metrics(ctx: &NodeContext) -> String {
    match summary(ctx).await {
        Ok(s) => render_resource_metrics(Some(&s)),
        Err(e) => {
            tracing::warn!("resource metrics: {e}");
            render_resource_metrics(None)
        }
    }
}

pub async fn summary_of(
    node_name: &str,
    cri: &Cri,
    layout: &Layout,
) -> Result<Summary, StatsError> {
    let node_fs = node::filesystem(&layout.root());
    let image_fs = image_fs(cri).await;
    let fs = pods::Filesystems {
        image_fs: image_fs.as_ref(),
        node_fs: node_fs.as_ref(),
    };
    let pods = pods::pods(cri, layout, &fs).await?;
    let interfaces = node::interfaces(std::path::Path::new("/proc/net/dev"));
    let default = node::default_interface();
    let node = NodeStats {
        node_name: node_name.to_string(),
        system_containers: node::kubelet_container().into_iter().collect(),
        start_time: node::boot_time(),
        cpu: node::cpu(),
        memory: node::memory(),
        network: node::network(interfaces, default.as_deref()),
        runtime: Some(RuntimeStats {
            image_fs: image_fs.clone(),
            container_fs: image_fs,
        }),
        fs: node_fs,
        rlimit: Some(node::rlimit()),
    };
    Ok(Summary { node, pods })
}

/// The runtime's image filesystem: CRI's usage on the capacity of its mount.
async fn image_fs(cri: &Cri) -> Option<FsStats> {
    let resp = cri
        .images()
        .image_fs_info(crate::cri::api::ImageFsInfoRequest {})
        .await
        .ok()?
        .into_inner();
    let usage = resp.image_filesystems.first()?;
    let mount = usage
        .fs_id
        .as_ref()
        .map(|f| f.mountpoint.clone())
        .unwrap_or_default();
    let capacity = node::filesystem(std::path::Path::new(&mount)).unwrap_or_default();
    Some(FsStats {
        time: Time::from_nanos(usage.timestamp),
        used_bytes: usage.used_bytes.as_ref().map(|v| v.value),
        inodes_used: usage.inodes_used.as_ref().map(|v| v.value),
        ..capacity
    })
}
