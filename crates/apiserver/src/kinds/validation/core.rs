//! Validation of core/v1 storage and configuration kinds: config maps and secrets (keys, size,
//! `immutable`), persistent volumes and claims, endpoints.

use super::errors::{forbidden, go_value, invalid, quote, required, too_long};
use super::names::config_map_key;
use super::pod::{ip_address, name_errors, one_of, port_and_protocol};
use crate::kinds::json::{arr_at, at, obj_at, str_at, without};
use crate::kinds::Cause;
use base64::Engine;
use serde_json::Value;

/// Upstream's limit on a Secret's or ConfigMap's data.
const MAX_DATA_SIZE: usize = 1024 * 1024;

/// Keys of `data` (and `binaryData`), checked as config keys; returns the decoded total size.
fn data_keys(errs: &mut Vec<Cause>, obj: &Value, key: &str, base64_values: bool) -> usize {
    let mut size = 0;
    for (k, v) in obj_at(obj, key).into_iter().flatten() {
        name_errors(errs, &format!("{key}[{k}]"), k, config_map_key);
        let text = v.as_str().unwrap_or_default();
        size += if base64_values {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_or(text.len(), |b| b.len())
        } else {
            text.len()
        };
    }
    size
}

/// `immutable: true` freezes the data and the flag itself.
fn immutable_data(obj: &Value, old: Option<&Value>, keys: &[&str]) -> Vec<Cause> {
    let Some(old) = old.filter(|o| at(o, "immutable").as_bool() == Some(true)) else {
        return Vec::new();
    };
    const MSG: &str = "field is immutable when `immutable` is set";
    let mut errs = Vec::new();
    if at(obj, "immutable").as_bool() != Some(true) {
        errs.push(forbidden("immutable", MSG));
    }
    errs.extend(
        keys.iter()
            .filter(|k| at(obj, k) != at(old, k))
            .map(|k| forbidden(k, MSG)),
    );
    errs
}

pub fn config_map(obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut errs = Vec::new();
    let mut size = data_keys(&mut errs, obj, "data", false);
    size += data_keys(&mut errs, obj, "binaryData", true);
    let data = obj_at(obj, "data");
    for k in obj_at(obj, "binaryData").into_iter().flat_map(|m| m.keys()) {
        if data.is_some_and(|d| d.contains_key(k)) {
            errs.push(invalid(
                &format!("binaryData[{k}]"),
                &quote(k),
                "duplicate of key present in data",
            ));
        }
    }
    if size > MAX_DATA_SIZE {
        errs.push(too_long("", MAX_DATA_SIZE));
    }
    errs.extend(immutable_data(obj, old, &["data", "binaryData"]));
    errs
}

/// Keys each Secret type requires: (data keys all required, data keys of which one suffices,
/// required annotation).
fn secret_type_rules(
    type_: &str,
) -> (
    &'static [&'static str],
    &'static [&'static str],
    Option<&'static str>,
) {
    match type_ {
        "kubernetes.io/service-account-token" => {
            (&[], &[], Some("kubernetes.io/service-account.name"))
        }
        "kubernetes.io/dockercfg" => (&[".dockercfg"], &[], None),
        "kubernetes.io/dockerconfigjson" => (&[".dockerconfigjson"], &[], None),
        "kubernetes.io/basic-auth" => (&[], &["username", "password"], None),
        "kubernetes.io/ssh-auth" => (&["ssh-privatekey"], &[], None),
        "kubernetes.io/tls" => (&["tls.crt", "tls.key"], &[], None),
        _ => (&[], &[], None),
    }
}

pub fn secret(obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut errs = Vec::new();
    let size = data_keys(&mut errs, obj, "data", true);
    if size > MAX_DATA_SIZE {
        errs.push(too_long("data", MAX_DATA_SIZE));
    }
    let type_ = str_at(obj, "type");
    let (all, any, annotation) = secret_type_rules(type_);
    let data = obj_at(obj, "data");
    let has = |k: &str| data.is_some_and(|d| d.contains_key(k));
    errs.extend(
        all.iter()
            .filter(|k| !has(k))
            .map(|k| required(&format!("data[{k}]"), "")),
    );
    if !any.is_empty() && !any.iter().any(|k| has(k)) {
        errs.extend(any.iter().map(|k| required(&format!("data[{k}]"), "")));
    }
    if let Some(key) = annotation {
        let present = obj_at(obj, "metadata.annotations")
            .and_then(|a| a.get(key))
            .and_then(Value::as_str)
            .is_some_and(|v| !v.is_empty());
        if !present {
            errs.push(required(&format!("metadata.annotations[{key}]"), ""));
        }
    }
    if let Some(old) = old {
        let was = str_at(old, "type");
        if type_ != was {
            errs.push(invalid("type", &quote(type_), "field is immutable"));
        }
    }
    errs.extend(immutable_data(obj, old, &["data"]));
    errs
}

