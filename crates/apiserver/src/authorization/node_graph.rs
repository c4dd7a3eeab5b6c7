//! What the Node authorizer knows: which node each object a kubelet may read is reachable from,
//! as upstream's node authorizer graph (`plugin/pkg/auth/authorizer/node/graph.go`) records it:
//!
//! ```text
//! node <- pod
//! node <- pod <- secret | configmap | pvc | serviceaccount
//! node <- pod <- pvc <- pv <- secret
//! ```
//!
//! Instead of a general graph it keeps, per referenced object, how many pods on each node
//! reference it (an edge count), plus each PV's claim and secrets; every question is a few hash
//! lookups. [`follow`] keeps it current from the watch cache (pods and PersistentVolumes), after
//! one full load; requests never scan.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;

use crate::conversion::from_storage;
use crate::registry::{ListOptions, Registry};
use crate::resources::{self, Resource};
use crate::status::{ApiError, ApiResult};
use crate::storage;
use crate::watch_cache::CacheEvent;

/// The kinds of object a pod references by name in its own namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Vertex {
    Pod,
    Secret,
    ConfigMap,
    Pvc,
    ServiceAccount,
}

impl Vertex {
    /// Upstream's vertex type names, as its denial logs print them.
    pub fn name(self) -> &'static str {
        match self {
            Vertex::Pod => "pod",
            Vertex::Secret => "secret",
            Vertex::ConfigMap => "configmap",
            Vertex::Pvc => "pvc",
            Vertex::ServiceAccount => "serviceAccount",
        }
    }
}

type Key = (Vertex, String, String);

/// What one bound pod contributes: its node and the objects it names.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PodEdges {
    node: String,
    refs: Vec<(Vertex, String)>,
}

/// A PersistentVolume's edges: to its claim, and from the secrets it names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct PvEdges {
    claim: Option<(String, String)>,
    secrets: Vec<(String, String)>,
}

#[derive(Debug, Default)]
struct Graph {
    /// Bound pods by (namespace, name).
    pods: HashMap<(String, String), PodEdges>,
    /// For each referenced object: node → number of that node's pods referencing it.
    nodes_of: HashMap<Key, HashMap<String, u32>>,
    pvs: HashMap<String, PvEdges>,
    /// (namespace, name) of a secret → the PVs naming it.
    pv_secrets: HashMap<(String, String), HashSet<String>>,
}

impl Graph {
    fn link(&mut self, key: Key, node: &str, add: bool) {
        if add {
            *self
                .nodes_of
                .entry(key)
                .or_default()
                .entry(node.to_string())
                .or_default() += 1;
            return;
        }
        let Some(nodes) = self.nodes_of.get_mut(&key) else {
            return;
        };
        if let Some(n) = nodes.get_mut(node) {
            *n -= 1;
            if *n == 0 {
                nodes.remove(node);
            }
        }
        if nodes.is_empty() {
            self.nodes_of.remove(&key);
        }
    }

    fn set_pod(&mut self, ns: &str, name: &str, edges: Option<PodEdges>) {
        let id = (ns.to_string(), name.to_string());
        if self.pods.get(&id) == edges.as_ref() {
            return;
        }
        if let Some(old) = self.pods.remove(&id) {
            self.pod_edges(ns, &old, false);
        }
        if let Some(new) = edges {
            self.pod_edges(ns, &new, true);
            self.pods.insert(id, new);
        }
    }

    fn pod_edges(&mut self, ns: &str, edges: &PodEdges, add: bool) {
        for (vertex, name) in &edges.refs {
            self.link((*vertex, ns.to_string(), name.clone()), &edges.node, add);
        }
    }

    fn set_pv(&mut self, name: &str, edges: Option<PvEdges>) {
        if let Some(old) = self.pvs.remove(name) {
            for secret in &old.secrets {
                if let Some(pvs) = self.pv_secrets.get_mut(secret) {
                    pvs.remove(name);
                    if pvs.is_empty() {
                        self.pv_secrets.remove(secret);
                    }
                }
            }
        }
        if let Some(new) = edges {
            for secret in &new.secrets {
                self.pv_secrets
                    .entry(secret.clone())
                    .or_default()
                    .insert(name.to_string());
            }
            self.pvs.insert(name.to_string(), new);
        }
    }

