//! Pod facts every workload controller asks (upstream's controller_utils and podutil), and the
//! pod a controller creates from its template.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;

/// Neither finished nor being deleted: it counts towards a controller's replicas.
pub fn is_active(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none() && !is_finished(pod)
}

/// `Succeeded` or `Failed`: it will never run again.
pub fn is_finished(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// The pod's `Ready` condition is `True`.
pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Ready for at least `min_ready` at `now` (upstream's IsPodAvailable).
pub fn is_available(pod: &Pod, min_ready: Duration, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready.is_zero() => true,
        Some(since) => since.checked_add(min_ready).is_ok_and(|t| t <= now),
    }
}

/// When the `Ready` condition last turned `True` (the epoch if it does not say).
fn ready_since(pod: &Pod) -> Option<Timestamp> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let ready = conditions
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?;
    Some(
        ready
            .last_transition_time
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(Timestamp::UNIX_EPOCH),
    )
}

/// The pod a controller creates from its template: the template's labels, annotations,
/// finalizers and spec, `generateName` `<prefix>` (upstream uses `<owner name>-`), and the
/// owner's controller reference.
pub fn from_template(
    template: &PodTemplateSpec,
    namespace: &str,
    prefix: &str,
    owner: OwnerReference,
) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(prefix.to_string()),
            namespace: Some(namespace.to_string()),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn ready_at(t: Timestamp) -> Pod {
        Pod {
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_transition_time: Some(Time(t)),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn available_only_after_min_ready_seconds() {
        let now = Timestamp::now();
        let pod = ready_at(now);
        assert!(is_available(&pod, Duration::ZERO, now));
        assert!(!is_available(&pod, Duration::from_secs(10), now));
        let later = now.checked_add(Duration::from_secs(11)).unwrap();
        assert!(is_available(&pod, Duration::from_secs(10), later));
    }

    #[test]
    fn finished_pods_are_not_active() {
        let mut pod = ready_at(Timestamp::now());
        assert!(is_active(&pod));
        pod.status.as_mut().unwrap().phase = Some("Succeeded".into());
        assert!(!is_active(&pod));
    }
}
