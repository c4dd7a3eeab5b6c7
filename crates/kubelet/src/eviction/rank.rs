//! Which pod goes first (upstream's `rankMemoryPressure`, `rankDiskPressureFunc`,
//! `rankPIDPressure`) and what its eviction message says (upstream's `evictionMessage`).
//!
//! Memory and disk: pods using more than they requested of the starved resource first, then
//! lower priority first, then the larger use above the request first. PIDs: lower priority
//! first, then more processes. A pod without stats goes first, as upstream.

use std::cmp::Ordering;
use std::collections::HashMap;

use component_base::quantity::value;
use k8s_openapi::api::core::v1::{Container, Pod};

use super::thresholds::Signal;
use crate::stats::{ContainerStats, PodStats};

/// Pods in the order they are evicted for `signal`.
pub fn rank<'a>(
    pods: &'a [Pod],
    stats: &HashMap<String, PodStats>,
    signal: Signal,
) -> Vec<&'a Pod> {
    let mut out: Vec<&Pod> = pods.iter().collect();
    let resource = signal.resource();
    let usage = |p: &Pod| {
        uid(p)
            .and_then(|u| stats.get(u))
            .and_then(|s| pod_usage(s, resource))
    };
    out.sort_by(|a, b| {
        let (ua, ub) = (usage(a), usage(b));
        let (Some(ua), Some(ub)) = (ua, ub) else {
            // Without stats first.
            return ua.is_some().cmp(&ub.is_some());
        };
        let (ra, rb) = (requests(a, resource), requests(b, resource));
        let by_requests = if resource == "pids" {
            Ordering::Equal
        } else {
            (ub > rb).cmp(&(ua > ra))
        };
        by_requests
            .then(priority(a).cmp(&priority(b)))
            .then((ub as i128 - rb as i128).cmp(&(ua as i128 - ra as i128)))
    });
    out
}

fn uid(p: &Pod) -> Option<&str> {
    p.metadata.uid.as_deref()
}

pub fn priority(p: &Pod) -> i32 {
    p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// What the pod uses of `resource` (bytes, inodes or processes).
fn pod_usage(s: &PodStats, resource: &str) -> Option<u64> {
    match resource {
        "memory" => s
            .memory
            .as_ref()
            .and_then(|m| m.working_set_bytes)
            .or_else(|| {
                s.containers
                    .iter()
                    .map(|c| c.memory.as_ref().and_then(|m| m.working_set_bytes))
                    .sum()
            }),
        "ephemeral-storage" => s.ephemeral_storage.as_ref().and_then(|f| f.used_bytes),
        "inodes" => s.ephemeral_storage.as_ref().and_then(|f| f.inodes_used),
        _ => s.process_stats.as_ref().and_then(|p| p.process_count),
    }
}

fn container_request(c: &Container, resource: &str) -> u64 {
    c.resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get(resource))
        .map(|q| value(q).max(0) as u64)
        .unwrap_or(0)
}

/// The pod's request of `resource`: its containers' sum, or its largest init container's.
fn requests(p: &Pod, resource: &str) -> u64 {
    let Some(spec) = &p.spec else { return 0 };
    let sum: u64 = spec
        .containers
        .iter()
        .map(|c| container_request(c, resource))
        .sum();
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| container_request(c, resource))
        .max()
        .unwrap_or(0);
    sum.max(init)
}

/// A byte count as a Kubernetes quantity prints it (`100Mi`, `1234Ki`, `1000`).
pub fn quantity(n: u64, bytes: bool) -> String {
    if !bytes || n == 0 {
        return n.to_string();
    }
    for (suffix, unit) in [("Gi", 1u64 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)] {
        if n.is_multiple_of(unit) {
            return format!("{}{suffix}", n / unit);
        }
    }
    n.to_string()
}

