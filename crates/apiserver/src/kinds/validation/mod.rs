//! Validation of built-in kinds with upstream's rules, messages and cause fields: the object
//! name per the kind's rule, common metadata, then the kind's own checks (including what an
//! update may not change). Objects are expected to be defaulted first.

mod certificates;
mod cluster;
mod core;
mod errors;
mod events;
mod meta;
pub(crate) mod names;
mod pod;
mod resources;
mod scheduling;
mod service;
mod unions;
mod workloads;

use super::json::at;
use super::Cause;
use meta::NameRule;
use names::{dns1035_label, dns1123_label, dns1123_subdomain, path_segment};
use serde_json::Value;

/// A kind's own checks; `old` is the stored object on update.
type KindCheck = fn(&Value, Option<&Value>) -> Vec<Cause>;

/// How one kind is validated.
struct Rules {
    group: &'static str,
    kind: &'static str,
    name: NameRule,
    namespaced: bool,
    check: Option<KindCheck>,
}

const fn rules(
    group: &'static str,
    kind: &'static str,
    name: NameRule,
    namespaced: bool,
    check: Option<KindCheck>,
) -> Rules {
    Rules {
        group,
        kind,
        name,
        namespaced,
        check,
    }
}

const RBAC: &str = "rbac.authorization.k8s.io";

#[rustfmt::skip]
const KINDS: &[Rules] = &[
    rules("", "Pod", dns1123_subdomain, true, Some(pod_check)),
    rules("", "Namespace", dns1123_label, false, Some(core::namespace)),
    rules("", "Service", dns1035_label, true, Some(service::service)),
    rules("", "Endpoints", dns1123_subdomain, true, Some(core::endpoints)),
    rules("", "ConfigMap", dns1123_subdomain, true, Some(core::config_map)),
    rules("", "Secret", dns1123_subdomain, true, Some(core::secret)),
    rules("", "ServiceAccount", dns1123_subdomain, true, None),
    rules("", "Node", dns1123_subdomain, false, Some(node_check)),
    // Upstream checks no name rule for core events beyond URL safety.
    rules("", "Event", path_segment, true, Some(events::core_event)),
    rules("", "LimitRange", dns1123_subdomain, true, None),
    rules("", "ResourceQuota", dns1123_subdomain, true, Some(resources::quota)),
    rules("", "PersistentVolume", dns1123_subdomain, false, Some(core::persistent_volume)),
    rules("", "PersistentVolumeClaim", dns1123_subdomain, true, Some(core::pvc)),
    rules("apps", "Deployment", dns1123_subdomain, true, Some(workloads::deployment)),
    rules("apps", "ReplicaSet", dns1123_subdomain, true, Some(workloads::replica_set)),
    rules("apps", "DaemonSet", dns1123_subdomain, true, Some(workloads::daemon_set)),
    rules("apps", "StatefulSet", dns1123_subdomain, true, Some(workloads::stateful_set)),
    rules("apps", "ControllerRevision", dns1123_subdomain, true, Some(workloads::controller_revision)),
    rules("batch", "Job", dns1123_subdomain, true, Some(workloads::job)),
    rules("batch", "CronJob", dns1123_subdomain, true, Some(workloads::cron_job)),
    rules("certificates.k8s.io", "CertificateSigningRequest", dns1123_subdomain, false, Some(certificates::csr)),
    rules("coordination.k8s.io", "Lease", dns1123_subdomain, true, Some(cluster::lease)),
    rules("discovery.k8s.io", "EndpointSlice", dns1123_subdomain, true, Some(cluster::endpoint_slice)),
    rules("events.k8s.io", "Event", dns1123_subdomain, true, Some(events::events_v1_event)),
    rules("networking.k8s.io", "Ingress", dns1123_subdomain, true, Some(cluster::ingress)),
    rules("networking.k8s.io", "IngressClass", dns1123_subdomain, false, Some(cluster::ingress_class)),
    rules("networking.k8s.io", "NetworkPolicy", dns1123_subdomain, true, Some(cluster::network_policy)),
    rules("policy", "PodDisruptionBudget", dns1123_subdomain, true, Some(cluster::pdb)),
    rules(RBAC, "Role", path_segment, true, Some(cluster::role)),
    rules(RBAC, "RoleBinding", path_segment, true, Some(cluster::role_binding)),
    rules(RBAC, "ClusterRole", path_segment, false, Some(cluster::cluster_role)),
    rules(RBAC, "ClusterRoleBinding", path_segment, false, Some(cluster::cluster_role_binding)),
    rules("storage.k8s.io", "StorageClass", dns1123_subdomain, false, Some(cluster::storage_class)),
    rules("scheduling.k8s.io", "PriorityClass", dns1123_subdomain, false, Some(cluster::priority_class)),
];

