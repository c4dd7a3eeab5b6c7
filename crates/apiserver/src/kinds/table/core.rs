//! Rows of the core/v1 kinds other than pods.

use super::{age, cells, col, load_balancer_ingress, name, wide, Column, AGE, NAME};
use crate::kinds::duration::since;
use crate::kinds::events::convert_event;
use crate::kinds::format::format_labels;
use crate::kinds::json::{arr_at, at, int_at, len_at, obj_at, str_at, string_map};
use serde_json::Value;

pub(super) const NAMESPACE: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the namespace"),
    AGE,
];

pub(super) fn namespace(o: &Value, now: i64) -> Vec<Value> {
    cells![name(o), str_at(o, "status.phase"), age(o, now)]
}

pub(super) const SERVICE: &[Column] = &[
    NAME,
    col("Type", "string", "type determines how the Service is exposed. Defaults to ClusterIP."),
    col("Cluster-IP", "string", "clusterIP is the IP address of the service and is usually assigned randomly."),
    col("External-IP", "string", "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."),
    col("Port(s)", "string", "The list of ports that are exposed by this service."),
    AGE,
    wide("Selector", "string", "Route service traffic to pods with label keys and values matching this selector."),
];

pub(super) fn service(o: &Value, now: i64) -> Vec<Value> {
    let cluster_ip = match arr_at(o, "spec.clusterIPs").first() {
        Some(ip) => ip.as_str().unwrap_or_default(),
        None => str_at(o, "spec.clusterIP"),
    };
    let ports: Vec<String> = arr_at(o, "spec.ports")
        .iter()
        .map(|p| {
            let (port, proto) = (int_at(p, "port"), str_at(p, "protocol"));
            match int_at(p, "nodePort") {
                n if n > 0 => format!("{port}:{n}/{proto}"),
                _ => format!("{port}/{proto}"),
            }
        })
        .collect();
    cells![
        name(o),
        str_at(o, "spec.type"),
        if cluster_ip.is_empty() {
            "<none>"
        } else {
            cluster_ip
        },
        service_external_ip(o),
        if ports.is_empty() {
            "<none>".into()
        } else {
            ports.join(",")
        },
        age(o, now),
        format_labels(at(o, "spec.selector")),
    ]
}

