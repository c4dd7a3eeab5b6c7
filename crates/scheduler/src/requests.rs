//! Resource amounts: what a pod requests and what a node can give.
//!
//! A pod's effective request follows upstream's `resourcehelper.PodRequests`: the sum of its app
//! containers plus restartable (sidecar) init containers, or the largest init container
//! (counting the sidecars started before it) if that is larger, plus the pod overhead.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Node, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::quantity;

/// Cpu a container without a cpu request counts for when scoring (upstream's `DefaultMilliCPURequest`).
pub const DEFAULT_MILLI_CPU: i64 = 100;
/// Memory a container without a memory request counts for when scoring (`DefaultMemoryRequest`).
pub const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;

/// Amounts of the resources the scheduler accounts for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    /// The node's `pods` allocatable; unused for requests.
    pub allowed_pods: i64,
    /// Extended resources (`nvidia.com/gpu`, `hugepages-2Mi`, ...).
    pub scalar: BTreeMap<String, i64>,
}

impl Resources {
    /// Reads a `requests`/`allocatable` map.
    pub fn from_list(list: &BTreeMap<String, Quantity>) -> Resources {
        let mut r = Resources::default();
        for (name, q) in list {
            match name.as_str() {
                "cpu" => r.milli_cpu = quantity::milli_value(q),
                "memory" => r.memory = quantity::value(q),
                "ephemeral-storage" => r.ephemeral_storage = quantity::value(q),
                "pods" => r.allowed_pods = quantity::value(q),
                _ if is_scalar(name) => {
                    r.scalar.insert(name.clone(), quantity::value(q));
                }
                _ => {}
            }
        }
        r
    }

    /// What a node offers: `status.allocatable`, or `status.capacity` when allocatable is unset.
    pub fn allocatable(node: &Node) -> Resources {
        let status = node.status.as_ref();
        let list = status
            .and_then(|s| s.allocatable.as_ref())
            .or_else(|| status.and_then(|s| s.capacity.as_ref()));
        list.map(Resources::from_list).unwrap_or_default()
    }

    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_add(other.milli_cpu);
        self.memory = self.memory.saturating_add(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_add(other.ephemeral_storage);
        for (name, v) in &other.scalar {
            let slot = self.scalar.entry(name.clone()).or_default();
            *slot = slot.saturating_add(*v);
        }
    }

    pub fn subtract(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_sub(other.milli_cpu);
        self.memory = self.memory.saturating_sub(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_sub(other.ephemeral_storage);
        for (name, v) in &other.scalar {
            let slot = self.scalar.entry(name.clone()).or_default();
            *slot = slot.saturating_sub(*v);
        }
    }

    fn max_with(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (name, v) in &other.scalar {
            let slot = self.scalar.entry(name.clone()).or_default();
            *slot = (*slot).max(*v);
        }
    }

    /// True when nothing at all is requested (then only the pod count is checked).
    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.values().all(|v| *v == 0)
    }
}

/// Extended resources and hugepages: names with a domain, or `hugepages-*`.
fn is_scalar(name: &str) -> bool {
    name.starts_with("hugepages-")
        || name.starts_with("attachable-volumes-")
        || (name.contains('/') && !name.starts_with("kubernetes.io/"))
}

/// Whether requests are taken as written (filtering) or with upstream's scoring defaults for
/// containers that request no cpu or memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Exact,
    NonZero,
}

/// The pod's effective request (see the module docs).
pub fn pod_requests(spec: &PodSpec, mode: Mode) -> Resources {
    let mut apps = Resources::default();
    for c in &spec.containers {
        apps.add(&container_requests(c, mode));
    }
    let mut sidecars = Resources::default();
    let mut init_peak = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let req = container_requests(c, mode);
        if c.restart_policy.as_deref() == Some("Always") {
            // A sidecar keeps running: it adds to everything after it.
            sidecars.add(&req);
            init_peak.max_with(&sidecars);
        } else {
            let mut during = sidecars.clone();
            during.add(&req);
            init_peak.max_with(&during);
        }
    }
    apps.add(&sidecars);
    apps.max_with(&init_peak);
    if let Some(overhead) = &spec.overhead {
        apps.add(&Resources::from_list(overhead));
    }
    apps
}

fn container_requests(c: &Container, mode: Mode) -> Resources {
    let mut r = c
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .map(Resources::from_list)
        .unwrap_or_default();
    if mode == Mode::NonZero {
        let requests = c.resources.as_ref().and_then(|r| r.requests.as_ref());
        let has = |k: &str| requests.is_some_and(|m| m.contains_key(k));
        if !has("cpu") {
            r.milli_cpu = DEFAULT_MILLI_CPU;
        }
        if !has("memory") {
            r.memory = DEFAULT_MEMORY;
        }
    }
    r
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceRequirements;

    pub fn container(cpu: &str, mem: &str) -> Container {
        let mut requests = BTreeMap::new();
        if !cpu.is_empty() {
            requests.insert("cpu".to_string(), Quantity(cpu.into()));
        }
        if !mem.is_empty() {
            requests.insert("memory".to_string(), Quantity(mem.into()));
        }
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: Some(requests),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn init_containers_count_by_max_and_sidecars_add() {
        let spec = PodSpec {
            containers: vec![container("1", "1Gi"), container("500m", "")],
            init_containers: Some(vec![container("3", "100Mi")]),
            ..Default::default()
        };
        let r = pod_requests(&spec, Mode::Exact);
        assert_eq!(r.milli_cpu, 3000);
        assert_eq!(r.memory, 1 << 30);

        let mut sidecar = container("200m", "10Mi");
        sidecar.restart_policy = Some("Always".into());
        let spec = PodSpec {
            containers: vec![container("1", "")],
            init_containers: Some(vec![sidecar, container("1", "")]),
            ..Default::default()
        };
        let r = pod_requests(&spec, Mode::Exact);
        assert_eq!(r.milli_cpu, 1200);
        assert_eq!(r.memory, 10 << 20);
    }

    #[test]
    fn non_zero_defaults_for_scoring() {
        let spec = PodSpec {
            containers: vec![container("", ""), container("1", "")],
            ..Default::default()
        };
        let r = pod_requests(&spec, Mode::NonZero);
        assert_eq!(r.milli_cpu, 1100);
        assert_eq!(r.memory, 2 * DEFAULT_MEMORY);
        assert!(pod_requests(&spec, Mode::Exact).memory == 0);
    }
}
