//! Rows of the networking, policy, RBAC, storage, scheduling, coordination and discovery kinds.

use super::{
    age, cells, col, list_with_more, load_balancer_ingress, name, wide, Column, AGE, NAME,
};
use crate::kinds::format::format_label_selector;
use crate::kinds::json::{arr_at, at, bool_at, int_at, obj_at, str_at};
use serde_json::Value;

pub(super) const LEASE: &[Column] = &[
    NAME,
    col(
        "Holder",
        "string",
        "holderIdentity contains the identity of the holder of a current lease.",
    ),
    AGE,
];

pub(super) fn lease(o: &Value, now: i64) -> Vec<Value> {
    cells![name(o), str_at(o, "spec.holderIdentity"), age(o, now)]
}

pub(super) const ENDPOINT_SLICE: &[Column] = &[
    NAME,
    col(
        "AddressType",
        "string",
        "addressType specifies the type of address carried by this EndpointSlice.",
    ),
    col(
        "Ports",
        "string",
        "ports specifies the list of network ports exposed by each endpoint in this slice.",
    ),
    col(
        "Endpoints",
        "string",
        "endpoints is a list of unique endpoints in this slice.",
    ),
    AGE,
];

pub(super) fn endpoint_slice(o: &Value, now: i64) -> Vec<Value> {
    let ports: Vec<String> = arr_at(o, "ports")
        .iter()
        .map(|p| match (at(p, "port").as_i64(), at(p, "name").as_str()) {
            (Some(n), _) => n.to_string(),
            (None, Some(name)) => name.to_string(),
            (None, None) => "*".into(),
        })
        .collect();
    let addrs: Vec<String> = arr_at(o, "endpoints")
        .iter()
        .flat_map(|e| arr_at(e, "addresses"))
        .filter_map(Value::as_str)
        .map(String::from)
        .collect();
    cells![
        name(o),
        str_at(o, "addressType"),
        list_with_more(&ports),
        list_with_more(&addrs),
        age(o, now)
    ]
}

pub(super) const INGRESS: &[Column] = &[
    NAME,
    col(
        "Class",
        "string",
        "The name of the IngressClass resource that should be used for additional configuration",
    ),
    col(
        "Hosts",
        "string",
        "Hosts that incoming requests are matched against before the ingress rule",
    ),
    col(
        "Address",
        "string",
        "Address is a list containing ingress points for the load-balancer",
    ),
    col("Ports", "string", "Ports of TLS configurations that open"),
    AGE,
];

pub(super) fn ingress(o: &Value, now: i64) -> Vec<Value> {
    let class = match at(o, "spec.ingressClassName") {
        Value::String(c) => c.as_str(),
        _ => "<none>",
    };
    let ports = if arr_at(o, "spec.tls").is_empty() {
        "80"
    } else {
        "80, 443"
    };
    cells![
        name(o),
        class,
        ingress_hosts(arr_at(o, "spec.rules")),
        load_balancer_ingress(at(o, "status.loadBalancer")),
        ports,
        age(o, now)
    ]
}

/// Upstream's `formatHosts`: the first three non-empty hosts, "*" if none.
fn ingress_hosts(rules: &[Value]) -> String {
    const MAX: usize = 3;
    let (mut hosts, mut more) = (Vec::new(), false);
    for rule in rules {
        more |= hosts.len() == MAX;
        match str_at(rule, "host") {
            h if !more && !h.is_empty() => hosts.push(h),
            _ => {}
        }
    }
    if hosts.is_empty() {
        return "*".into();
    }
    let shown = hosts.join(",");
    if more {
        format!("{shown} + {} more...", rules.len() - MAX)
    } else {
        shown
    }
}

pub(super) const INGRESS_CLASS: &[Column] = &[
    NAME,
    col(
        "Controller",
        "string",
        "Controller that is responsible for handling this class",
    ),
    col(
        "Parameters",
        "string",
        "A reference to a resource with additional parameters",
    ),
    AGE,
];

pub(super) fn ingress_class(o: &Value, now: i64) -> Vec<Value> {
    let params = match obj_at(o, "spec.parameters") {
        None => "<none>".to_string(),
        Some(_) => {
            let kind = str_at(o, "spec.parameters.kind");
            let kind = match at(o, "spec.parameters.apiGroup").as_str() {
                Some(group) => format!("{kind}.{group}"),
                None => kind.to_string(),
            };
            format!("{kind}/{}", str_at(o, "spec.parameters.name"))
        }
    };
    cells![name(o), str_at(o, "spec.controller"), params, age(o, now)]
}

