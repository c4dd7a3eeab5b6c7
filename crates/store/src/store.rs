use std::pin::Pin;

use async_trait::async_trait;
use futures::Stream;

use crate::proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse,
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveResponse, LeaseLeasesResponse,
    LeaseRevokeRequest, LeaseRevokeResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
    PutRequest, PutResponse, RangeRequest, RangeResponse, StatusResponse, TxnRequest, TxnResponse,
    WatchCreateRequest, WatchResponse,
};
use crate::StoreError;

/// A stream of watch responses for one watcher. Each item carries one or more events in revision
/// order (or none: a progress notification). A watch that starts below the compaction point yields
/// one response with `compact_revision` set and `canceled = true`, then ends, as etcd does.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, StoreError>> + Send>>;

/// The etcd v3 key-value API, in process. Semantics are etcd's exactly: one global revision,
/// per-key create_revision / mod_revision / version, atomic transactions, ordered watches,
/// leases and compaction. Implementations: the embedded engine and the real-etcd backend.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, StoreError>;
    async fn put(&self, req: PutRequest) -> Result<PutResponse, StoreError>;
    async fn delete_range(
        &self,
        req: DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, StoreError>;
    async fn txn(&self, req: TxnRequest) -> Result<TxnResponse, StoreError>;
    async fn compact(&self, req: CompactionRequest) -> Result<CompactionResponse, StoreError>;

    /// Starts a watch; the stream ends when dropped by the caller or cancelled by the store.
    async fn watch(&self, req: WatchCreateRequest) -> Result<WatchStream, StoreError>;

    async fn lease_grant(&self, req: LeaseGrantRequest) -> Result<LeaseGrantResponse, StoreError>;
    async fn lease_revoke(
        &self,
        req: LeaseRevokeRequest,
    ) -> Result<LeaseRevokeResponse, StoreError>;
    /// Renews lease `id` once; the response's TTL is the new remaining time.
    async fn lease_keep_alive(&self, id: i64) -> Result<LeaseKeepAliveResponse, StoreError>;
    async fn lease_time_to_live(
        &self,
        req: LeaseTimeToLiveRequest,
    ) -> Result<LeaseTimeToLiveResponse, StoreError>;
    async fn lease_leases(&self) -> Result<LeaseLeasesResponse, StoreError>;

    /// Maintenance.Status: version, db size, leader, current revision in the header.
    async fn status(&self) -> Result<StatusResponse, StoreError>;
}
