//! krust's controller manager: upstream kube-controller-manager's controllers, each a small
//! reconcile loop over watches (kube-runtime), run together while this process holds the
//! `kube-system/kube-controller-manager` Lease.
//!
//! Wiring: `krust server` builds a `kube::Client` from `credentials/controller.config` (client
//! certificate CN=system:kube-controller-manager, which the bootstrap RBAC policy authorizes) and
//! spawns `controllers::run(client, Config::default(), shutdown)`; register [`Metrics`] in the
//! registry its `/metrics` endpoint serves.
//!
//! One module per controller, named as upstream's `--controllers` names them; each exposes
//! `run(ctx)`, which works until dropped. [`manager`] starts the enabled ones and restarts one
//! that fails, with backoff, without touching the others.

pub mod context;
pub mod discovery;
pub mod error;
pub mod events;
pub mod expectations;
pub mod informer;
pub mod manager;
pub mod metrics;
pub mod ownership;
pub mod pods;

pub mod bootstrap_tokens;
pub mod certificates;
pub mod cron;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice;
pub mod garbage_collector;
pub mod history;
pub mod job;
pub mod namespace;
pub mod node_ipam;
pub mod node_lifecycle;
pub mod persistentvolume;
pub mod replicaset;
pub mod resourcequota;
pub mod root_ca_cert_publisher;
pub mod serviceaccount;
pub mod serviceaccount_token;
pub mod statefulset;
pub mod ttl_after_finished;

pub use context::Context;
pub use manager::{run, Config, ControllersError};
pub use metrics::Metrics;