pub(super) const NETWORK_POLICY: &[Column] = &[
    NAME,
    col(
        "Pod-Selector",
        "string",
        "Selects the pods to which this NetworkPolicy object applies.",
    ),
    AGE,
];

pub(super) fn network_policy(o: &Value, now: i64) -> Vec<Value> {
    cells![
        name(o),
        format_label_selector(at(o, "spec.podSelector")),
        age(o, now)
    ]
}

pub(super) const PDB: &[Column] = &[
    NAME,
    col(
        "Min Available",
        "string",
        "The minimum number of pods that must be available.",
    ),
    col(
        "Max Unavailable",
        "string",
        "The maximum number of pods that may be unavailable.",
    ),
    col(
        "Allowed Disruptions",
        "integer",
        "Calculated number of pods that may be disrupted at this time.",
    ),
    AGE,
];

pub(super) fn pdb(o: &Value, now: i64) -> Vec<Value> {
    let int_or_string = |key: &str| match at(o, key) {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => "N/A".into(),
    };
    cells![
        name(o),
        int_or_string("spec.minAvailable"),
        int_or_string("spec.maxUnavailable"),
        int_at(o, "status.disruptionsAllowed"),
        age(o, now),
    ]
}

pub(super) const ROLE_BINDING: &[Column] = &[
    NAME,
    col("Role", "string", "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace."),
    AGE,
    wide("Users", "string", "Users in the roleBinding"),
    wide("Groups", "string", "Groups in the roleBinding"),
    wide("ServiceAccounts", "string", "ServiceAccounts in the roleBinding"),
];

pub(super) const CLUSTER_ROLE_BINDING: &[Column] = &[
    NAME,
    col(
        "Role",
        "string",
        "RoleRef can only reference a ClusterRole in the global namespace.",
    ),
    AGE,
    wide("Users", "string", "Users in the clusterRoleBinding"),
    wide("Groups", "string", "Groups in the clusterRoleBinding"),
    wide(
        "ServiceAccounts",
        "string",
        "ServiceAccounts in the clusterRoleBinding",
    ),
];

