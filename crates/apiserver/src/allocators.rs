//! Service ClusterIP and NodePort allocation. The allocated sets live in memory and are rebuilt
//! from the stored Services at start, so the stored objects stay the only source of truth (upstream
//! keeps a bitmap in etcd and a repair loop; rebuilding on start gives the same guarantee here
//! because this process is the only writer).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::sync::Mutex;

use rand::Rng;
use serde_json::{json, Value};
use thiserror::Error;

use crate::kinds::Cause;
use crate::status::cause;

#[derive(Debug, Error)]
#[error("invalid service CIDR {0:?}")]
pub struct CidrError(String);

/// An IP network as (first address, prefix length), both as 128-bit numbers so IPv4 and IPv6 share code.
#[derive(Debug, Clone)]
pub struct Cidr {
    text: String,
    v6: bool,
    base: u128,
    size: u128,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Self, CidrError> {
        let err = || CidrError(s.to_string());
        let (ip, bits) = s.split_once('/').ok_or_else(err)?;
        let ip: IpAddr = ip.parse().map_err(|_| err())?;
        let bits: u32 = bits.parse().map_err(|_| err())?;
        let (v6, width, n) = match ip {
            IpAddr::V4(a) => (false, 32, u32::from(a) as u128),
            IpAddr::V6(a) => (true, 128, u128::from(a)),
        };
        if bits > width || width - bits < 2 {
            return Err(err());
        }
        let host_bits = width - bits;
        let size = if host_bits >= 128 {
            u128::MAX
        } else {
            1u128 << host_bits
        };
        Ok(Cidr {
            text: s.to_string(),
            v6,
            base: n & !(size - 1),
            size,
        })
    }

    fn ip(&self, offset: u128) -> IpAddr {
        let n = self.base + offset;
        if self.v6 {
            IpAddr::V6(n.into())
        } else {
            IpAddr::V4((n as u32).into())
        }
    }

    fn offset(&self, ip: IpAddr) -> Option<u128> {
        let n = match (ip, self.v6) {
            (IpAddr::V4(a), false) => u32::from(a) as u128,
            (IpAddr::V6(a), true) => u128::from(a),
            _ => return None,
        };
        // The network and broadcast addresses are never handed out, as upstream.
        (n > self.base && n - self.base < self.size - 1).then(|| n - self.base)
    }

    /// The first usable address: the `kubernetes` Service's ClusterIP.
    pub fn first(&self) -> IpAddr {
        self.ip(1)
    }
}

pub struct Allocators {
    cidr: Cidr,
    ips: Mutex<BTreeSet<u128>>,
    node_ports: RangeInclusive<u16>,
    ports: Mutex<BTreeSet<u16>>,
}

impl Allocators {
    pub fn new(cidr: Cidr, node_ports: RangeInclusive<u16>) -> Self {
        Allocators {
            cidr,
            ips: Mutex::default(),
            node_ports,
            ports: Mutex::default(),
        }
    }

    pub fn first_ip(&self) -> IpAddr {
        self.cidr.first()
    }

    /// Marks what a stored Service holds (start-up recovery).
    pub fn recover(&self, svc: &Value) {
        for ip in cluster_ips(svc) {
            if let Some(off) = ip.parse().ok().and_then(|ip| self.cidr.offset(ip)) {
                lock(&self.ips).insert(off);
            }
        }
        for port in node_ports(svc) {
            lock(&self.ports).insert(port);
        }
    }

    /// Gives a new Service its ClusterIP and NodePorts, honouring requested ones. On error
    /// nothing stays allocated.
    pub fn allocate(&self, svc: &mut Value) -> Result<(), Vec<Cause>> {
        let ip = self.allocate_ip(svc)?;
        if let Err(causes) = self.allocate_ports(svc, None) {
            if let Some(off) = ip {
                lock(&self.ips).remove(&off);
            }
            return Err(causes);
        }
        Ok(())
    }

    /// Keeps the ClusterIP (immutable) and assigns NodePorts that the new spec needs.
    pub fn reallocate(&self, svc: &mut Value, old: &Value) -> Result<(), Vec<Cause>> {
        if svc["spec"]["clusterIP"].as_str().unwrap_or("").is_empty() {
            svc["spec"]["clusterIP"] = old["spec"]["clusterIP"].clone();
            if !old["spec"]["clusterIPs"].is_null() {
                svc["spec"]["clusterIPs"] = old["spec"]["clusterIPs"].clone();
            }
        }
        self.allocate_ports(svc, Some(old))?;
        for gone in node_ports(old).difference(&node_ports(svc)) {
            lock(&self.ports).remove(gone);
        }
        Ok(())
    }

