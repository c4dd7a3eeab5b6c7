//! The three layouts krust reproduces, and the defaults that come with each.

use std::net::{IpAddr, Ipv4Addr};
use std::{fmt, str::FromStr};

use serde::Serialize;

use crate::service::{Bind, Port, Service};

/// A preset that reproduces one seed system's services, ports and defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// The standard ports every tool expects, Node,RBAC, no legacy unauthenticated ports.
    #[default]
    Upstream,
    /// MicroK8s's documented layout, legacy ports and AlwaysAllow included (seeds 000 and 002).
    Microk8s,
    /// Canonical Kubernetes's layout (seed 001).
    Canonical,
}

/// Which engine stores the cluster's state; Canonical's datastore port depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DatastoreKind {
    #[default]
    Embedded,
    Etcd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AuthorizationMode {
    AlwaysAllow,
    #[serde(rename = "Node,RBAC")]
    NodeRbac,
}

impl fmt::Display for AuthorizationMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthorizationMode::AlwaysAllow => "AlwaysAllow",
            AuthorizationMode::NodeRbac => "Node,RBAC",
        })
    }
}

/// What a profile decides besides ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileDefaults {
    pub authorization_mode: AuthorizationMode,
    /// The service ClusterIP range, as `ADDRESS/PREFIX`.
    pub service_cidr: &'static str,
    /// The first address of the service range: the `kubernetes` service's ClusterIP, and a SAN
    /// of the API server's certificate.
    pub first_service_ip: IpAddr,
    pub pod_cidr: &'static str,
    pub cluster_domain: &'static str,
}

impl Profile {
    pub const ALL: [Profile; 3] = [Profile::Upstream, Profile::Microk8s, Profile::Canonical];

    pub fn name(self) -> &'static str {
        match self {
            Profile::Upstream => "upstream",
            Profile::Microk8s => "microk8s",
            Profile::Canonical => "canonical",
        }
    }

    pub fn defaults(self) -> ProfileDefaults {
        match self {
            Profile::Upstream => ProfileDefaults {
                authorization_mode: AuthorizationMode::NodeRbac,
                service_cidr: "10.96.0.0/12",
                first_service_ip: Ipv4Addr::new(10, 96, 0, 1).into(),
                pod_cidr: "10.244.0.0/16",
                cluster_domain: "cluster.local",
            },
            Profile::Microk8s => ProfileDefaults {
                authorization_mode: AuthorizationMode::AlwaysAllow,
                service_cidr: "10.152.183.0/24",
                first_service_ip: Ipv4Addr::new(10, 152, 183, 1).into(),
                pod_cidr: "10.1.0.0/16",
                cluster_domain: "cluster.local",
            },
            Profile::Canonical => ProfileDefaults {
                authorization_mode: AuthorizationMode::NodeRbac,
                service_cidr: "10.152.183.0/24",
                first_service_ip: Ipv4Addr::new(10, 152, 183, 1).into(),
                pod_cidr: "10.1.0.0/16",
                cluster_domain: "cluster.local",
            },
        }
    }

    /// The port and bind interface of `service` in this layout, and whether it runs by default.
    /// A legacy service that is documented but off unless asked (the insecure API port) has its
    /// conventional port and `enabled == false`.
    pub(crate) fn preset(self, service: Service, datastore: DatastoreKind) -> (Port, Bind, bool) {
        use Bind::{Host, Local, Localhost};
        use Port::{One, Range, Socket};
        use Profile::{Canonical, Microk8s, Upstream};
        let on = |port, bind| (port, bind, true);
        let off = |port, bind| (port, bind, false);
        match (service, self) {
            (Service::Apiserver, Microk8s) => on(One(16443), Host),
            (Service::Apiserver, _) => on(One(6443), Host),
            (Service::ApiserverInsecure, _) => off(One(8080), Localhost),
            (Service::Kubelet, _) => on(One(10250), Host),
            (Service::KubeletReadonly, Microk8s) => on(One(10255), Host),
            (Service::KubeletReadonly, _) => off(One(10255), Host),
            (Service::KubeletHealthz, _) => on(One(10248), Localhost),
            (Service::ProxyMetrics, _) => on(One(10249), Localhost),
            // The MicroK8s and Canonical pages list 10256 among localhost services, but DESIGN.md
            // binds it to the host in every layout: load balancers probe it from outside.
            (Service::ProxyHealthz, _) => on(One(10256), Host),
            (Service::Scheduler, _) => on(One(10259), Host),
            (Service::SchedulerInsecure, Microk8s) => on(One(10251), Localhost),
            (Service::SchedulerInsecure, _) => off(One(10251), Localhost),
            (Service::ControllerManager, _) => on(One(10257), Host),
            (Service::ControllerManagerInsecure, Microk8s) => on(One(10252), Localhost),
            (Service::ControllerManagerInsecure, _) => off(One(10252), Localhost),
            (Service::Datastore, Microk8s) => on(One(12379), Host),
            (Service::Datastore, Canonical) if datastore == DatastoreKind::Embedded => {
                on(One(9000), Host)
            }
            (Service::Datastore, _) => on(One(2379), Host),
            (Service::DatastorePeer, Microk8s) => on(One(19001), Host),
            (Service::DatastorePeer, Canonical) => on(One(2380), Localhost),
            (Service::DatastorePeer, Upstream) => on(One(2380), Host),
            (Service::ClusterAgent, Canonical) => on(One(6400), Host),
            (Service::ClusterAgent, _) => on(One(25000), Host),
            (Service::Containerd, _) => on(Socket, Local),
            (Service::ContainerdMetrics, Microk8s) => on(One(1338), Localhost),
            (Service::ContainerdMetrics, _) => off(One(1338), Localhost),
            (Service::Vxlan, Canonical) => on(One(8472), Host),
            (Service::Vxlan, _) => on(One(4789), Host),
            (Service::NetworkHealth, Canonical) => on(One(4240), Host),
            (Service::NetworkHealth, _) => off(One(4240), Host),
            (Service::NetworkHealthLocal, Canonical) => on(One(9879), Localhost),
            (Service::NetworkHealthLocal, _) => off(One(9879), Localhost),
            (Service::Nodeport, _) => on(Range(30000, 32767), Host),
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Profile {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Profile::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown profile {s:?}: choose upstream, microk8s or canonical"))
    }
}
