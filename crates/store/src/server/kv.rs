//! The KV service: validates each request as etcd's gRPC layer does, then hands it to the store.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::errors::status_from_store_error;
use super::validate;
use crate::proto::etcdserverpb::kv_server::Kv;
use crate::proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use crate::{Store, StoreError};

pub struct KvService {
    store: Arc<dyn Store>,
}

impl KvService {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }
}

fn reply<T>(res: Result<T, StoreError>) -> Result<Response<T>, Status> {
    res.map(Response::new).map_err(status_from_store_error)
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let req = req.into_inner();
        validate::check_range(&req).map_err(status_from_store_error)?;
        reply(self.store.range(req).await)
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let req = req.into_inner();
        validate::check_put(&req).map_err(status_from_store_error)?;
        reply(self.store.put(req).await)
    }

    async fn delete_range(
        &self,
        req: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let req = req.into_inner();
        validate::check_delete(&req).map_err(status_from_store_error)?;
        reply(self.store.delete_range(req).await)
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let req = req.into_inner();
        validate::check_txn(&req).map_err(status_from_store_error)?;
        reply(self.store.txn(req).await)
    }

    async fn compact(
        &self,
        req: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        reply(self.store.compact(req.into_inner()).await)
    }
}
