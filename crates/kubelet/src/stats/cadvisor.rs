//! `/metrics/cadvisor`: the container metrics upstream's kubelet exposes from its embedded
//! cAdvisor, here from the runtime over CRI (ListContainerStats, ContainerStatus) and the
//! containers' cgroups, with cAdvisor's names, help texts and labels (`container`, `id` (the
//! cgroup), `image`, `name` (the runtime's container ID), `namespace`, `pod`) and the time of
//! each measurement in milliseconds. The machine itself is the cgroup `/` with empty pod labels,
//! as cAdvisor reports the root container.

use std::collections::HashMap;
use std::fmt::Write;

use super::node;
use super::resource::go_float;
use super::types::Time;
use crate::cri::{api, Cri};
use crate::labels;

/// One sample's labels, in cAdvisor's (alphabetical) order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Labels {
    pub container: String,
    pub id: String,
    pub image: String,
    pub name: String,
    pub namespace: String,
    pub pod: String,
}

/// What is known of one container (or the root) at one time.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub labels: Labels,
    pub time: Option<Time>,
    pub cpu_seconds: Option<f64>,
    pub memory_working_set: Option<u64>,
    pub memory_usage: Option<u64>,
    pub memory_rss: Option<u64>,
    /// The writable layer's bytes and the device holding it.
    pub fs_usage: Option<(String, u64)>,
    pub start_time: Option<f64>,
}

/// The metrics' text for the node and its running containers; a runtime that does not answer
/// leaves only the root container and `container_scrape_error 1`.
pub async fn metrics(cri: &Cri) -> String {
    let mut samples = vec![root()];
    let error = match containers(cri).await {
        Ok(found) => {
            samples.extend(found);
            false
        }
        Err(e) => {
            tracing::warn!("cadvisor metrics: {e}");
            true
        }
    };
    render(&samples, error)
}

fn root() -> Sample {
    let memory = node::memory();
    Sample {
        labels: Labels {
            id: "/".into(),
            ..Default::default()
        },
        time: Some(Time::now()),
        cpu_seconds: node::cpu_usage_nanos().map(|n| n as f64 / 1e9),
        memory_working_set: memory.as_ref().and_then(|m| m.working_set_bytes),
        memory_usage: memory.as_ref().and_then(|m| m.usage_bytes),
        memory_rss: memory.as_ref().and_then(|m| m.rss_bytes),
        fs_usage: None,
        start_time: Some(node::boot_time().as_secs_f64()),
    }
}

async fn containers(cri: &Cri) -> Result<Vec<Sample>, String> {
    let list = cri.list_containers().await.map_err(|e| e.to_string())?;
    let req = api::ListContainerStatsRequest { filter: None };
    let stats: HashMap<String, api::ContainerStats> = cri
        .runtime()
        .list_container_stats(req)
        .await
        .map_err(|s| format!("CRI ListContainerStats failed: {}", s.message()))?
        .into_inner()
        .stats
        .into_iter()
        .filter_map(|s| Some((s.attributes.as_ref()?.id.clone(), s)))
        .collect();
    let mut out = Vec::new();
    for c in list
        .iter()
        .filter(|c| c.state == api::ContainerState::ContainerRunning as i32)
    {
        let status = verbose_status(cri, &c.id).await;
        out.push(sample(c, stats.get(&c.id), status.as_ref()));
    }
    Ok(out)
}

/// ContainerStatus with the runtime's `info` (which holds the init PID).
async fn verbose_status(
    cri: &Cri,
    id: &str,
) -> Option<(api::ContainerStatus, HashMap<String, String>)> {
    let req = api::ContainerStatusRequest {
        container_id: id.into(),
        verbose: true,
    };
    let resp = cri.runtime().container_status(req).await.ok()?.into_inner();
    Some((resp.status?, resp.info))
}

