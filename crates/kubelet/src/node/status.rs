//! The Node's status as upstream's kubelet sets it (pkg/kubelet/nodestatus setters): capacity
//! and allocatable, addresses, the kubelet's endpoint, node info, images, and the four
//! conditions with upstream's reasons and messages. Pure functions of what was observed, so
//! whether anything changed (which decides whether a status update is sent) is a comparison.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{
    ContainerImage, DaemonEndpoint, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::machine::{bytes_quantity, go_arch, Filesystem, Machine};

/// Hard eviction thresholds (upstream's `--eviction-hard`): what is subtracted from capacity for
/// allocatable, and below which the node reports MemoryPressure / DiskPressure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub memory_available: Threshold,
    pub nodefs_available: Threshold,
}

/// One signal's threshold: an amount of bytes or a share of the capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    Bytes(u64),
    Percent(f64),
}

impl Threshold {
    /// The threshold in bytes for a resource of `capacity` bytes.
    pub fn bytes(self, capacity: u64) -> u64 {
        match self {
            Threshold::Bytes(b) => b,
            Threshold::Percent(p) => (capacity as f64 * p / 100.0) as u64,
        }
    }
}

impl Default for Thresholds {
    /// Upstream's defaults: `memory.available<100Mi,nodefs.available<10%`.
    fn default() -> Self {
        Thresholds {
            memory_available: Threshold::Bytes(100 * 1024 * 1024),
            nodefs_available: Threshold::Percent(10.0),
        }
    }
}

impl std::str::FromStr for Thresholds {
    type Err = String;

    /// `memory.available<100Mi,nodefs.available<10%` (signals not given keep upstream's
    /// defaults; the other eviction signals are the eviction manager's, not allocatable's).
    fn from_str(s: &str) -> Result<Thresholds, String> {
        let mut out = Thresholds::default();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (signal, value) = item
                .split_once('<')
                .ok_or_else(|| format!("{item:?} is not SIGNAL<VALUE"))?;
            let threshold = parse_threshold(value.trim())
                .ok_or_else(|| format!("{value:?} is neither a quantity nor a percentage"))?;
            match signal.trim() {
                "memory.available" => out.memory_available = threshold,
                "nodefs.available" => out.nodefs_available = threshold,
                "nodefs.inodesFree" | "imagefs.available" | "imagefs.inodesFree"
                | "pid.available" => {}
                other => return Err(format!("unsupported eviction signal {other:?}")),
            }
        }
        Ok(out)
    }
}

fn parse_threshold(value: &str) -> Option<Threshold> {
    if let Some(p) = value.strip_suffix('%') {
        let p: f64 = p.parse().ok()?;
        return (0.0..=100.0).contains(&p).then_some(Threshold::Percent(p));
    }
    let units = [
        ("Ki", 1u64 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
    ];
    for (suffix, factor) in units {
        if let Some(n) = value.strip_suffix(suffix) {
            return n.parse::<u64>().ok().map(|n| Threshold::Bytes(n * factor));
        }
    }
    value.parse().ok().map(Threshold::Bytes)
}

/// Upstream's cap on the images listed in the status (`--node-status-max-images`).
const MAX_IMAGES: usize = 50;

/// What the status is built from besides the machine.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// `containerd://1.6.20` (CRI Version's runtime name and version).
    pub runtime_version: String,
    /// Why the node is not ready (the runtime's or its network's conditions); empty when ready.
    pub runtime_errors: Vec<String>,
    /// MemAvailable, bytes.
    pub memory_available: Option<u64>,
    /// The data dir's filesystem now.
    pub nodefs: Option<Filesystem>,
    pub images: Vec<ContainerImage>,
    /// The eviction manager's pressure conditions; without one, memory and disk pressure are
    /// the hard thresholds compared with what was observed.
    pub pressure: Option<crate::eviction::Pressure>,
}

/// What the node says about itself that is configured rather than observed.
#[derive(Debug, Clone)]
pub struct Identity {
    pub hostname: String,
    pub address: IpAddr,
    pub kubelet_port: u16,
    pub max_pods: u32,
    pub kubelet_version: String,
    pub thresholds: Thresholds,
}

