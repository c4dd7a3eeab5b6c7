//! Upstream's defaulting of built-in kinds, applied to the external v1 JSON before validation.
//!
//! Each function fills only fields that are absent (or empty strings, which Go cannot tell from
//! absent), so applying defaults twice, or on update, changes nothing the user set.

mod cluster;
mod core;
mod pod;
mod service;
mod workloads;

use serde_json::Value;

/// Fills in one kind's defaults.
type Defaulter = fn(&mut Value);

/// The defaulting function of each kind that has one: (group, kind, function).
const DEFAULTERS: &[(&str, &str, Defaulter)] = &[
    ("", "Pod", pod::pod),
    ("", "Service", service::service),
    ("", "Secret", core::secret),
    ("", "Namespace", core::namespace),
    ("", "PersistentVolume", core::persistent_volume),
    ("", "PersistentVolumeClaim", core::pvc),
    ("", "Node", core::node),
    ("", "Endpoints", core::endpoints),
    ("", "LimitRange", core::limit_range),
    ("", "ResourceQuota", core::resource_quota),
    ("apps", "Deployment", workloads::deployment),
    ("apps", "ReplicaSet", workloads::replica_set),
    ("apps", "DaemonSet", workloads::daemon_set),
    ("apps", "StatefulSet", workloads::stateful_set),
    ("batch", "Job", workloads::job),
    ("batch", "CronJob", workloads::cron_job),
    ("discovery.k8s.io", "EndpointSlice", cluster::endpoint_slice),
    (
        "networking.k8s.io",
        "NetworkPolicy",
        cluster::network_policy,
    ),
    ("networking.k8s.io", "IngressClass", cluster::ingress_class),
    ("storage.k8s.io", "StorageClass", cluster::storage_class),
    (
        "scheduling.k8s.io",
        "PriorityClass",
        cluster::priority_class,
    ),
    (
        "rbac.authorization.k8s.io",
        "RoleBinding",
        cluster::role_binding,
    ),
    (
        "rbac.authorization.k8s.io",
        "ClusterRoleBinding",
        cluster::role_binding,
    ),
];

/// Applies the kind's defaults; kinds without any are left alone, as are non-objects.
pub fn apply(group: &str, kind: &str, obj: &mut Value) {
    if !obj.is_object() {
        return;
    }
    if let Some((_, _, f)) = DEFAULTERS
        .iter()
        .find(|(g, k, _)| *g == group && *k == kind)
    {
        f(obj);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Defaulting never panics and is idempotent, whatever the input's shape.
    #[test]
    fn idempotent_and_total() {
        let shapes = [
            json!({}),
            json!({"spec": null, "status": 3, "metadata": "x"}),
            json!({"spec": {"template": {"spec": {"containers": [{}, 1]}}, "ports": "x", "subsets": [{"ports": 2}]}}),
            json!({"spec": {"jobTemplate": {"spec": {"template": 1}}, "limits": [{"type": "Container", "max": 1}]}}),
        ];
        for (group, kind, _) in DEFAULTERS {
            for shape in &shapes {
                let mut once = shape.clone();
                apply(group, kind, &mut once);
                let mut twice = once.clone();
                apply(group, kind, &mut twice);
                assert_eq!(once, twice, "{group} {kind}");
            }
        }
        let mut not_object = json!([1]);
        apply("", "Pod", &mut not_object);
        assert_eq!(not_object, json!([1]));
    }
}
