//! NodePorts: two pods cannot use the same host port, protocol and host IP on one node
//! (`0.0.0.0` or an empty IP conflicts with every IP).

use super::{Filtered, Rejection};
use crate::cache::NodeInfo;
use k8s_openapi::api::core::v1::PodSpec;

pub const REASON: &str = "node(s) didn't have free ports for the requested pod ports";

/// A host port a container asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

impl HostPort {
    fn conflicts(&self, other: &HostPort) -> bool {
        let wildcard = |ip: &str| ip.is_empty() || ip == "0.0.0.0";
        self.port == other.port
            && self.protocol == other.protocol
            && (wildcard(&self.ip) || wildcard(&other.ip) || self.ip == other.ip)
    }
}

/// The host ports of the pod's containers (init containers included, as upstream).
pub fn host_ports(spec: &PodSpec) -> Vec<HostPort> {
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|p| *p > 0)?;
            Some(HostPort {
                ip: p.host_ip.clone().unwrap_or_default(),
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                port,
            })
        })
        .collect()
}

pub fn filter(wanted: &[HostPort], node: &NodeInfo) -> Filtered {
    let taken = node.pods.iter().flat_map(|p| p.ports.iter());
    let mut conflict = false;
    for used in taken {
        if wanted.iter().any(|w| w.conflicts(used)) {
            conflict = true;
            break;
        }
    }
    if conflict {
        Err(Rejection::unschedulable(REASON))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{node, pod, PodExt};

    #[test]
    fn same_host_port_conflicts() {
        let n = NodeInfo::new(
            node("n", "1", "1Gi"),
            [pod("a", "", "").host_port(8080).on("n")],
        );
        let p = pod("b", "", "").host_port(8080);
        let err = filter(&host_ports(p.spec.as_ref().unwrap()), &n).unwrap_err();
        assert_eq!(err.reasons, vec![REASON]);
        let q = pod("c", "", "").host_port(8081);
        assert!(filter(&host_ports(q.spec.as_ref().unwrap()), &n).is_ok());
    }

    #[test]
    fn different_ips_or_protocols_do_not_conflict() {
        let a = HostPort {
            ip: "10.0.0.1".into(),
            protocol: "TCP".into(),
            port: 80,
        };
        let b = HostPort {
            ip: "10.0.0.2".into(),
            protocol: "TCP".into(),
            port: 80,
        };
        let c = HostPort {
            ip: "0.0.0.0".into(),
            protocol: "TCP".into(),
            port: 80,
        };
        let d = HostPort {
            ip: "".into(),
            protocol: "UDP".into(),
            port: 80,
        };
        assert!(!a.conflicts(&b));
        assert!(a.conflicts(&c));
        assert!(!c.conflicts(&d));
    }
}
