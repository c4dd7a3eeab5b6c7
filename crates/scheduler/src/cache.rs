//! The scheduler's view of the cluster: every node with the pods bound (or assumed) to it and
//! what they request.
//!
//! The cache is fed by the node and pod watches and by the scheduler itself: a pod is *assumed*
//! on its node as soon as a node is picked, before the binding is written, so the next pod is
//! placed against the updated node without waiting for the watch (upstream's assume/forget).
//! Terminal pods (Succeeded, Failed) hold nothing and are left out, as upstream's informer
//! field selector leaves them out.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::plugins::interpod;
use crate::plugins::ports::{self, HostPort};
use crate::requests::{self, Mode, Resources};

/// A pod on a node with what it holds there.
#[derive(Clone, Debug)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    pub requests: Resources,
    pub non_zero: Resources,
    pub ports: Vec<HostPort>,
    /// The pod has pod affinity or anti-affinity terms (other pods must look at it).
    pub has_affinity: bool,
}

impl PodInfo {
    pub fn new(pod: Arc<Pod>) -> PodInfo {
        let (requests, non_zero, ports) = amounts(&pod);
        let has_affinity = interpod::has_pod_affinity(&pod);
        PodInfo {
            pod,
            requests,
            non_zero,
            ports,
            has_affinity,
        }
    }
}

/// What a pod holds on its node: exact requests, requests with scoring defaults, host ports.
pub fn amounts(pod: &Pod) -> (Resources, Resources, Vec<HostPort>) {
    match &pod.spec {
        Some(spec) => (
            requests::pod_requests(spec, Mode::Exact),
            requests::pod_requests(spec, Mode::NonZero),
            ports::host_ports(spec),
        ),
        None => Default::default(),
    }
}

/// A node and what is placed on it.
#[derive(Clone, Debug, Default)]
pub struct NodeInfo {
    pub node: Option<Arc<Node>>,
    pub allocatable: Resources,
    pub pods: Vec<PodInfo>,
    /// Sum of the exact requests of `pods`.
    pub requested: Resources,
    /// Sum of the requests with scoring defaults (see [`requests::Mode::NonZero`]).
    pub non_zero_requested: Resources,
    /// How many of `pods` have pod (anti-)affinity terms.
    pub affinity_pods: usize,
}

impl NodeInfo {
    /// A node with the given pods, for tests and snapshots built by hand.
    pub fn new(node: Node, pods: impl IntoIterator<Item = Pod>) -> NodeInfo {
        let mut info = NodeInfo::default();
        info.set_node(Arc::new(node));
        for pod in pods {
            info.add_pod(PodInfo::new(Arc::new(pod)));
        }
        info
    }

    pub fn name(&self) -> &str {
        self.node
            .as_ref()
            .and_then(|n| n.metadata.name.as_deref())
            .unwrap_or_default()
    }

    pub fn labels(&self) -> Option<&BTreeMap<String, String>> {
        self.node.as_ref().and_then(|n| n.metadata.labels.as_ref())
    }

    fn set_node(&mut self, node: Arc<Node>) {
        self.allocatable = Resources::allocatable(&node);
        self.node = Some(node);
    }

    pub fn add_pod(&mut self, info: PodInfo) {
        self.requested.add(&info.requests);
        self.non_zero_requested.add(&info.non_zero);
        self.affinity_pods += usize::from(info.has_affinity);
        self.pods.push(info);
    }

    fn remove_pod(&mut self, key: &str) {
        if let Some(i) = self.pods.iter().position(|p| has_key(&p.pod, key)) {
            let info = self.pods.swap_remove(i);
            self.requested.subtract(&info.requests);
            self.non_zero_requested.subtract(&info.non_zero);
            self.affinity_pods = self
                .affinity_pods
                .saturating_sub(usize::from(info.has_affinity));
        }
    }
}

/// The identity of a pod across updates: its uid (names can be reused after a delete).
pub fn pod_key(pod: &Pod) -> String {
    match &pod.metadata.uid {
        Some(uid) => uid.clone(),
        None => format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default()
        ),
    }
}

/// `pod_key(pod) == key` without building the key.
fn has_key(pod: &Pod, key: &str) -> bool {
    match &pod.metadata.uid {
        Some(uid) => uid == key,
        None => pod_key(pod) == key,
    }
}

/// Whether a pod no longer holds resources.
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// The node a pod is bound to, if any.
pub fn bound_node(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// Where a pod is placed and whether the scheduler only assumed it.
#[derive(Clone, Debug)]
struct Placement {
    node: String,
    assumed: bool,
}

/// Nodes by name with their pods.
///
/// The nodes live in one name-sorted vector that snapshots share (copy on write): taking a
/// snapshot each cycle is one reference count, not one per node, and a change replaces just
/// the node it touches (upstream keeps its snapshot current the same way, by node generation).
#[derive(Default)]
pub struct Cache {
    /// Nodes that exist, sorted by name.
    nodes: Arc<Vec<Arc<NodeInfo>>>,
    /// Pods bound to a node the watch has not shown (or no longer shows), by node name: they
    /// are accounted when the node arrives, and leave with their own delete events.
    ghosts: HashMap<String, NodeInfo>,
    placements: HashMap<String, Placement>,
}

/// One consistent view of every node for a scheduling cycle.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Nodes that exist (a pod may name a node the watch has not delivered yet), by name.
    pub nodes: Arc<Vec<Arc<NodeInfo>>>,
}

