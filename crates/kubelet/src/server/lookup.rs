//! Finding a pod's sandbox and containers over CRI by the labels every one carries
//! ([`labels`](crate::labels)), newest first.

use std::collections::HashMap;

use crate::cri::{api, Cri};
use crate::labels;

/// Which pod: namespace, name and (when the path names it) uid.
pub struct PodRef<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: Option<&'a str>,
}

impl PodRef<'_> {
    fn selector(&self) -> HashMap<String, String> {
        let mut s = HashMap::from([
            (
                labels::POD_NAMESPACE.to_string(),
                self.namespace.to_string(),
            ),
            (labels::POD_NAME.to_string(), self.name.to_string()),
        ]);
        if let Some(uid) = self.uid {
            s.insert(labels::POD_UID.to_string(), uid.to_string());
        }
        s
    }
}

/// The pod's containers named `container`, newest (highest attempt, then latest created) first.
pub async fn containers(
    cri: &Cri,
    pod: &PodRef<'_>,
    container: &str,
) -> anyhow::Result<Vec<api::Container>> {
    let mut selector = pod.selector();
    selector.insert(labels::CONTAINER_NAME.to_string(), container.to_string());
    let req = api::ListContainersRequest {
        filter: Some(api::ContainerFilter {
            label_selector: selector,
            ..Default::default()
        }),
    };
    let mut found = cri
        .runtime()
        .list_containers(req)
        .await?
        .into_inner()
        .containers;
    found.sort_by_key(|c| {
        let attempt = c.metadata.as_ref().map_or(0, |m| m.attempt);
        std::cmp::Reverse((attempt, c.created_at))
    });
    Ok(found)
}

/// The newest running container named `container`.
pub async fn running_container(
    cri: &Cri,
    pod: &PodRef<'_>,
    container: &str,
) -> anyhow::Result<Option<api::Container>> {
    Ok(containers(cri, pod, container)
        .await?
        .into_iter()
        .find(|c| c.state == api::ContainerState::ContainerRunning as i32))
}

/// The pod's ready sandbox.
pub async fn ready_sandbox(cri: &Cri, pod: &PodRef<'_>) -> anyhow::Result<Option<api::PodSandbox>> {
    let req = api::ListPodSandboxRequest {
        filter: Some(api::PodSandboxFilter {
            label_selector: pod.selector(),
            state: Some(api::PodSandboxStateValue {
                state: api::PodSandboxState::SandboxReady as i32,
            }),
            ..Default::default()
        }),
    };
    let mut found = cri
        .runtime()
        .list_pod_sandbox(req)
        .await?
        .into_inner()
        .items;
    found.sort_by_key(|s| std::cmp::Reverse(s.created_at));
    Ok(found.into_iter().next())
}