    /// Undoes [`Allocators::reallocate`] of `old` into `svc` for a write that is not stored (a
    /// dry run): node ports it took are free again, those it freed are taken again.
    pub fn undo_reallocate(&self, svc: &Value, old: &Value) {
        let (now, before) = (node_ports(svc), node_ports(old));
        let mut taken = lock(&self.ports);
        for p in now.difference(&before) {
            taken.remove(p);
        }
        taken.extend(before.difference(&now));
    }

    pub fn release(&self, svc: &Value) {
        for ip in cluster_ips(svc) {
            if let Some(off) = ip.parse().ok().and_then(|ip| self.cidr.offset(ip)) {
                lock(&self.ips).remove(&off);
            }
        }
        for port in node_ports(svc) {
            lock(&self.ports).remove(&port);
        }
    }

    fn allocate_ip(&self, svc: &mut Value) -> Result<Option<u128>, Vec<Cause>> {
        let spec = &svc["spec"];
        if spec["type"] == "ExternalName" {
            return Ok(None);
        }
        let requested = spec["clusterIP"].as_str().unwrap_or("").to_string();
        if requested == "None" {
            svc["spec"]["clusterIPs"] = json!(["None"]);
            return Ok(None);
        }
        let invalid = |ip: &str, msg: String| {
            vec![cause(
                "FieldValueInvalid",
                "spec.clusterIPs[0]",
                format!("Invalid value: {ip:?}: {msg}"),
            )]
        };
        let mut ips = lock(&self.ips);
        let off = if requested.is_empty() {
            self.pick_ip(&ips).ok_or_else(|| {
                vec![cause(
                    "FieldValueInvalid",
                    "spec.clusterIPs",
                    "Internal error: failed to allocate a serviceIP: range is full".into(),
                )]
            })?
        } else {
            let range_msg = format!(
                "provided IP is not in the valid range. The range of valid IPs is {}",
                self.cidr.text
            );
            let ip: IpAddr = requested
                .parse()
                .map_err(|_| invalid(&requested, "must be a valid IP address".into()))?;
            let off = self
                .cidr
                .offset(ip)
                .ok_or_else(|| invalid(&requested, range_msg))?;
            if ips.contains(&off) {
                return Err(invalid(
                    &requested,
                    "provided IP is already allocated".into(),
                ));
            }
            off
        };
        ips.insert(off);
        let ip = self.cidr.ip(off).to_string();
        let family = if self.cidr.v6 { "IPv6" } else { "IPv4" };
        let spec = &mut svc["spec"];
        spec["clusterIP"] = json!(ip);
        spec["clusterIPs"] = json!([ip]);
        if spec["ipFamilies"].is_null() {
            spec["ipFamilies"] = json!([family]);
        }
        if spec["ipFamilyPolicy"].is_null() {
            spec["ipFamilyPolicy"] = json!("SingleStack");
        }
        Ok(Some(off))
    }

    /// Random first, then a scan, so allocation stays fast when the range is sparse and still
    /// finds the last free address when it is nearly full. Offset 1 is the `kubernetes` Service's.
    fn pick_ip(&self, taken: &BTreeSet<u128>) -> Option<u128> {
        let last = self.cidr.size - 2;
        let mut rng = rand::rng();
        for _ in 0..16 {
            let off = rng.random_range(2..=last.max(2));
            if !taken.contains(&off) && off <= last {
                return Some(off);
            }
        }
        (2..=last).find(|o| !taken.contains(o))
    }

