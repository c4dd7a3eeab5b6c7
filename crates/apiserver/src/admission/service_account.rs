//! Upstream's `ServiceAccount` admission plugin (`plugin/pkg/admission/serviceaccount`): a pod
//! created without `serviceAccountName` gets `default`; a pod whose service account does not
//! exist is refused; unless the pod or its service account opts out
//! (`automountServiceAccountToken: false`), every container and init container mounts the
//! projected `kube-api-access-XXXXX` volume (a bound token, the cluster CA, the namespace) at
//! /var/run/secrets/kubernetes.io/serviceaccount; the service account's imagePullSecrets are
//! copied to a pod that names none. Mirror pods are not changed, and may reference neither a
//! service account nor secrets.

use async_trait::async_trait;
use serde_json::{json, Value};

use super::{Attributes, Operation, Plugin};
use crate::authorization::node_graph::{visit_pod_refs, Vertex};
use crate::registry::Registry;
use crate::resources;
use crate::status::{ApiError, ApiResult};

pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
/// Upstream's `DefaultAPITokenMountPath`.
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Upstream's `ServiceAccountVolumeName`; the volume is this plus `-` and five random characters.
pub const VOLUME_NAME: &str = "kube-api-access";
/// Upstream's `WarnOnlyBoundTokenExpirationSeconds`: an hour and seven seconds, so the kubelet's
/// refresh can be told from a client that never refreshes.
pub const TOKEN_EXPIRATION_SECONDS: i64 = 3607;
/// Upstream's `MirrorPodAnnotationKey`.
pub const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// How often the `default` service account is looked for before the pod is refused: upstream
/// waits for the controller that creates it (10 tries, 100-200 ms apart); krust waits longer (25
/// tries, up to 5 s) because its controller manager starts in the same process just after the
/// API server, so a pod created right after `krust status --wait-ready` may come first.
const DEFAULT_ATTEMPTS: usize = 25;

pub struct ServiceAccount;

#[async_trait]
impl Plugin for ServiceAccount {
    fn name(&self) -> &'static str {
        "ServiceAccount"
    }

    async fn admit(
        &self,
        attrs: &Attributes<'_>,
        object: Option<&mut Value>,
        reg: &Registry,
    ) -> ApiResult<()> {
        if !attrs.is("", "pods") || !attrs.subresource.is_empty() {
            return Ok(());
        }
        let (Operation::Create, Some(pod)) = (attrs.operation, object) else {
            return Ok(());
        };
        if is_mirror_pod(pod) {
            return validate_mirror_pod(attrs, pod);
        }
        let spec = &mut pod["spec"];
        if spec["serviceAccountName"].as_str().unwrap_or("").is_empty() {
            spec["serviceAccountName"] = json!(DEFAULT_SERVICE_ACCOUNT);
        }
        let name = spec["serviceAccountName"]
            .as_str()
            .unwrap_or(DEFAULT_SERVICE_ACCOUNT)
            .to_string();
        let sa = match service_account(reg, attrs.namespace, &name).await {
            Ok(sa) => sa,
            Err(e) => {
                let why = format!(
                    "error looking up service account {}/{name}: {e}",
                    attrs.namespace
                );
                return Err(attrs.forbidden(Some(pod), why));
            }
        };
        if should_automount(&sa, pod) {
            mount_token(pod);
        }
        let pull = &pod["spec"]["imagePullSecrets"];
        if pull.as_array().is_none_or(Vec::is_empty) {
            let from_sa: Vec<Value> = sa["imagePullSecrets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| json!({"name": s["name"].clone()}))
                .collect();
            if !from_sa.is_empty() {
                pod["spec"]["imagePullSecrets"] = json!(from_sa);
            }
        }
        // What was added is defaulted as the rest was (the deprecated `serviceAccount` twin).
        crate::kinds::apply_defaults("", "Pod", pod);
        Ok(())
    }
}

pub fn is_mirror_pod(pod: &Value) -> bool {
    pod["metadata"]["annotations"]
        .get(MIRROR_POD_ANNOTATION)
        .is_some()
}

