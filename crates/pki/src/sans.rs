//! Subject alternative names: the machine's addresses and the fixed names every client of the API
//! server may use (`kubernetes.default.svc`, the first service IP, localhost, ...).

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, UdpSocket};

use rcgen::SanType;

use crate::PkiError;

/// The in-cluster DNS names of the API server's `kubernetes` service.
pub const KUBERNETES_NAMES: [&str; 5] = [
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster",
    "kubernetes.default.svc.cluster.local",
];

/// One subject alternative name. Displays like openssl does (`DNS:x`, `IP Address:x`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum San {
    Dns(String),
    Ip(IpAddr),
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(name) => write!(f, "DNS:{name}"),
            San::Ip(ip) => write!(f, "IP Address:{ip}"),
        }
    }
}

impl San {
    pub(crate) fn to_rcgen(&self) -> Result<SanType, PkiError> {
        Ok(match self {
            San::Ip(ip) => SanType::IpAddress(*ip),
            San::Dns(name) => SanType::DnsName(
                name.as_str()
                    .try_into()
                    .map_err(|e| PkiError::issue(format!("SAN {name}"), e))?,
            ),
        })
    }
}

/// Every address on this machine that a client elsewhere could use to reach it: loopback and
/// link-local addresses are left out (they are either added explicitly or not routable), the
/// rest is sorted so that the list, and the certificates built from it, are stable.
pub fn machine_addresses() -> Vec<IpAddr> {
    let ifaces = match if_addrs::get_if_addrs() {
        Ok(ifaces) => ifaces,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list network interfaces; certificates get loopback names only");
            return Vec::new();
        }
    };
    let set: BTreeSet<IpAddr> = ifaces
        .iter()
        .filter(|i| !i.is_loopback() && !i.is_link_local())
        .map(|i| i.ip())
        .collect();
    set.into_iter().collect()
}

/// The address other machines most likely reach this one on: the source address of the default
/// route when there is one (found without sending a packet), else the first machine address,
/// else 127.0.0.1. `krust config` puts it in the kubeconfig it prints.
pub fn primary_address() -> IpAddr {
    default_route_source()
        .or_else(|| machine_addresses().into_iter().find(IpAddr::is_ipv4))
        .or_else(|| machine_addresses().into_iter().next())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

fn default_route_source() -> Option<IpAddr> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    // Connecting a UDP socket only selects a route; TEST-NET-1 is never actually contacted.
    socket.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified() && !ip.is_loopback()).then_some(ip)
}

/// localhost, 127.0.0.1 and the machine's addresses: the names of any local service.
pub fn local_sans(hosts: &[IpAddr]) -> Vec<San> {
    let mut sans = vec![
        San::Dns("localhost".into()),
        San::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    ];
    sans.extend(hosts.iter().copied().map(San::Ip));
    sans
}

/// The API server's SANs: local names, the service IP, the `kubernetes` names and `extra` (from
/// csr.conf.template), without duplicates, in that order.
pub fn server_sans(hosts: &[IpAddr], service_ip: IpAddr, extra: &[San]) -> Vec<San> {
    let mut sans = local_sans(hosts);
    sans.push(San::Ip(service_ip));
    sans.extend(KUBERNETES_NAMES.iter().map(|n| San::Dns((*n).into())));
    sans.extend(extra.iter().cloned());
    dedup(sans)
}

/// Removes later duplicates, keeping the first occurrence's position.
pub fn dedup(sans: Vec<San>) -> Vec<San> {
    let mut seen = BTreeSet::new();
    sans.into_iter()
        .filter(|s| seen.insert(s.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_sans_cover_the_fixed_names_once() {
        let svc: IpAddr = "10.152.183.1".parse().expect("ip");
        let extra = [
            San::Dns("kubernetes".into()),
            San::Dns("mydomain.example".into()),
        ];
        let sans = server_sans(&[], svc, &extra);
        assert_eq!(sans.len(), 2 + 1 + 5 + 1);
        assert!(sans.contains(&San::Ip(svc)));
        assert_eq!(sans.last(), Some(&San::Dns("mydomain.example".into())));
    }

    #[test]
    fn machine_addresses_skip_loopback() {
        assert!(machine_addresses().iter().all(|ip| !ip.is_loopback()));
    }
}
