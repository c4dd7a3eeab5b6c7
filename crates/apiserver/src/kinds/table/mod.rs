//! Table columns and rows for `kubectl get`, as upstream's `pkg/printers/internalversion` prints
//! them.
//!
//! The server always renders the wide form (upstream's table convertor passes `Wide: true`);
//! kubectl hides priority-1 columns unless `-o wide`. Kinds upstream has no printer for (roles,
//! limit ranges) get its default convertor's NAME / CREATED AT; unknown kinds get NAME / AGE.

mod certificates;
mod cluster;
mod core;
mod pod;
pub(crate) use pod::pod_ip;
mod workloads;

use super::duration::{format_rfc3339, parse_rfc3339, since};
use super::json::{arr_at, at, str_at};
use super::Column;
use serde_json::Value;

/// Builds a row from cells of mixed types.
macro_rules! cells {
    ($($cell:expr),* $(,)?) => { vec![$(serde_json::Value::from($cell)),*] };
}
pub(crate) use cells;

/// A column shown by default.
const fn col(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column {
        name,
        type_,
        format: "",
        description,
        priority: 0,
    }
}

/// A column shown only with `-o wide`.
const fn wide(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column {
        name,
        type_,
        format: "",
        description,
        priority: 1,
    }
}

pub(crate) const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
pub(crate) const AGE_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

const NAME: Column = Column {
    name: "Name",
    type_: "string",
    format: "name",
    description: NAME_DESC,
    priority: 0,
};
const AGE: Column = col("Age", "string", AGE_DESC);
const CONTAINERS: Column = wide(
    "Containers",
    "string",
    "Names of each container in the template.",
);
const IMAGES: Column = wide(
    "Images",
    "string",
    "Images referenced by each container in the template.",
);

/// Fills one row's cells; `now` is in epoch seconds.
type RowFn = fn(&Value, i64) -> Vec<Value>;

/// One printer: the columns of a kind and how to fill a row.
struct Printer {
    group: &'static str,
    kind: &'static str,
    columns: &'static [Column],
    row: RowFn,
}

const fn printer(
    group: &'static str,
    kind: &'static str,
    columns: &'static [Column],
    row: RowFn,
) -> Printer {
    Printer {
        group,
        kind,
        columns,
        row,
    }
}

/// Every built-in kind's printer. events.k8s.io Events share core's printer upstream (one internal
/// type); their row reads the events.k8s.io field names.
#[rustfmt::skip]
const PRINTERS: &[Printer] = &[
    printer("", "Pod", pod::COLUMNS, pod::row),
    printer("", "Namespace", core::NAMESPACE, core::namespace),
    printer("", "Service", core::SERVICE, core::service),
    printer("", "Endpoints", core::ENDPOINTS, core::endpoints),
    printer("", "ConfigMap", core::CONFIG_MAP, core::config_map),
    printer("", "Secret", core::SECRET, core::secret),
    printer("", "ServiceAccount", core::SERVICE_ACCOUNT, core::service_account),
    printer("", "Node", core::NODE, core::node),
    printer("", "Event", core::EVENT, core::event),
    printer("events.k8s.io", "Event", core::EVENT, core::events_v1_event),
    printer("", "LimitRange", CREATED_AT, created_at_row),
    printer("", "ResourceQuota", core::RESOURCE_QUOTA, core::resource_quota),
    printer("", "PersistentVolume", core::PERSISTENT_VOLUME, core::persistent_volume),
    printer("", "PersistentVolumeClaim", core::PVC, core::pvc),
    printer("apps", "Deployment", workloads::DEPLOYMENT, workloads::deployment),
    printer("apps", "ReplicaSet", workloads::REPLICA_SET, workloads::replica_set),
    printer("apps", "DaemonSet", workloads::DAEMON_SET, workloads::daemon_set),
    printer("apps", "StatefulSet", workloads::STATEFUL_SET, workloads::stateful_set),
    printer("apps", "ControllerRevision", workloads::CONTROLLER_REVISION, workloads::controller_revision),
    printer("batch", "Job", workloads::JOB, workloads::job),
    printer("batch", "CronJob", workloads::CRON_JOB, workloads::cron_job),
    printer("certificates.k8s.io", "CertificateSigningRequest", certificates::CSR, certificates::csr),
    printer("coordination.k8s.io", "Lease", cluster::LEASE, cluster::lease),
    printer("discovery.k8s.io", "EndpointSlice", cluster::ENDPOINT_SLICE, cluster::endpoint_slice),
    printer("networking.k8s.io", "Ingress", cluster::INGRESS, cluster::ingress),
    printer("networking.k8s.io", "IngressClass", cluster::INGRESS_CLASS, cluster::ingress_class),
    printer("networking.k8s.io", "NetworkPolicy", cluster::NETWORK_POLICY, cluster::network_policy),
    printer("policy", "PodDisruptionBudget", cluster::PDB, cluster::pdb),
    printer("rbac.authorization.k8s.io", "Role", CREATED_AT, created_at_row),
    printer("rbac.authorization.k8s.io", "ClusterRole", CREATED_AT, created_at_row),
    printer("rbac.authorization.k8s.io", "RoleBinding", cluster::ROLE_BINDING, cluster::role_binding),
    printer("rbac.authorization.k8s.io", "ClusterRoleBinding", cluster::CLUSTER_ROLE_BINDING, cluster::role_binding),
    printer("storage.k8s.io", "StorageClass", cluster::STORAGE_CLASS, cluster::storage_class),
    printer("apiextensions.k8s.io", "CustomResourceDefinition", CREATED_AT, created_at_row),
    printer("scheduling.k8s.io", "PriorityClass", cluster::PRIORITY_CLASS, cluster::priority_class),
];

