//! What every krust component serves besides its own work, as upstream's k8s.io/component-base
//! and apiserver's delegating authenticator/authorizer give kube-scheduler and
//! kube-controller-manager:
//!
//! - [`serve_secure`]: HTTPS with `/healthz`, `/livez`, `/readyz` open to anyone (upstream's
//!   `--authorization-always-allow-paths`) and `/metrics` for callers that authenticate with a
//!   client certificate of the cluster CA or a bearer token (TokenReview) and are allowed
//!   `get` on the path (SubjectAccessReview); see [`delegated`].
//! - [`serve_insecure`]: the legacy plain-HTTP port (MicroK8s' 10251/10252) serving the same
//!   paths to anyone; bind it to localhost only.
//!
//! ```no_run
//! # async fn f(cert_pem: Vec<u8>, key_pem: Vec<u8>, client_ca_pem: Vec<u8>, client: kube::Client) {
//! use std::sync::Arc;
//! let registry = Arc::new(prometheus_client::registry::Registry::default());
//! let config = component_base::SecureConfig {
//!     cert_pem, key_pem, client_ca_pem, client,
//!     registry: registry.clone(),
//!     health: Arc::new(|| true),
//! };
//! let addr = "0.0.0.0:10259".parse().unwrap();
//! component_base::serve_secure(addr, config, std::future::pending()).await.unwrap();
//! # }
//! ```

mod accept;
mod cache;
pub mod delegated;
mod error;
mod health;
mod insecure;
pub mod label_selector;
pub mod leader_election;
pub mod node_affinity;
pub mod quantity;
pub mod quota;
mod routes;
mod secure;
pub mod taints;

pub use error::ServeError;
pub use health::Health;
pub use insecure::serve_insecure;
pub use secure::{serve_secure, SecureConfig};