pub fn capacity(machine: &Machine, max_pods: u32) -> BTreeMap<String, Quantity> {
    let q = |s: String| Quantity(s);
    BTreeMap::from([
        ("cpu".to_string(), q(machine.cpus.to_string())),
        ("memory".to_string(), q(bytes_quantity(machine.memory))),
        ("pods".to_string(), q(max_pods.to_string())),
        (
            "ephemeral-storage".to_string(),
            q(bytes_quantity(machine.filesystem)),
        ),
        ("hugepages-1Gi".to_string(), q("0".into())),
        ("hugepages-2Mi".to_string(), q("0".into())),
    ])
}

/// Capacity minus the hard eviction thresholds (no kube/system reservations are configured).
pub fn allocatable(
    machine: &Machine,
    max_pods: u32,
    thresholds: &Thresholds,
) -> BTreeMap<String, Quantity> {
    let mut all = capacity(machine, max_pods);
    let memory = machine
        .memory
        .saturating_sub(thresholds.memory_available.bytes(machine.memory));
    all.insert("memory".into(), Quantity(bytes_quantity(memory)));
    let reserve = thresholds.nodefs_available.bytes(machine.filesystem);
    let storage = machine.filesystem.saturating_sub(reserve);
    all.insert("ephemeral-storage".into(), Quantity(storage.to_string()));
    all
}

pub fn memory_pressure(observed: &Observed, machine: &Machine, thresholds: &Thresholds) -> bool {
    let limit = thresholds.memory_available.bytes(machine.memory);
    observed.memory_available.is_some_and(|a| a < limit)
}

pub fn disk_pressure(observed: &Observed, thresholds: &Thresholds) -> bool {
    observed
        .nodefs
        .is_some_and(|fs| fs.available < thresholds.nodefs_available.bytes(fs.capacity))
}

/// The conditions in upstream's order, keeping each one's transition time while its status
/// stays and stamping `now` as the heartbeat.
pub fn conditions(
    observed: &Observed,
    pressure: crate::eviction::Pressure,
    old: &[NodeCondition],
    now: Timestamp,
) -> Vec<NodeCondition> {
    let (memory_pressure, disk_pressure) = (pressure.memory, pressure.disk);
    let memory = if memory_pressure {
        (
            "True",
            "KubeletHasInsufficientMemory",
            "kubelet has insufficient memory available",
        )
    } else {
        (
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        )
    };
    let disk = if disk_pressure {
        (
            "True",
            "KubeletHasDiskPressure",
            "kubelet has disk pressure",
        )
    } else {
        (
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
        )
    };
    let pid = if pressure.pid {
        (
            "True",
            "KubeletHasInsufficientPID",
            "kubelet has insufficient PID available",
        )
    } else {
        (
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        )
    };
    let not_ready = aggregate(&observed.runtime_errors);
    let ready = match &not_ready {
        None => ("True", "KubeletReady", "kubelet is posting ready status"),
        Some(message) => ("False", "KubeletNotReady", message.as_str()),
    };
    [
        ("MemoryPressure", memory),
        ("DiskPressure", disk),
        ("PIDPressure", pid),
        ("Ready", ready),
    ]
    .into_iter()
    .map(|(type_, (status, reason, message))| {
        let previous = old.iter().find(|c| c.type_ == type_);
        let transition = match previous {
            Some(c) if c.status == status => c.last_transition_time.clone(),
            _ => None,
        };
        NodeCondition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            last_heartbeat_time: Some(Time(now)),
            last_transition_time: transition.or(Some(Time(now))),
        }
    })
    .collect()
}

/// Upstream's `utilerrors.NewAggregate(errs).Error()`: one error as is, several in brackets.
fn aggregate(errors: &[String]) -> Option<String> {
    match errors {
        [] => None,
        [one] => Some(one.clone()),
        many => Some(format!("[{}]", many.join(", "))),
    }
}

/// The whole status the kubelet owns.
pub fn desired(
    identity: &Identity,
    machine: &Machine,
    observed: &Observed,
    old: Option<&NodeStatus>,
    now: Timestamp,
) -> NodeStatus {
    let old_conditions = old
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let pressure = observed.pressure.unwrap_or(crate::eviction::Pressure {
        memory: memory_pressure(observed, machine, &identity.thresholds),
        disk: disk_pressure(observed, &identity.thresholds),
        pid: false,
    });
    NodeStatus {
        capacity: Some(capacity(machine, identity.max_pods)),
        allocatable: Some(allocatable(
            machine,
            identity.max_pods,
            &identity.thresholds,
        )),
        conditions: Some(conditions(observed, pressure, old_conditions, now)),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: identity.address.to_string(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: identity.hostname.clone(),
            },
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: identity.kubelet_port as i32,
            }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: go_arch().into(),
            boot_id: machine.boot_id.clone(),
            container_runtime_version: observed.runtime_version.clone(),
            kernel_version: machine.kernel_version.clone(),
            kube_proxy_version: String::new(),
            kubelet_version: identity.kubelet_version.clone(),
            machine_id: machine.machine_id.clone(),
            operating_system: "linux".into(),
            os_image: machine.os_image.clone(),
            system_uuid: machine.system_uuid.clone(),
            swap: None,
        }),
        images: Some(top_images(&observed.images)),
        ..Default::default()
    }
}

