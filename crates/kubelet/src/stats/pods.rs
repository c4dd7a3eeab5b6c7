//! The pods' figures from the runtime over CRI (upstream's CRI stats provider): the ready
//! sandboxes, their running containers' CPU, memory and writable layer from
//! ListContainerStats, pod totals from ListPodSandboxStats where the runtime has it (else the
//! sum of the containers), the pod's network from its sandbox's network namespace, and the
//! log files' usage from the pod's log directory.

use std::collections::HashMap;
use std::path::Path;

use super::node;
use super::types::*;
use super::StatsError;
use crate::cri::{api, Cri};
use crate::layout::Layout;

/// What the node's filesystems hold, for the capacity of the containers' figures.
pub struct Filesystems<'a> {
    pub image_fs: Option<&'a FsStats>,
    pub node_fs: Option<&'a FsStats>,
}

pub async fn pods(
    cri: &Cri,
    layout: &Layout,
    fs: &Filesystems<'_>,
) -> Result<Vec<PodStats>, StatsError> {
    let sandboxes = cri.list_pod_sandboxes().await.map_err(runtime)?;
    let containers = cri.list_containers().await.map_err(runtime)?;
    let stats = container_stats(cri).await?;
    let sandbox_stats = sandbox_stats(cri).await;
    let mut pods = Vec::new();
    for sandbox in sandboxes
        .iter()
        .filter(|s| s.state == api::PodSandboxState::SandboxReady as i32)
    {
        let running: Vec<&api::Container> = containers
            .iter()
            .filter(|c| c.pod_sandbox_id == sandbox.id)
            .filter(|c| c.state == api::ContainerState::ContainerRunning as i32)
            .collect();
        let pod = pod_stats(
            cri,
            layout,
            fs,
            sandbox,
            &running,
            &stats,
            sandbox_stats.get(&sandbox.id),
        )
        .await;
        pods.push(pod);
    }
    Ok(pods)
}

fn runtime(e: anyhow::Error) -> StatsError {
    StatsError::Runtime(e.to_string())
}

async fn container_stats(cri: &Cri) -> Result<HashMap<String, api::ContainerStats>, StatsError> {
    let req = api::ListContainerStatsRequest { filter: None };
    let resp = cri.runtime().list_container_stats(req).await.map_err(|s| {
        StatsError::Runtime(format!("CRI ListContainerStats failed: {}", s.message()))
    })?;
    Ok(resp
        .into_inner()
        .stats
        .into_iter()
        .filter_map(|s| Some((s.attributes.as_ref()?.id.clone(), s)))
        .collect())
}

/// Pod-level figures, where the runtime implements ListPodSandboxStats.
async fn sandbox_stats(cri: &Cri) -> HashMap<String, api::PodSandboxStats> {
    let req = api::ListPodSandboxStatsRequest { filter: None };
    match cri.runtime().list_pod_sandbox_stats(req).await {
        Ok(resp) => resp
            .into_inner()
            .stats
            .into_iter()
            .filter_map(|s| Some((s.attributes.as_ref()?.id.clone(), s)))
            .collect(),
        Err(status) => {
            tracing::debug!("CRI ListPodSandboxStats: {}", status.message());
            HashMap::new()
        }
    }
}

async fn pod_stats(
    cri: &Cri,
    layout: &Layout,
    fs: &Filesystems<'_>,
    sandbox: &api::PodSandbox,
    running: &[&api::Container],
    stats: &HashMap<String, api::ContainerStats>,
    sandbox_stats: Option<&api::PodSandboxStats>,
) -> PodStats {
    let meta = sandbox.metadata.clone().unwrap_or_default();
    let log_dir = layout.pod_log_dir(&meta.namespace, &meta.name, &meta.uid);
    let containers: Vec<ContainerStats> = running
        .iter()
        .map(|c| container(c, stats.get(&c.id), &log_dir, fs))
        .collect();
    let linux = sandbox_stats.and_then(|s| s.linux.as_ref());
    let cpu = linux
        .and_then(|l| l.cpu.as_ref())
        .map(cpu_stats)
        .or_else(|| sum_cpu(&containers));
    let memory = linux
        .and_then(|l| l.memory.as_ref())
        .map(memory_stats)
        .or_else(|| sum_memory(&containers));
    let network = match linux.and_then(|l| l.network.as_ref()) {
        Some(n) => network_stats(n),
        None => sandbox_network(cri, &sandbox.id).await,
    };
    let process_stats = linux
        .and_then(|l| l.process.as_ref())
        .and_then(|p| p.process_count.as_ref())
        .map(|c| ProcessStats {
            process_count: Some(c.value),
        });
    PodStats {
        pod_ref: PodReference {
            name: meta.name,
            namespace: meta.namespace,
            uid: meta.uid,
        },
        start_time: Time::from_nanos(sandbox.created_at),
        ephemeral_storage: ephemeral(&containers, fs.node_fs),
        containers,
        cpu,
        memory,
        network,
        process_stats,
    }
}

fn value(v: &Option<api::UInt64Value>) -> Option<u64> {
    v.as_ref().map(|v| v.value)
}

fn cpu_stats(c: &api::CpuUsage) -> CpuStats {
    CpuStats {
        time: Time::from_nanos(c.timestamp),
        usage_nano_cores: value(&c.usage_nano_cores),
        usage_core_nano_seconds: value(&c.usage_core_nano_seconds),
    }
}

