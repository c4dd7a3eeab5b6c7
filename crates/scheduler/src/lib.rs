//! krust's scheduler: places pods on nodes as upstream's kube-scheduler does.
//!
//! Pending pods wait in a [`queue`] with exponential backoff; each cycle takes one pod, runs the
//! default profile's [`plugins`] over a [`cache`] snapshot ([`placement`]), assumes the pod on
//! the chosen node and binds it through `pods/{name}/binding` ([`binder`]), reporting with
//! [`events`]. With leader election (`component_base::leader_election`) only the holder of the
//! `kube-system/kube-scheduler` Lease schedules.
//!
//! Wiring: `krust server` builds a `kube::Client` from `credentials/scheduler.config` (client
//! certificate CN=system:kube-scheduler, which upstream's bootstrap RBAC policy authorizes) and
//! spawns `scheduler::run(client, Config { leader_election: true, ..Default::default() },
//! shutdown)`; register [`Metrics`] in the registry its `/metrics` endpoint serves.
//!
//! Not done: volume filters (VolumeBinding, volume node affinity, volume limits), ImageLocality,
//! system default topology spread constraints, `namespaceSelector` with requirements in pod
//! affinity, PodDisruptionBudgets in preemption, counting nominated pods against their node,
//! and multiple profiles (one scheduler name per `run`).

pub mod binder;
pub mod cache;
pub mod client;
pub mod events;
pub mod metrics;
pub mod placement;
pub mod plugins;
pub mod preemption;
pub mod quantity;
pub mod queue;
pub mod requests;
mod scheduler;

#[cfg(test)]
mod testing;

pub use metrics::Metrics;
pub use scheduler::{run, Config, SchedulerError};
