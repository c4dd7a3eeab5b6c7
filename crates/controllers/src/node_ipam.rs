//! Node IPAM, as upstream's pkg/controller/nodeipam with the `RangeAllocator`: every Node
//! without `spec.podCIDR` gets the next free subnet (a /24 for IPv4 by default, upstream's
//! `--node-cidr-mask-size`) of the cluster's pod CIDR (`--cluster-cidr`, the profile's
//! `pod_cidr`). The node agent turns it into the node's CNI configuration.
//!
//! The ranges in use are recorded from every Node seen (so a restarted controller never hands
//! out one a node already has, and one a node came with is not given twice), each
//! allocation is written with the Node's resourceVersion as a precondition, and a deleted
//! Node's range is released. As upstream, allocation goes round robin from the last subnet
//! given, so a released range is the last to be reused; a full range leaves the node without
//! a CIDR and records a `CIDRNotAvailable` event on it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use crate::context::Context;
use crate::error::{Error, Result};

/// Upstream runs the range allocator with the node controller's service account.
const ACCOUNT: &str = "node-controller";

/// How often nodes whose allocation failed are tried again.
const RETRY: Duration = Duration::from_secs(5);

/// Upstream's `--allocate-node-cidrs`, `--cluster-cidr` and `--node-cidr-mask-size`.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// The cluster's pod CIDR; `None` turns the controller off (`--allocate-node-cidrs=false`).
    pub cluster_cidr: Option<String>,
    /// The prefix length of each node's range; `None`: 24 for IPv4, 64 for IPv6.
    pub node_cidr_mask_size: Option<u8>,
}

/// The subnets of one cluster CIDR and which are taken (upstream's cidrset).
#[derive(Debug, Clone)]
pub struct CidrSet {
    cluster: IpNet,
    node_prefix: u8,
    used: BTreeSet<u128>,
    next_candidate: u128,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CidrError {
    #[error("invalid CIDR {0:?}")]
    Invalid(String),
    #[error("the node mask size {node} must be longer than the cluster CIDR's /{cluster} by 1 to 16 bits")]
    MaskSize { node: u8, cluster: u8 },
    #[error("CIDR {0} is outside the cluster CIDR {1}")]
    Outside(String, String),
    #[error("the cluster CIDR {0} has no free range left")]
    Full(String),
}

impl CidrSet {
    pub fn new(cluster: &str, node_prefix: Option<u8>) -> std::result::Result<CidrSet, CidrError> {
        let cluster: IpNet = cluster
            .parse()
            .map_err(|_| CidrError::Invalid(cluster.to_string()))?;
        let cluster = cluster.trunc();
        let node_prefix = node_prefix.unwrap_or(match cluster {
            IpNet::V4(_) => 24,
            IpNet::V6(_) => 64,
        });
        let extra = node_prefix.saturating_sub(cluster.prefix_len());
        if node_prefix > cluster.max_prefix_len() || !(1..=16).contains(&extra) {
            return Err(CidrError::MaskSize {
                node: node_prefix,
                cluster: cluster.prefix_len(),
            });
        }
        Ok(CidrSet {
            cluster,
            node_prefix,
            used: BTreeSet::new(),
            next_candidate: 0,
        })
    }

    fn count(&self) -> u128 {
        1u128 << (self.node_prefix - self.cluster.prefix_len())
    }

    /// Bits below a node range.
    fn host_bits(&self) -> u32 {
        (self.cluster.max_prefix_len() - self.node_prefix) as u32
    }

    fn subnet(&self, index: u128) -> IpNet {
        let base = addr_bits(&self.cluster) + (index << self.host_bits());
        let net = match self.cluster {
            IpNet::V4(_) => IpNet::new(
                std::net::Ipv4Addr::from(base as u32).into(),
                self.node_prefix,
            ),
            IpNet::V6(_) => IpNet::new(std::net::Ipv6Addr::from(base).into(), self.node_prefix),
        };
        net.expect("prefix checked in new")
    }

    /// The indexes of the node ranges `cidr` covers (one, or several for a larger block).
    fn indexes(&self, cidr: &str) -> std::result::Result<std::ops::Range<u128>, CidrError> {
        let net: IpNet = cidr
            .parse()
            .map_err(|_| CidrError::Invalid(cidr.to_string()))?;
        let outside = || CidrError::Outside(cidr.to_string(), self.cluster.to_string());
        if !self.cluster.contains(&net) {
            return Err(outside());
        }
        let offset = addr_bits(&net.trunc()) - addr_bits(&self.cluster);
        let first = offset >> self.host_bits();
        let len = if net.prefix_len() >= self.node_prefix {
            1
        } else {
            1u128 << (self.node_prefix - net.prefix_len())
        };
        Ok(first..first + len)
    }