    fn reaches(&self, vertex: Vertex, ns: &str, name: &str, node: &str) -> bool {
        let key = (vertex, ns.to_string(), name.to_string());
        if self
            .nodes_of
            .get(&key)
            .is_some_and(|n| n.contains_key(node))
        {
            return true;
        }
        // node <- pod <- pvc <- pv <- secret
        vertex == Vertex::Secret
            && self
                .pv_secrets
                .get(&(ns.to_string(), name.to_string()))
                .is_some_and(|pvs| pvs.iter().any(|pv| self.pv_reaches(pv, node)))
    }

    fn pv_reaches(&self, pv: &str, node: &str) -> bool {
        self.pvs
            .get(pv)
            .and_then(|edges| edges.claim.as_ref())
            .is_some_and(|(ns, claim)| self.reaches(Vertex::Pvc, ns, claim, node))
    }
}

/// The shared graph: requests read under a read lock; the follower writes.
#[derive(Debug, Default)]
pub struct NodeGraph {
    graph: RwLock<Graph>,
}

impl NodeGraph {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Graph> {
        self.graph.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Graph> {
        self.graph.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a namespaced object of `vertex` is referenced by a pod bound to `node`.
    pub fn reaches(&self, vertex: Vertex, ns: &str, name: &str, node: &str) -> bool {
        self.read().reaches(vertex, ns, name, node)
    }

    /// Whether PersistentVolume `name` is claimed by a PVC a pod on `node` uses.
    pub fn pv_reaches(&self, name: &str, node: &str) -> bool {
        self.read().pv_reaches(name, node)
    }

    /// Adds, replaces or (with `None`, or an unbound pod) removes a pod.
    pub fn apply_pod(&self, pod: &Value, deleted: bool) {
        let meta = &pod["metadata"];
        let ns = meta["namespace"].as_str().unwrap_or("");
        let name = meta["name"].as_str().unwrap_or("");
        let edges = (!deleted).then(|| pod_edges(pod)).flatten();
        self.write().set_pod(ns, name, edges);
    }

    pub fn apply_pv(&self, pv: &Value, deleted: bool) {
        let name = pv["metadata"]["name"].as_str().unwrap_or("");
        let edges = (!deleted).then(|| pv_edges(pv));
        self.write().set_pv(name, edges);
    }

    fn replace(&self, pods: &[Value], pvs: &[Value]) {
        let mut graph = Graph::default();
        for pod in pods {
            let meta = &pod["metadata"];
            let ns = meta["namespace"].as_str().unwrap_or("");
            let name = meta["name"].as_str().unwrap_or("");
            graph.set_pod(ns, name, pod_edges(pod));
        }
        for pv in pvs {
            graph.set_pv(
                pv["metadata"]["name"].as_str().unwrap_or(""),
                Some(pv_edges(pv)),
            );
        }
        *self.write() = graph;
    }
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(v, |v, k| v.get(*k))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// A bound pod's edges; None for a pod no node runs yet (upstream ignores those).
fn pod_edges(pod: &Value) -> Option<PodEdges> {
    let spec = &pod["spec"];
    let node = str_at(spec, &["nodeName"])?.to_string();
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    let mut refs = vec![(Vertex::Pod, name.to_string())];
    if let Some(sa) = str_at(spec, &["serviceAccountName"]) {
        refs.push((Vertex::ServiceAccount, sa.to_string()));
    }
    visit_pod_refs(pod, |vertex, name| refs.push((vertex, name.to_string())));
    refs.sort_by(|a, b| (a.0 as u8, &a.1).cmp(&(b.0 as u8, &b.1)));
    refs.dedup();
    Some(PodEdges { node, refs })
}

/// Every secret, configmap and PVC a pod names (upstream's `VisitPodSecretNames`,
/// `VisitPodConfigmapNames` and the pod's claim and ephemeral volumes).
pub fn visit_pod_refs(pod: &Value, mut visit: impl FnMut(Vertex, &str)) {
    let spec = &pod["spec"];
    let items = |v: &Value| v.as_array().cloned().unwrap_or_default();
    for s in items(&spec["imagePullSecrets"]) {
        if let Some(n) = str_at(&s, &["name"]) {
            visit(Vertex::Secret, n);
        }
    }
    for field in ["initContainers", "containers", "ephemeralContainers"] {
        for c in items(&spec[field]) {
            for env in items(&c["env"]) {
                let from = &env["valueFrom"];
                if let Some(n) = str_at(from, &["secretKeyRef", "name"]) {
                    visit(Vertex::Secret, n);
                }
                if let Some(n) = str_at(from, &["configMapKeyRef", "name"]) {
                    visit(Vertex::ConfigMap, n);
                }
            }
            for from in items(&c["envFrom"]) {
                if let Some(n) = str_at(&from, &["secretRef", "name"]) {
                    visit(Vertex::Secret, n);
                }
                if let Some(n) = str_at(&from, &["configMapRef", "name"]) {
                    visit(Vertex::ConfigMap, n);
                }
            }
        }
    }
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or("");
    for vol in items(&spec["volumes"]) {
        if let Some(n) = str_at(&vol, &["secret", "secretName"]) {
            visit(Vertex::Secret, n);
        }
        if let Some(n) = str_at(&vol, &["azureFile", "secretName"]) {
            visit(Vertex::Secret, n);
        }
        if let Some(n) = str_at(&vol, &["csi", "nodePublishSecretRef", "name"]) {
            visit(Vertex::Secret, n);
        }
        for source in [
            "cephfs",
            "cinder",
            "flexVolume",
            "rbd",
            "scaleIO",
            "iscsi",
            "storageos",
        ] {
            if let Some(n) = str_at(&vol, &[source, "secretRef", "name"]) {
                visit(Vertex::Secret, n);
            }
        }
        if let Some(n) = str_at(&vol, &["configMap", "name"]) {
            visit(Vertex::ConfigMap, n);
        }
        for p in items(&vol["projected"]["sources"]) {
            if let Some(n) = str_at(&p, &["secret", "name"]) {
                visit(Vertex::Secret, n);
            }
            if let Some(n) = str_at(&p, &["configMap", "name"]) {
                visit(Vertex::ConfigMap, n);
            }
        }
        if let Some(n) = str_at(&vol, &["persistentVolumeClaim", "claimName"]) {
            visit(Vertex::Pvc, n);
        }
        if vol.get("ephemeral").is_some_and(Value::is_object) {
            if let Some(v) = str_at(&vol, &["name"]) {
                visit(Vertex::Pvc, &format!("{pod_name}-{v}"));
            }
        }
    }
}

/// A PV's claim and the secrets its volume source names (upstream's `VisitPVSecretNames`).
fn pv_edges(pv: &Value) -> PvEdges {
    let spec = &pv["spec"];
    let claim = match (
        str_at(spec, &["claimRef", "namespace"]),
        str_at(spec, &["claimRef", "name"]),
    ) {
        (Some(ns), Some(name)) => Some((ns.to_string(), name.to_string())),
        _ => None,
    };
    let mut secrets = Vec::new();
    let claim_ns = claim.as_ref().map(|c| c.0.as_str()).unwrap_or("");
    if let Some(source) = spec.as_object() {
        for (kind, source) in source {
            let Some(fields) = source.as_object() else {
                continue;
            };
            if kind == "azureFile" {
                if let Some(n) = str_at(source, &["secretName"]) {
                    let ns = str_at(source, &["secretNamespace"]).unwrap_or("default");
                    secrets.push((ns.to_string(), n.to_string()));
                }
                continue;
            }
            for (field, reference) in fields {
                if !(field == "secretRef" || field.ends_with("SecretRef")) {
                    continue;
                }
                let Some(name) = str_at(reference, &["name"]) else {
                    continue;
                };
                let ns = str_at(reference, &["namespace"]).unwrap_or(claim_ns);
                if !ns.is_empty() {
                    secrets.push((ns.to_string(), name.to_string()));
                }
            }
        }
    }
    PvEdges { claim, secrets }
}

fn resource(plural: &str) -> ApiResult<&'static Resource> {
    resources::find("", "v1", plural).ok_or(ApiError::NoSuchResource)
}

/// Keeps `graph` current for as long as the server runs: a full load, then the watch cache's
/// pod and PersistentVolume events (a lagging subscription loads again).
pub async fn follow(reg: Arc<Registry>, graph: Arc<NodeGraph>) {
    loop {
        if let Err(e) = follow_once(&reg, &graph).await {
            tracing::warn!(error = %e, "node authorizer graph: reloading after an error");
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }
}

/// Loads pods and PVs as of `revision` into `graph`.
pub async fn load(reg: &Registry, graph: &NodeGraph, revision: i64) -> ApiResult<()> {
    let opts = ListOptions {
        resource_version: Some(revision.to_string()),
        resource_version_match: "Exact".into(),
        ..Default::default()
    };
    let pods = reg.list(resource("pods")?, None, &opts).await?.items;
    let pvs = reg
        .list(resource("persistentvolumes")?, None, &opts)
        .await?
        .items;
    graph.replace(&pods, &pvs);
    Ok(())
}

async fn follow_once(reg: &Registry, graph: &NodeGraph) -> ApiResult<()> {
    let pods = resource("pods")?;
    let pvs = resource("persistentvolumes")?;
    let (pod_prefix, pv_prefix) = (pods.prefix(), pvs.prefix());
    let from = reg.cache.current_revision();
    let mut sub = reg
        .cache
        .subscribe(from)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let loaded_at = storage::current_revision(&reg.store).await?;
    load(reg, graph, loaded_at).await?;
    loop {
        let event: Arc<CacheEvent> = match sub.live.recv().await {
            Ok(event) => event,
            Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => return Ok(()),
        };
        if event.revision <= loaded_at {
            continue;
        }
        if event.key.starts_with(&pod_prefix) {
            graph.apply_pod(&from_storage(pods, event.obj.clone()), event.deleted);
        } else if event.key.starts_with(&pv_prefix) {
            graph.apply_pv(&from_storage(pvs, event.obj.clone()), event.deleted);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, node: &str, secret: &str) -> Value {
        json!({"metadata": {"namespace": "ns", "name": name},
               "spec": {"nodeName": node, "serviceAccountName": "default",
                        "volumes": [{"name": "s", "secret": {"secretName": secret}},
                                    {"name": "c", "persistentVolumeClaim": {"claimName": "claim"}},
                                    {"name": "e", "ephemeral": {"volumeClaimTemplate": {}}}],
                        "containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "cm"}}]}]}})
    }

    #[test]
    fn edges_follow_pods_and_pvs() {
        let g = NodeGraph::default();
        g.apply_pod(&pod("p1", "n1", "s1"), false);
        g.apply_pod(&pod("p2", "n1", "s1"), false);
        assert!(g.reaches(Vertex::Secret, "ns", "s1", "n1"));
        assert!(!g.reaches(Vertex::Secret, "ns", "s1", "n2"));
        assert!(!g.reaches(Vertex::Secret, "other", "s1", "n1"));
        assert!(g.reaches(Vertex::ConfigMap, "ns", "cm", "n1"));
        assert!(g.reaches(Vertex::Pvc, "ns", "p1-e", "n1"));
        assert!(g.reaches(Vertex::ServiceAccount, "ns", "default", "n1"));
        assert!(g.reaches(Vertex::Pod, "ns", "p1", "n1"));
        g.apply_pod(&pod("p1", "n1", "s1"), true);
        assert!(
            g.reaches(Vertex::Secret, "ns", "s1", "n1"),
            "p2 still uses it"
        );
        g.apply_pod(&pod("p2", "n1", "s2"), false);
        assert!(!g.reaches(Vertex::Secret, "ns", "s1", "n1"));
        assert!(g.reaches(Vertex::Secret, "ns", "s2", "n1"));

        let pv = json!({"metadata": {"name": "pv1"},
            "spec": {"claimRef": {"namespace": "ns", "name": "claim"},
                     "csi": {"driver": "d", "nodeStageSecretRef": {"name": "pvsecret", "namespace": "infra"}}}});
        g.apply_pv(&pv, false);
        assert!(g.pv_reaches("pv1", "n1"));
        assert!(!g.pv_reaches("pv1", "n2"));
        assert!(g.reaches(Vertex::Secret, "infra", "pvsecret", "n1"));
        g.apply_pv(&pv, true);
        assert!(!g.reaches(Vertex::Secret, "infra", "pvsecret", "n1"));
        g.apply_pod(
            &json!({"metadata": {"namespace": "ns", "name": "u"}, "spec": {}}),
            false,
        );
        assert!(!g.reaches(Vertex::Pod, "ns", "u", ""));
    }
}
