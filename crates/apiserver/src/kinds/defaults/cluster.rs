//! Defaults of the discovery, networking, RBAC, storage and scheduling kinds.

use crate::kinds::json::{each_obj_mut, obj_mut, set_default, set_default_str};
use serde_json::{json, Value};

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

pub(super) fn endpoint_slice(obj: &mut Value) {
    if let Some(o) = obj.as_object_mut() {
        each_obj_mut(o, "ports", |p| {
            set_default(p, "name", json!(""));
            set_default(p, "protocol", json!("TCP"));
        });
    }
}

pub(super) fn network_policy(obj: &mut Value) {
    let Some(spec) = obj_mut(obj, "spec") else {
        return;
    };
    for direction in ["ingress", "egress"] {
        each_obj_mut(spec, direction, |rule| {
            each_obj_mut(rule, "ports", |p| set_default_str(p, "protocol", "TCP"))
        });
    }
    let unset = spec
        .get("policyTypes")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if unset {
        let has_egress = spec
            .get("egress")
            .and_then(Value::as_array)
            .is_some_and(|e| !e.is_empty());
        let types = if has_egress {
            json!(["Ingress", "Egress"])
        } else {
            json!(["Ingress"])
        };
        spec.insert("policyTypes".into(), types);
    }
}

pub(super) fn ingress_class(obj: &mut Value) {
    if let Some(Value::Object(params)) = obj.pointer_mut("/spec/parameters") {
        set_default(params, "scope", json!("Cluster"));
    }
}

pub(super) fn storage_class(obj: &mut Value) {
    if let Some(o) = obj.as_object_mut() {
        set_default_str(o, "reclaimPolicy", "Delete");
        set_default_str(o, "volumeBindingMode", "Immediate");
    }
}

pub(super) fn priority_class(obj: &mut Value) {
    if let Some(o) = obj.as_object_mut() {
        set_default_str(o, "preemptionPolicy", "PreemptLowerPriority");
    }
}

/// RoleBindings and ClusterRoleBindings: the RBAC API group on the role and on users and groups.
pub(super) fn role_binding(obj: &mut Value) {
    let Some(o) = obj.as_object_mut() else { return };
    if let Some(Value::Object(role_ref)) = o.get_mut("roleRef") {
        set_default_str(role_ref, "apiGroup", RBAC_GROUP);
    }
    each_obj_mut(o, "subjects", |s| {
        if matches!(
            s.get("kind").and_then(Value::as_str),
            Some("User" | "Group")
        ) {
            set_default_str(s, "apiGroup", RBAC_GROUP);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_kinds() {
        let mut es = json!({"ports": [{"port": 80}]});
        endpoint_slice(&mut es);
        assert_eq!(
            es["ports"][0],
            json!({"port": 80, "name": "", "protocol": "TCP"})
        );
        let mut np = json!({"spec": {"podSelector": {}, "egress": [{"ports": [{"port": 53}]}]}});
        network_policy(&mut np);
        assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
        assert_eq!(np["spec"]["egress"][0]["ports"][0]["protocol"], "TCP");
        let mut np = json!({"spec": {}});
        network_policy(&mut np);
        assert_eq!(np["spec"]["policyTypes"], json!(["Ingress"]));
        let mut sc = json!({"provisioner": "x"});
        storage_class(&mut sc);
        assert_eq!(
            sc,
            json!({"provisioner": "x", "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"})
        );
        let mut pc = json!({"value": 1});
        priority_class(&mut pc);
        assert_eq!(pc["preemptionPolicy"], "PreemptLowerPriority");
        let mut ic = json!({"spec": {"parameters": {"kind": "K", "name": "n"}}});
        ingress_class(&mut ic);
        assert_eq!(ic["spec"]["parameters"]["scope"], "Cluster");
        let mut rb = json!({"roleRef": {"kind": "Role", "name": "r"}, "subjects": [{"kind": "User", "name": "u"}, {"kind": "ServiceAccount", "name": "s"}]});
        role_binding(&mut rb);
        assert_eq!(rb["roleRef"]["apiGroup"], RBAC_GROUP);
        assert_eq!(rb["subjects"][0]["apiGroup"], RBAC_GROUP);
        assert!(rb["subjects"][1].get("apiGroup").is_none());
    }
}