/// Upstream's `getServiceExternalIP` (wide form, never truncated).
fn service_external_ip(o: &Value) -> String {
    let external: Vec<&str> = arr_at(o, "spec.externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    match str_at(o, "spec.type") {
        "ClusterIP" | "NodePort" if !external.is_empty() => external.join(","),
        "ClusterIP" | "NodePort" => "<none>".into(),
        "LoadBalancer" => {
            let lb = load_balancer_ingress(at(o, "status.loadBalancer"));
            let all: Vec<&str> = lb
                .split(',')
                .filter(|s| !s.is_empty())
                .chain(external.iter().copied())
                .collect();
            if all.is_empty() {
                "<pending>".into()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => str_at(o, "spec.externalName").into(),
        _ => "<unknown>".into(),
    }
}

pub(super) const ENDPOINTS: &[Column] = &[
    NAME,
    col(
        "Endpoints",
        "string",
        "The set of all endpoints is the union of all subsets.",
    ),
    AGE,
];

pub(super) fn endpoints(o: &Value, now: i64) -> Vec<Value> {
    cells![name(o), format_endpoints(o), age(o, now)]
}

/// Upstream's `formatEndpoints`: up to three `ip:port` pairs, then "+ N more...".
fn format_endpoints(o: &Value) -> String {
    let subsets = arr_at(o, "subsets");
    if subsets.is_empty() {
        return "<none>".into();
    }
    let mut all = Vec::new();
    for ss in subsets {
        let ips = arr_at(ss, "addresses").iter().map(|a| str_at(a, "ip"));
        let ports = arr_at(ss, "ports");
        if ports.is_empty() {
            all.extend(ips.map(String::from));
            continue;
        }
        for p in ports {
            let port = int_at(p, "port");
            all.extend(ips.clone().map(|ip| {
                if ip.contains(':') {
                    format!("[{ip}]:{port}")
                } else {
                    format!("{ip}:{port}")
                }
            }));
        }
    }
    let shown = all.iter().take(3).cloned().collect::<Vec<_>>().join(",");
    if all.len() > 3 {
        format!("{shown} + {} more...", all.len() - 3)
    } else {
        shown
    }
}

pub(super) const CONFIG_MAP: &[Column] = &[
    NAME,
    col("Data", "string", "Data contains the configuration data."),
    AGE,
];

pub(super) fn config_map(o: &Value, now: i64) -> Vec<Value> {
    cells![
        name(o),
        len_at(o, "data") + len_at(o, "binaryData"),
        age(o, now)
    ]
}

pub(super) const SECRET: &[Column] = &[
    NAME,
    col(
        "Type",
        "string",
        "Used to facilitate programmatic handling of secret data.",
    ),
    col("Data", "string", "Data contains the secret data."),
    AGE,
];

pub(super) fn secret(o: &Value, now: i64) -> Vec<Value> {
    cells![name(o), str_at(o, "type"), len_at(o, "data"), age(o, now)]
}

pub(super) const SERVICE_ACCOUNT: &[Column] =
    &[NAME, col("Secrets", "string", "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use."), AGE];

pub(super) fn service_account(o: &Value, now: i64) -> Vec<Value> {
    cells![name(o), len_at(o, "secrets"), age(o, now)]
}

const NODE_ADDRESSES: &str = "List of addresses reachable to the node.";

pub(super) const NODE: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the node"),
    col("Roles", "string", "The roles of the node"),
    AGE,
    col("Version", "string", "Kubelet Version reported by the node."),
    wide("Internal-IP", "string", NODE_ADDRESSES),
    wide("External-IP", "string", NODE_ADDRESSES),
    wide("OS-Image", "string", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
    wide("Kernel-Version", "string", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
    wide("Container-Runtime", "string", "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2)."),
];

pub(super) fn node(o: &Value, now: i64) -> Vec<Value> {
    let mut status = match arr_at(o, "status.conditions")
        .iter()
        .rfind(|c| str_at(c, "type") == "Ready")
    {
        Some(c) if str_at(c, "status") == "True" => vec!["Ready"],
        Some(_) => vec!["NotReady"],
        None => vec!["Unknown"],
    };
    if at(o, "spec.unschedulable").as_bool() == Some(true) {
        status.push("SchedulingDisabled");
    }
    let info = |key: &str| match str_at(o, &format!("status.nodeInfo.{key}")) {
        "" => "<unknown>".to_string(),
        v => v.to_string(),
    };
    cells![
        name(o),
        status.join(","),
        node_roles(o),
        age(o, now),
        str_at(o, "status.nodeInfo.kubeletVersion"),
        node_address(o, "InternalIP"),
        node_address(o, "ExternalIP"),
        info("osImage"),
        info("kernelVersion"),
        info("containerRuntimeVersion"),
    ]
}

/// Roles from `node-role.kubernetes.io/<role>` and `kubernetes.io/role=<role>` labels.
fn node_roles(o: &Value) -> String {
    let mut roles: Vec<&str> = string_map(at(o, "metadata.labels"))
        .into_iter()
        .filter_map(|(k, v)| match k.strip_prefix("node-role.kubernetes.io/") {
            Some(role) if !role.is_empty() => Some(role),
            Some(_) => None,
            None => (k == "kubernetes.io/role" && !v.is_empty()).then_some(v),
        })
        .collect();
    roles.sort_unstable();
    roles.dedup();
    if roles.is_empty() {
        "<none>".into()
    } else {
        roles.join(",")
    }
}

fn node_address(o: &Value, type_: &str) -> String {
    arr_at(o, "status.addresses")
        .iter()
        .find(|a| str_at(a, "type") == type_)
        .map_or("<none>".into(), |a| str_at(a, "address").into())
}

pub(super) const EVENT: &[Column] = &[
    col("Last Seen", "string", "The time at which the most recent occurrence of this event was recorded."),
    col("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future"),
    col("Reason", "string", "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
    col("Object", "string", "The object that this event is about."),
    wide("Subobject", "string", "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2]."),
    wide("Source", "string", "The component reporting this event. Should be a short machine understandable string."),
    col("Message", "string", "A human-readable description of the status of this operation."),
    wide("First Seen", "string", "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)"),
    wide("Count", "string", "The number of times this event has occurred."),
    Column { priority: 1, ..NAME },
];

/// An events.k8s.io/v1 Event's row: upstream prints both groups' Events with one printer.
pub(super) fn events_v1_event(o: &Value, now: i64) -> Vec<Value> {
    event(&convert_event(o, ""), now)
}

/// A core/v1 Event's row.
pub(super) fn event(o: &Value, now: i64) -> Vec<Value> {
    let has = |key: &str| at(o, key).as_str().is_some_and(|s| !s.is_empty());
    let first = if has("firstTimestamp") {
        since(&o["firstTimestamp"], now)
    } else {
        since(&o["eventTime"], now)
    };
    let mut last = if has("lastTimestamp") {
        since(&o["lastTimestamp"], now)
    } else {
        first.clone()
    };
    let mut count = int_at(o, "count");
    if let Some(series) = obj_at(o, "series") {
        last = since(series.get("lastObservedTime").unwrap_or(&Value::Null), now);
        count = series
            .get("count")
            .and_then(Value::as_i64)
            .unwrap_or_default();
    } else if count == 0 {
        count = 1;
    }
    let involved = &o["involvedObject"];
    let kind = str_at(involved, "kind").to_lowercase();
    let target = match str_at(involved, "name") {
        "" => kind,
        n => format!("{kind}/{n}"),
    };
    let component = first_non_empty(
        str_at(&o["source"], "component"),
        str_at(o, "reportingComponent"),
    );
    let instance = first_non_empty(str_at(&o["source"], "host"), str_at(o, "reportingInstance"));
    let source = if instance.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {instance}")
    };
    cells![
        last,
        str_at(o, "type"),
        str_at(o, "reason"),
        target,
        str_at(involved, "fieldPath"),
        source,
        str_at(o, "message").trim(),
        first,
        count,
        name(o),
    ]
}

fn first_non_empty<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.is_empty() {
        b
    } else {
        a
    }
}

pub(super) const RESOURCE_QUOTA: &[Column] = &[
    NAME,
    col("Request", "string", "Request represents a minimum amount of cpu/memory that a container may consume."),
    col("Limit", "string", "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node."),
    AGE,
];

pub(super) fn resource_quota(o: &Value, now: i64) -> Vec<Value> {
    let (mut requests, mut limits) = (Vec::new(), Vec::new());
    for (res, hard) in string_map(at(o, "status.hard")) {
        let used = obj_at(o, "status.used")
            .and_then(|u| u.get(res))
            .and_then(Value::as_str)
            .unwrap_or("0");
        let entry = format!("{res}: {used}/{hard}");
        let mut pieces = res.split('.');
        let is_limit = pieces.next() == Some("limits") && pieces.next().is_some();
        if is_limit {
            limits.push(entry)
        } else {
            requests.push(entry)
        }
    }
    cells![name(o), requests.join(", "), limits.join(", "), age(o, now)]
}

pub(super) const PERSISTENT_VOLUME: &[Column] = &[
    NAME,
    col("Capacity", "string", "capacity is the description of the persistent volume's resources and capacity."),
    col("Access Modes", "string", "accessModes contains all ways the volume can be mounted."),
    col("Reclaim Policy", "string", "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim."),
    col("Status", "string", "phase indicates if a volume is available, bound to a claim, or released by a claim."),
    col("Claim", "string", "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim."),
    col("StorageClass", "string", "StorageClass of the pv"),
    col("VolumeAttributesClass", "string", "VolumeAttributesClass of the pv"),
    col("Reason", "string", "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI."),
    AGE,
    wide("VolumeMode", "string", "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state."),
];

pub(super) fn persistent_volume(o: &Value, now: i64) -> Vec<Value> {
    let claim = match obj_at(o, "spec.claimRef") {
        Some(_) => format!(
            "{}/{}",
            str_at(o, "spec.claimRef.namespace"),
            str_at(o, "spec.claimRef.name")
        ),
        None => String::new(),
    };
    cells![
        name(o),
        str_at(o, "spec.capacity.storage"),
        access_modes(arr_at(o, "spec.accessModes")),
        str_at(o, "spec.persistentVolumeReclaimPolicy"),
        volume_phase(o),
        claim,
        storage_class(o),
        unset_or(str_at(o, "spec.volumeAttributesClassName")),
        str_at(o, "status.reason"),
        age(o, now),
        unset_or(str_at(o, "spec.volumeMode")),
    ]
}

pub(super) const PVC: &[Column] = &[
    NAME,
    col(
        "Status",
        "string",
        "phase represents the current phase of PersistentVolumeClaim.",
    ),
    col(
        "Volume",
        "string",
        "volumeName is the binding reference to the PersistentVolume backing this claim.",
    ),
    col(
        "Capacity",
        "string",
        "capacity represents the actual resources of the underlying volume.",
    ),
    col(
        "Access Modes",
        "string",
        "accessModes contains the actual access modes the volume backing the PVC has.",
    ),
    col("StorageClass", "string", "StorageClass of the pvc"),
    col(
        "VolumeAttributesClass",
        "string",
        "VolumeAttributesClass of the pvc",
    ),
    AGE,
    wide(
        "VolumeMode",
        "string",
        "volumeMode defines what type of volume is required by the claim.",
    ),
];

pub(super) fn pvc(o: &Value, now: i64) -> Vec<Value> {
    let volume = str_at(o, "spec.volumeName");
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            str_at(o, "status.capacity.storage").to_string(),
            access_modes(arr_at(o, "status.accessModes")),
        )
    };
    cells![
        name(o),
        volume_phase(o),
        volume,
        capacity,
        modes,
        storage_class(o),
        unset_or(str_at(o, "spec.volumeAttributesClassName")),
        age(o, now),
        unset_or(str_at(o, "spec.volumeMode")),
    ]
}

