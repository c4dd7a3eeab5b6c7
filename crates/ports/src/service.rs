//! The services krust can run, and the vocabulary of the ports table: protocol, bind interface,
//! port value.

use serde::Serialize;
use std::fmt;

/// Every service of the seed documents, by the key `--port KEY=PORT` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Service {
    Apiserver,
    ApiserverInsecure,
    Kubelet,
    KubeletReadonly,
    KubeletHealthz,
    ProxyMetrics,
    ProxyHealthz,
    Scheduler,
    SchedulerInsecure,
    ControllerManager,
    ControllerManagerInsecure,
    Datastore,
    DatastorePeer,
    ClusterAgent,
    Containerd,
    ContainerdMetrics,
    Vxlan,
    NetworkHealth,
    NetworkHealthLocal,
    Nodeport,
}

impl Service {
    /// In table order (the order of DESIGN.md's and the seeds' tables).
    pub const ALL: [Service; 20] = [
        Service::Apiserver,
        Service::ApiserverInsecure,
        Service::Kubelet,
        Service::KubeletReadonly,
        Service::KubeletHealthz,
        Service::ProxyMetrics,
        Service::ProxyHealthz,
        Service::Scheduler,
        Service::SchedulerInsecure,
        Service::ControllerManager,
        Service::ControllerManagerInsecure,
        Service::Datastore,
        Service::DatastorePeer,
        Service::ClusterAgent,
        Service::Containerd,
        Service::ContainerdMetrics,
        Service::Vxlan,
        Service::NetworkHealth,
        Service::NetworkHealthLocal,
        Service::Nodeport,
    ];

    pub fn key(self) -> &'static str {
        self.info().0
    }

    pub fn from_key(key: &str) -> Option<Service> {
        Service::ALL.into_iter().find(|s| s.key() == key)
    }

    /// The service column of the seed tables.
    pub fn description(self) -> &'static str {
        self.info().1
    }

    /// Who may connect and how, as the seed documents state it.
    pub fn access(self) -> &'static str {
        self.info().2
    }

    /// Legacy services exist for compatibility with an older layout and are off unless a profile
    /// that documents them (or the user) turns them on.
    pub fn is_legacy(self) -> bool {
        matches!(
            self,
            Service::ApiserverInsecure
                | Service::KubeletReadonly
                | Service::SchedulerInsecure
                | Service::ControllerManagerInsecure
        )
    }

    /// Services that answer without any authentication; `krust ports` flags them so that an
    /// operator sees at a glance what a host firewall must cover.
    pub fn is_unauthenticated(self) -> bool {
        matches!(
            self,
            Service::ApiserverInsecure
                | Service::KubeletReadonly
                | Service::KubeletHealthz
                | Service::ProxyMetrics
                | Service::ProxyHealthz
                | Service::SchedulerInsecure
                | Service::ControllerManagerInsecure
                | Service::ContainerdMetrics
                | Service::NetworkHealth
                | Service::NetworkHealthLocal
        )
    }

    pub fn protocol(self) -> Protocol {
        match self {
            Service::Vxlan => Protocol::Udp,
            Service::Containerd => Protocol::Unix,
            _ => Protocol::Tcp,
        }
    }

    fn info(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Service::Apiserver => ("apiserver", "kube-apiserver", "TLS; x509 client certificate, static token or service-account token; basic auth only if enabled"),
            Service::ApiserverInsecure => ("apiserver-insecure", "kube-apiserver (insecure, legacy)", "none: no authentication or authorization; localhost only"),
            Service::Kubelet => ("kubelet", "kubelet", "TLS; anonymous authentication disabled; x509 client certificate required; authorized by SubjectAccessReview"),
            Service::KubeletReadonly => ("kubelet-readonly", "kubelet (read-only, legacy)", "none; read only, never serves secrets, exec or logs"),
            Service::KubeletHealthz => ("kubelet-healthz", "kubelet healthz", "none"),
            Service::ProxyMetrics => ("proxy-metrics", "kube-proxy metrics", "none"),
            Service::ProxyHealthz => ("proxy-healthz", "kube-proxy healthz", "none (load balancers probe it)"),
            Service::Scheduler => ("scheduler", "kube-scheduler", "HTTPS; authentication and authorization delegated to the API server"),
            Service::SchedulerInsecure => ("scheduler-insecure", "kube-scheduler (insecure healthz/metrics, legacy)", "none"),
            Service::ControllerManager => ("controller-manager", "kube-controller-manager", "HTTPS; authentication and authorization delegated to the API server"),
            Service::ControllerManagerInsecure => ("controller-manager-insecure", "kube-controller-manager (insecure healthz/metrics, legacy)", "none"),
            Service::Datastore => ("datastore", "datastore (etcd v3 API)", "TLS; client certificate required"),
            Service::DatastorePeer => ("datastore-peer", "datastore peer", "TLS; client certificate required"),
            Service::ClusterAgent => ("cluster-agent", "cluster agent (join, node management)", "TLS; single-use or expiring join token, pinned to the cluster CA"),
            Service::Containerd => ("containerd", "containerd", "file permissions (root)"),
            Service::ContainerdMetrics => ("containerd-metrics", "containerd metrics", "none"),
            Service::Vxlan => ("vxlan", "overlay network (VXLAN)", "node-to-node only"),
            Service::NetworkHealth => ("network-health", "network agent health", "none"),
            Service::NetworkHealthLocal => ("network-health-local", "network agent health (local)", "none"),
            Service::Nodeport => ("nodeport", "NodePort services", "whatever the service exposes"),
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Unix,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Unix => "unix",
        })
    }
}

/// Which interface a listener binds: the seeds' two groups, plus unix sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Bind {
    /// The default host interface (all addresses): reachable from outside the host.
    Host,
    /// 127.0.0.1 only.
    Localhost,
    /// A unix socket under the data dir.
    Local,
}

impl Bind {
    /// The address a TCP/UDP listener binds to.
    pub fn ip(self) -> std::net::IpAddr {
        match self {
            Bind::Host => std::net::Ipv4Addr::UNSPECIFIED.into(),
            Bind::Localhost | Bind::Local => std::net::Ipv4Addr::LOCALHOST.into(),
        }
    }
}

impl fmt::Display for Bind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Bind::Host => "host",
            Bind::Localhost => "localhost",
            Bind::Local => "local",
        })
    }
}

/// A service's port in one layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Port {
    /// The service does not run in this layout.
    Off,
    One(u16),
    /// Inclusive range (NodePorts).
    Range(u16, u16),
    /// A unix socket (containerd).
    Socket,
}

impl Port {
    /// The ports this value occupies, for collision checks.
    pub(crate) fn span(self) -> Option<(u16, u16)> {
        match self {
            Port::One(p) => Some((p, p)),
            Port::Range(lo, hi) => Some((lo, hi)),
            Port::Off | Port::Socket => None,
        }
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Port::Off => f.write_str("off"),
            Port::One(p) => write!(f, "{p}"),
            Port::Range(lo, hi) => write!(f, "{lo}-{hi}"),
            Port::Socket => f.write_str("socket"),
        }
    }
}
