//! The Lease service. Grant, revoke and time-to-live map one to one onto the store; keep-alive is
//! a stream of renewals answered in order, with etcd's conventions for a lease that is gone
//! (keep-alive answers TTL 0, time-to-live answers TTL -1) instead of an error.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::errors::status_from_store_error;
use crate::proto::etcdserverpb::lease_server::Lease;
use crate::proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use crate::{Store, StoreError};

/// etcd's largest lease TTL in seconds.
const MAX_LEASE_TTL: i64 = 9_000_000_000;

pub struct LeaseService {
    store: Arc<dyn Store>,
}

impl LeaseService {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }
}

fn reply<T>(res: Result<T, StoreError>) -> Result<Response<T>, Status> {
    res.map(Response::new).map_err(status_from_store_error)
}

async fn keep_alive_once(
    store: &dyn Store,
    req: Result<LeaseKeepAliveRequest, Status>,
) -> Result<LeaseKeepAliveResponse, Status> {
    let id = req?.id;
    match store.lease_keep_alive(id).await {
        Err(StoreError::LeaseNotFound) => Ok(LeaseKeepAliveResponse {
            id,
            ttl: 0,
            ..Default::default()
        }),
        res => res.map_err(status_from_store_error),
    }
}

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        req: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        let req = req.into_inner();
        if req.ttl > MAX_LEASE_TTL {
            return Err(Status::out_of_range("etcdserver: too large lease TTL"));
        }
        reply(self.store.lease_grant(req).await)
    }

    async fn lease_revoke(
        &self,
        req: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        reply(self.store.lease_revoke(req.into_inner()).await)
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let store = self.store.clone();
        let out = req.into_inner().then(move |r| {
            let store = store.clone();
            async move { keep_alive_once(store.as_ref(), r).await }
        });
        Ok(Response::new(Box::pin(out)))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let req = req.into_inner();
        let id = req.id;
        match self.store.lease_time_to_live(req).await {
            Err(StoreError::LeaseNotFound) => Ok(Response::new(LeaseTimeToLiveResponse {
                id,
                ttl: -1,
                ..Default::default()
            })),
            res => reply(res),
        }
    }

    async fn lease_leases(
        &self,
        _: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        reply(self.store.lease_leases().await)
    }
}