    /// The next free range, round robin from the last one given.
    pub fn allocate(&mut self) -> std::result::Result<IpNet, CidrError> {
        let count = self.count();
        for i in 0..count {
            let index = (self.next_candidate + i) % count;
            if self.used.insert(index) {
                self.next_candidate = (index + 1) % count;
                return Ok(self.subnet(index));
            }
        }
        Err(CidrError::Full(self.cluster.to_string()))
    }

    /// Marks a range a node already has as taken.
    pub fn occupy(&mut self, cidr: &str) -> std::result::Result<(), CidrError> {
        self.used.extend(self.indexes(cidr)?);
        Ok(())
    }

    pub fn release(&mut self, cidr: &str) -> std::result::Result<(), CidrError> {
        for index in self.indexes(cidr)? {
            self.used.remove(&index);
        }
        Ok(())
    }

    pub fn in_use(&self) -> usize {
        self.used.len()
    }
}

fn addr_bits(net: &IpNet) -> u128 {
    match net {
        IpNet::V4(n) => u32::from(n.network()) as u128,
        IpNet::V6(n) => u128::from(n.network()),
    }
}

fn pod_cidr(node: &Node) -> Option<String> {
    node.spec
        .as_ref()
        .and_then(|s| s.pod_cidr.clone())
        .filter(|c| !c.is_empty())
}

pub async fn run(ctx: Context) -> Result<()> {
    let settings = ctx.settings.node_ipam.clone();
    let Some(cluster) = settings.cluster_cidr.clone() else {
        // Off, as upstream without --allocate-node-cidrs: stay idle instead of being restarted.
        return std::future::pending().await;
    };
    let set = CidrSet::new(&cluster, settings.node_cidr_mask_size)
        .map_err(|e| Error::Invalid(format!("node IPAM: {e}")))?;
    let client = ctx.client_for(ACCOUNT).await?;
    let mut allocator = Allocator {
        nodes: Api::all(client.clone()),
        recorder: ctx.recorder(client.clone(), "cidrAllocator"),
        empty: set.clone(),
        set,
        cidrs: BTreeMap::new(),
        pending: BTreeSet::new(),
        listing: BTreeMap::new(),
        metrics: ctx.metrics.clone(),
    };
    let events = watcher(Api::<Node>::all(client), watcher::Config::default());
    let mut events = std::pin::pin!(events);
    let mut retry = tokio::time::interval(RETRY);
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(event)) => allocator.on_event(event).await,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "node IPAM watch failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                None => return Ok(()),
            },
            _ = retry.tick() => allocator.retry().await,
        }
    }
}

struct Allocator {
    nodes: Api<Node>,
    recorder: Recorder,
    set: CidrSet,
    /// A fresh set, for rebuilding after a re-list.
    empty: CidrSet,
    /// Each known node's range.
    cidrs: BTreeMap<String, String>,
    /// Nodes without a range whose allocation failed.
    pending: BTreeSet<String>,
    /// The nodes of a list in progress.
    listing: BTreeMap<String, Node>,
    metrics: crate::Metrics,
}

impl Allocator {
    async fn on_event(&mut self, event: watcher::Event<Node>) {
        match event {
            watcher::Event::Init => self.listing.clear(),
            watcher::Event::InitApply(node) => {
                self.listing.insert(node.name_any(), node);
            }
            watcher::Event::InitDone => {
                // Rebuild from what the list shows: ranges first, then allocation, so no
                // node is given a range another already has.
                self.set = self.empty.clone();
                self.cidrs.clear();
                self.pending.clear();
                let listed = std::mem::take(&mut self.listing);
                for node in listed.values() {
                    self.record(node);
                }
                for node in listed.values() {
                    if pod_cidr(node).is_none() {
                        self.allocate(node).await;
                    }
                }
            }
            watcher::Event::Apply(node) => {
                if pod_cidr(&node).is_some() {
                    self.record(&node);
                } else if !self.cidrs.contains_key(&node.name_any()) {
                    self.allocate(&node).await;
                }
            }
            watcher::Event::Delete(node) => self.forget(&node.name_any()),
        }
    }

    /// Records the range a node has.
    fn record(&mut self, node: &Node) {
        let Some(cidr) = pod_cidr(node) else { return };
        let name = node.name_any();
        self.pending.remove(&name);
        if self.cidrs.get(&name) == Some(&cidr) {
            return;
        }
        if let Some(old) = self.cidrs.remove(&name) {
            let _ = self.set.release(&old);
        }
        match self.set.occupy(&cidr) {
            Ok(()) => {
                self.cidrs.insert(name, cidr);
            }
            // A range from elsewhere (another cluster CIDR): upstream logs and leaves it.
            Err(e) => {
                tracing::info!(node = %name, error = %e, "node has a pod CIDR this allocator does not manage")
            }
        }
    }

