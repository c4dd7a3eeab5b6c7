//! ObjectMeta validation common to every kind (`ValidateObjectMeta`, `ValidateObjectMetaUpdate`):
//! name or generateName per the kind's name rule, namespace, labels and annotations.

use super::errors::{forbidden, invalid, quote, required, too_long};
use super::names::{dns1123_label, label_value, mask_trailing_dash, qualified_name};
use crate::kinds::json::{arr_at, at, str_at, string_map};
use crate::kinds::Cause;
use serde_json::Value;

/// A kind's rule for object names: the messages for a bad name.
pub type NameRule = fn(&str) -> Vec<String>;

/// Upstream's limit on the total size of an object's annotations.
const TOTAL_ANNOTATION_SIZE: usize = 256 * 1024;

/// Validates `metadata` of a new object. `namespaced` tells whether the kind lives in namespaces.
pub fn object_meta(obj: &Value, name_rule: NameRule, namespaced: bool) -> Vec<Cause> {
    let mut errs = Vec::new();
    let (name, generate) = (
        str_at(obj, "metadata.name"),
        str_at(obj, "metadata.generateName"),
    );
    if !generate.is_empty() {
        for msg in name_rule(&mask_trailing_dash(generate)) {
            errs.push(invalid("metadata.generateName", &quote(generate), &msg));
        }
    }
    if name.is_empty() {
        errs.push(required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else {
        errs.extend(
            name_rule(name)
                .iter()
                .map(|m| invalid("metadata.name", &quote(name), m)),
        );
    }
    let namespace = str_at(obj, "metadata.namespace");
    match (namespaced, namespace.is_empty()) {
        (true, true) => errs.push(required("metadata.namespace", "")),
        (true, false) => errs.extend(
            dns1123_label(namespace)
                .iter()
                .map(|m| invalid("metadata.namespace", &quote(namespace), m)),
        ),
        (false, false) => errs.push(forbidden("metadata.namespace", "not allowed on this type")),
        (false, true) => {}
    }
    errs.extend(labels(at(obj, "metadata.labels"), "metadata.labels"));
    errs.extend(annotations(
        at(obj, "metadata.annotations"),
        "metadata.annotations",
    ));
    owner_references(&mut errs, at(obj, "metadata.ownerReferences"));
    finalizers(&mut errs, at(obj, "metadata.finalizers"));
    errs
}

/// `ValidateOwnerReferences`: complete references (reported without an index, as upstream does)
/// and at most one controller.
fn owner_references(errs: &mut Vec<Cause>, refs: &Value) {
    const PATH: &str = "metadata.ownerReferences";
    let mut controller: Option<String> = None;
    for r in refs.as_array().map(Vec::as_slice).unwrap_or_default() {
        let api_version = str_at(r, "apiVersion");
        let version = api_version.rsplit('/').next().unwrap_or_default();
        for (key, value, empty) in [
            ("apiVersion", api_version, version.is_empty()),
            ("kind", str_at(r, "kind"), str_at(r, "kind").is_empty()),
            ("name", str_at(r, "name"), str_at(r, "name").is_empty()),
            ("uid", str_at(r, "uid"), str_at(r, "uid").is_empty()),
        ] {
            if empty {
                let detail = if key == "apiVersion" {
                    "version must not be empty"
                } else {
                    "must not be empty"
                };
                errs.push(invalid(&format!("{PATH}.{key}"), &quote(value), detail));
            }
        }
        if at(r, "controller").as_bool() == Some(true) {
            let this = format!("{}/{}", str_at(r, "kind"), str_at(r, "name"));
            match &controller {
                Some(first) => errs.push(invalid(
                    PATH,
                    &refs.to_string(),
                    &format!("Only one reference can have Controller set to true. Found \"true\" in references for {first} and {this}"),
                )),
                None => controller = Some(this),
            }
        }
    }
}

/// `ValidateFinalizers`: qualified names, and not both orphan and foreground deletion.
fn finalizers(errs: &mut Vec<Cause>, list: &Value) {
    const PATH: &str = "metadata.finalizers";
    let names: Vec<&str> = list
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for name in &names {
        errs.extend(
            qualified_name(name)
                .iter()
                .map(|m| invalid(PATH, &quote(name), m)),
        );
    }
    if names.contains(&"orphan") && names.contains(&"foregroundDeletion") {
        errs.push(invalid(
            PATH,
            &list.to_string(),
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
}

/// `ValidateLabels`: keys are qualified names, values label values; both reported at `field`.
pub fn labels(map: &Value, field: &str) -> Vec<Cause> {
    let mut errs = Vec::new();
    for (k, v) in string_map(map) {
        errs.extend(
            qualified_name(k)
                .iter()
                .map(|m| invalid(field, &quote(k), m)),
        );
        errs.extend(label_value(v).iter().map(|m| invalid(field, &quote(v), m)));
    }
    errs
}

/// `ValidateLabelSelector`: label syntax of matchLabels, and operators, keys and values of
/// matchExpressions.
pub fn label_selector(errs: &mut Vec<Cause>, sel: &Value, path: &str) {
    errs.extend(labels(&sel["matchLabels"], &format!("{path}.matchLabels")));
    for (i, e) in arr_at(sel, "matchExpressions").iter().enumerate() {
        let expr_path = format!("{path}.matchExpressions[{i}]");
        let (op, values) = (str_at(e, "operator"), arr_at(e, "values"));
        let values_path = format!("{expr_path}.values");
        match op {
            "In" | "NotIn" if values.is_empty() => errs.push(required(
                &values_path,
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(forbidden(
                &values_path,
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            _ => errs.push(invalid(
                &format!("{expr_path}.operator"),
                &quote(op),
                "not a valid selector operator",
            )),
        }
        let key = str_at(e, "key");
        errs.extend(
            qualified_name(key)
                .iter()
                .map(|m| invalid(&format!("{expr_path}.key"), &quote(key), m)),
        );
        for (j, v) in values.iter().enumerate() {
            let v = v.as_str().unwrap_or_default();
            errs.extend(
                label_value(v)
                    .iter()
                    .map(|m| invalid(&format!("{values_path}[{j}]"), &quote(v), m)),
            );
        }
    }
}

/// `ValidateAnnotations`: keys are case-insensitive qualified names, the total at most 256 KiB.
pub fn annotations(map: &Value, field: &str) -> Vec<Cause> {
    let mut errs = Vec::new();
    let pairs = string_map(map);
    for (k, _) in &pairs {
        errs.extend(
            qualified_name(&k.to_lowercase())
                .iter()
                .map(|m| invalid(field, &quote(k), m)),
        );
    }
    if pairs.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() > TOTAL_ANNOTATION_SIZE {
        errs.push(too_long(field, TOTAL_ANNOTATION_SIZE));
    }
    errs
}

/// `ValidateObjectMetaUpdate`: name and namespace never change.
pub fn object_meta_update(obj: &Value, old: &Value) -> Vec<Cause> {
    ["name", "namespace"]
        .iter()
        .filter_map(|key| {
            let path = format!("metadata.{key}");
            let (new, was) = (str_at(obj, &path), str_at(old, &path));
            (new != was).then(|| invalid(&path, &quote(new), "field is immutable"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::validation::names::dns1123_subdomain;
    use serde_json::json;

    fn fields(errs: &[Cause]) -> Vec<(&str, &str)> {
        errs.iter()
            .map(|c| (c.field.as_str(), c.reason.as_str()))
            .collect()
    }

    #[test]
    fn names_namespaces_generate_name() {
        let ok = json!({"metadata": {"name": "web", "namespace": "default"}});
        assert!(object_meta(&ok, dns1123_subdomain, true).is_empty());
        let generated = json!({"metadata": {"generateName": "web-", "namespace": "default"}});
        assert_eq!(
            fields(&object_meta(&generated, dns1123_subdomain, true)),
            [("metadata.name", "FieldValueRequired")]
        );
        let bad = json!({"metadata": {"name": "Web", "namespace": "x"}});
        let errs = object_meta(&bad, dns1123_subdomain, false);
        assert_eq!(
            fields(&errs),
            [
                ("metadata.name", "FieldValueInvalid"),
                ("metadata.namespace", "FieldValueForbidden")
            ]
        );
        assert!(errs[0]
            .message
            .starts_with("Invalid value: \"Web\": a lowercase RFC 1123 subdomain"));
        assert_eq!(
            fields(&object_meta(
                &json!({"metadata": {"name": "a"}}),
                dns1123_subdomain,
                true
            )),
            [("metadata.namespace", "FieldValueRequired")]
        );
        assert_eq!(
            object_meta(&json!(7), dns1123_subdomain, false)[0].message,
            "Required value: name or generateName is required"
        );
    }

    #[test]
    fn labels_and_annotations() {
        let obj = json!({"metadata": {"name": "a", "labels": {"ok": "v", "bad key": "x", "k": "bad value!"},
            "annotations": {"Example.com/Note": "fine", "big": "x".repeat(TOTAL_ANNOTATION_SIZE)}}});
        let errs = object_meta(&obj, dns1123_subdomain, false);
        assert_eq!(
            fields(&errs),
            [
                ("metadata.labels", "FieldValueInvalid"),
                ("metadata.labels", "FieldValueInvalid"),
                ("metadata.annotations", "FieldValueTooLong")
            ]
        );
        assert!(errs[0]
            .message
            .starts_with("Invalid value: \"bad key\": name part must consist of"));
        assert!(errs[1]
            .message
            .starts_with("Invalid value: \"bad value!\": a valid label must be"));
    }

    #[test]
    fn owners_and_finalizers() {
        let obj = json!({"metadata": {"name": "a", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u", "controller": true},
            {"apiVersion": "apps/", "kind": "", "name": "x", "uid": "v", "controller": true}],
            "finalizers": ["kubernetes.io/pv-protection", "orphan", "foregroundDeletion", "bad/name/x"]}});
        let errs = object_meta(&obj, dns1123_subdomain, false);
        assert_eq!(
            fields(&errs).iter().map(|(f, _)| *f).collect::<Vec<_>>(),
            [
                "metadata.ownerReferences.apiVersion",
                "metadata.ownerReferences.kind",
                "metadata.ownerReferences",
                "metadata.finalizers",
                "metadata.finalizers"
            ]
        );
        assert_eq!(
            errs[0].message,
            "Invalid value: \"apps/\": version must not be empty"
        );
        assert!(errs[2]
            .message
            .ends_with("Found \"true\" in references for ReplicaSet/rs and /x"));
    }

    #[test]
    fn label_selectors() {
        let mut errs = Vec::new();
        let sel = json!({"matchLabels": {"app": "web"}, "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["a", "-bad"]}, {"key": "x", "operator": "Exists", "values": ["y"]},
            {"key": "z", "operator": "Near"}, {"key": "", "operator": "In"}]});
        label_selector(&mut errs, &sel, "spec.selector");
        assert_eq!(
            fields(&errs).iter().map(|(f, _)| *f).collect::<Vec<_>>(),
            [
                "spec.selector.matchExpressions[0].values[1]",
                "spec.selector.matchExpressions[1].values",
                "spec.selector.matchExpressions[2].operator",
                "spec.selector.matchExpressions[3].values",
                "spec.selector.matchExpressions[3].key",
                "spec.selector.matchExpressions[3].key"
            ]
        );
    }

    #[test]
    fn immutable_name() {
        let errs = object_meta_update(
            &json!({"metadata": {"name": "b"}}),
            &json!({"metadata": {"name": "a"}}),
        );
        assert_eq!(errs[0].message, "Invalid value: \"b\": field is immutable");
    }
}
