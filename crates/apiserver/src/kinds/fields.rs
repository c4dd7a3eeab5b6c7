//! Field-selector fields per kind, as upstream's registries expose them (`ToSelectableFields`,
//! `AddFieldLabelConversionFuncs`): metadata.name and metadata.namespace everywhere, plus a few
//! per kind (pods' spec.nodeName and status.phase, events' involvedObject.*, ...).

use super::json::{at, int_at, str_at};
use super::table::pod_ip;
use serde_json::Value;

/// Where a selectable field's value comes from.
#[derive(Clone, Copy)]
enum Source {
    /// A string at a dotted path ("" when missing).
    Str(&'static str),
    /// An integer at a dotted path, in decimal (0 when missing).
    Int(&'static str),
    /// A boolean at a dotted path, `true`/`false` (false when missing).
    Bool(&'static str),
    /// Computed from the whole object.
    Custom(fn(&Value) -> String),
}

type Fields = &'static [(&'static str, Source)];

use Source::{Bool, Custom, Int, Str};

const POD: Fields = &[
    ("spec.nodeName", Str("spec.nodeName")),
    ("spec.restartPolicy", Str("spec.restartPolicy")),
    ("spec.schedulerName", Str("spec.schedulerName")),
    ("spec.serviceAccountName", Str("spec.serviceAccountName")),
    ("spec.hostNetwork", Bool("spec.hostNetwork")),
    ("status.phase", Str("status.phase")),
    ("status.podIP", Custom(|p| pod_ip(p).to_string())),
    // Accepted by upstream's label conversion but absent from its field set, so it only ever
    // matches the empty value.
    ("status.podIPs", Custom(|_| String::new())),
    ("status.nominatedNodeName", Str("status.nominatedNodeName")),
];

const CORE_EVENT: Fields = &[
    ("involvedObject.kind", Str("involvedObject.kind")),
    ("involvedObject.namespace", Str("involvedObject.namespace")),
    ("involvedObject.name", Str("involvedObject.name")),
    ("involvedObject.uid", Str("involvedObject.uid")),
    (
        "involvedObject.apiVersion",
        Str("involvedObject.apiVersion"),
    ),
    (
        "involvedObject.resourceVersion",
        Str("involvedObject.resourceVersion"),
    ),
    ("involvedObject.fieldPath", Str("involvedObject.fieldPath")),
    ("reason", Str("reason")),
    ("reportingComponent", Str("reportingComponent")),
    ("source", Custom(event_source)),
    ("type", Str("type")),
];

const EVENTS_V1_EVENT: Fields = &[
    ("regarding.kind", Str("regarding.kind")),
    ("regarding.namespace", Str("regarding.namespace")),
    ("regarding.name", Str("regarding.name")),
    ("regarding.uid", Str("regarding.uid")),
    ("regarding.apiVersion", Str("regarding.apiVersion")),
    (
        "regarding.resourceVersion",
        Str("regarding.resourceVersion"),
    ),
    ("regarding.fieldPath", Str("regarding.fieldPath")),
    ("reason", Str("reason")),
    ("reportingController", Str("reportingController")),
    ("type", Str("type")),
];

/// The per-kind fields of every kind that has some.
const KINDS: &[(&str, &str, Fields)] = &[
    ("", "Pod", POD),
    ("", "Event", CORE_EVENT),
    ("events.k8s.io", "Event", EVENTS_V1_EVENT),
    ("", "Secret", &[("type", Str("type"))]),
    ("", "Namespace", &[("status.phase", Str("status.phase"))]),
    (
        "",
        "Node",
        &[("spec.unschedulable", Bool("spec.unschedulable"))],
    ),
    (
        "",
        "Service",
        &[
            ("spec.clusterIP", Str("spec.clusterIP")),
            ("spec.type", Str("spec.type")),
        ],
    ),
    (
        "apps",
        "ReplicaSet",
        &[("status.replicas", Int("status.replicas"))],
    ),
    (
        "batch",
        "Job",
        &[("status.successful", Int("status.succeeded"))],
    ),
];

/// A core Event's `source`: the source component, else the reporting controller.
fn event_source(e: &Value) -> String {
    match str_at(e, "source.component") {
        "" => str_at(e, "reportingComponent").to_string(),
        c => c.to_string(),
    }
}

fn kind_fields(group: &str, kind: &str) -> Fields {
    KINDS
        .iter()
        .find(|(g, k, _)| *g == group && *k == kind)
        .map_or(&[], |(_, _, f)| f)
}

fn value_of(obj: &Value, source: Source) -> String {
    match source {
        Str(path) => str_at(obj, path).to_string(),
        Int(path) => int_at(obj, path).to_string(),
        Bool(path) => at(obj, path).as_bool().unwrap_or(false).to_string(),
        Custom(f) => f(obj),
    }
}

/// The selectable (field, value) pairs of `obj`.
pub fn selectable(group: &str, kind: &str, obj: &Value) -> Vec<(String, String)> {
    let meta = [
        ("metadata.name", Str("metadata.name")),
        ("metadata.namespace", Str("metadata.namespace")),
    ];
    meta.iter()
        .chain(kind_fields(group, kind))
        .map(|(field, source)| (field.to_string(), value_of(obj, *source)))
        .collect()
}

/// Whether a field selector may use `field` for this kind; upstream answers 400
/// `field label not supported: <field>` otherwise.
pub fn is_selectable(group: &str, kind: &str, field: &str) -> bool {
    matches!(field, "metadata.name" | "metadata.namespace")
        || kind_fields(group, kind).iter().any(|(f, _)| *f == field)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn get(fields: &[(String, String)], name: &str) -> Option<String> {
        fields
            .iter()
            .find(|(f, _)| f == name)
            .map(|(_, v)| v.clone())
    }

    #[test]
    fn pods() {
        let p = json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"nodeName": "n1", "restartPolicy": "Always"},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.5"}]}});
        let f = selectable("", "Pod", &p);
        assert_eq!(get(&f, "metadata.namespace").as_deref(), Some("ns"));
        assert_eq!(get(&f, "spec.nodeName").as_deref(), Some("n1"));
        assert_eq!(get(&f, "spec.hostNetwork").as_deref(), Some("false"));
        assert_eq!(get(&f, "status.podIP").as_deref(), Some("10.0.0.5"));
        assert_eq!(get(&f, "status.podIPs").as_deref(), Some(""));
        assert_eq!(get(&f, "spec.schedulerName").as_deref(), Some(""));
        assert!(is_selectable("", "Pod", "status.phase"));
        assert!(!is_selectable("", "Pod", "spec.containers"));
        assert!(!is_selectable("", "ConfigMap", "data"));
        assert!(is_selectable("", "ConfigMap", "metadata.name"));
    }