/// The largest images first, at most [`MAX_IMAGES`], as upstream lists them.
fn top_images(images: &[ContainerImage]) -> Vec<ContainerImage> {
    let mut images = images.to_vec();
    images.sort_by(|a, b| b.size_bytes.cmp(&a.size_bytes).then(a.names.cmp(&b.names)));
    images.truncate(MAX_IMAGES);
    images
}

/// The node events upstream's condition setters record when a condition changes (or first
/// appears): `NodeHasInsufficientMemory`, `NodeHasNoDiskPressure`, `NodeReady`, ...
pub fn condition_events(old: Option<&NodeStatus>, new: &NodeStatus) -> Vec<&'static str> {
    let status_of = |s: Option<&NodeStatus>, type_: &str| {
        s.and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == type_))
            .map(|c| c.status.clone())
    };
    let table = [
        (
            "MemoryPressure",
            "NodeHasInsufficientMemory",
            "NodeHasSufficientMemory",
        ),
        (
            "DiskPressure",
            "NodeHasDiskPressure",
            "NodeHasNoDiskPressure",
        ),
        (
            "PIDPressure",
            "NodeHasInsufficientPID",
            "NodeHasSufficientPID",
        ),
        ("Ready", "NodeReady", "NodeNotReady"),
    ];
    table
        .into_iter()
        .filter_map(|(type_, when_true, when_false)| {
            let now = status_of(Some(new), type_)?;
            if status_of(old, type_).as_ref() == Some(&now) {
                return None;
            }
            Some(if now == "True" { when_true } else { when_false })
        })
        .collect()
}