/// Upstream's default table convertor, for built-in kinds without a printer.
const CREATED_AT: &[Column] = &[NAME, col("Created At", "date", AGE_DESC)];
/// What the generic registry shows for anything else (e.g. custom resources).
const GENERIC: &[Column] = &[NAME, AGE];

fn find_printer(group: &str, kind: &str) -> Option<&'static Printer> {
    PRINTERS.iter().find(|p| p.group == group && p.kind == kind)
}

/// The Table columns of a kind.
pub fn columns(group: &str, kind: &str) -> Vec<Column> {
    find_printer(group, kind)
        .map_or(GENERIC, |p| p.columns)
        .to_vec()
}

/// The cells of one object's row, one per column of `columns`.
pub fn row(group: &str, kind: &str, obj: &Value, now: i64) -> Vec<Value> {
    match find_printer(group, kind) {
        Some(p) => (p.row)(obj, now),
        None => cells![name(obj), age(obj, now)],
    }
}

fn created_at_row(obj: &Value, _now: i64) -> Vec<Value> {
    // Upstream prints the time in UTC, whole seconds; an unset time is Go's zero time.
    let created = at(obj, "metadata.creationTimestamp")
        .as_str()
        .and_then(parse_rfc3339);
    let cell = created.map_or_else(|| "0001-01-01T00:00:00Z".to_string(), format_rfc3339);
    cells![name(obj), cell]
}

/// metadata.name.
fn name(obj: &Value) -> &str {
    str_at(obj, "metadata.name")
}

/// The AGE cell.
fn age(obj: &Value, now: i64) -> String {
    since(at(obj, "metadata.creationTimestamp"), now)
}

/// Upstream's `layoutContainerCells`: container names and images of a pod spec, comma separated.
fn container_cells(pod_spec: &Value) -> (String, String) {
    let containers = arr_at(pod_spec, "containers");
    let join = |key: &str| {
        containers
            .iter()
            .map(|c| str_at(c, key))
            .collect::<Vec<_>>()
            .join(",")
    };
    (join("name"), join("image"))
}

/// `ready/desired` as deployments and stateful sets print it.
fn ready_of(obj: &Value) -> String {
    use super::json::int_at;
    format!(
        "{}/{}",
        int_at(obj, "status.readyReplicas"),
        int_at(obj, "spec.replicas")
    )
}

/// Sorted, de-duplicated IPs (or hostnames) of a load balancer status, comma separated.
fn load_balancer_ingress(status: &Value) -> String {
    let mut addrs: Vec<&str> = arr_at(status, "ingress")
        .iter()
        .map(|i| match str_at(i, "ip") {
            "" => str_at(i, "hostname"),
            ip => ip,
        })
        .filter(|a| !a.is_empty())
        .collect();
    addrs.sort_unstable();
    addrs.dedup();
    addrs.join(",")
}