const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];

fn access_modes(errs: &mut Vec<Cause>, spec: &Value, required_detail: &str) {
    let modes = arr_at(spec, "accessModes");
    if modes.is_empty() {
        errs.push(required("spec.accessModes", required_detail));
    }
    for m in modes {
        let m = m.as_str().unwrap_or_default();
        if !ACCESS_MODES.contains(&m) {
            errs.push(super::errors::not_supported(
                "spec.accessModes",
                m,
                ACCESS_MODES,
            ));
        }
    }
}

/// Keys of a PersistentVolume spec that are not volume sources.
const PV_NON_SOURCES: &[&str] = &[
    "capacity",
    "accessModes",
    "claimRef",
    "persistentVolumeReclaimPolicy",
    "storageClassName",
    "mountOptions",
    "volumeMode",
    "nodeAffinity",
    "volumeAttributesClassName",
];

pub fn persistent_volume(obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut errs = Vec::new();
    let spec = at(obj, "spec");
    access_modes(&mut errs, spec, "");
    if obj_at(spec, "capacity").is_none_or(|c| c.is_empty()) {
        errs.push(required("spec.capacity", ""));
    }
    let reclaim = str_at(spec, "persistentVolumeReclaimPolicy");
    if !reclaim.is_empty() {
        one_of(
            &mut errs,
            "spec.persistentVolumeReclaimPolicy",
            reclaim,
            &["Delete", "Recycle", "Retain"],
        );
    }
    match obj_at(&volume_source(spec), "").map_or(0, |m| m.len()) {
        0 => errs.push(required("spec", "must specify a volume type")),
        1 => {}
        _ => errs.push(forbidden("spec", "may not specify more than 1 volume type")),
    }
    if let Some(old) = old {
        if volume_source(spec) != volume_source(at(old, "spec")) {
            errs.push(forbidden(
                "spec.persistentvolumesource",
                "spec.persistentvolumesource is immutable after creation",
            ));
        }
        if at(spec, "volumeMode") != at(old, "spec.volumeMode") {
            errs.push(invalid(
                "volumeMode",
                &go_value(at(spec, "volumeMode")),
                "field is immutable",
            ));
        }
    }
    errs
}

/// The volume source part of a PersistentVolume spec: everything but the non-source fields.
fn volume_source(spec: &Value) -> Value {
    without(spec, PV_NON_SOURCES)
}

pub fn pvc(obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut errs = Vec::new();
    let spec = at(obj, "spec");
    access_modes(&mut errs, spec, "at least 1 access mode is required");
    if at(spec, "resources.requests.storage").is_null() {
        errs.push(required("spec.resources[storage]", ""));
    }
    if let Some(old) = old {
        // Binding fills volumeName once; that is not a user change.
        let unbound = str_at(old, "spec.volumeName").is_empty();
        let strip = |v: &Value| {
            let mut spec = without(at(v, "spec"), &["volumeAttributesClassName"]);
            if unbound {
                spec = without(&spec, &["volumeName"]);
            }
            if let Some(r) = spec.get_mut("resources") {
                *r = without(r, &["requests"]);
            }
            spec
        };
        if strip(obj) != strip(old) {
            errs.push(forbidden("spec", "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"));
        }
    }
    errs
}

pub fn endpoints(obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
    let mut errs = Vec::new();
    for (i, ss) in arr_at(obj, "subsets").iter().enumerate() {
        for key in ["addresses", "notReadyAddresses"] {
            for (j, a) in arr_at(ss, key).iter().enumerate() {
                ip_address(
                    &mut errs,
                    &format!("subsets[{i}].{key}[{j}].ip"),
                    str_at(a, "ip"),
                );
            }
        }
        for (j, p) in arr_at(ss, "ports").iter().enumerate() {
            let path = format!("subsets[{i}].ports[{j}]");
            port_and_protocol(&mut errs, p, &path);
        }
    }
    errs
}

/// Finalizers a namespace may carry without a domain.
const STANDARD_FINALIZERS: &[&str] = &["kubernetes", "orphan", "foregroundDeletion"];

