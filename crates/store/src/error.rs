use thiserror::Error;

/// Why a store operation failed. Each variant maps onto the gRPC status etcd itself returns, so
/// clients see the same errors whichever backend is behind the endpoint.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The requested revision has been compacted away (etcd: `mvcc: required revision has been compacted`).
    #[error("mvcc: required revision has been compacted (compacted revision {compact_revision})")]
    Compacted { compact_revision: i64 },
    /// The requested revision is newer than the store's current revision.
    #[error("mvcc: required revision is a future revision")]
    FutureRevision,
    /// No lease with this ID exists (granted and not yet expired or revoked).
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// A lease with this ID already exists.
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    /// The request is malformed or exceeds a limit; the message says which.
    #[error("{0}")]
    InvalidArgument(String),
    /// The backend's storage failed (I/O, corruption); the store did not apply the request.
    #[error("datastore storage error: {0}")]
    Storage(String),
    /// The backend could not be reached (real-etcd backend).
    #[error("datastore unavailable: {0}")]
    Unavailable(String),
}
