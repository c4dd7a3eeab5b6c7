//! What the runtime holds for one pod, found by the [`labels`](crate::labels) on its sandboxes
//! and containers (so a restarted agent sees the same as the one that made them).

use std::collections::HashMap;

use crate::cri::{api, Cri};
use crate::labels;

/// A pod's sandboxes (newest first) and the status of each of its containers.
#[derive(Debug, Default)]
pub struct PodRuntime {
    pub sandboxes: Vec<api::PodSandbox>,
    /// Every container of the pod, newest first.
    pub containers: Vec<api::ContainerStatus>,
    /// Container ID → the sandbox it runs in.
    pub sandbox_of: HashMap<String, String>,
}

impl PodRuntime {
    pub async fn read(cri: &Cri, pod_uid: &str) -> anyhow::Result<PodRuntime> {
        let selector = HashMap::from([(labels::POD_UID.to_string(), pod_uid.to_string())]);
        let mut sandboxes = cri
            .runtime()
            .list_pod_sandbox(api::ListPodSandboxRequest {
                filter: Some(api::PodSandboxFilter {
                    label_selector: selector.clone(),
                    ..Default::default()
                }),
            })
            .await
            .map_err(|s| anyhow::anyhow!("CRI ListPodSandbox failed: {}", s.message()))?
            .into_inner()
            .items;
        sandboxes.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        let listed = cri
            .runtime()
            .list_containers(api::ListContainersRequest {
                filter: Some(api::ContainerFilter {
                    label_selector: selector,
                    ..Default::default()
                }),
            })
            .await
            .map_err(|s| anyhow::anyhow!("CRI ListContainers failed: {}", s.message()))?
            .into_inner()
            .containers;
        let mut containers = Vec::with_capacity(listed.len());
        let sandbox_of = listed
            .iter()
            .map(|c| (c.id.clone(), c.pod_sandbox_id.clone()))
            .collect();
        for c in listed {
            // A container removed between the list and here is simply gone.
            if let Ok(status) = cri.container_status(&c.id).await {
                containers.push(status);
            }
        }
        containers.sort_by_key(|c| std::cmp::Reverse((attempt(c), c.created_at)));
        Ok(PodRuntime {
            sandboxes,
            containers,
            sandbox_of,
        })
    }

    /// The newest sandbox, if it is ready.
    pub fn ready_sandbox(&self) -> Option<&api::PodSandbox> {
        self.sandboxes
            .first()
            .filter(|s| s.state == api::PodSandboxState::SandboxReady as i32)
    }

    /// The newest container named `name`, and the one before it.
    pub fn latest(
        &self,
        name: &str,
    ) -> (Option<&api::ContainerStatus>, Option<&api::ContainerStatus>) {
        let mut of = self.containers.iter().filter(|c| container_name(c) == name);
        (of.next(), of.next())
    }

    /// The newest container named `name` in sandbox `sandbox_id`.
    pub fn current(&self, name: &str, sandbox_id: &str) -> Option<&api::ContainerStatus> {
        self.containers.iter().find(|c| {
            container_name(c) == name
                && self.sandbox_of.get(&c.id).map(String::as_str) == Some(sandbox_id)
        })
    }

    /// The restart count for the next container named `name`.
    pub fn next_attempt(&self, name: &str) -> u32 {
        self.latest(name).0.map_or(0, |c| attempt(c) + 1)
    }

    pub fn running(&self) -> impl Iterator<Item = &api::ContainerStatus> {
        self.containers
            .iter()
            .filter(|c| c.state == api::ContainerState::ContainerRunning as i32)
    }
}

pub fn container_name(c: &api::ContainerStatus) -> &str {
    c.labels
        .get(labels::CONTAINER_NAME)
        .map(String::as_str)
        .or(c.metadata.as_ref().map(|m| m.name.as_str()))
        .unwrap_or("")
}

/// The restart count a container was created with (its annotation, else its CRI attempt).
pub fn attempt(c: &api::ContainerStatus) -> u32 {
    c.annotations
        .get(labels::RESTART_COUNT)
        .and_then(|v| v.parse().ok())
        .or(c.metadata.as_ref().map(|m| m.attempt))
        .unwrap_or(0)
}

pub fn is_running(c: &api::ContainerStatus) -> bool {
    c.state == api::ContainerState::ContainerRunning as i32
}

pub fn is_exited(c: &api::ContainerStatus) -> bool {
    c.state == api::ContainerState::ContainerExited as i32
}