fn sample(
    c: &api::Container,
    stats: Option<&api::ContainerStats>,
    status: Option<&(api::ContainerStatus, HashMap<String, String>)>,
) -> Sample {
    let label = |k: &str| c.labels.get(k).cloned().unwrap_or_default();
    // The image as the container was created with (the runtime's status names the image by
    // its first tag, which may not be the one the pod asked for).
    let image = status
        .and_then(|(_, info)| created_image(info))
        .or_else(|| {
            status
                .and_then(|(s, _)| s.image.as_ref())
                .map(|i| i.image.clone())
        })
        .filter(|i| !i.is_empty())
        .or_else(|| c.image.as_ref().map(|i| i.image.clone()))
        .unwrap_or_default();
    let pid = status.and_then(|(_, info)| pid_of(info));
    let cpu = stats.and_then(|s| s.cpu.as_ref());
    let memory = stats.and_then(|s| s.memory.as_ref());
    let layer = stats.and_then(|s| s.writable_layer.as_ref());
    let value = |v: &Option<api::UInt64Value>| v.as_ref().map(|v| v.value);
    let time = cpu
        .map(|c| c.timestamp)
        .or(memory.map(|m| m.timestamp))
        .filter(|t| *t > 0)
        .map(Time::from_nanos)
        .or_else(|| Some(Time::now()));
    Sample {
        labels: Labels {
            container: label(labels::CONTAINER_NAME),
            id: pid.and_then(cgroup_of).unwrap_or_default(),
            image,
            name: c.id.clone(),
            namespace: label(labels::POD_NAMESPACE),
            pod: label(labels::POD_NAME),
        },
        time,
        cpu_seconds: cpu
            .and_then(|c| value(&c.usage_core_nano_seconds))
            .map(|n| n as f64 / 1e9),
        memory_working_set: memory.and_then(|m| value(&m.working_set_bytes)),
        memory_usage: memory.and_then(|m| value(&m.usage_bytes)),
        memory_rss: memory.and_then(|m| value(&m.rss_bytes)),
        fs_usage: layer.and_then(|l| {
            let device = l
                .fs_id
                .as_ref()
                .map(|f| f.mountpoint.clone())
                .unwrap_or_default();
            Some((device, value(&l.used_bytes)?))
        }),
        start_time: status
            .map(|(s, _)| s.started_at)
            .filter(|t| *t > 0)
            .map(|t| t as f64 / 1e9),
    }
}

/// The image of the container's CreateContainer config, from the runtime's `info` JSON.
fn created_image(info: &HashMap<String, String>) -> Option<String> {
    let info: serde_json::Value = serde_json::from_str(info.get("info")?).ok()?;
    let image = info["config"]["image"]["image"].as_str()?;
    (!image.is_empty()).then(|| image.to_string())
}

/// The container's init PID from the runtime's verbose status (`info` JSON).
fn pid_of(info: &HashMap<String, String>) -> Option<u32> {
    let info: serde_json::Value = serde_json::from_str(info.get("info")?).ok()?;
    info["pid"].as_u64().and_then(|p| u32::try_from(p).ok())
}

/// The cgroup a process is in, as cAdvisor names containers: the unified hierarchy's path on
/// cgroup v2, the memory controller's on v1.
fn cgroup_of(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    cgroup_from(&text)
}

fn cgroup_from(text: &str) -> Option<String> {
    let lines: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let _id = parts.next()?;
            Some((parts.next()?, parts.next()?))
        })
        .collect();
    lines
        .iter()
        .find(|(controllers, _)| controllers.split(',').any(|c| c == "memory"))
        .or_else(|| lines.iter().find(|(controllers, _)| controllers.is_empty()))
        .map(|(_, path)| path.to_string())
}

struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    lines: Vec<String>,
}

impl Family {
    fn new(name: &'static str, kind: &'static str, help: &'static str) -> Family {
        Family {
            name,
            kind,
            help,
            lines: Vec::new(),
        }
    }

    fn add(&mut self, labels: &Labels, extra: Option<(&str, &str)>, value: f64, t: Option<Time>) {
        let mut pairs = vec![("container", labels.container.as_str())];
        if let Some(e) = extra {
            pairs.push(e);
        }
        pairs.extend([
            ("id", labels.id.as_str()),
            ("image", labels.image.as_str()),
            ("name", labels.name.as_str()),
            ("namespace", labels.namespace.as_str()),
            ("pod", labels.pod.as_str()),
        ]);
        let rendered: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        let mut line = format!(
            "{}{{{}}} {}",
            self.name,
            rendered.join(","),
            go_float(value)
        );
        if let Some(t) = t {
            let _ = write!(line, " {}", t.as_millis());
        }
        self.lines.push(line);
    }