/// A namespace's `spec.finalizers`: qualified names, domain-less ones only if standard.
pub fn namespace(obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
    let mut errs = Vec::new();
    for f in arr_at(obj, "spec.finalizers")
        .iter()
        .map(|f| f.as_str().unwrap_or_default())
    {
        name_errors(
            &mut errs,
            "spec.finalizers",
            f,
            super::names::qualified_name,
        );
        if !f.contains('/') && !STANDARD_FINALIZERS.contains(&f) {
            errs.push(invalid(
                "spec.finalizers",
                &quote(f),
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::defaults;
    use crate::kinds::validation::fields_of as fields;
    use serde_json::json;

    fn defaulted(kind: &str, obj: Value) -> Value {
        let mut obj = obj;
        defaults::apply("", kind, &mut obj);
        obj
    }

    #[test]
    fn config_maps_and_secrets() {
        let cm = json!({"data": {"ok.key": "v", "bad key": "v"}, "binaryData": {"ok.key": "AA=="}});
        let errs = config_map(&cm, None);
        assert_eq!(fields(&errs), ["data[bad key]", "binaryData[ok.key]"]);
        assert!(errs[0]
            .message
            .starts_with("Invalid value: \"bad key\": a valid config key must consist of"));
        let big = json!({"data": {"k": "x".repeat(MAX_DATA_SIZE + 1)}});
        assert_eq!(
            config_map(&big, None)[0].message,
            "Too long: may not be more than 1048576 bytes"
        );
        let frozen = json!({"immutable": true, "data": {"a": "1"}});
        let changed = json!({"data": {"a": "2"}});
        assert_eq!(
            fields(&config_map(&changed, Some(&frozen))),
            ["immutable", "data"]
        );
        assert_eq!(config_map(&frozen, Some(&frozen)), []);

        let tls = defaulted(
            "Secret",
            json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "QQ=="}}),
        );
        assert_eq!(fields(&secret(&tls, None)), ["data[tls.key]"]);
        let sa = json!({"type": "kubernetes.io/service-account-token"});
        assert_eq!(
            fields(&secret(&sa, None)),
            ["metadata.annotations[kubernetes.io/service-account.name]"]
        );
        let basic = json!({"type": "kubernetes.io/basic-auth", "data": {}});
        assert_eq!(
            fields(&secret(&basic, None)),
            ["data[username]", "data[password]"]
        );
        let opaque = defaulted("Secret", json!({"data": {"a": "QQ=="}}));
        let retyped = json!({"type": "kubernetes.io/ssh-auth", "data": {"ssh-privatekey": "QQ=="}});
        assert_eq!(
            secret(&retyped, Some(&opaque))[0].message,
            "Invalid value: \"kubernetes.io/ssh-auth\": field is immutable"
        );
    }

    #[test]
    fn volumes_and_claims() {
        let pv = defaulted(
            "PersistentVolume",
            json!({"spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/d"}}}),
        );
        assert_eq!(persistent_volume(&pv, None), []);
        let mut moved = pv.clone();
        moved["spec"]["hostPath"]["path"] = json!("/e");
        moved["spec"]["persistentVolumeReclaimPolicy"] = json!("Delete");
        assert_eq!(
            fields(&persistent_volume(&moved, Some(&pv))),
            ["spec.persistentvolumesource"]
        );
        let empty = defaulted("PersistentVolume", json!({"spec": {}}));
        assert_eq!(
            fields(&persistent_volume(&empty, None)),
            ["spec.accessModes", "spec.capacity", "spec"]
        );
        let claim = defaulted(
            "PersistentVolumeClaim",
            json!({"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
        );
        assert_eq!(pvc(&claim, None), []);
        let mut grown = claim.clone();
        grown["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
        grown["spec"]["volumeName"] = json!("pv-1");
        assert_eq!(pvc(&grown, Some(&claim)), []);
        let mut remoded = claim.clone();
        remoded["spec"]["accessModes"] = json!(["ReadWriteMany"]);
        assert_eq!(fields(&pvc(&remoded, Some(&claim))), ["spec"]);
        let bare = defaulted("PersistentVolumeClaim", json!({"spec": {}}));
        let errs = pvc(&bare, None);
        assert_eq!(
            fields(&errs),
            ["spec.accessModes", "spec.resources[storage]"]
        );
        assert_eq!(
            errs[0].message,
            "Required value: at least 1 access mode is required"
        );
    }

    #[test]
    fn namespace_finalizers() {
        assert_eq!(
            namespace(
                &json!({"spec": {"finalizers": ["kubernetes", "example.com/cleanup"]}}),
                None
            ),
            []
        );
        assert_eq!(namespace(&json!({"spec": {"finalizers": ["cleanup"]}}), None)[0].message, "Invalid value: \"cleanup\": name is neither a standard finalizer name nor is it fully qualified");
    }

    #[test]
    fn endpoints_addresses() {
        let ep = defaulted(
            "Endpoints",
            json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "nope"}], "ports": [{"port": 99999}]}]}),
        );
        assert_eq!(
            fields(&endpoints(&ep, None)),
            ["subsets[0].addresses[1].ip", "subsets[0].ports[0].port"]
        );
    }
}