    fn allocate_ports(&self, svc: &mut Value, old: Option<&Value>) -> Result<(), Vec<Cause>> {
        let ty = svc["spec"]["type"].as_str().unwrap_or("ClusterIP");
        let wants_ports = matches!(ty, "NodePort" | "LoadBalancer");
        let mine = old.map(node_ports).unwrap_or_default();
        let Some(ports) = svc["spec"]["ports"].as_array_mut() else {
            return Ok(());
        };
        let mut taken = lock(&self.ports);
        let mut added = Vec::new();
        let mut causes = Vec::new();
        for (i, port) in ports.iter_mut().enumerate() {
            if !wants_ports {
                if let Some(p) = port.as_object_mut() {
                    p.remove("nodePort");
                }
                continue;
            }
            match port["nodePort"].as_u64() {
                Some(n) => {
                    let field = format!("spec.ports[{i}].nodePort");
                    let n16 = u16::try_from(n)
                        .ok()
                        .filter(|n| self.node_ports.contains(n));
                    let Some(n16) = n16 else {
                        causes.push(cause("FieldValueInvalid", &field, format!("Invalid value: {n}: provided port is not in the valid range. The range of valid ports is {}-{}", self.node_ports.start(), self.node_ports.end())));
                        continue;
                    };
                    if mine.contains(&n16) {
                        continue;
                    }
                    if taken.contains(&n16) {
                        causes.push(cause(
                            "FieldValueInvalid",
                            &field,
                            format!("Invalid value: {n}: provided port is already allocated"),
                        ));
                        continue;
                    }
                    taken.insert(n16);
                    added.push(n16);
                }
                None => match self.pick_port(&taken) {
                    Some(n) => {
                        taken.insert(n);
                        added.push(n);
                        port["nodePort"] = json!(n);
                    }
                    None => causes.push(cause(
                        "FieldValueInvalid",
                        &format!("spec.ports[{i}].nodePort"),
                        "Internal error: range is full".into(),
                    )),
                },
            }
        }
        if !causes.is_empty() {
            for n in added {
                taken.remove(&n);
            }
            return Err(causes);
        }
        Ok(())
    }

    fn pick_port(&self, taken: &BTreeSet<u16>) -> Option<u16> {
        let mut rng = rand::rng();
        for _ in 0..16 {
            let n = rng.random_range(self.node_ports.clone());
            if !taken.contains(&n) {
                return Some(n);
            }
        }
        self.node_ports.clone().find(|n| !taken.contains(n))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn cluster_ips(svc: &Value) -> Vec<String> {
    let mut ips: Vec<String> = svc["spec"]["clusterIPs"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if let Some(ip) = svc["spec"]["clusterIP"].as_str() {
        if !ips.iter().any(|i| i == ip) {
            ips.push(ip.to_string());
        }
    }
    ips
}

fn node_ports(svc: &Value) -> BTreeSet<u16> {
    svc["spec"]["ports"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p["nodePort"].as_u64())
                .filter_map(|n| u16::try_from(n).ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc() -> Allocators {
        Allocators::new(Cidr::parse("10.152.183.0/24").unwrap(), 30000..=32767)
    }

    #[test]
    fn cluster_ip_from_range() {
        let a = alloc();
        assert_eq!(a.first_ip().to_string(), "10.152.183.1");
        let mut s = json!({"spec": {"ports": [{"port": 80}]}});
        a.allocate(&mut s).unwrap();
        let ip = s["spec"]["clusterIP"].as_str().unwrap().to_string();
        assert!(ip.starts_with("10.152.183.") && ip != "10.152.183.1");
        let mut dup = json!({"spec": {"clusterIP": ip}});
        let err = a.allocate(&mut dup).unwrap_err();
        assert!(err[0].message.contains("already allocated"));
        let mut out = json!({"spec": {"clusterIP": "10.0.0.5"}});
        assert!(a.allocate(&mut out).unwrap_err()[0]
            .message
            .contains("not in the valid range"));
        a.release(&s);
        let mut again = json!({"spec": {"clusterIP": ip}});
        a.allocate(&mut again).unwrap();
    }

    #[test]
    fn dry_run_reallocation_is_undone() {
        let a = alloc();
        let mut old =
            json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}});
        a.allocate(&mut old).unwrap();
        let mut new =
            json!({"spec": {"type": "NodePort", "ports": [{"port": 81, "nodePort": 30081}]}});
        a.reallocate(&mut new, &old).unwrap();
        a.undo_reallocate(&new, &old);
        let mut again =
            json!({"spec": {"type": "NodePort", "ports": [{"port": 81, "nodePort": 30081}]}});
        a.allocate(&mut again).expect("30081 is free again");
        let mut taken =
            json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}});
        assert!(
            a.allocate(&mut taken).is_err(),
            "30080 is still the stored service's"
        );
    }

    #[test]
    fn node_ports_no_collisions() {
        let a = alloc();
        let mut s = json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}, {"port": 81}]}});
        a.allocate(&mut s).unwrap();
        assert!(s["spec"]["ports"][1]["nodePort"].as_u64().is_some());
        let mut dup =
            json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}});
        assert!(a.allocate(&mut dup).unwrap_err()[0]
            .message
            .contains("already allocated"));
        let mut bad =
            json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]}});
        assert!(a.allocate(&mut bad).is_err());
        let a2 = alloc();
        a2.recover(&s);
        let mut dup2 =
            json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}});
        assert!(a2.allocate(&mut dup2).is_err());
    }
}
