//! How many processes each pod runs, for PID pressure (upstream reads the pod cgroup's
//! pids.current; containerd's CRI stats leave the count out). krust's containers have no pod
//! cgroup (no cgroup parent), each has its own named by its ID (`/k8s.io/<id>` with cgroupfs,
//! `cri-containerd-<id>.scope` with systemd), so the processes are counted by the container
//! (and sandbox) IDs their cgroup ends in, and summed per pod.

use std::collections::HashMap;

use crate::cri::Cri;
use crate::labels::POD_UID;

/// Processes per pod UID.
pub async fn by_pod(cri: &Cri) -> HashMap<String, u64> {
    let mut owner: HashMap<String, String> = HashMap::new();
    if let Ok(containers) = cri.list_containers().await {
        for c in containers {
            if let Some(uid) = c.labels.get(POD_UID) {
                owner.insert(c.id, uid.clone());
            }
        }
    }
    if let Ok(sandboxes) = cri.list_pod_sandboxes().await {
        for s in sandboxes {
            if let Some(uid) = s.labels.get(POD_UID) {
                owner.insert(s.id, uid.clone());
            }
        }
    }
    let counts = tokio::task::spawn_blocking(move || {
        let mut counts: HashMap<String, u64> = HashMap::new();
        for id in process_cgroup_ids() {
            if let Some(uid) = owner.get(&id) {
                *counts.entry(uid.clone()).or_default() += 1;
            }
        }
        counts
    })
    .await;
    counts.unwrap_or_default()
}

/// The ID each process's cgroup is named after (the last path element of its first cgroup line).
fn process_cgroup_ids() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("cgroup")).ok())
        .filter_map(|text| text.lines().next().map(cgroup_id))
        .collect()
}

/// `0::/k8s.io/<id>` or `...:/system.slice/cri-containerd-<id>.scope` → `<id>`.
fn cgroup_id(line: &str) -> String {
    let path = line.rsplit(':').next().unwrap_or("");
    let last = path.rsplit('/').next().unwrap_or("");
    let last = last.strip_prefix("cri-containerd-").unwrap_or(last);
    last.strip_suffix(".scope").unwrap_or(last).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_from_cgroup_lines() {
        assert_eq!(cgroup_id("0::/k8s.io/abc123"), "abc123");
        assert_eq!(
            cgroup_id("1:name=systemd:/system.slice/cri-containerd-abc123.scope"),
            "abc123"
        );
        assert_eq!(cgroup_id("0::/"), "");
    }
}
