//! The node agent. This crate holds what the kubelet stands on:
//!
//! - [`containerd`]: writes containerd's config under the data dir and runs Debian's containerd
//!   as a supervised child (or uses an existing runtime given by its endpoint);
//! - [`cri`]: a CRI v1 client over gRPC on containerd's unix socket;
//! - [`images`]: images without a registry: OCI-layout and docker-archive tarballs imported
//!   through containerd's own content, images, snapshots and diff services, listed over CRI,
//!   and the tarballs dropped into `<data-dir>/images/` imported once at start.
//!
//! The pod lifecycle (sandboxes, containers, probes, volumes, status) is built on these.

pub mod containerd;
pub mod cri;
mod grpc;
pub mod images;
pub mod proto;
