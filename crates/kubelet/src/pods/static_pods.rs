//! Static pods, as upstream's file source: every YAML or JSON pod in the manifests directory runs
//! on this node under the name `<name>-<node>` with a UID hashed from its manifest, and the API
//! shows it as a mirror pod (annotation `kubernetes.io/config.mirror`, owned by the Node) that
//! the kubelet creates, recreates when deleted, and removes with the manifest.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::Api;

use crate::context::NodeContext;

pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
pub const HASH_ANNOTATION: &str = "kubernetes.io/config.hash";
pub const SOURCE_ANNOTATION: &str = "kubernetes.io/config.source";

pub fn is_mirror(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION))
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// The pods of the manifests directory, named and defaulted for this node. Files that do not
/// parse are logged and skipped, as upstream.
pub fn read_dir(dir: &Path, node: &str) -> Vec<Pod> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            !p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    files.sort();
    let mut pods = Vec::new();
    for path in files {
        match read_manifest(&path, node) {
            Ok(pod) => pods.push(pod),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "ignoring a static pod manifest")
            }
        }
    }
    pods
}

fn read_manifest(path: &Path, node: &str) -> anyhow::Result<Pod> {
    let text = std::fs::read_to_string(path)?;
    let mut pod: Pod = serde_yaml::from_str(&text)?;
    let base = pod
        .metadata
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| anyhow::anyhow!("the pod has no name"))?;
    if pod.spec.as_ref().is_none_or(|s| s.containers.is_empty()) {
        anyhow::bail!("the pod has no containers");
    }
    // The UID is the manifest's hash: the same file gives the same pod after a restart, and an
    // edited file a new one (the old pod is stopped, the new one started).
    let uid = {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(text.as_bytes());
        h.update(node.as_bytes());
        h.update(path.to_string_lossy().as_bytes());
        hex::encode(&h.finalize()[..16])
    };
    pod.metadata.name = Some(format!("{base}-{node}"));
    pod.metadata.namespace = Some(
        pod.metadata
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into()),
    );
    pod.metadata.uid = Some(uid.clone());
    pod.metadata.resource_version = None;
    let annotations = pod.metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(HASH_ANNOTATION.into(), uid);
    annotations.insert(SOURCE_ANNOTATION.into(), "file".into());
    if let Some(spec) = pod.spec.as_mut() {
        spec.node_name = Some(node.to_string());
    }
    pod.status = None;
    Ok(pod)
}

/// The static pod with its mirror's status, so the worker writes only what changed.
pub fn with_mirror_status(mut pod: Pod, mirror: Option<&Pod>) -> Pod {
    if let Some(mirror) = mirror {
        pod.status = mirror.status.clone();
        pod.metadata.resource_version = mirror.metadata.resource_version.clone();
    }
    pod
}

/// Creates the static pod's mirror when it is missing, and deletes one that stands for an older
/// manifest or is being deleted (it is created again on a later pass). `existing` is the pod of
/// that name the node's watch shows (a node may only read pods bound to it).
pub async fn ensure_mirror(ctx: &NodeContext, pod: &Pod, existing: Option<&Pod>) {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let hash = pod.metadata.uid.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    if let Some(existing) = existing {
        let current = annotation(existing, MIRROR_ANNOTATION) == Some(hash.as_str());
        if !current || existing.metadata.deletion_timestamp.is_some() {
            // Upstream's status manager deletes mirror pods at once.
            delete_mirror(&api, existing).await;
        }
        return;
    }
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let node_uid = match nodes.get_opt(&ctx.node_name).await {
        Ok(Some(n)) => n.metadata.uid.unwrap_or_default(),
        _ => return,
    };
    let mut mirror = pod.clone();
    mirror.metadata.uid = None;
    mirror.metadata.resource_version = None;
    mirror
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(MIRROR_ANNOTATION.into(), hash);
    mirror.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: ctx.node_name.clone(),
        uid: node_uid,
        controller: Some(true),
        block_owner_deletion: None,
    }]);
    mirror.status = None;
    match api.create(&PostParams::default(), &mirror).await {
        Ok(_) => tracing::info!(pod = %format!("{ns}/{name}"), "mirror pod created"),
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => {
            tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "creating the mirror pod failed")
        }
    }
}

pub async fn delete_mirror(api: &Api<Pod>, mirror: &Pod) {
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: mirror.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    let name = mirror.metadata.name.clone().unwrap_or_default();
    if let Err(e) = api.delete(&name, &params).await {
        tracing::debug!(pod = %name, error = %e, "deleting a mirror pod failed");
    }
}

/// The hash of the static pod a mirror pod stands for.
pub fn mirror_hash(mirror: &Pod) -> &str {
    annotation(mirror, MIRROR_ANNOTATION).unwrap_or("")
}
