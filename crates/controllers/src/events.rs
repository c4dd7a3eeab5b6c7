//! Events as upstream's controllers record them: a type, a reason and a note about one object
//! (the recorder fills in the reporting controller and instance). Recording is best effort: a
//! failure is logged, never a reason to fail a sync.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder};

pub use kube::runtime::events::EventType::{Normal, Warning};

pub async fn record(
    recorder: &Recorder,
    regarding: &ObjectReference,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note.into()),
        action: reason.into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, regarding).await {
        tracing::debug!(%reason, error = %e, "cannot record an event");
    }
}