    /// A deleted node's range is free again.
    fn forget(&mut self, name: &str) {
        self.pending.remove(name);
        if let Some(cidr) = self.cidrs.remove(name) {
            let _ = self.set.release(&cidr);
            tracing::info!(node = name, %cidr, "released the pod CIDR of a deleted node");
        }
    }

    async fn retry(&mut self) {
        for name in std::mem::take(&mut self.pending) {
            match self.nodes.get_opt(&name).await {
                Ok(Some(node)) if pod_cidr(&node).is_none() => self.allocate(&node).await,
                Ok(Some(node)) => self.record(&node),
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(node = %name, error = %e, "cannot read node");
                    self.pending.insert(name);
                }
            }
        }
    }

    /// Gives `node` the next free range, written with its resourceVersion as precondition.
    async fn allocate(&mut self, node: &Node) {
        let name = node.name_any();
        self.metrics.synced("nodeipam");
        let cidr = match self.set.allocate() {
            Ok(cidr) => cidr.to_string(),
            Err(e) => {
                tracing::warn!(node = %name, error = %e, "no pod CIDR for node");
                self.pending.insert(name);
                self.cidr_not_available(node).await;
                return;
            }
        };
        let patch = json!({
            "metadata": {"resourceVersion": node.resource_version()},
            "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
        });
        match self
            .nodes
            .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(updated) => {
                tracing::info!(node = %name, %cidr, "allocated a pod CIDR");
                self.cidrs.insert(name.clone(), cidr);
                self.pending.remove(&name);
                // In case the node came with a range between our read and our write.
                self.record(&updated);
            }
            Err(e) => {
                let _ = self.set.release(&cidr);
                if !matches!(&e, kube::Error::Api(s) if s.code == 404) {
                    self.metrics.sync_failed("nodeipam");
                    tracing::debug!(node = %name, error = %e, "cannot set the node's pod CIDR; retrying");
                    self.pending.insert(name);
                }
            }
        }
    }

    /// Upstream's RecordNodeStatusChange(CIDRNotAvailable).
    async fn cidr_not_available(&self, node: &Node) {
        let event = Event {
            type_: EventType::Normal,
            reason: "CIDRNotAvailable".into(),
            note: Some(format!(
                "Node {} status is now: CIDRNotAvailable",
                node.name_any()
            )),
            action: "CIDRAssignmentFailed".into(),
            secondary: None,
        };
        let _ = self.recorder.publish(&event, &node.object_ref(&())).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slash_24s_of_a_slash_16_round_robin() {
        let mut set = CidrSet::new("10.244.0.0/16", None).unwrap();
        assert_eq!(set.allocate().unwrap().to_string(), "10.244.0.0/24");
        set.occupy("10.244.1.0/24").unwrap();
        assert_eq!(set.allocate().unwrap().to_string(), "10.244.2.0/24");
        set.release("10.244.0.0/24").unwrap();
        // Round robin: a released range is not the next one handed out.
        assert_eq!(set.allocate().unwrap().to_string(), "10.244.3.0/24");
        assert_eq!(set.in_use(), 3);
    }

    #[test]
    fn a_full_set_says_so_and_frees_on_release() {
        let mut set = CidrSet::new("10.1.0.0/23", Some(24)).unwrap();
        set.allocate().unwrap();
        set.allocate().unwrap();
        assert_eq!(set.allocate(), Err(CidrError::Full("10.1.0.0/23".into())));
        set.release("10.1.0.0/24").unwrap();
        assert_eq!(set.allocate().unwrap().to_string(), "10.1.0.0/24");
    }

    #[test]
    fn occupying_a_larger_block_and_bad_input() {
        let mut set = CidrSet::new("10.1.0.0/16", Some(24)).unwrap();
        set.occupy("10.1.0.0/23").unwrap();
        assert_eq!(set.in_use(), 2);
        assert_eq!(set.allocate().unwrap().to_string(), "10.1.2.0/24");
        assert!(matches!(
            set.occupy("10.2.0.0/24"),
            Err(CidrError::Outside(..))
        ));
        assert!(matches!(set.occupy("x"), Err(CidrError::Invalid(..))));
        assert!(CidrSet::new("10.0.0.0/8", Some(25)).is_err());
        assert!(CidrSet::new("10.1.0.0/24", Some(24)).is_err());
        let mut v6 = CidrSet::new("fd00:10:244::/56", None).unwrap();
        assert_eq!(v6.allocate().unwrap().to_string(), "fd00:10:244::/64");
        assert_eq!(v6.allocate().unwrap().to_string(), "fd00:10:244:1::/64");
    }
}
