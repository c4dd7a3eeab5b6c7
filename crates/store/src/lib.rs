//! krust's datastore: a revisioned key-value store with etcd v3 semantics.
//!
//! Everything speaks the etcd v3 API types (see [`proto`]): the [`Store`] trait is the in-process
//! API the API server uses directly, the embedded engine implements it, the real-etcd backend
//! implements it by forwarding over gRPC, and the gRPC facade serves any `Store` to `etcdctl`.

pub mod engine;
pub mod etcd;
pub mod proto;
pub mod server;

mod error;
mod store;

pub use error::StoreError;
pub use store::{Store, WatchStream};