/// Whether `new` says anything `old` does not, heartbeat times aside (upstream's
/// nodeStatusHasChanged): only then is a status update sent before the report interval.
pub fn changed(old: Option<&NodeStatus>, new: &NodeStatus) -> bool {
    let Some(old) = old else { return true };
    let strip = |s: &NodeStatus| {
        let mut s = s.clone();
        for c in s.conditions.iter_mut().flatten() {
            c.last_heartbeat_time = None;
        }
        // Fields another writer owns (the attach/detach controller) are not the kubelet's.
        s.volumes_attached = None;
        s.volumes_in_use = None;
        s.phase = None;
        s.config = None;
        s.features = None;
        s.runtime_handlers = None;
        s
    };
    strip(old) != strip(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> Machine {
        Machine {
            cpus: 2,
            memory: 4 * 1024 * 1024 * 1024,
            filesystem: 1000 * 1024 * 1024,
            ..Default::default()
        }
    }

    fn identity() -> Identity {
        Identity {
            hostname: "n1".into(),
            address: "10.0.0.5".parse().unwrap(),
            kubelet_port: 10250,
            max_pods: 110,
            kubelet_version: "v1.33.0".into(),
            thresholds: Thresholds::default(),
        }
    }

    #[test]
    fn capacity_and_allocatable() {
        let cap = capacity(&machine(), 110);
        assert_eq!(cap["cpu"].0, "2");
        assert_eq!(cap["memory"].0, "4194304Ki");
        assert_eq!(cap["pods"].0, "110");
        let alloc = allocatable(&machine(), 110, &Thresholds::default());
        assert_eq!(alloc["memory"].0, "4091904Ki");
        assert_eq!(
            alloc["ephemeral-storage"].0,
            (1000u64 * 1024 * 1024 / 100 * 90).to_string()
        );
    }

    #[test]
    fn condition_changes_are_upstreams_node_events() {
        let status = |memory: &str, ready: &str| NodeStatus {
            conditions: Some(vec![
                NodeCondition {
                    type_: "MemoryPressure".into(),
                    status: memory.into(),
                    ..Default::default()
                },
                NodeCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        let first = status("False", "False");
        assert_eq!(
            condition_events(None, &first),
            ["NodeHasSufficientMemory", "NodeNotReady"]
        );
        let pressure = status("True", "False");
        assert_eq!(
            condition_events(Some(&first), &pressure),
            ["NodeHasInsufficientMemory"]
        );
        assert!(condition_events(Some(&pressure), &pressure).is_empty());
    }

    #[test]
    fn conditions_keep_transition_times_and_say_why_not_ready() {
        let t0 = Timestamp::from_second(1_000_000).unwrap();
        let t1 = Timestamp::from_second(1_000_100).unwrap();
        let not_ready = Observed {
            runtime_errors: vec!["container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:cni plugin not initialized".into()],
            memory_available: Some(50 * 1024 * 1024),
            ..Default::default()
        };
        let first = conditions(
            &not_ready,
            crate::eviction::Pressure {
                memory: true,
                disk: false,
                pid: false,
            },
            &[],
            t0,
        );
        let types: Vec<_> = first.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(
            types,
            ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
        );
        assert_eq!(first[0].status, "True");
        assert_eq!(
            first[0].reason.as_deref(),
            Some("KubeletHasInsufficientMemory")
        );
        assert_eq!(first[3].status, "False");
        assert_eq!(first[3].reason.as_deref(), Some("KubeletNotReady"));
        assert!(first[3]
            .message
            .as_deref()
            .unwrap()
            .starts_with("container runtime network not ready"));

        let ready = Observed {
            memory_available: Some(50 * 1024 * 1024),
            ..Default::default()
        };
        let second = conditions(
            &ready,
            crate::eviction::Pressure {
                memory: true,
                disk: false,
                pid: false,
            },
            &first,
            t1,
        );
        assert_eq!(second[3].reason.as_deref(), Some("KubeletReady"));
        assert_eq!(
            second[3].message.as_deref(),
            Some("kubelet is posting ready status")
        );
        assert_eq!(second[3].last_transition_time, Some(Time(t1)));
        assert_eq!(second[0].last_transition_time, Some(Time(t0)));
        assert_eq!(second[0].last_heartbeat_time, Some(Time(t1)));
    }

    #[test]
    fn thresholds_parse_and_decide_pressure() {
        let t: Thresholds = "memory.available<200Mi, nodefs.available<5%"
            .parse()
            .unwrap();
        assert_eq!(t.memory_available, Threshold::Bytes(200 << 20));
        assert_eq!(t.nodefs_available, Threshold::Percent(5.0));
        assert!("cpu.available<10%".parse::<Thresholds>().is_err());
        assert!("pid.available<10%".parse::<Thresholds>().is_ok());
        assert!("memory.available=1".parse::<Thresholds>().is_err());
        assert!("nodefs.available<150%".parse::<Thresholds>().is_err());
        let fs = Filesystem {
            capacity: 1000,
            available: 40,
        };
        let observed = Observed {
            nodefs: Some(fs),
            memory_available: Some(150 << 20),
            ..Default::default()
        };
        assert!(disk_pressure(&observed, &Thresholds::default()));
        assert!(!disk_pressure(
            &observed,
            &"nodefs.available<4%".parse().unwrap()
        ));
        assert!(!memory_pressure(
            &observed,
            &machine(),
            &Thresholds::default()
        ));
        assert!(memory_pressure(&observed, &machine(), &t));
        let c = desired(&identity(), &machine(), &observed, None, Timestamp::now());
        let disk = &c.conditions.unwrap()[1];
        assert_eq!(
            (disk.status.as_str(), disk.reason.as_deref()),
            ("True", Some("KubeletHasDiskPressure"))
        );
    }

    #[test]
    fn only_real_changes_count() {
        let t0 = Timestamp::from_second(1_000_000).unwrap();
        let t1 = Timestamp::from_second(1_000_010).unwrap();
        let observed = Observed::default();
        let a = desired(&identity(), &machine(), &observed, None, t0);
        let b = desired(&identity(), &machine(), &observed, Some(&a), t1);
        assert!(!changed(Some(&a), &b));
        assert!(changed(None, &b));
        let pressured = Observed {
            memory_available: Some(1),
            ..Default::default()
        };
        let c = desired(&identity(), &machine(), &pressured, Some(&a), t1);
        assert!(changed(Some(&a), &c));
    }
}
