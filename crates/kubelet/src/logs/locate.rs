//! Finding a container's log file through CRI: the runtime's `ContainerStatus.log_path`
//! (containerd gives it joined to the sandbox's log directory already; a relative one is joined
//! to the pod's log directory from the layout), the container found by the kubelet's labels.

use std::path::{Path, PathBuf};

use super::LogError;
use crate::cri::{api, Cri};
use crate::labels;
use crate::layout::Layout;

/// A container's log file, and the container that writes it.
#[derive(Debug, Clone)]
pub struct LogFile {
    pub container_id: String,
    pub path: PathBuf,
    /// Whether the container runs (a follower stops when it has exited).
    pub running: bool,
}

/// The log file of the container with this ID.
pub async fn container_log(
    cri: &Cri,
    layout: &Layout,
    container_id: &str,
) -> Result<LogFile, LogError> {
    let status = cri
        .container_status(container_id)
        .await
        .map_err(|e| LogError::Runtime(e.to_string()))?;
    Ok(LogFile {
        container_id: container_id.to_string(),
        path: log_path(layout, &status),
        running: status.state == api::ContainerState::ContainerRunning as i32,
    })
}

fn log_path(layout: &Layout, status: &api::ContainerStatus) -> PathBuf {
    let path = Path::new(&status.log_path);
    if path.is_absolute() {
        return path.to_path_buf();
    }
    let label = |key: &str| status.labels.get(key).cloned().unwrap_or_default();
    layout
        .pod_log_dir(
            &label(labels::POD_NAMESPACE),
            &label(labels::POD_NAME),
            &label(labels::POD_UID),
        )
        .join(path)
}

/// The log of a pod's container, found by the kubelet's labels: the newest container of that
/// name, or with `previous` the one before it (or, when that container is gone, the previous
/// restart's file next to the current one, `<restart - 1>.log`).
pub async fn find(
    cri: &Cri,
    layout: &Layout,
    namespace: &str,
    pod: &str,
    container: &str,
    previous: bool,
) -> Result<LogFile, LogError> {
    let mut containers = list(cri, namespace, pod, container).await?;
    containers.sort_by_key(|c| std::cmp::Reverse(c.created_at));
    // A pod deleted and created again under its name (a StatefulSet's) is another pod: only
    // the newest pod's containers count.
    let uid_of = |c: &api::Container| c.labels.get(labels::POD_UID).cloned();
    if let Some(newest) = containers.first().and_then(uid_of) {
        containers.retain(|c| uid_of(c).as_deref() == Some(newest.as_str()));
    }
    let not_found = || {
        LogError::NotFound(format!(
            "container {container:?} in pod {pod:?} is not available"
        ))
    };
    let current = containers.first().ok_or_else(not_found)?;
    if !previous {
        return container_log(cri, layout, &current.id).await;
    }
    if let Some(before) = containers.get(1) {
        return container_log(cri, layout, &before.id).await;
    }
    let prev_missing = || {
        LogError::NotFound(format!(
            "previous terminated container {container:?} in pod {pod:?} not found"
        ))
    };
    let attempt = current.metadata.as_ref().map_or(0, |m| m.attempt);
    let restart = attempt.checked_sub(1).ok_or_else(prev_missing)?;
    let current_file = container_log(cri, layout, &current.id).await?;
    let path = current_file.path.with_file_name(
        Layout::container_log(container, restart)
            .file_name()
            .unwrap_or_default(),
    );
    if !path.is_file() {
        return Err(prev_missing());
    }
    Ok(LogFile {
        container_id: current.id.clone(),
        path,
        running: false,
    })
}

async fn list(
    cri: &Cri,
    namespace: &str,
    pod: &str,
    container: &str,
) -> Result<Vec<api::Container>, LogError> {
    let filter = api::ContainerFilter {
        label_selector: [
            (labels::POD_NAMESPACE.to_string(), namespace.to_string()),
            (labels::POD_NAME.to_string(), pod.to_string()),
            (labels::CONTAINER_NAME.to_string(), container.to_string()),
        ]
        .into(),
        ..Default::default()
    };
    let req = api::ListContainersRequest {
        filter: Some(filter),
    };
    cri.runtime()
        .list_containers(req)
        .await
        .map(|r| r.into_inner().containers)
        .map_err(|s| LogError::Runtime(format!("CRI ListContainers failed: {}", s.message())))
}