fn node_check(obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
    scheduling::taints(obj)
}

fn pod_check(obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut errs = pod::pod_spec(at(obj, "spec"), "spec", &[]);
    if let Some(old) = old {
        errs.extend(pod::pod_update(obj, old));
    }
    errs
}

/// Validates `obj` (and, on update, what changed from `old`). Kinds not in the table (custom
/// resources) get DNS-subdomain names and metadata checks, whatever their scope.
pub fn validate(group: &str, kind: &str, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let Some(r) = KINDS.iter().find(|r| r.group == group && r.kind == kind) else {
        let mut obj_without_ns = obj.clone();
        let namespaced = !at(obj, "metadata.namespace").is_null();
        if let Some(meta) = obj_without_ns
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
        {
            meta.remove("namespace");
        }
        let mut errs = meta::object_meta(
            if namespaced { obj } else { &obj_without_ns },
            dns1123_subdomain,
            namespaced,
        );
        errs.extend(
            old.map(|o| meta::object_meta_update(obj, o))
                .unwrap_or_default(),
        );
        return errs;
    };
    let mut errs = meta::object_meta(obj, r.name, r.namespaced);
    if let Some(old) = old {
        errs.extend(meta::object_meta_update(obj, old));
    }
    if let Some(check) = r.check {
        errs.extend(check(obj, old));
    }
    errs
}

/// The fields of some causes, for tests.
#[cfg(test)]
fn fields_of(errs: &[Cause]) -> Vec<&str> {
    errs.iter().map(|c| c.field.as_str()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::defaults;
    use serde_json::json;

    fn check(group: &str, kind: &str, obj: Value) -> Vec<(String, String, String)> {
        let mut obj = obj;
        defaults::apply(group, kind, &mut obj);
        validate(group, kind, &obj, None)
            .into_iter()
            .map(|c| (c.field, c.reason, c.message))
            .collect()
    }

    /// `kubectl run Foo --image=nginx` against upstream.
    #[test]
    fn invalid_pod_name_like_upstream() {
        let errs = check(
            "",
            "Pod",
            json!({"metadata": {"name": "Foo", "namespace": "default"}, "spec": {"containers": [{"name": "foo", "image": "nginx"}]}}),
        );
        assert_eq!(errs, [(
            "metadata.name".to_string(),
            "FieldValueInvalid".to_string(),
            "Invalid value: \"Foo\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".to_string()
        )]);
    }

    #[test]
    fn name_rules_per_kind() {
        let named = |name: &str, ns: bool| {
            if ns {
                json!({"metadata": {"name": name, "namespace": "default"}})
            } else {
                json!({"metadata": {"name": name}})
            }
        };
        assert!(check("", "Namespace", named("a.b", false))[0]
            .2
            .ends_with("must not contain dots"));
        assert!(check("", "Service", named("1svc", true))
            .iter()
            .any(|e| e.2.contains("DNS-1035 label")));
        assert_eq!(
            check(RBAC, "ClusterRole", named("system:controller:x", false)),
            []
        );
        assert_eq!(
            check(RBAC, "Role", named("a/b", true))[0].2,
            "Invalid value: \"a/b\": may not contain '/'"
        );
        assert_eq!(check("", "ConfigMap", named("a.b", true)), []);
        assert_eq!(check("example.com", "Widget", named("w", true)), []);
        assert_eq!(check("example.com", "Widget", named("W", false)).len(), 1);
    }

    #[test]
    fn every_kind_is_total_on_odd_input() {
        for r in KINDS {
            for obj in [
                json!(null),
                json!({}),
                json!({"metadata": [], "spec": 3, "data": "x", "rules": {}}),
            ] {
                let mut obj = obj;
                defaults::apply(r.group, r.kind, &mut obj);
                let _ = validate(r.group, r.kind, &obj, Some(&json!({"spec": []})));
                assert!(
                    !validate(r.group, r.kind, &obj, None).is_empty(),
                    "{} {}",
                    r.group,
                    r.kind
                );
            }
        }
    }

    #[test]
    fn updates_check_immutable_metadata() {
        let old = json!({"metadata": {"name": "a", "namespace": "default"}, "data": {}});
        let new = json!({"metadata": {"name": "b", "namespace": "default"}, "data": {}});
        let errs = validate("", "ConfigMap", &new, Some(&old));
        assert_eq!(
            errs.iter().map(|c| c.message.as_str()).collect::<Vec<_>>(),
            ["Invalid value: \"b\": field is immutable"]
        );
    }
}