impl Snapshot {
    pub fn new(nodes: Vec<NodeInfo>) -> Snapshot {
        let mut nodes: Vec<_> = nodes.into_iter().map(Arc::new).collect();
        nodes.sort_by(|a, b| a.name().cmp(b.name()));
        Snapshot {
            nodes: Arc::new(nodes),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<NodeInfo>> {
        self.nodes
            .binary_search_by(|n| n.name().cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
    }
}

impl Cache {
    fn position(&self, name: &str) -> Result<usize, usize> {
        self.nodes.binary_search_by(|n| n.name().cmp(name))
    }

    /// The node's info for a change, copied first if a snapshot still shares it.
    fn node_mut(&mut self, name: &str) -> Option<&mut NodeInfo> {
        match self.position(name) {
            Ok(i) => Some(Arc::make_mut(&mut Arc::make_mut(&mut self.nodes)[i])),
            Err(_) => self.ghosts.get_mut(name),
        }
    }

    pub fn set_node(&mut self, node: Node) {
        let Some(name) = node.metadata.name.clone() else {
            return;
        };
        let node = Arc::new(node);
        match self.position(&name) {
            Ok(i) => Arc::make_mut(&mut Arc::make_mut(&mut self.nodes)[i]).set_node(node),
            Err(i) => {
                let mut info = self.ghosts.remove(&name).unwrap_or_default();
                info.set_node(node);
                Arc::make_mut(&mut self.nodes).insert(i, Arc::new(info));
            }
        }
    }

    pub fn remove_node(&mut self, name: &str) {
        let Ok(i) = self.position(name) else {
            return;
        };
        let info = Arc::make_mut(&mut self.nodes).remove(i);
        if !info.pods.is_empty() {
            // Keep the pods accounted: they leave with their own delete events.
            let mut info = Arc::unwrap_or_clone(info);
            info.node = None;
            self.ghosts.insert(name.to_string(), info);
        }
    }

    /// Replaces every node after a relist.
    pub fn replace_nodes(&mut self, nodes: Vec<Node>) {
        let names: std::collections::HashSet<String> = nodes
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        let gone: Vec<String> = self
            .nodes
            .iter()
            .map(|n| n.name().to_string())
            .filter(|n| !names.contains(n))
            .collect();
        for name in gone {
            self.remove_node(&name);
        }
        for node in nodes {
            self.set_node(node);
        }
    }

    /// An added or updated pod from the watch.
    pub fn apply_pod(&mut self, pod: Arc<Pod>) {
        let key = pod_key(&pod);
        let target = bound_node(&pod).filter(|_| !is_terminal(&pod));
        match (target, self.placements.get(&key)) {
            // Our own status update on a pod we already assumed: the binding is still in flight.
            (None, Some(p)) if p.assumed && !is_terminal(&pod) => {}
            (None, Some(_)) => self.remove_pod(&key),
            (None, None) => {}
            // The watch confirming what is already accounted (our binding of an assumed pod):
            // nothing the plugins read changed, so the node is left as it is.
            (Some(node), Some(p)) if p.node == node && self.holds_same(&key, node, &pod) => {
                if let Some(p) = self.placements.get_mut(&key) {
                    p.assumed = false;
                }
            }
            (Some(node), _) => {
                let node = node.to_string();
                self.remove_pod(&key);
                self.place(key, node, pod, false);
            }
        }
    }

    /// Whether `node` already holds `pod` as the plugins see it: same spec, labels,
    /// namespace and deletion state.
    fn holds_same(&self, key: &str, node: &str, pod: &Pod) -> bool {
        let info = match self.position(node) {
            Ok(i) => Some(self.nodes[i].as_ref()),
            Err(_) => self.ghosts.get(node),
        };
        let Some(held) = info.and_then(|n| n.pods.iter().find(|p| has_key(&p.pod, key))) else {
            return false;
        };
        let (a, b) = (&held.pod.metadata, &pod.metadata);
        a.labels == b.labels
            && a.namespace == b.namespace
            && a.deletion_timestamp == b.deletion_timestamp
            && held.pod.spec == pod.spec
    }

    pub fn remove_pod(&mut self, key: &str) {
        let Some(placement) = self.placements.remove(key) else {
            return;
        };
        if let Some(info) = self.node_mut(&placement.node) {
            info.remove_pod(key);
        }
        if self
            .ghosts
            .get(&placement.node)
            .is_some_and(|g| g.pods.is_empty())
        {
            self.ghosts.remove(&placement.node);
        }
    }

    /// Replaces every pod after a relist; assumed pods stay until confirmed or forgotten.
    pub fn replace_pods(&mut self, pods: Vec<Arc<Pod>>) {
        let gone: Vec<String> = self
            .placements
            .iter()
            .filter(|(_, p)| !p.assumed)
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            self.remove_pod(&key);
        }
        for pod in pods {
            self.apply_pod(pod);
        }
    }

    /// Places `pod` on `node` before the binding is written.
    pub fn assume(&mut self, pod: &Pod, node: &str) {
        let mut bound = pod.clone();
        if let Some(spec) = bound.spec.as_mut() {
            spec.node_name = Some(node.to_string());
        }
        let key = pod_key(pod);
        self.remove_pod(&key);
        self.place(key, node.to_string(), Arc::new(bound), true);
    }

    /// Undoes [`Cache::assume`] after a failed binding.
    pub fn forget(&mut self, pod: &Pod) {
        let key = pod_key(pod);
        if self.placements.get(&key).is_some_and(|p| p.assumed) {
            self.remove_pod(&key);
        }
    }

    /// Whether the pod is bound or assumed somewhere (then it must not be scheduled again).
    pub fn is_placed(&self, pod: &Pod) -> bool {
        self.placements.contains_key(&pod_key(pod))
    }

    /// The nodes as they are now; costs one reference count.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            nodes: self.nodes.clone(),
        }
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    fn place(&mut self, key: String, node: String, pod: Arc<Pod>, assumed: bool) {
        let info = PodInfo::new(pod);
        match self.node_mut(&node) {
            Some(n) => n.add_pod(info),
            None => self.ghosts.entry(node.clone()).or_default().add_pod(info),
        }
        self.placements.insert(key, Placement { node, assumed });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{node, pod, PodExt};

    #[test]
    fn bound_pods_add_requests_and_deletes_remove_them() {
        let mut cache = Cache::default();
        cache.set_node(node("n1", "4", "8Gi"));
        let p = Arc::new(pod("a", "1", "1Gi").on("n1"));
        cache.apply_pod(p.clone());
        let snap = cache.snapshot();
        assert_eq!(snap.nodes[0].requested.milli_cpu, 1000);
        cache.remove_pod(&pod_key(&p));
        assert_eq!(cache.snapshot().nodes[0].requested.milli_cpu, 0);
    }

    #[test]
    fn assumed_pods_survive_their_own_unbound_updates() {
        let mut cache = Cache::default();
        cache.set_node(node("n1", "4", "8Gi"));
        let p = pod("a", "1", "1Gi");
        cache.assume(&p, "n1");
        cache.apply_pod(Arc::new(p.clone()));
        assert!(cache.is_placed(&p));
        assert_eq!(cache.snapshot().nodes[0].pods.len(), 1);
        cache.forget(&p);
        assert!(!cache.is_placed(&p));
        assert_eq!(cache.snapshot().nodes[0].requested.milli_cpu, 0);
    }

    #[test]
    fn pods_on_unknown_nodes_count_once_the_node_arrives() {
        let mut cache = Cache::default();
        let p = Arc::new(pod("a", "1", "1Gi").on("n1"));
        cache.apply_pod(p.clone());
        assert_eq!(cache.node_count(), 0);
        cache.set_node(node("n1", "4", "8Gi"));
        let before = cache.snapshot();
        assert_eq!(before.nodes[0].requested.milli_cpu, 1000);
        // The node leaves with its pod still there, and comes back.
        cache.remove_node("n1");
        assert_eq!(cache.node_count(), 0);
        cache.set_node(node("n1", "4", "8Gi"));
        assert_eq!(
            cache.snapshot().get("n1").unwrap().requested.milli_cpu,
            1000
        );
        cache.remove_pod(&pod_key(&p));
        assert_eq!(cache.snapshot().nodes[0].requested.milli_cpu, 0);
        // A snapshot taken before is not changed by later updates.
        assert_eq!(before.nodes[0].requested.milli_cpu, 1000);
    }

    #[test]
    fn snapshots_stay_sorted_by_name() {
        let mut cache = Cache::default();
        for name in ["c", "a", "b"] {
            cache.set_node(node(name, "1", "1Gi"));
        }
        let snap = cache.snapshot();
        let names: Vec<_> = snap.nodes.iter().map(|n| n.name()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert!(snap.get("b").is_some());
    }

    #[test]
    fn terminal_pods_hold_nothing() {
        let mut cache = Cache::default();
        cache.set_node(node("n1", "4", "8Gi"));
        let mut p = pod("a", "1", "1Gi").on("n1");
        cache.apply_pod(Arc::new(p.clone()));
        p.status.get_or_insert_with(Default::default).phase = Some("Succeeded".into());
        cache.apply_pod(Arc::new(p));
        assert_eq!(cache.snapshot().nodes[0].requested.milli_cpu, 0);
    }
}
