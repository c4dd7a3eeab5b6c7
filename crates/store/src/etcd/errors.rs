//! Maps the gRPC statuses of a real etcd back onto [`StoreError`], the inverse of the facade's
//! mapping, so both backends fail the same way.

use std::error::Error as _;

use tonic::{Code, Status};

use crate::StoreError;

pub fn store_error_from_status(status: &Status) -> StoreError {
    let msg = status.message();
    match status.code() {
        Code::OutOfRange if msg.contains("compacted") => StoreError::Compacted {
            compact_revision: 0,
        },
        Code::OutOfRange if msg.contains("future revision") => StoreError::FutureRevision,
        Code::NotFound if msg.contains("lease not found") => StoreError::LeaseNotFound,
        Code::FailedPrecondition if msg.contains("lease already exists") => StoreError::LeaseExists,
        Code::InvalidArgument | Code::OutOfRange => StoreError::InvalidArgument(msg.to_string()),
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
            StoreError::Unavailable(msg.to_string())
        }
        code => StoreError::Storage(format!("etcd answered {code:?}: {msg}")),
    }
}

/// True when the request never reached the endpoint, so trying the next one cannot apply a
/// write twice.
pub fn is_connect_error(status: &Status) -> bool {
    let mut source = status.source();
    while let Some(err) = source {
        if err.is::<tonic::ConnectError>() {
            return true;
        }
        source = err.source();
    }
    status.code() == Code::Unavailable && status.message().contains("connect")
}