fn memory_stats(m: &api::MemoryUsage) -> MemoryStats {
    MemoryStats {
        time: Time::from_nanos(m.timestamp),
        available_bytes: value(&m.available_bytes),
        usage_bytes: value(&m.usage_bytes),
        working_set_bytes: value(&m.working_set_bytes),
        rss_bytes: value(&m.rss_bytes),
        page_faults: value(&m.page_faults),
        major_page_faults: value(&m.major_page_faults),
    }
}

fn network_stats(n: &api::NetworkUsage) -> Option<NetworkStats> {
    let iface = |i: &api::NetworkInterfaceUsage| InterfaceStats {
        name: i.name.clone(),
        rx_bytes: value(&i.rx_bytes),
        rx_errors: value(&i.rx_errors),
        tx_bytes: value(&i.tx_bytes),
        tx_errors: value(&i.tx_errors),
    };
    let default = n.default_interface.as_ref().map(iface)?;
    Some(NetworkStats {
        time: Time::from_nanos(n.timestamp),
        default,
        interfaces: n.interfaces.iter().map(iface).collect(),
    })
}

fn container(
    c: &api::Container,
    stats: Option<&api::ContainerStats>,
    log_dir: &Path,
    fs: &Filesystems<'_>,
) -> ContainerStats {
    let name = c
        .metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    let rootfs = stats.and_then(|s| s.writable_layer.as_ref()).map(|w| {
        let image_fs = fs.image_fs.cloned().unwrap_or_default();
        FsStats {
            time: Time::from_nanos(w.timestamp),
            used_bytes: value(&w.used_bytes),
            inodes_used: value(&w.inodes_used),
            ..image_fs
        }
    });
    ContainerStats {
        logs: logs_usage(&log_dir.join(&name), fs.node_fs),
        name,
        start_time: Time::from_nanos(c.created_at),
        cpu: stats.and_then(|s| s.cpu.as_ref()).map(cpu_stats),
        memory: stats.and_then(|s| s.memory.as_ref()).map(memory_stats),
        rootfs,
    }
}

/// The container's log files' size and count, on the node's filesystem.
fn logs_usage(dir: &Path, node_fs: Option<&FsStats>) -> Option<FsStats> {
    let entries = std::fs::read_dir(dir).ok()?;
    let (mut bytes, mut files) = (0u64, 1u64);
    for entry in entries.flatten() {
        if let Ok(meta) = entry.metadata() {
            bytes += meta.len();
            files += 1;
        }
    }
    Some(FsStats {
        time: Time::now(),
        used_bytes: Some(bytes),
        inodes_used: Some(files),
        ..node_fs.cloned().unwrap_or_default()
    })
}

fn sum<T>(items: impl Iterator<Item = Option<T>>, add: impl Fn(T, T) -> T) -> Option<T> {
    items.flatten().reduce(add)
}

fn add_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    }
}

fn sum_cpu(containers: &[ContainerStats]) -> Option<CpuStats> {
    sum(containers.iter().map(|c| c.cpu.clone()), |a, b| CpuStats {
        time: a.time.max(b.time),
        usage_nano_cores: add_opt(a.usage_nano_cores, b.usage_nano_cores),
        usage_core_nano_seconds: add_opt(a.usage_core_nano_seconds, b.usage_core_nano_seconds),
    })
}

fn sum_memory(containers: &[ContainerStats]) -> Option<MemoryStats> {
    sum(containers.iter().map(|c| c.memory.clone()), |a, b| {
        MemoryStats {
            time: a.time.max(b.time),
            available_bytes: None,
            usage_bytes: add_opt(a.usage_bytes, b.usage_bytes),
            working_set_bytes: add_opt(a.working_set_bytes, b.working_set_bytes),
            rss_bytes: add_opt(a.rss_bytes, b.rss_bytes),
            page_faults: add_opt(a.page_faults, b.page_faults),
            major_page_faults: add_opt(a.major_page_faults, b.major_page_faults),
        }
    })
}

/// The pod's writable layers and logs together, on the node's filesystem.
fn ephemeral(containers: &[ContainerStats], node_fs: Option<&FsStats>) -> Option<FsStats> {
    let parts = containers
        .iter()
        .flat_map(|c| [c.rootfs.as_ref(), c.logs.as_ref()])
        .flatten();
    let (mut used, mut inodes) = (0u64, 0u64);
    for p in parts {
        used += p.used_bytes.unwrap_or(0);
        inodes += p.inodes_used.unwrap_or(0);
    }
    Some(FsStats {
        time: Time::now(),
        used_bytes: Some(used),
        inodes_used: Some(inodes),
        ..node_fs.cloned().unwrap_or_default()
    })
}

/// The interfaces of the sandbox's own network namespace (none for host-network pods: their
/// traffic is the node's).
async fn sandbox_network(cri: &Cri, sandbox_id: &str) -> Option<NetworkStats> {
    let req = api::PodSandboxStatusRequest {
        pod_sandbox_id: sandbox_id.to_string(),
        verbose: true,
    };
    let resp = cri
        .runtime()
        .pod_sandbox_status(req)
        .await
        .ok()?
        .into_inner();
    let host_network = resp
        .status
        .as_ref()
        .and_then(|s| s.linux.as_ref())
        .and_then(|l| l.namespaces.as_ref())
        .and_then(|n| n.options.as_ref())
        .is_some_and(|o| o.network == api::NamespaceMode::Node as i32);
    if host_network {
        return None;
    }
    let info: serde_json::Value = serde_json::from_str(resp.info.get("info")?).ok()?;
    let pid = info.get("pid")?.as_u64().filter(|p| *p > 0)?;
    let interfaces = node::interfaces(Path::new(&format!("/proc/{pid}/net/dev")));
    node::network(interfaces, Some("eth0"))
}
