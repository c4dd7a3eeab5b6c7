//! One-of unions: a volume has exactly one source, a probe or lifecycle hook exactly one handler.

use super::errors::{forbidden, invalid, required};
use crate::kinds::json::{at, obj_at};
use crate::kinds::Cause;
use serde_json::Value;

/// Volume sources in the order upstream's `validateVolumeSource` checks them.
const VOLUME_SOURCES: &[&str] = &[
    "hostPath",
    "emptyDir",
    "gitRepo",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "flocker",
    "persistentVolumeClaim",
    "rbd",
    "quobyte",
    "cinder",
    "cephfs",
    "downwardAPI",
    "fc",
    "azureFile",
    "vsphereVolume",
    "azureDisk",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "configMap",
    "projected",
    "csi",
    "ephemeral",
    "image",
];

const HANDLERS: &[&str] = &["exec", "httpGet", "tcpSocket", "grpc"];

/// The union members of `obj` present (non-null), in `order`.
fn present<'a>(obj: &Value, order: &[&'a str]) -> Vec<&'a str> {
    let map = obj_at(obj, "");
    order
        .iter()
        .copied()
        .filter(|k| map.and_then(|m| m.get(*k)).is_some_and(|v| !v.is_null()))
        .collect()
}

/// At most (and, unless `optional`, at least) one member; the second one is reported.
fn exactly_one(
    errs: &mut Vec<Cause>,
    obj: &Value,
    path: &str,
    order: &[&str],
    kind: &str,
    optional: bool,
) {
    match present(obj, order).as_slice() {
        [] if !optional => errs.push(required(path, &format!("must specify a {kind}"))),
        [_, second, ..] => errs.push(forbidden(
            &format!("{path}.{second}"),
            &format!("may not specify more than 1 {kind}"),
        )),
        _ => {}
    }
}

/// A pod volume. Defaulting gives source-less volumes an emptyDir, so only excess is reported.
pub fn volume(errs: &mut Vec<Cause>, v: &Value, path: &str) {
    exactly_one(errs, v, path, VOLUME_SOURCES, "volume type", true);
}

/// A container's probes and lifecycle hooks.
pub fn handlers(errs: &mut Vec<Cause>, c: &Value, path: &str) {
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let p = at(c, probe);
        if p.is_null() {
            continue;
        }
        let probe_path = format!("{path}.{probe}");
        exactly_one(errs, p, &probe_path, HANDLERS, "handler type", false);
        // Only readiness may need several successes in a row.
        let threshold = at(p, "successThreshold").as_i64();
        if probe != "readinessProbe" && threshold.is_some_and(|t| t != 1) {
            errs.push(invalid(
                &format!("{probe_path}.successThreshold"),
                &threshold.unwrap_or(0).to_string(),
                "must be 1",
            ));
        }
    }
    for hook in ["postStart", "preStop"] {
        let h = at(c, &format!("lifecycle.{hook}"));
        if !h.is_null() {
            exactly_one(
                errs,
                h,
                &format!("{path}.lifecycle.{hook}"),
                &["exec", "httpGet", "tcpSocket", "sleep"],
                "handler type",
                false,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::validation::fields_of as fields;
    use serde_json::json;

    #[test]
    fn volumes_and_probes() {
        let mut errs = Vec::new();
        volume(
            &mut errs,
            &json!({"name": "v", "emptyDir": {}, "configMap": {"name": "c"}}),
            "spec.volumes[0]",
        );
        assert_eq!(fields(&errs), ["spec.volumes[0].configMap"]);
        assert_eq!(
            errs[0].message,
            "Forbidden: may not specify more than 1 volume type"
        );
        let mut errs = Vec::new();
        let c = json!({"livenessProbe": {"successThreshold": 2, "exec": {"command": ["true"]}}, "readinessProbe": {},
            "startupProbe": {"httpGet": {}, "tcpSocket": {}}, "lifecycle": {"preStop": {"sleep": {"seconds": 1}}}});
        handlers(&mut errs, &c, "c");
        assert_eq!(
            fields(&errs),
            [
                "c.livenessProbe.successThreshold",
                "c.readinessProbe",
                "c.startupProbe.tcpSocket"
            ]
        );
        assert_eq!(
            errs[1].message,
            "Required value: must specify a handler type"
        );
    }
}