/// Upstream's message: the starved resource, the threshold and what was available, and each
/// container using more than it requested.
pub fn message(
    signal: Signal,
    threshold: u64,
    available: u64,
    pod: &Pod,
    stats: Option<&PodStats>,
) -> String {
    let resource = signal.resource();
    let q = |n| quantity(n, signal.is_bytes());
    let mut out = format!("The node was low on resource: {resource}. ");
    out += &format!(
        "Threshold quantity: {}, available: {}. ",
        q(threshold),
        quantity_ki(available, signal.is_bytes())
    );
    if resource != "memory" && resource != "ephemeral-storage" {
        return out;
    }
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.clone())
        .unwrap_or_default();
    for c in &containers {
        let used = stats
            .and_then(|s| s.containers.iter().find(|cs| cs.name == c.name))
            .and_then(|cs| container_usage(cs, resource));
        let request = container_request(c, resource);
        if let Some(used) = used.filter(|u| *u > request) {
            out += &format!(
                "Container {} was using {}, request is {}, has larger consumption of {resource}. ",
                c.name,
                quantity_ki(used, true),
                q(request)
            );
        }
    }
    out
}

/// Usage as upstream prints observed bytes (in Ki).
fn quantity_ki(n: u64, bytes: bool) -> String {
    if bytes && n >= 1024 {
        format!("{}Ki", n / 1024)
    } else {
        n.to_string()
    }
}

fn container_usage(c: &ContainerStats, resource: &str) -> Option<u64> {
    match resource {
        "memory" => c.memory.as_ref().and_then(|m| m.working_set_bytes),
        _ => {
            let root = c.rootfs.as_ref().and_then(|f| f.used_bytes);
            let logs = c.logs.as_ref().and_then(|f| f.used_bytes);
            (root.is_some() || logs.is_some()).then(|| root.unwrap_or(0) + logs.unwrap_or(0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{MemoryStats, PodReference, Time};
    use serde_json::json;

    fn pod(name: &str, priority: i32, request: Option<&str>) -> Pod {
        let resources = match request {
            Some(r) => json!({"requests": {"memory": r}}),
            None => json!({}),
        };
        serde_json::from_value(json!({
            "metadata": {"name": name, "uid": name},
            "spec": {"priority": priority, "containers": [{"name": "c", "resources": resources}]}
        }))
        .unwrap()
    }

    fn stats(name: &str, used: u64) -> (String, PodStats) {
        let memory = MemoryStats {
            time: Time::now(),
            working_set_bytes: Some(used),
            ..Default::default()
        };
        let s = PodStats {
            pod_ref: PodReference {
                name: name.into(),
                namespace: "default".into(),
                uid: name.into(),
            },
            start_time: Time::now(),
            containers: vec![ContainerStats {
                name: "c".into(),
                start_time: Time::now(),
                memory: Some(memory.clone()),
                ..Default::default()
            }],
            memory: Some(memory),
            ..Default::default()
        };
        (name.into(), s)
    }

    #[test]
    fn memory_ranking_is_upstreams() {
        let pods = vec![
            pod("within-request", 0, Some("100Mi")),
            pod("important-greedy", 1000, None),
            pod("greedy", 0, None),
            pod("modest", 0, None),
        ];
        let stats: HashMap<String, PodStats> = [
            stats("within-request", 50 << 20),
            stats("important-greedy", 500 << 20),
            stats("greedy", 200 << 20),
            stats("modest", 10 << 20),
        ]
        .into_iter()
        .collect();
        let order: Vec<&str> = rank(&pods, &stats, Signal::MemoryAvailable)
            .iter()
            .map(|p| p.metadata.name.as_deref().unwrap())
            .collect();
        assert_eq!(
            order,
            ["greedy", "modest", "important-greedy", "within-request"]
        );
    }

    #[test]
    fn the_message_names_the_greedy_container() {
        let p = pod("greedy", 0, None);
        let (_, s) = stats("greedy", 200 << 20);
        let m = message(Signal::MemoryAvailable, 100 << 20, 5 << 20, &p, Some(&s));
        assert_eq!(
            m,
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: 5120Ki. \
             Container c was using 204800Ki, request is 0, has larger consumption of memory. "
        );
    }
}
