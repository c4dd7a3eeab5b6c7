//! Writes scheduling decisions to the API server: the binding (`POST pods/{name}/binding`) and,
//! when a pod fits nowhere, its `PodScheduled=False` condition (status subresource).

use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;

/// The reason upstream sets on `PodScheduled=False` for pods that fit nowhere.
pub const UNSCHEDULABLE: &str = "Unschedulable";
/// The reason for other scheduling errors (the API server refused, a bug).
pub const SCHEDULER_ERROR: &str = "SchedulerError";

fn pods(client: &Client, pod: &Pod) -> Api<Pod> {
    Api::namespaced(
        client.clone(),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
    )
}

/// The `Binding` that assigns `pod` to `node`; the uid makes the API server refuse to bind a
/// pod recreated under the same name.
pub fn binding(pod: &Pod, node: &str) -> Binding {
    Binding {
        metadata: ObjectMeta {
            name: pod.metadata.name.clone(),
            namespace: pod.metadata.namespace.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.into()),
            ..Default::default()
        },
    }
}

pub async fn bind(client: &Client, pod: &Pod, node: &str) -> Result<(), kube::Error> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    pods(client, pod)
        .create_subresource::<Binding, serde_json::Value>(
            "binding",
            name,
            &PostParams::default(),
            &binding(pod, node),
        )
        .await?;
    Ok(())
}

/// Whether the pod already carries this `PodScheduled=False` condition (then nothing is written,
/// so a retried pod does not churn its status).
fn has_condition(pod: &Pod, reason: &str, message: &str) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c: &PodCondition| {
            c.type_ == "PodScheduled"
                && c.status == "False"
                && c.reason.as_deref() == Some(reason)
                && c.message.as_deref() == Some(message)
        })
}

/// Sets `PodScheduled=False` with `reason` and `message` (a strategic merge on the conditions
/// list, keyed by type, so other conditions stay).
pub async fn mark_unschedulable(
    client: &Client,
    pod: &Pod,
    reason: &str,
    message: &str,
    nominated_node: Option<&str>,
) -> Result<(), kube::Error> {
    let nominated_now = pod
        .status
        .as_ref()
        .and_then(|s| s.nominated_node_name.as_deref());
    if has_condition(pod, reason, message)
        && (nominated_node.is_none() || nominated_node == nominated_now)
    {
        return Ok(());
    }
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let now = Time(Timestamp::now());
    let mut patch = json!({
        "status": {
            "conditions": [{
                "type": "PodScheduled",
                "status": "False",
                "reason": reason,
                "message": message,
                "lastProbeTime": null,
                "lastTransitionTime": now,
            }]
        }
    });
    if let Some(node) = nominated_node {
        patch["status"]["nominatedNodeName"] = json!(node);
    }
    pods(client, pod)
        .patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await?;
    Ok(())
}

/// Deletes a preemption victim (with its own grace period, as upstream).
pub async fn evict(client: &Client, victim: &Pod) -> Result<(), kube::Error> {
    let name = victim.metadata.name.as_deref().unwrap_or_default();
    match pods(client, victim).delete(name, &Default::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::pod;

    #[test]
    fn binding_targets_the_node_and_pins_the_uid() {
        let b = binding(&pod("web", "", ""), "n1");
        assert_eq!(b.target.kind.as_deref(), Some("Node"));
        assert_eq!(b.target.name.as_deref(), Some("n1"));
        assert_eq!(b.metadata.uid.as_deref(), Some("uid-web"));
        assert_eq!(b.metadata.namespace.as_deref(), Some("default"));
    }

    #[test]
    fn existing_condition_is_not_rewritten() {
        let mut p = pod("web", "", "");
        assert!(!has_condition(&p, UNSCHEDULABLE, "m"));
        p.status = Some(k8s_openapi::api::core::v1::PodStatus {
            conditions: Some(vec![PodCondition {
                type_: "PodScheduled".into(),
                status: "False".into(),
                reason: Some(UNSCHEDULABLE.into()),
                message: Some("m".into()),
                ..Default::default()
            }]),
            ..Default::default()
        });
        assert!(has_condition(&p, UNSCHEDULABLE, "m"));
        assert!(!has_condition(&p, UNSCHEDULABLE, "other"));
    }
}
