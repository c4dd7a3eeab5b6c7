//! The Cluster service, reduced to what a single endpoint can truthfully say: `MemberList`
//! answers with this one member (clients such as clientv3's endpoint sync and
//! `etcdctl member list` ask for it); membership changes answer Unimplemented.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::errors::status_from_store_error;
use crate::proto::etcdserverpb::cluster_server::Cluster;
use crate::proto::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};
use crate::Store;

pub struct ClusterService {
    store: Arc<dyn Store>,
}

impl ClusterService {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }
}

fn unimplemented<T>(what: &str) -> Result<T, Status> {
    Err(Status::unimplemented(format!(
        "{what}: the krust datastore endpoint has no etcd membership to change"
    )))
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        _: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        unimplemented("MemberAdd")
    }

    async fn member_remove(
        &self,
        _: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        unimplemented("MemberRemove")
    }

    async fn member_update(
        &self,
        _: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        unimplemented("MemberUpdate")
    }

    /// The member's client URL is the address this connection reached, which is the one
    /// the client can use again.
    async fn member_list(
        &self,
        req: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        let local = req.local_addr();
        let status = self.store.status().await.map_err(status_from_store_error)?;
        let header = status.header.unwrap_or_default();
        let member = Member {
            id: header.member_id,
            name: "krust".into(),
            peer_ur_ls: Vec::new(),
            client_ur_ls: local.map(|a| format!("https://{a}")).into_iter().collect(),
            is_learner: false,
        };
        Ok(Response::new(MemberListResponse {
            header: Some(header),
            members: vec![member],
        }))
    }

    async fn member_promote(
        &self,
        _: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        unimplemented("MemberPromote")
    }
}
