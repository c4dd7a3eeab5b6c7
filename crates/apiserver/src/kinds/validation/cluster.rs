//! Validation of the discovery, networking, policy, RBAC, storage and scheduling kinds.

use super::errors::{forbidden, go_value, invalid, not_supported, quote, required};
use super::meta::label_selector;
use super::names::{dns1035_label, port_name, port_number};
use super::pod::{name_errors, one_of, optional_protocol};
use crate::kinds::json::{arr_at, at, int_at, str_at};
use crate::kinds::Cause;
use serde_json::Value;

pub fn endpoint_slice(obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
    let mut errs = Vec::new();
    one_of(
        &mut errs,
        "addressType",
        str_at(obj, "addressType"),
        &["FQDN", "IPv4", "IPv6"],
    );
    for (i, e) in arr_at(obj, "endpoints").iter().enumerate() {
        if arr_at(e, "addresses").is_empty() {
            errs.push(required(
                &format!("endpoints[{i}].addresses"),
                "must contain at least 1 address",
            ));
        }
    }
    for (i, p) in arr_at(obj, "ports").iter().enumerate() {
        optional_protocol(
            &mut errs,
            &format!("ports[{i}].protocol"),
            str_at(p, "protocol"),
        );
    }
    errs
}

pub fn network_policy(obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
    let mut errs = Vec::new();
    label_selector(&mut errs, at(obj, "spec.podSelector"), "spec.podSelector");
    for (i, t) in arr_at(obj, "spec.policyTypes").iter().enumerate() {
        let t = t.as_str().unwrap_or_default();
        if !["Ingress", "Egress"].contains(&t) {
            errs.push(not_supported(
                &format!("spec.policyTypes[{i}]"),
                t,
                &["Ingress", "Egress"],
            ));
        }
    }
    for direction in ["ingress", "egress"] {
        for (i, rule) in arr_at(obj, &format!("spec.{direction}")).iter().enumerate() {
            for (j, p) in arr_at(rule, "ports").iter().enumerate() {
                let field = format!("spec.{direction}[{i}].ports[{j}].protocol");
                optional_protocol(&mut errs, &field, str_at(p, "protocol"));
            }
        }
    }
    errs
}

const PATH_TYPES: &[&str] = &["Exact", "ImplementationSpecific", "Prefix"];

pub fn ingress(obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
    let mut errs = Vec::new();
    let rules = arr_at(obj, "spec.rules");
    let default_backend = at(obj, "spec.defaultBackend");
    if rules.is_empty() && default_backend.is_null() {
        errs.push(invalid(
            "spec",
            "[]networking.IngressRule(nil)",
            "either `defaultBackend` or `rules` must be specified",
        ));
    }
    if !default_backend.is_null() {
        ingress_backend(&mut errs, default_backend, "spec.defaultBackend");
    }
    for (i, rule) in rules.iter().enumerate() {
        for (j, path) in arr_at(rule, "http.paths").iter().enumerate() {
            let base = format!("spec.rules[{i}].http.paths[{j}]");
            let path_type = str_at(path, "pathType");
            one_of(
                &mut errs,
                &format!("{base}.pathType"),
                path_type,
                PATH_TYPES,
            );
            let p = str_at(path, "path");
            if matches!(path_type, "Exact" | "Prefix") && !p.starts_with('/') {
                errs.push(invalid(
                    &format!("{base}.path"),
                    &quote(p),
                    "must be an absolute path",
                ));
            }
            ingress_backend(&mut errs, at(path, "backend"), &format!("{base}.backend"));
        }
    }
    errs
}

/// `validateIngressBackend`: a resource or a service (named like a Service, with a port name or
/// number), never both.
fn ingress_backend(errs: &mut Vec<Cause>, backend: &Value, path: &str) {
    let (resource, service) = (at(backend, "resource"), at(backend, "service"));
    let empty = quote("");
    match (resource.is_null(), service.is_null()) {
        (false, false) => errs.push(invalid(
            path,
            &empty,
            "cannot set both resource and service backends",
        )),
        (true, true) => errs.push(invalid(
            path,
            &empty,
            "resource or service backend is required",
        )),
        (false, true) => {}
        (true, false) => {
            let name = str_at(service, "name");
            if name.is_empty() {
                errs.push(required(&format!("{path}.service.name"), ""));
            } else {
                name_errors(errs, &format!("{path}.service.name"), name, dns1035_label);
            }
            let (port_name_value, number) =
                (str_at(service, "port.name"), int_at(service, "port.number"));
            match (port_name_value.is_empty(), number) {
                (false, n) if n != 0 => errs.push(invalid(
                    path,
                    &empty,
                    "cannot set both port name & port number",
                )),
                (false, _) => name_errors(
                    errs,
                    &format!("{path}.service.port.name"),
                    port_name_value,
                    port_name,
                ),
                (true, 0) => errs.push(required(path, "port name or number is required")),
                (true, n) => {
                    let field = format!("{path}.service.port.number");
                    errs.extend(
                        port_number(n)
                            .iter()
                            .map(|m| invalid(&field, &n.to_string(), m)),
                    );
                }
            }
        }
    }
}

