//! `events.k8s.io/v1` Events about pods, worded as upstream's scheduler: `Scheduled`
//! ("Successfully assigned NS/POD to NODE", action `Binding`) and `FailedScheduling` warnings
//! (action `Scheduling`).
//!
//! Events are best effort, as upstream's event broadcaster: they wait in a bounded queue
//! (1,000, upstream's maxQueuedEvents) written by a background task with a few requests in
//! flight, so a binding never waits for its event; when the queue is full the event is
//! dropped, and a failure to write one is logged and never fails scheduling.

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::Client;
use tokio::sync::mpsc;

/// Upstream's maxQueuedEvents: events beyond this many unwritten ones are dropped.
const QUEUE: usize = 1000;
/// Event writes in flight at once (they share the client's connection).
const WRITERS: usize = 16;

/// Publishes the scheduler's events.
#[derive(Clone)]
pub struct Recorder {
    queue: mpsc::Sender<Event>,
    /// `reportingController`: the scheduler name, as upstream.
    controller: String,
    /// `reportingInstance`: `<scheduler name>-<identity>`.
    instance: String,
}

/// What happened, before it is addressed to a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub type_: &'static str,
    pub reason: &'static str,
    pub action: &'static str,
    pub message: String,
}

pub fn scheduled(pod: &Pod, node: &str) -> Note {
    Note {
        type_: "Normal",
        reason: "Scheduled",
        action: "Binding",
        message: format!(
            "Successfully assigned {}/{} to {}",
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default(),
            node
        ),
    }
}

pub fn failed_scheduling(message: impl Into<String>) -> Note {
    Note {
        type_: "Warning",
        reason: "FailedScheduling",
        action: "Scheduling",
        message: message.into(),
    }
}

/// On a victim: upstream's `Preempted` event.
pub fn preempted(by: &Pod, node: &str) -> Note {
    Note {
        type_: "Normal",
        reason: "Preempted",
        action: "Preempting",
        message: format!(
            "Preempted by pod {} on node {}",
            by.metadata.uid.as_deref().unwrap_or_default(),
            node
        ),
    }
}

fn reference(pod: &Pod) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        ..Default::default()
    }
}

impl Recorder {
    /// A recorder whose writer task runs until every clone of it is dropped; call it inside a
    /// Tokio runtime.
    pub fn new(client: Client, scheduler_name: &str, identity: &str) -> Recorder {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_all(client, rx));
        Recorder {
            queue,
            controller: scheduler_name.to_string(),
            instance: format!("{scheduler_name}-{identity}"),
        }
    }

    /// The Event object for `note` about `pod`.
    pub fn event(&self, pod: &Pod, note: &Note) -> Event {
        let now = Timestamp::now();
        Event {
            metadata: ObjectMeta {
                name: Some(format!(
                    "{}.{:x}",
                    pod.metadata.name.as_deref().unwrap_or("pod"),
                    now.as_nanosecond()
                )),
                namespace: pod.metadata.namespace.clone(),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            action: Some(note.action.into()),
            reason: Some(note.reason.into()),
            note: Some(truncate(&note.message)),
            type_: Some(note.type_.into()),
            regarding: Some(reference(pod)),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        }
    }

    /// Queues the event for `pod`; never waits.
    pub fn publish(&self, pod: &Pod, note: Note) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.queue.try_send(self.event(pod, &note))
        {
            tracing::warn!(reason = note.reason, pod = ?pod.metadata.name, "event queue full; event dropped");
        }
    }
}

/// Writes queued events until the recorder is dropped.
async fn write_all(client: Client, rx: mpsc::Receiver<Event>) {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) })
        .for_each_concurrent(WRITERS, |event| write(&client, event))
        .await;
}

async fn write(client: &Client, event: Event) {
    let ns = event.metadata.namespace.as_deref().unwrap_or("default");
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    if let Err(e) = api.create(&PostParams::default(), &event).await {
        tracing::warn!(error = %e, reason = ?event.reason, "could not record event");
    }
}

/// The API server limits an event note to 1 kB.
fn truncate(message: &str) -> String {
    const MAX: usize = 1024;
    if message.len() <= MAX {
        return message.to_string();
    }
    let mut end = MAX - 3;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &message[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::pod;

    #[test]
    fn scheduled_message_as_upstream() {
        let n = scheduled(&pod("web", "", ""), "n1");
        assert_eq!(n.message, "Successfully assigned default/web to n1");
        assert_eq!(
            (n.reason, n.action, n.type_),
            ("Scheduled", "Binding", "Normal")
        );
    }

    #[test]
    fn long_notes_are_cut_on_a_char_boundary() {
        let long = "é".repeat(1000);
        let t = truncate(&long);
        assert!(t.len() <= 1024 && t.ends_with("..."));
    }
}