/// Upstream's `Validate` for mirror pods: the kubelet must not use one to reach what only the
/// API server's pods may.
fn validate_mirror_pod(attrs: &Attributes<'_>, pod: &Value) -> ApiResult<()> {
    if !pod["spec"]["serviceAccountName"]
        .as_str()
        .unwrap_or("")
        .is_empty()
    {
        return Err(attrs.forbidden(Some(pod), "a mirror pod may not reference service accounts"));
    }
    let mut secrets = false;
    visit_pod_refs(pod, |vertex, _| secrets |= vertex == Vertex::Secret);
    if secrets {
        return Err(attrs.forbidden(Some(pod), "a mirror pod may not reference secrets"));
    }
    let projects_token = pod["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|v| v["projected"]["sources"].as_array().into_iter().flatten())
        .any(|s| s.get("serviceAccountToken").is_some());
    if projects_token {
        return Err(attrs.forbidden(
            Some(pod),
            "a mirror pod may not use ServiceAccountToken volume projections",
        ));
    }
    Ok(())
}

/// The service account, or upstream's error text (`serviceaccount "x" not found`).
async fn service_account(reg: &Registry, ns: &str, name: &str) -> Result<Value, String> {
    let res = resources::find("", "v1", "serviceaccounts").ok_or("no serviceaccounts resource")?;
    let attempts = if name == DEFAULT_SERVICE_ACCOUNT {
        DEFAULT_ATTEMPTS
    } else {
        1
    };
    let pause = std::time::Duration::from_millis(100 + rand::random_range(0..100));
    for attempt in 0..attempts {
        if attempt > 0 {
            tokio::time::sleep(pause).await;
        }
        match reg.get(res, Some(ns), name).await {
            Ok(sa) => return Ok(sa),
            Err(ApiError::NotFound(_)) => continue,
            Err(e) => return Err(e.to_string()),
        }
    }
    Err(format!("serviceaccount {name:?} not found"))
}

/// The pod's `automountServiceAccountToken` wins, then the service account's; default true.
fn should_automount(sa: &Value, pod: &Value) -> bool {
    pod["spec"]["automountServiceAccountToken"]
        .as_bool()
        .or_else(|| sa["automountServiceAccountToken"].as_bool())
        .unwrap_or(true)
}

/// Upstream's `TokenVolumeSource`.
pub fn token_volume_source() -> Value {
    json!({
        "defaultMode": 420,
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ],
    })
}

/// Upstream's `mountServiceAccountToken`: reuses an existing `kube-api-access-*` volume, mounts
/// it read-only in every init container and container that has nothing at the mount path, and
/// adds the volume if one of them needed it.
fn mount_token(pod: &mut Value) {
    let existing = pod["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str())
        .find(|n| n.starts_with(&format!("{VOLUME_NAME}-")))
        .map(String::from);
    let volume = existing
        .clone()
        .unwrap_or_else(|| format!("{VOLUME_NAME}-{}", crate::metadata::random_suffix()));
    let mount = json!({"name": volume, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
    let mut needed = false;
    for field in ["initContainers", "containers"] {
        let Some(containers) = pod["spec"][field].as_array_mut() else {
            continue;
        };
        for c in containers {
            let mounted = c["volumeMounts"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|m| m["mountPath"] == TOKEN_MOUNT_PATH);
            if mounted {
                continue;
            }
            match c["volumeMounts"].as_array_mut() {
                Some(mounts) => mounts.push(mount.clone()),
                None => c["volumeMounts"] = json!([mount.clone()]),
            }
            needed = true;
        }
    }
    if existing.is_none() && needed {
        let vol = json!({"name": volume, "projected": token_volume_source()});
        match pod["spec"]["volumes"].as_array_mut() {
            Some(volumes) => volumes.push(vol),
            None => pod["spec"]["volumes"] = json!([vol]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_in_every_container_once() {
        let mut pod = json!({"spec": {
            "initContainers": [{"name": "i"}],
            "containers": [{"name": "a"}, {"name": "b", "volumeMounts": [{"name": "own", "mountPath": TOKEN_MOUNT_PATH}]}],
        }});
        mount_token(&mut pod);
        let volumes = pod["spec"]["volumes"].as_array().unwrap();
        assert_eq!(volumes.len(), 1);
        let name = volumes[0]["name"].as_str().unwrap();
        assert!(
            name.starts_with("kube-api-access-") && name.len() == 21,
            "{name}"
        );
        assert_eq!(volumes[0]["projected"], token_volume_source());
        assert_eq!(
            pod["spec"]["initContainers"][0]["volumeMounts"],
            json!([{"name": name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH}])
        );
        assert_eq!(
            pod["spec"]["containers"][0]["volumeMounts"][0]["name"],
            name
        );
        assert_eq!(
            pod["spec"]["containers"][1]["volumeMounts"]
                .as_array()
                .unwrap()
                .len(),
            1,
            "an existing mount at the path is left alone"
        );
        mount_token(&mut pod);
        assert_eq!(pod["spec"]["volumes"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn automount_preferences() {
        let sa_off = json!({"automountServiceAccountToken": false});
        assert!(!should_automount(&sa_off, &json!({"spec": {}})));
        assert!(should_automount(
            &sa_off,
            &json!({"spec": {"automountServiceAccountToken": true}})
        ));
        assert!(should_automount(&json!({}), &json!({"spec": {}})));
        assert!(!should_automount(
            &json!({}),
            &json!({"spec": {"automountServiceAccountToken": false}})
        ));
    }
}
