//! The node agent. What it stands on:
//!
//! - [`containerd`]: writes containerd's config under the data dir and runs Debian's containerd
//!   as a supervised child (or uses an existing runtime given by its endpoint);
//! - [`cri`]: a CRI v1 client over gRPC on containerd's unix socket;
//! - [`images`]: images without a registry: OCI-layout and docker-archive tarballs imported
//!   through containerd's own content, images, snapshots and diff services, listed over CRI,
//!   and the tarballs dropped into `<data-dir>/images/` imported once at start;
//! - [`layout`] and [`labels`]: where things live on disk and how CRI objects are named, in
//!   upstream's shapes; [`context`]: what every part shares.
//!
//! [`agent`] starts all of it as one piece. What it does: [`node`] (the Node object and its
//! lease), [`network`] (the pods' CNI configuration from the node's pod CIDR), [`pods`] (the
//! pod lifecycle), [`eviction`] (node-pressure eviction and the pressure conditions),
//! [`shutdown`] (graceful node shutdown),
//! [`volumes`], [`probes`], and [`server`] (the kubelet API on 10250/10255/10248), which serves
//! [`logs`] (containers' CRI log files read as upstream) and [`stats`] (`/stats/summary`,
//! `/metrics/resource`).

pub mod agent;
pub mod bootstrap;
pub mod containerd;
pub mod context;
pub mod cri;
pub mod eviction;
mod grpc;
pub mod images;
pub mod labels;
pub mod layout;
pub mod logs;
pub mod network;
pub mod node;
pub mod pods;
pub mod probes;
pub mod proto;
pub mod server;
pub mod shutdown;
pub mod stats;
pub mod volumes;
