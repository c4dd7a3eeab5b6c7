//! krust's Kubernetes API server.
//!
//! `kinds` holds what differs per built-in kind (defaults, validation, printer columns, selectable
//! fields); everything else is one generic mechanism driven by the resource table
//! ([`resources`]): requests are decoded ([`request`]), authenticated ([`authn`]) and authorized
//! ([`authz`]), then served by the generic [`registry`] over the datastore, with watches fanned out
//! by the [`watch_cache`].

pub mod kinds;

mod admission;
mod allocators;
pub mod apply;
mod audit;
pub mod authn;
pub mod authorization;
pub mod authz;
mod certificates;
mod config;
mod content;
mod conversion;
pub mod crd;
mod discovery;
mod eviction;
mod health;
mod list_encoding;
mod metadata;
mod metrics;
mod namespaces;
mod node_proxy;
mod openapi;
mod patch;
mod propagation;
mod protobuf;
pub mod rbac;
mod registry;
mod request;
pub mod resources;
mod rest;
mod reviews;
mod scale;
mod selectors;
mod serviceaccount_tokens;
mod serving;
mod status;
mod storage;
pub mod strategic;
mod strategy;
mod table;
mod watch;
mod watch_cache;

pub use config::{AuthorizationMode, Config};
pub use health::KUBERNETES_VERSION;
pub use serving::{run, ServeError, Server};