    #[test]
    fn events_both_groups() {
        let e = json!({"involvedObject": {"kind": "Pod", "name": "p"}, "reportingComponent": "kubelet", "type": "Warning"});
        let f = selectable("", "Event", &e);
        assert_eq!(get(&f, "involvedObject.kind").as_deref(), Some("Pod"));
        assert_eq!(get(&f, "source").as_deref(), Some("kubelet"));
        let v1 = json!({"regarding": {"kind": "Node"}, "reportingController": "kubelet"});
        let f = selectable("events.k8s.io", "Event", &v1);
        assert_eq!(get(&f, "regarding.kind").as_deref(), Some("Node"));
        assert!(is_selectable(
            "events.k8s.io",
            "Event",
            "reportingController"
        ));
        assert!(!is_selectable(
            "events.k8s.io",
            "Event",
            "involvedObject.kind"
        ));
    }

    #[test]
    fn other_kinds() {
        assert_eq!(
            get(
                &selectable("", "Node", &json!({"spec": {"unschedulable": true}})),
                "spec.unschedulable"
            )
            .as_deref(),
            Some("true")
        );
        assert_eq!(
            get(
                &selectable("batch", "Job", &json!({"status": {"succeeded": 2}})),
                "status.successful"
            )
            .as_deref(),
            Some("2")
        );
        assert_eq!(
            get(
                &selectable("apps", "ReplicaSet", &json!({})),
                "status.replicas"
            )
            .as_deref(),
            Some("0")
        );
        assert_eq!(
            get(
                &selectable("", "Secret", &json!({"type": "Opaque"})),
                "type"
            )
            .as_deref(),
            Some("Opaque")
        );
        assert_eq!(selectable("example.com", "Widget", &json!(null)).len(), 2);
    }
}
