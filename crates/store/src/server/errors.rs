//! Maps [`StoreError`] onto the gRPC statuses etcd returns. Codes and messages are etcd's exactly:
//! etcd clients (clientv3, etcdctl) recognise errors by their message text.

use tonic::{Code, Status};

use crate::StoreError;

pub const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";
pub const FUTURE_REV: &str = "etcdserver: mvcc: required revision is a future revision";
pub const LEASE_NOT_FOUND: &str = "etcdserver: requested lease not found";
pub const LEASE_EXISTS: &str = "etcdserver: lease already exists";

/// The status etcd's own server sends for the same failure.
pub fn status_from_store_error(err: StoreError) -> Status {
    match err {
        StoreError::Compacted { .. } => Status::new(Code::OutOfRange, COMPACTED),
        StoreError::FutureRevision => Status::new(Code::OutOfRange, FUTURE_REV),
        StoreError::LeaseNotFound => Status::new(Code::NotFound, LEASE_NOT_FOUND),
        StoreError::LeaseExists => Status::new(Code::FailedPrecondition, LEASE_EXISTS),
        StoreError::InvalidArgument(msg) => Status::new(Code::InvalidArgument, msg),
        StoreError::Unavailable(msg) => Status::new(Code::Unavailable, msg),
        err @ StoreError::Storage(_) => {
            tracing::error!(error = %err, "datastore request failed");
            Status::new(Code::Internal, err.to_string())
        }
    }
}
