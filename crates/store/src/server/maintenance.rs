//! The Maintenance service: Status (what `etcdctl endpoint status` asks) and an always empty
//! alarm list; the other calls of a real etcd member do not apply to krust's datastore and answer
//! Unimplemented.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::errors::status_from_store_error;
use crate::proto::etcdserverpb::maintenance_server::Maintenance;
use crate::proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse, HashKvRequest,
    HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest, MoveLeaderResponse,
    SnapshotRequest, SnapshotResponse, StatusRequest, StatusResponse,
};
use crate::Store;

pub struct MaintenanceService {
    store: Arc<dyn Store>,
}

impl MaintenanceService {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }
}

fn unimplemented<T>(what: &str) -> Result<T, Status> {
    Err(Status::unimplemented(format!(
        "{what} is not supported by the krust datastore"
    )))
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    /// The engine raises no etcd alarms (it reports storage failures as errors), so the list
    /// is always empty; `etcdctl endpoint health` and `alarm list` ask for it.
    async fn alarm(&self, _: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        let status = self.store.status().await.map_err(status_from_store_error)?;
        Ok(Response::new(AlarmResponse {
            header: status.header,
            alarms: Vec::new(),
        }))
    }

    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        self.store
            .status()
            .await
            .map(Response::new)
            .map_err(status_from_store_error)
    }

    async fn defragment(
        &self,
        _: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        unimplemented("Defragment")
    }

    async fn hash(&self, _: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        unimplemented("Hash")
    }

    async fn hash_kv(&self, _: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        unimplemented("HashKV")
    }

    type SnapshotStream = futures::stream::Empty<Result<SnapshotResponse, Status>>;

    async fn snapshot(
        &self,
        _: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        unimplemented("Snapshot")
    }

    async fn move_leader(
        &self,
        _: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        unimplemented("MoveLeader")
    }
}