    fn render(&self, out: &mut String) {
        if self.lines.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind);
        for l in &self.lines {
            out.push_str(l);
            out.push('\n');
        }
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// cAdvisor's text for `samples`.
pub fn render(samples: &[Sample], scrape_error: bool) -> String {
    let mut cpu = Family::new(
        "container_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed in seconds.",
    );
    let mut fs = Family::new(
        "container_fs_usage_bytes",
        "gauge",
        "Number of bytes that are consumed by the container on this filesystem.",
    );
    let mut rss = Family::new("container_memory_rss", "gauge", "Size of RSS in bytes.");
    let mut usage = Family::new(
        "container_memory_usage_bytes",
        "gauge",
        "Current memory usage in bytes, including all memory regardless of when it was accessed",
    );
    let mut working = Family::new(
        "container_memory_working_set_bytes",
        "gauge",
        "Current working set in bytes.",
    );
    let mut start = Family::new(
        "container_start_time_seconds",
        "gauge",
        "Start time of the container since unix epoch in seconds.",
    );
    for s in samples {
        let (l, t) = (&s.labels, s.time);
        if let Some(v) = s.cpu_seconds {
            cpu.add(l, None, v, t);
        }
        if let Some((device, v)) = &s.fs_usage {
            fs.add(l, Some(("device", device)), *v as f64, t);
        }
        if let Some(v) = s.memory_rss {
            rss.add(l, None, v as f64, t);
        }
        if let Some(v) = s.memory_usage {
            usage.add(l, None, v as f64, t);
        }
        if let Some(v) = s.memory_working_set {
            working.add(l, None, v as f64, t);
        }
        if let Some(v) = s.start_time {
            start.add(l, None, v, t);
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP container_scrape_error 1 if there was an error while getting container metrics, 0 otherwise"
    );
    let _ = writeln!(out, "# TYPE container_scrape_error gauge");
    let _ = writeln!(out, "container_scrape_error {}", u8::from(scrape_error));
    for f in [&cpu, &fs, &rss, &usage, &working, &start] {
        f.render(&mut out);
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let _ = writeln!(out, "# HELP machine_cpu_cores Number of logical CPU cores.");
    let _ = writeln!(out, "# TYPE machine_cpu_cores gauge");
    let _ = writeln!(out, "machine_cpu_cores {cores}");
    if let Some(total) = crate::node::machine::meminfo("MemTotal") {
        let _ = writeln!(
            out,
            "# HELP machine_memory_bytes Amount of memory installed on the machine."
        );
        let _ = writeln!(out, "# TYPE machine_memory_bytes gauge");
        let _ = writeln!(out, "machine_memory_bytes {}", go_float(total as f64));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroups_as_cadvisor_names_them() {
        let v1 = "12:memory:/k8s.io/abc\n11:cpu,cpuacct:/k8s.io/abc\n0::/\n";
        assert_eq!(cgroup_from(v1).as_deref(), Some("/k8s.io/abc"));
        let v2 = "0::/kubepods/pod1/abc\n";
        assert_eq!(cgroup_from(v2).as_deref(), Some("/kubepods/pod1/abc"));
    }

    #[test]
    fn rendered_with_cadvisor_labels() {
        let s = Sample {
            labels: Labels {
                container: "main".into(),
                id: "/k8s.io/abc".into(),
                image: "docker.io/library/busybox:1".into(),
                name: "abc".into(),
                namespace: "default".into(),
                pod: "web".into(),
            },
            time: Some(Time::from_nanos(1_700_000_000_000_000_000)),
            cpu_seconds: Some(1.5),
            memory_working_set: Some(4096),
            fs_usage: Some(("/var/lib/x".into(), 12)),
            ..Default::default()
        };
        let text = render(&[s], false);
        assert!(text.contains("container_scrape_error 0\n"), "{text}");
        assert!(text.contains(
            "container_cpu_usage_seconds_total{container=\"main\",id=\"/k8s.io/abc\",image=\"docker.io/library/busybox:1\",name=\"abc\",namespace=\"default\",pod=\"web\"} 1.5 1700000000000\n"
        ), "{text}");
        assert!(text.contains(
            "container_fs_usage_bytes{container=\"main\",device=\"/var/lib/x\",id=\"/k8s.io/abc\","
        ), "{text}");
        assert!(text.contains("# TYPE container_memory_working_set_bytes gauge\n"));
    }
}