/// Upstream's `listWithMoreString`: the first three items, then "+ N more...".
fn list_with_more(items: &[String]) -> String {
    const MAX: usize = 3;
    let shown = items
        .iter()
        .take(MAX)
        .cloned()
        .collect::<Vec<_>>()
        .join(",");
    if items.len() > MAX {
        format!("{shown} + {} more...", items.len() - MAX)
    } else if shown.is_empty() {
        "<unset>".into()
    } else {
        shown
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every row has exactly one cell per column, for every kind, even for an empty object.
    #[test]
    fn rows_match_columns_for_every_kind() {
        for p in PRINTERS {
            for obj in [
                json!({}),
                json!(null),
                json!({"metadata": 3, "spec": "x", "status": []}),
            ] {
                assert_eq!(
                    (p.row)(&obj, 0).len(),
                    p.columns.len(),
                    "{} {}",
                    p.group,
                    p.kind
                );
            }
        }
        assert_eq!(
            row("example.com", "Widget", &json!({}), 0).len(),
            columns("example.com", "Widget").len()
        );
    }

    #[test]
    fn default_convertor_for_roles() {
        let cols = columns("rbac.authorization.k8s.io", "Role");
        assert_eq!(
            cols.iter().map(|c| (c.name, c.type_)).collect::<Vec<_>>(),
            [("Name", "string"), ("Created At", "date")]
        );
        let obj =
            json!({"metadata": {"name": "r", "creationTimestamp": "2024-01-01T01:00:00.25+01:00"}});
        assert_eq!(
            row("rbac.authorization.k8s.io", "Role", &obj, 0),
            cells!["r", "2024-01-01T00:00:00Z"]
        );
    }

    #[test]
    fn more_lists() {
        let items: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
        assert_eq!(list_with_more(&items), "a,b,c + 2 more...");
        assert_eq!(list_with_more(&[]), "<unset>");
    }

    /// Column names per kind as `kubectl get -o wide` shows them against upstream 1.33.
    #[test]
    fn kubectl_headers() {
        let cases: &[(&str, &str, &str)] = &[
            ("", "Pod", "NAME READY STATUS RESTARTS AGE IP NODE NOMINATED NODE READINESS GATES"),
            ("", "Namespace", "NAME STATUS AGE"),
            ("", "Service", "NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE SELECTOR"),
            ("", "Endpoints", "NAME ENDPOINTS AGE"),
            ("", "ConfigMap", "NAME DATA AGE"),
            ("", "Secret", "NAME TYPE DATA AGE"),
            ("", "ServiceAccount", "NAME SECRETS AGE"),
            ("", "Node", "NAME STATUS ROLES AGE VERSION INTERNAL-IP EXTERNAL-IP OS-IMAGE KERNEL-VERSION CONTAINER-RUNTIME"),
            ("", "Event", "LAST SEEN TYPE REASON OBJECT SUBOBJECT SOURCE MESSAGE FIRST SEEN COUNT NAME"),
            ("", "LimitRange", "NAME CREATED AT"),
            ("", "ResourceQuota", "NAME REQUEST LIMIT AGE"),
            ("", "PersistentVolume", "NAME CAPACITY ACCESS MODES RECLAIM POLICY STATUS CLAIM STORAGECLASS VOLUMEATTRIBUTESCLASS REASON AGE VOLUMEMODE"),
            ("", "PersistentVolumeClaim", "NAME STATUS VOLUME CAPACITY ACCESS MODES STORAGECLASS VOLUMEATTRIBUTESCLASS AGE VOLUMEMODE"),
            ("apps", "Deployment", "NAME READY UP-TO-DATE AVAILABLE AGE CONTAINERS IMAGES SELECTOR"),
            ("apps", "ReplicaSet", "NAME DESIRED CURRENT READY AGE CONTAINERS IMAGES SELECTOR"),
            ("apps", "DaemonSet", "NAME DESIRED CURRENT READY UP-TO-DATE AVAILABLE NODE SELECTOR AGE CONTAINERS IMAGES SELECTOR"),
            ("apps", "StatefulSet", "NAME READY AGE CONTAINERS IMAGES"),
            ("apps", "ControllerRevision", "NAME CONTROLLER REVISION AGE"),
            ("batch", "Job", "NAME STATUS COMPLETIONS DURATION AGE CONTAINERS IMAGES SELECTOR"),
            ("batch", "CronJob", "NAME SCHEDULE TIMEZONE SUSPEND ACTIVE LAST SCHEDULE AGE CONTAINERS IMAGES SELECTOR"),
            ("coordination.k8s.io", "Lease", "NAME HOLDER AGE"),
            ("discovery.k8s.io", "EndpointSlice", "NAME ADDRESSTYPE PORTS ENDPOINTS AGE"),
            ("networking.k8s.io", "Ingress", "NAME CLASS HOSTS ADDRESS PORTS AGE"),
            ("networking.k8s.io", "IngressClass", "NAME CONTROLLER PARAMETERS AGE"),
            ("networking.k8s.io", "NetworkPolicy", "NAME POD-SELECTOR AGE"),
            ("policy", "PodDisruptionBudget", "NAME MIN AVAILABLE MAX UNAVAILABLE ALLOWED DISRUPTIONS AGE"),
            ("rbac.authorization.k8s.io", "ClusterRole", "NAME CREATED AT"),
            ("rbac.authorization.k8s.io", "RoleBinding", "NAME ROLE AGE USERS GROUPS SERVICEACCOUNTS"),
            ("rbac.authorization.k8s.io", "ClusterRoleBinding", "NAME ROLE AGE USERS GROUPS SERVICEACCOUNTS"),
            ("storage.k8s.io", "StorageClass", "NAME PROVISIONER RECLAIMPOLICY VOLUMEBINDINGMODE ALLOWVOLUMEEXPANSION AGE"),
            ("scheduling.k8s.io", "PriorityClass", "NAME VALUE GLOBAL-DEFAULT AGE PREEMPTIONPOLICY"),
        ];
        for (group, kind, want) in cases {
            let got: Vec<String> = columns(group, kind)
                .iter()
                .map(|c| c.name.to_uppercase())
                .collect();
            assert_eq!(got.join(" "), *want, "{group} {kind}");
        }
        let wide_pod: Vec<&str> = columns("", "Pod")
            .iter()
            .filter(|c| c.priority == 1)
            .map(|c| c.name)
            .collect();
        assert_eq!(
            wide_pod,
            ["IP", "Node", "Nominated Node", "Readiness Gates"]
        );
    }
}