/// RoleBindings and ClusterRoleBindings print alike.
pub(super) fn role_binding(o: &Value, now: i64) -> Vec<Value> {
    let role = format!(
        "{}/{}",
        str_at(o, "roleRef.kind"),
        str_at(o, "roleRef.name")
    );
    let subjects = arr_at(o, "subjects");
    let of_kind = |kind: &str| {
        subjects
            .iter()
            .filter(|s| str_at(s, "kind") == kind)
            .map(|s| match kind {
                "ServiceAccount" => format!("{}/{}", str_at(s, "namespace"), str_at(s, "name")),
                _ => str_at(s, "name").to_string(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    cells![
        name(o),
        role,
        age(o, now),
        of_kind("User"),
        of_kind("Group"),
        of_kind("ServiceAccount")
    ]
}

pub(super) const STORAGE_CLASS: &[Column] = &[
    NAME,
    col("Provisioner", "string", "provisioner indicates the type of the provisioner."),
    col("ReclaimPolicy", "string", "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class."),
    col("VolumeBindingMode", "string", "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound."),
    col("AllowVolumeExpansion", "string", "allowVolumeExpansion shows whether the storage class allow volume expand."),
    AGE,
];

pub(super) fn storage_class(o: &Value, now: i64) -> Vec<Value> {
    let annotations = at(o, "metadata.annotations");
    let is_default = [
        "storageclass.kubernetes.io/is-default-class",
        "storageclass.beta.kubernetes.io/is-default-class",
    ]
    .iter()
    .any(|k| annotations.get(k).and_then(Value::as_str) == Some("true"));
    let display = if is_default {
        format!("{} (default)", name(o))
    } else {
        name(o).to_string()
    };
    let or = |key: &str, default: &'static str| match str_at(o, key) {
        "" => default.to_string(),
        v => v.to_string(),
    };
    cells![
        display,
        str_at(o, "provisioner"),
        or("reclaimPolicy", "Delete"),
        or("volumeBindingMode", "Immediate"),
        bool_at(o, "allowVolumeExpansion"),
        age(o, now),
    ]
}

pub(super) const PRIORITY_CLASS: &[Column] = &[
    NAME,
    col("Value", "integer", "value represents the integer value of this priority class."),
    col("Global-Default", "boolean", "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class."),
    AGE,
    col("PreemptionPolicy", "string", "preemptionPolicy is the Policy for preempting pods with lower priority."),
];

pub(super) fn priority_class(o: &Value, now: i64) -> Vec<Value> {
    cells![
        name(o),
        int_at(o, "value"),
        bool_at(o, "globalDefault"),
        age(o, now),
        str_at(o, "preemptionPolicy")
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_700_000_000;

    fn meta(name: &str) -> Value {
        json!({"name": name, "creationTimestamp": "2023-11-14T22:08:20Z"})
    }

    #[test]
    fn ingresses() {
        let ing = json!({"metadata": meta("i"), "spec": {"ingressClassName": "nginx",
            "rules": [{"host": "a.example"}, {}, {"host": "c.example"}, {"host": "d.example"}, {"host": "e.example"}], "tls": [{}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.9"}]}}});
        assert_eq!(
            ingress(&ing, NOW),
            cells![
                "i",
                "nginx",
                "a.example,c.example,d.example + 2 more...",
                "10.0.0.9",
                "80, 443",
                "5m"
            ]
        );
        assert_eq!(
            ingress(&json!({}), NOW)[1..5],
            cells!["<none>", "*", "", "80"][..]
        );
        let ic = json!({"metadata": meta("c"), "spec": {"controller": "k8s.io/ingress-nginx",
            "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "p"}}});
        assert_eq!(
            ingress_class(&ic, NOW),
            cells![
                "c",
                "k8s.io/ingress-nginx",
                "IngressParameters.k8s.example.com/p",
                "5m"
            ]
        );
    }

    #[test]
    fn slices_policies_bindings() {
        let es = json!({"metadata": meta("s"), "addressType": "IPv4", "ports": [{"port": 80}, {"name": "http"}, {}],
            "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}]});
        assert_eq!(
            endpoint_slice(&es, NOW),
            cells!["s", "IPv4", "80,http,*", "10.0.0.1,10.0.0.2", "5m"]
        );
        assert_eq!(
            endpoint_slice(&json!({}), NOW)[2..4],
            cells!["<unset>", "<unset>"][..]
        );
        let np = json!({"metadata": meta("np"), "spec": {"podSelector": {"matchLabels": {"role": "db"}}}});
        assert_eq!(network_policy(&np, NOW), cells!["np", "role=db", "5m"]);
        let pdb_obj = json!({"metadata": meta("p"), "spec": {"minAvailable": "50%"}, "status": {"disruptionsAllowed": 1}});
        assert_eq!(pdb(&pdb_obj, NOW), cells!["p", "50%", "N/A", 1, "5m"]);
        let rb = json!({"metadata": meta("rb"), "roleRef": {"kind": "ClusterRole", "name": "view"}, "subjects": [
            {"kind": "User", "name": "alice"}, {"kind": "User", "name": "bob"}, {"kind": "Group", "name": "devs"},
            {"kind": "ServiceAccount", "namespace": "kube-system", "name": "default"}]});
        assert_eq!(
            role_binding(&rb, NOW),
            cells![
                "rb",
                "ClusterRole/view",
                "5m",
                "alice, bob",
                "devs",
                "kube-system/default"
            ]
        );
    }

    #[test]
    fn classes_and_leases() {
        let sc = json!({"metadata": {"name": "local", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"});
        assert_eq!(
            storage_class(&sc, NOW),
            cells![
                "local (default)",
                "rancher.io/local-path",
                "Delete",
                "WaitForFirstConsumer",
                false,
                "<unknown>"
            ]
        );
        let pc = json!({"metadata": meta("high"), "value": 1000, "preemptionPolicy": "PreemptLowerPriority"});
        assert_eq!(
            priority_class(&pc, NOW),
            cells!["high", 1000, false, "5m", "PreemptLowerPriority"]
        );
        let l = json!({"metadata": meta("node-1"), "spec": {"holderIdentity": "node-1"}});
        assert_eq!(lease(&l, NOW), cells!["node-1", "node-1", "5m"]);
    }
}