/// status.phase, or Terminating once deletion started.
fn volume_phase(o: &Value) -> &str {
    if at(o, "metadata.deletionTimestamp").is_null() {
        str_at(o, "status.phase")
    } else {
        "Terminating"
    }
}

/// The storage class: the beta annotation wins over `spec.storageClassName`.
fn storage_class(o: &Value) -> &str {
    match obj_at(o, "metadata.annotations")
        .and_then(|a| a.get("volume.beta.kubernetes.io/storage-class"))
    {
        Some(Value::String(s)) => s,
        _ => str_at(o, "spec.storageClassName"),
    }
}

fn unset_or(s: &str) -> &str {
    if s.is_empty() {
        "<unset>"
    } else {
        s
    }
}

/// Upstream's `GetAccessModesAsString`: abbreviations in a fixed order.
fn access_modes(modes: &[Value]) -> String {
    const ORDER: [(&str, &str); 4] = [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ];
    ORDER
        .iter()
        .filter(|(mode, _)| modes.iter().any(|m| m.as_str() == Some(mode)))
        .map(|(_, short)| *short)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CREATED: &str = "2023-11-14T22:08:20Z";
    const NOW: i64 = 1_700_000_000;

    fn meta(name: &str) -> Value {
        json!({"name": name, "creationTimestamp": CREATED})
    }

    #[test]
    fn services() {
        let svc = json!({"metadata": meta("web"), "spec": {"type": "NodePort", "clusterIP": "10.152.183.5",
            "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}], "selector": {"app": "web"}}});
        assert_eq!(
            service(&svc, NOW),
            cells![
                "web",
                "NodePort",
                "10.152.183.5",
                "<none>",
                "80:30080/TCP,53/UDP",
                "5m",
                "app=web"
            ]
        );
        let lb = json!({"metadata": meta("lb"), "spec": {"type": "LoadBalancer", "clusterIPs": ["10.0.0.1"], "externalIPs": ["1.2.3.4"]},
            "status": {"loadBalancer": {"ingress": [{"ip": "5.6.7.8"}, {"hostname": "a.example"}]}}});
        assert_eq!(service(&lb, NOW)[3], json!("5.6.7.8,a.example,1.2.3.4"));
        let pending = json!({"spec": {"type": "LoadBalancer"}});
        assert_eq!(service(&pending, NOW)[3], json!("<pending>"));
        let ext = json!({"spec": {"type": "ExternalName", "externalName": "db.example"}});
        assert_eq!(
            service(&ext, NOW)[2..5],
            cells!["<none>", "db.example", "<none>"][..]
        );
    }

    #[test]
    fn endpoints_cells() {
        let ep = json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}, {"port": 443}]}]});
        assert_eq!(
            format_endpoints(&ep),
            "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more..."
        );
        assert_eq!(format_endpoints(&json!({})), "<none>");
        assert_eq!(
            format_endpoints(
                &json!({"subsets": [{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]}]})
            ),
            "[fd00::1]:80"
        );
    }

    #[test]
    fn nodes() {
        let n = json!({"metadata": {"name": "n1", "creationTimestamp": CREATED, "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "worker"}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}], "addresses": [{"type": "InternalIP", "address": "192.168.1.2"}],
                "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Ubuntu"}}});
        assert_eq!(
            node(&n, NOW),
            cells![
                "n1",
                "Ready,SchedulingDisabled",
                "control-plane,worker",
                "5m",
                "v1.33.0",
                "192.168.1.2",
                "<none>",
                "Ubuntu",
                "<unknown>",
                "<unknown>"
            ]
        );
        assert_eq!(node(&json!({}), NOW)[1..3], cells!["Unknown", "<none>"][..]);
    }

    #[test]
    fn events_both_groups() {
        let core = json!({"metadata": meta("p.1"), "type": "Normal", "reason": "Scheduled", "message": " assigned \n",
            "involvedObject": {"kind": "Pod", "name": "p", "fieldPath": "spec.containers{a}"},
            "source": {"component": "default-scheduler"}, "firstTimestamp": CREATED, "lastTimestamp": "2023-11-14T22:12:20Z", "count": 2});
        assert_eq!(
            event(&core, NOW),
            cells![
                "60s",
                "Normal",
                "Scheduled",
                "pod/p",
                "spec.containers{a}",
                "default-scheduler",
                "assigned",
                "5m",
                2,
                "p.1"
            ]
        );
        let v1 = json!({"apiVersion": "events.k8s.io/v1", "metadata": meta("e"), "eventTime": "2023-11-14T22:12:20.000000Z",
            "regarding": {"kind": "Node"}, "note": "x", "reportingController": "kubelet", "reportingInstance": "n1"});
        assert_eq!(
            events_v1_event(&v1, NOW),
            cells!["60s", "", "", "node", "", "kubelet, n1", "x", "60s", 1, "e"]
        );
    }

    #[test]
    fn quotas_and_volumes() {
        let q = json!({"metadata": meta("q"), "status": {"hard": {"pods": "10", "limits.cpu": "2", "requests.memory": "1Gi"}, "used": {"pods": "1"}}});
        assert_eq!(
            resource_quota(&q, NOW),
            cells![
                "q",
                "pods: 1/10, requests.memory: 0/1Gi",
                "limits.cpu: 0/2",
                "5m"
            ]
        );
        let pv = json!({"metadata": meta("pv1"), "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain", "claimRef": {"namespace": "d", "name": "c"}, "storageClassName": "fast", "volumeMode": "Filesystem"},
            "status": {"phase": "Bound"}});
        assert_eq!(
            persistent_volume(&pv, NOW),
            cells![
                "pv1",
                "1Gi",
                "RWO,RWX",
                "Retain",
                "Bound",
                "d/c",
                "fast",
                "<unset>",
                "",
                "5m",
                "Filesystem"
            ]
        );
        let claim = json!({"metadata": meta("c"), "spec": {"volumeName": "pv1"}, "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]}});
        assert_eq!(
            pvc(&claim, NOW),
            cells!["c", "Bound", "pv1", "1Gi", "RWO", "", "<unset>", "5m", "<unset>"]
        );
    }

    #[test]
    fn small_kinds() {
        let cm = json!({"metadata": meta("c"), "data": {"a": "1"}, "binaryData": {"b": ""}});
        assert_eq!(config_map(&cm, NOW), cells!["c", 2, "5m"]);
        let s = json!({"metadata": meta("s"), "type": "Opaque", "data": {"a": "MQ=="}});
        assert_eq!(secret(&s, NOW), cells!["s", "Opaque", 1, "5m"]);
        let ns = json!({"metadata": meta("default"), "status": {"phase": "Active"}});
        assert_eq!(namespace(&ns, NOW), cells!["default", "Active", "5m"]);
        assert_eq!(
            service_account(&json!({"metadata": meta("default")}), NOW),
            cells!["default", 0, "5m"]
        );
    }
}
