//! Which PersistentVolume a claim gets (upstream's `findMatchingVolume`): a volume pre-bound to
//! the claim if there is one, else the smallest Available volume of the claim's class and
//! volume mode that offers every access mode the claim asks for, at least its requested size,
//! and matches its selector.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::ResourceExt;

use component_base::label_selector;
use component_base::quantity::value;

/// Legacy annotation a claim's class may still be given in.
pub const BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

/// The claim's class; `""` for none.
pub fn claim_class(claim: &PersistentVolumeClaim) -> String {
    if let Some(class) = claim.annotations().get(BETA_STORAGE_CLASS) {
        return class.clone();
    }
    claim
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
        .unwrap_or_default()
}

pub fn volume_class(pv: &PersistentVolume) -> String {
    if let Some(class) = pv.annotations().get(BETA_STORAGE_CLASS) {
        return class.clone();
    }
    pv.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
        .unwrap_or_default()
}

/// The claim's requested storage in bytes.
pub fn requested(claim: &PersistentVolumeClaim) -> i64 {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(value)
        .unwrap_or(0)
}

pub fn capacity(pv: &PersistentVolume) -> i64 {
    pv.spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .map(value)
        .unwrap_or(0)
}

/// Whether `pv`'s claimRef names `claim` (by uid when the ref has one).
pub fn is_pre_bound_to(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    r.name.as_deref() == Some(claim.name_any().as_str())
        && r.namespace.as_deref() == claim.namespace().as_deref()
        && match r.uid.as_deref() {
            None | Some("") => true,
            uid => uid == claim.uid().as_deref(),
        }
}

/// Whether the volume can serve the claim, whoever it is bound to.
pub fn satisfies(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some(spec) = pv.spec.as_ref() else {
        return false;
    };
    let claim_spec = claim.spec.clone().unwrap_or_default();
    let mode = |m: Option<&String>| m.cloned().unwrap_or_else(|| "Filesystem".into());
    if mode(spec.volume_mode.as_ref()) != mode(claim_spec.volume_mode.as_ref()) {
        return false;
    }
    if volume_class(pv) != claim_class(claim) {
        return false;
    }
    let offered = spec.access_modes.clone().unwrap_or_default();
    let wanted = claim_spec.access_modes.unwrap_or_default();
    if !wanted.iter().all(|m| offered.contains(m)) {
        return false;
    }
    if capacity(pv) < requested(claim) {
        return false;
    }
    match &claim_spec.selector {
        Some(selector) => label_selector::matches(selector, pv.metadata.labels.as_ref()),
        None => true,
    }
}

/// The volume the claim should bind to, if any.
pub fn find<'a>(
    claim: &PersistentVolumeClaim,
    volumes: impl IntoIterator<Item = &'a PersistentVolume>,
) -> Option<&'a PersistentVolume> {
    let mut best: Option<&PersistentVolume> = None;
    for pv in volumes {
        if pv.metadata.deletion_timestamp.is_some() || !satisfies(pv, claim) {
            continue;
        }
        let claim_ref = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
        if claim_ref.is_some() {
            if is_pre_bound_to(pv, claim) {
                return Some(pv);
            }
            continue;
        }
        let phase = pv.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Released" | "Failed")) {
            continue;
        }
        if best.is_none_or(|b| capacity(pv) < capacity(b)) {
            best = Some(pv);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pv(name: &str, size: &str, class: &str, labels: serde_json::Value) -> PersistentVolume {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce", "ReadOnlyMany"],
                     "storageClassName": class, "hostPath": {"path": "/x"}},
            "status": {"phase": "Available"}
        }))
        .unwrap()
    }

    fn claim(size: &str, class: Option<&str>, extra: serde_json::Value) -> PersistentVolumeClaim {
        let mut c = json!({
            "metadata": {"name": "c", "namespace": "ns", "uid": "u1"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
        });
        if let Some(class) = class {
            c["spec"]["storageClassName"] = json!(class);
        }
        for (k, v) in extra.as_object().unwrap() {
            c["spec"][k] = v.clone();
        }
        serde_json::from_value(c).unwrap()
    }

    #[test]
    fn smallest_fitting_volume_of_the_class() {
        let vols = [
            pv("big", "10Gi", "", json!({})),
            pv("small", "1Gi", "", json!({})),
            pv("tiny", "100Mi", "", json!({})),
            pv("other-class", "1Gi", "fast", json!({})),
        ];
        assert_eq!(
            find(&claim("500Mi", None, json!({})), &vols)
                .unwrap()
                .name_any(),
            "small"
        );
        assert_eq!(
            find(&claim("500Mi", Some("fast"), json!({})), &vols)
                .unwrap()
                .name_any(),
            "other-class"
        );
        assert!(find(&claim("20Gi", None, json!({})), &vols).is_none());
        let rwx = claim("1Gi", None, json!({"accessModes": ["ReadWriteMany"]}));
        assert!(find(&rwx, &vols).is_none());
    }

    #[test]
    fn selector_and_pre_binding() {
        let mut vols = vec![
            pv("a", "1Gi", "", json!({"tier": "gold"})),
            pv("b", "1Gi", "", json!({"tier": "silver"})),
        ];
        let gold = claim(
            "1Gi",
            None,
            json!({"selector": {"matchLabels": {"tier": "gold"}}}),
        );
        assert_eq!(find(&gold, &vols).unwrap().name_any(), "a");
        // b is pre-bound to the claim: it wins; a volume pre-bound to another claim is skipped.
        vols[1].spec.as_mut().unwrap().claim_ref =
            Some(serde_json::from_value(json!({"namespace": "ns", "name": "c"})).unwrap());
        vols[0].spec.as_mut().unwrap().claim_ref =
            Some(serde_json::from_value(json!({"namespace": "ns", "name": "other"})).unwrap());
        assert_eq!(
            find(&claim("1Gi", None, json!({})), &vols)
                .unwrap()
                .name_any(),
            "b"
        );
    }
}
