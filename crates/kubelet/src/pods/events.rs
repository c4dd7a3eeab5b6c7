//! Events about a pod, written as the kubelet (source component `kubelet`, host the node) with
//! upstream's reasons and messages (Pulled, Created, Started, Killing, BackOff, Failed, ...).
//! Writing one never holds the pod's sync back: it is sent from a task of its own.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use kube::api::PostParams;
use kube::Api;

use super::status::now;
use crate::context::NodeContext;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

pub fn record(ctx: &Arc<NodeContext>, pod: &Pod, kind: EventType, reason: &str, message: &str) {
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = pod.metadata.name.clone().unwrap_or_default();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let now = now();
    let event = Event {
        metadata: kube::api::ObjectMeta {
            name: Some(format!("{name}.{nanos:x}")),
            namespace: Some(ns.clone()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(name),
            namespace: Some(ns.clone()),
            uid: pod.metadata.uid.clone(),
            resource_version: pod.metadata.resource_version.clone(),
            ..Default::default()
        },
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        type_: Some(format!("{kind:?}")),
        source: Some(EventSource {
            component: Some("kubelet".into()),
            host: Some(ctx.node_name.clone()),
        }),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(1),
        reporting_component: Some("kubelet".into()),
        reporting_instance: Some(ctx.node_name.clone()),
        ..Default::default()
    };
    let api: Api<Event> = Api::namespaced(ctx.client.clone(), &ns);
    tokio::spawn(async move {
        if let Err(e) = api.create(&PostParams::default(), &event).await {
            tracing::debug!(error = %e, "writing an event failed");
        }
    });
}
