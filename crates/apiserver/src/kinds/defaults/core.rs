//! Defaults of the core/v1 kinds other than pods (`pkg/apis/core/v1/defaults.go`, plus the
//! namespace strategy's `kubernetes` finalizer).

use crate::kinds::json::{each_obj_mut, obj_mut, set_default, set_default_str, str_at};
use crate::kinds::quantity::{canonicalize_list, canonicalize_lists};
use serde_json::{json, Map, Value};

/// The object under `key` of `map`, created if missing.
fn obj_mut_in<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
) -> Option<&'a mut Map<String, Value>> {
    map.entry(key).or_insert_with(|| json!({})).as_object_mut()
}

/// A Secret: type Opaque, and `stringData` folded into `data` (base64), which upstream does when
/// decoding so that only `data` is ever stored.
pub(super) fn secret(obj: &mut Value) {
    use base64::Engine;
    let Some(o) = obj.as_object_mut() else {
        return;
    };
    set_default_str(o, "type", "Opaque");
    if let Some(Value::Object(plain)) = o.remove("stringData") {
        if let Some(data) = obj_mut_in(o, "data") {
            for (k, v) in plain {
                let text = v.as_str().unwrap_or_default();
                data.insert(
                    k,
                    json!(base64::engine::general_purpose::STANDARD.encode(text)),
                );
            }
        }
    }
}

pub(super) fn namespace(obj: &mut Value) {
    let name = str_at(obj, "metadata.name").to_string();
    if !name.is_empty() {
        if let Some(labels) = obj_mut(obj, "metadata.labels") {
            labels.insert("kubernetes.io/metadata.name".into(), json!(name));
        }
    }
    if let Some(spec) = obj_mut(obj, "spec") {
        set_default(spec, "finalizers", json!(["kubernetes"]));
    }
    if let Some(status) = obj_mut(obj, "status") {
        set_default_str(status, "phase", "Active");
    }
}

pub(super) fn persistent_volume(obj: &mut Value) {
    canonicalize_lists(obj, &["/spec/capacity"]);
    if let Some(spec) = obj_mut(obj, "spec") {
        set_default_str(spec, "persistentVolumeReclaimPolicy", "Retain");
        set_default_str(spec, "volumeMode", "Filesystem");
        if let Some(Value::Object(host_path)) = spec.get_mut("hostPath") {
            set_default(host_path, "type", json!(""));
        }
    }
    pending(obj);
}

/// A PersistentVolumeClaim, also as embedded in stateful sets' volumeClaimTemplates.
pub(super) fn pvc(obj: &mut Value) {
    canonicalize_lists(
        obj,
        &[
            "/spec/resources/requests",
            "/spec/resources/limits",
            "/status/capacity",
            "/status/allocatedResources",
        ],
    );
    if let Some(spec) = obj_mut(obj, "spec") {
        set_default_str(spec, "volumeMode", "Filesystem");
    }
    pending(obj);
}

fn pending(obj: &mut Value) {
    if let Some(status) = obj_mut(obj, "status") {
        set_default_str(status, "phase", "Pending");
    }
}

pub(super) fn node(obj: &mut Value) {
    canonicalize_lists(obj, &["/status/capacity", "/status/allocatable"]);
    let capacity = obj
        .pointer("/status/capacity")
        .filter(|c| c.is_object())
        .cloned();
    if let (Some(capacity), Some(status)) = (capacity, obj_mut(obj, "status")) {
        set_default(status, "allocatable", capacity);
    }
}

pub(super) fn endpoints(obj: &mut Value) {
    if let Some(o) = obj.as_object_mut() {
        each_obj_mut(o, "subsets", |ss| {
            each_obj_mut(ss, "ports", |p| set_default_str(p, "protocol", "TCP"))
        });
    }
}

pub(super) fn resource_quota(obj: &mut Value) {
    canonicalize_lists(obj, &["/spec/hard", "/status/hard", "/status/used"]);
}

/// Container limit items: default limit from max, default request from the default limit or min.
pub(super) fn limit_range(obj: &mut Value) {
    let Some(spec) = obj_mut(obj, "spec") else {
        return;
    };
    each_obj_mut(spec, "limits", |item| {
        for key in [
            "max",
            "min",
            "default",
            "defaultRequest",
            "maxLimitRequestRatio",
        ] {
            canonicalize_list(item.get_mut(key));
        }
        if item.get("type").and_then(Value::as_str) != Some("Container") {
            return;
        }
        for (from, to) in [
            ("max", "default"),
            ("default", "defaultRequest"),
            ("min", "defaultRequest"),
        ] {
            let Some(Value::Object(source)) = item.get(from).cloned() else {
                continue;
            };
            if let Some(target) = obj_mut_in(item, to) {
                for (k, v) in source {
                    target.entry(k).or_insert(v);
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_secrets_volumes() {
        let mut ns = json!({"metadata": {"name": "dev"}});
        namespace(&mut ns);
        assert_eq!(
            ns,
            json!({"metadata": {"name": "dev", "labels": {"kubernetes.io/metadata.name": "dev"}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
        );
        let mut s =
            json!({"data": {"a": "MQ==", "b": "Mg=="}, "stringData": {"b": "two", "c": "3"}});
        secret(&mut s);
        assert_eq!(
            s,
            json!({"type": "Opaque", "data": {"a": "MQ==", "b": "dHdv", "c": "Mw=="}})
        );
        let mut pv = json!({"spec": {"hostPath": {"path": "/x"}}});
        persistent_volume(&mut pv);
        assert_eq!(
            pv,
            json!({"spec": {"hostPath": {"path": "/x", "type": ""}, "persistentVolumeReclaimPolicy": "Retain",
            "volumeMode": "Filesystem"}, "status": {"phase": "Pending"}})
        );
        let mut n = json!({"status": {"capacity": {"cpu": 2, "memory": "2048Mi"}}});
        node(&mut n);
        assert_eq!(
            n["status"]["allocatable"],
            json!({"cpu": "2", "memory": "2Gi"})
        );
        let mut q = json!({"spec": {"hard": {"requests.cpu": "1000m"}}});
        resource_quota(&mut q);
        assert_eq!(q["spec"]["hard"]["requests.cpu"], "1");
        let mut ep = json!({"subsets": [{"ports": [{"port": 80}]}]});
        endpoints(&mut ep);
        assert_eq!(ep["subsets"][0]["ports"][0]["protocol"], "TCP");
    }

    #[test]
    fn limit_ranges() {
        let mut lr = json!({"spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "1Mi"}}, {"type": "Pod", "max": {"cpu": "4"}}]}});
        limit_range(&mut lr);
        assert_eq!(
            lr["spec"]["limits"][0],
            json!({"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "1Mi"},
            "default": {"cpu": "2"}, "defaultRequest": {"cpu": "2", "memory": "1Mi"}})
        );
        assert_eq!(
            lr["spec"]["limits"][1],
            json!({"type": "Pod", "max": {"cpu": "4"}})
        );
    }
}