pub fn ingress_class(obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut errs = Vec::new();
    let controller = str_at(obj, "spec.controller");
    if controller.is_empty() {
        errs.push(required("spec.controller", ""));
    } else if controller.len() > 250 {
        errs.push(super::errors::too_long("spec.controller", 250));
    }
    if old.is_some_and(|o| str_at(o, "spec.controller") != controller) {
        errs.push(invalid(
            "spec.controller",
            &quote(controller),
            "field is immutable",
        ));
    }
    errs
}

pub fn pdb(obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
    let mut errs = Vec::new();
    let spec = at(obj, "spec");
    if !at(spec, "minAvailable").is_null() && !at(spec, "maxUnavailable").is_null() {
        errs.push(invalid(
            "spec",
            &spec.to_string(),
            "minAvailable and maxUnavailable cannot be both set",
        ));
    }
    label_selector(&mut errs, at(spec, "selector"), "spec.selector");
    errs
}

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// Policy rules of Roles (`namespaced`) and ClusterRoles.
fn policy_rules(obj: &Value, namespaced: bool) -> Vec<Cause> {
    let mut errs = Vec::new();
    for (i, rule) in arr_at(obj, "rules").iter().enumerate() {
        let path = format!("rules[{i}]");
        if arr_at(rule, "verbs").is_empty() {
            errs.push(required(
                &format!("{path}.verbs"),
                "verbs must contain at least one value",
            ));
        }
        let urls = arr_at(rule, "nonResourceURLs");
        if !urls.is_empty() {
            if namespaced {
                errs.push(invalid(
                    &format!("{path}.nonResourceURLs"),
                    &go_value(at(rule, "nonResourceURLs")),
                    "namespaced rules cannot apply to non-resource URLs",
                ));
            }
            if ["apiGroups", "resources", "resourceNames"]
                .iter()
                .any(|k| !arr_at(rule, k).is_empty())
            {
                errs.push(invalid(
                    &format!("{path}.nonResourceURLs"),
                    &go_value(at(rule, "nonResourceURLs")),
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            continue;
        }
        if arr_at(rule, "apiGroups").is_empty() {
            errs.push(required(
                &format!("{path}.apiGroups"),
                "resource rules must supply at least one api group",
            ));
        }
        if arr_at(rule, "resources").is_empty() {
            errs.push(required(
                &format!("{path}.resources"),
                "resource rules must supply at least one resource",
            ));
        }
    }
    errs
}

pub fn role(obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
    policy_rules(obj, true)
}

pub fn cluster_role(obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
    if at(obj, "aggregationRule").is_object() {
        return Vec::new();
    }
    policy_rules(obj, false)
}

/// RoleBindings (`namespaced`) and ClusterRoleBindings; a RoleBinding's service accounts default
/// to its own namespace, a ClusterRoleBinding's must name one.
fn binding(obj: &Value, old: Option<&Value>, role_kinds: &[&str], namespaced: bool) -> Vec<Cause> {
    let mut errs = Vec::new();
    let role_ref = at(obj, "roleRef");
    let group = str_at(role_ref, "apiGroup");
    if group != RBAC_GROUP {
        errs.push(not_supported("roleRef.apiGroup", group, &[RBAC_GROUP]));
    }
    let kind = str_at(role_ref, "kind");
    if !role_kinds.contains(&kind) {
        errs.push(not_supported("roleRef.kind", kind, role_kinds));
    }
    if str_at(role_ref, "name").is_empty() {
        errs.push(required("roleRef.name", ""));
    }
    for (i, s) in arr_at(obj, "subjects").iter().enumerate() {
        subject(&mut errs, s, &format!("subjects[{i}]"), namespaced);
    }
    if old.is_some_and(|o| at(o, "roleRef") != role_ref) {
        errs.push(invalid(
            "roleRef",
            &role_ref.to_string(),
            "cannot change roleRef",
        ));
    }
    errs
}

/// A binding subject: a named service account (namespaced unless the binding is), user or group,
/// each with the API group upstream expects.
fn subject(errs: &mut Vec<Cause>, s: &Value, path: &str, binding_namespaced: bool) {
    if str_at(s, "name").is_empty() {
        errs.push(required(&format!("{path}.name"), ""));
    }
    let group = str_at(s, "apiGroup");
    let group_field = format!("{path}.apiGroup");
    match str_at(s, "kind") {
        "ServiceAccount" => {
            if !group.is_empty() {
                errs.push(not_supported(&group_field, group, &[""]));
            }
            if str_at(s, "namespace").is_empty() && !binding_namespaced {
                errs.push(required(&format!("{path}.namespace"), ""));
            }
        }
        "User" | "Group" if group != RBAC_GROUP => {
            errs.push(not_supported(&group_field, group, &[RBAC_GROUP]))
        }
        "User" | "Group" => {}
        other => errs.push(not_supported(
            &format!("{path}.kind"),
            other,
            &["ServiceAccount", "User", "Group"],
        )),
    }
}

pub fn role_binding(obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    binding(obj, old, &["Role", "ClusterRole"], true)
}

pub fn cluster_role_binding(obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    binding(obj, old, &["ClusterRole"], false)
}

pub fn storage_class(obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut errs = Vec::new();
    if str_at(obj, "provisioner").is_empty() {
        errs.push(required("provisioner", ""));
    }
    one_of(
        &mut errs,
        "reclaimPolicy",
        str_at(obj, "reclaimPolicy"),
        &["Delete", "Retain"],
    );
    one_of(
        &mut errs,
        "volumeBindingMode",
        str_at(obj, "volumeBindingMode"),
        &["Immediate", "WaitForFirstConsumer"],
    );
    if let Some(old) = old {
        for (key, msg) in [
            ("parameters", "updates to parameters are forbidden."),
            ("provisioner", "updates to provisioner are forbidden."),
            ("reclaimPolicy", "updates to reclaimPolicy are forbidden."),
            ("volumeBindingMode", "field is immutable"),
        ] {
            if at(obj, key) != at(old, key) {
                errs.push(forbidden(key, msg));
            }
        }
    }
    errs
}

/// The highest priority a user-defined PriorityClass may have.
const HIGHEST_USER_PRIORITY: i64 = 1_000_000_000;
const SYSTEM_CLASSES: &[&str] = &["system-cluster-critical", "system-node-critical"];

pub fn priority_class(obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut errs = Vec::new();
    let name = str_at(obj, "metadata.name");
    if !SYSTEM_CLASSES.contains(&name) {
        if name.starts_with("system-") {
            errs.push(invalid(
                "metadata.name",
                &quote(name),
                "priority class names with 'system-' prefix are reserved",
            ));
        }
        if int_at(obj, "value") > HIGHEST_USER_PRIORITY {
            errs.push(forbidden(
                "value",
                &format!(
                    "maximum allowed value of a user defined priority is {HIGHEST_USER_PRIORITY}"
                ),
            ));
        }
    }
    one_of(
        &mut errs,
        "preemptionPolicy",
        str_at(obj, "preemptionPolicy"),
        &["Never", "PreemptLowerPriority"],
    );
    if let Some(old) = old {
        if at(obj, "value") != at(old, "value") {
            errs.push(forbidden("value", "may not be changed in an update."));
        }
        if at(obj, "preemptionPolicy") != at(old, "preemptionPolicy") {
            errs.push(invalid(
                "preemptionPolicy",
                &go_value(at(obj, "preemptionPolicy")),
                "field is immutable",
            ));
        }
    }
    errs
}

pub fn lease(obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
    let mut errs = Vec::new();
    if let Some(n) = at(obj, "spec.leaseDurationSeconds")
        .as_i64()
        .filter(|n| *n <= 0)
    {
        errs.push(invalid(
            "spec.leaseDurationSeconds",
            &n.to_string(),
            "must be greater than 0",
        ));
    }
    if let Some(n) = at(obj, "spec.leaseTransitions").as_i64().filter(|n| *n < 0) {
        errs.push(invalid(
            "spec.leaseTransitions",
            &n.to_string(),
            "must be greater than or equal to 0",
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::defaults;
    use crate::kinds::validation::fields_of as fields;
    use serde_json::json;

    #[test]
    fn rbac() {
        let r = json!({"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}, {"resources": ["x"]}, {"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]});
        assert_eq!(
            fields(&role(&r, None)),
            [
                "rules[1].verbs",
                "rules[1].apiGroups",
                "rules[2].nonResourceURLs"
            ]
        );
        assert_eq!(
            cluster_role(
                &json!({"rules": [{"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]}),
                None
            ),
            []
        );
        let mut rb = json!({"roleRef": {"kind": "Role", "name": "r"}, "subjects": [{"kind": "User", "name": "u"}, {"kind": "Robot", "name": "x"}]});
        defaults::apply("rbac.authorization.k8s.io", "RoleBinding", &mut rb);
        let errs = role_binding(&rb, None);
        assert_eq!(fields(&errs), ["subjects[1].kind"]);
        let mut crb = json!({"roleRef": {"kind": "Role", "name": "r"}, "subjects": [{"kind": "ServiceAccount", "name": "s"}]});
        defaults::apply("rbac.authorization.k8s.io", "ClusterRoleBinding", &mut crb);
        assert_eq!(
            fields(&cluster_role_binding(&crb, None)),
            ["roleRef.kind", "subjects[0].namespace"]
        );
        let mut moved = rb.clone();
        moved["roleRef"]["name"] = json!("other");
        assert!(role_binding(&moved, Some(&rb))
            .iter()
            .any(|c| c.message.ends_with("cannot change roleRef")));
    }

    #[test]
    fn storage_and_priority() {
        let mut sc = json!({"provisioner": "p"});
        defaults::apply("storage.k8s.io", "StorageClass", &mut sc);
        assert_eq!(storage_class(&sc, None), []);
        let mut changed = sc.clone();
        changed["reclaimPolicy"] = json!("Retain");
        assert_eq!(
            storage_class(&changed, Some(&sc))[0].message,
            "Forbidden: updates to reclaimPolicy are forbidden."
        );
        let mut pc = json!({"metadata": {"name": "system-x"}, "value": 2_000_000_000});
        defaults::apply("scheduling.k8s.io", "PriorityClass", &mut pc);
        assert_eq!(
            fields(&priority_class(&pc, None)),
            ["metadata.name", "value"]
        );
        let mut ok = json!({"metadata": {"name": "high"}, "value": 1000});
        defaults::apply("scheduling.k8s.io", "PriorityClass", &mut ok);
        let mut bumped = ok.clone();
        bumped["value"] = json!(1001);
        assert_eq!(
            priority_class(&bumped, Some(&ok))[0].message,
            "Forbidden: may not be changed in an update."
        );
    }

    #[test]
    fn ingress_backends() {
        let check = |backend: Value| {
            let mut errs = Vec::new();
            ingress_backend(&mut errs, &backend, "b");
            errs.into_iter()
                .map(|c| (c.field, c.message))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            check(json!({"service": {"name": "web", "port": {"name": "http"}}})),
            []
        );
        assert_eq!(
            check(json!({"service": {"name": "web"}})),
            [(
                "b".to_string(),
                "Required value: port name or number is required".to_string()
            )]
        );
        assert_eq!(
            check(json!({"service": {"name": "web", "port": {"name": "http", "number": 80}}}))[0].1,
            "Invalid value: \"\": cannot set both port name & port number"
        );
        assert_eq!(
            check(json!({}))[0].1,
            "Invalid value: \"\": resource or service backend is required"
        );
        assert_eq!(
            check(json!({"service": {"name": "Web", "port": {"number": 0}}})).len(),
            2
        );
    }

    #[test]
    fn leases() {
        assert_eq!(
            lease(&json!({"spec": {"leaseDurationSeconds": 40}}), None),
            []
        );
        assert_eq!(
            fields(&lease(
                &json!({"spec": {"leaseDurationSeconds": 0, "leaseTransitions": -1}}),
                None
            )),
            ["spec.leaseDurationSeconds", "spec.leaseTransitions"]
        );
    }

    #[test]
    fn networking_and_policy() {
        let ing = json!({"spec": {"rules": [{"http": {"paths": [{"path": "x", "pathType": "Prefix", "backend": {"service": {"name": "s", "port": {"number": 80}}}}, {"path": "/", "backend": {}}]}}]}});
        assert_eq!(
            fields(&ingress(&ing, None)),
            [
                "spec.rules[0].http.paths[0].path",
                "spec.rules[0].http.paths[1].pathType",
                "spec.rules[0].http.paths[1].backend"
            ]
        );
        assert_eq!(
            fields(&ingress_class(&json!({"spec": {}}), None)),
            ["spec.controller"]
        );
        assert_eq!(
            pdb(
                &json!({"spec": {"minAvailable": 1, "maxUnavailable": 1}}),
                None
            )[0]
            .message
            .split(": ")
            .last(),
            Some("minAvailable and maxUnavailable cannot be both set")
        );
        assert_eq!(
            fields(&network_policy(
                &json!({"spec": {"policyTypes": ["Sideways"]}}),
                None
            )),
            ["spec.policyTypes[0]"]
        );
        assert_eq!(
            fields(&endpoint_slice(
                &json!({"addressType": "IPv5", "endpoints": [{}]}),
                None
            )),
            ["addressType", "endpoints[0].addresses"]
        );
    }
}
