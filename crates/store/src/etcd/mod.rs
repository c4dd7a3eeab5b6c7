//! The real-etcd backend: implements [`Store`] by forwarding every call to an existing etcd
//! cluster through the generated gRPC clients (`krust server --datastore etcd://...`, the path to
//! HA). Endpoints are tried in order; a request that could not connect moves on to the next one.

mod errors;
mod url;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::Status;

use crate::proto::etcdserverpb::kv_client::KvClient;
use crate::proto::etcdserverpb::lease_client::LeaseClient;
use crate::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use crate::proto::etcdserverpb::watch_client::WatchClient;
use crate::proto::etcdserverpb::watch_request::RequestUnion;
use crate::proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse,
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse, PutRequest, PutResponse, RangeRequest,
    RangeResponse, StatusRequest, StatusResponse, TxnRequest, TxnResponse, WatchCreateRequest,
    WatchRequest, WatchResponse,
};
use crate::{Store, StoreError, WatchStream};

pub use errors::store_error_from_status;
pub use url::{parse_datastore_url, DatastoreUrlError};

/// One call on a fresh client over `ch`; `$req` is evaluated per attempt.
macro_rules! rpc {
    ($client:expr, $method:ident, $req:expr) => {{
        let req = $req;
        let mut client = $client;
        async move { client.$method(req).await }
    }};
}

/// Responses larger than etcd's own client default are refused; etcd clients accept up to 2 GiB.
const MAX_RESPONSE_BYTES: usize = i32::MAX as usize;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// PEM-encoded TLS material for talking to etcd (`--datastore-cafile/-certfile/-keyfile`).
#[derive(Clone, Default)]
pub struct EtcdTls {
    pub ca: Option<Vec<u8>>,
    pub cert: Option<Vec<u8>>,
    pub key: Option<Vec<u8>>,
}

/// Why the backend could not be configured.
#[derive(Debug, Error)]
pub enum EtcdConfigError {
    #[error("no etcd endpoint given")]
    NoEndpoints,
    #[error("a client certificate for etcd needs its key, and a key its certificate")]
    HalfIdentity,
    #[error("invalid etcd endpoint {endpoint}: {source}")]
    Endpoint {
        endpoint: String,
        source: tonic::transport::Error,
    },
}

/// A [`Store`] backed by an etcd cluster.
pub struct EtcdBackend {
    endpoints: Vec<String>,
    channels: Vec<Channel>,
    current: AtomicUsize,
}

impl EtcdBackend {
    /// Configures the backend without connecting: connections open on first use, so a cluster
    /// that is still starting does not fail the caller. `tls: None` speaks plain HTTP/2.
    pub fn new(endpoints: Vec<String>, tls: Option<EtcdTls>) -> Result<Self, EtcdConfigError> {
        if endpoints.is_empty() {
            return Err(EtcdConfigError::NoEndpoints);
        }
        let channels = endpoints
            .iter()
            .map(|ep| channel(ep, tls.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            endpoints,
            channels,
            current: AtomicUsize::new(0),
        })
    }

    /// Runs `op` on the current endpoint, moving on to the next ones while the connection fails.
    async fn call<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: Fn(Channel) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let n = self.channels.len();
        let start = self.current.load(Ordering::Relaxed);
        let mut last = None;
        for i in 0..n {
            let idx = (start + i) % n;
            match op(self.channels[idx].clone()).await {
                Ok(resp) => {
                    self.current.store(idx, Ordering::Relaxed);
                    return Ok(resp.into_inner());
                }
                Err(s) if errors::is_connect_error(&s) => {
                    tracing::warn!(endpoint = %self.endpoints[idx], error = %s, "etcd endpoint unreachable");
                    last = Some(s);
                }
                Err(s) => return Err(store_error_from_status(&s)),
            }
        }
        let msg = last.map(|s| s.message().to_string()).unwrap_or_default();
        Err(StoreError::Unavailable(format!(
            "no etcd endpoint reachable ({}): {msg}",
            self.endpoints.join(",")
        )))
    }

    fn kv(ch: Channel) -> KvClient<Channel> {
        KvClient::new(ch).max_decoding_message_size(MAX_RESPONSE_BYTES)
    }

    fn lease(ch: Channel) -> LeaseClient<Channel> {
        LeaseClient::new(ch)
    }

    /// etcd's range error does not say where the compaction point is; a watch from revision 1
    /// does.
    async fn compacted_revision(&self) -> i64 {
        let probe = WatchCreateRequest {
            key: vec![0],
            start_revision: 1,
            ..Default::default()
        };
        let Ok(mut stream) = self.watch(probe).await else {
            return 0;
        };
        match tokio::time::timeout(Duration::from_secs(1), stream.next()).await {
            Ok(Some(Ok(resp))) => resp.compact_revision,
            _ => 0,
        }
    }

    async fn fill_compacted<T>(&self, res: Result<T, StoreError>) -> Result<T, StoreError> {
        match res {
            Err(StoreError::Compacted { .. }) => Err(StoreError::Compacted {
                compact_revision: self.compacted_revision().await,
            }),
            res => res,
        }
    }

    async fn open_watch(&self, req: WatchCreateRequest) -> Result<WatchStream, StoreError> {
        let (mut responses, tx) = self
            .call(|ch| {
                let create = WatchRequest {
                    request_union: Some(RequestUnion::CreateRequest(req.clone())),
                };
                async move {
                    // Queued before the call: etcd sends response headers with its first message.
                    let (tx, rx) = mpsc::channel(1);
                    tx.send(create)
                        .await
                        .map_err(|_| Status::internal("watch request channel closed"))?;
                    let resp = WatchClient::new(ch)
                        .max_decoding_message_size(MAX_RESPONSE_BYTES)
                        .watch(ReceiverStream::new(rx))
                        .await?;
                    Ok(tonic::Response::new((resp.into_inner(), tx)))
                }
            })
            .await?;
        let created = next_response(&mut responses).await?;
        if created.canceled {
            return Err(StoreError::InvalidArgument(created.cancel_reason));
        }
        // `tx` lives as long as the stream: etcd ends a watch stream whose client stops sending.
        let stream =
            futures::stream::unfold((responses, Some(tx)), |(mut responses, tx)| async move {
                tx.as_ref()?;
                let item = next_response(&mut responses).await;
                let done = match &item {
                    Ok(r) => r.canceled,
                    Err(_) => true,
                };
                Some((item, (responses, if done { None } else { tx })))
            });
        Ok(Box::pin(stream))
    }
}

async fn next_response(
    responses: &mut tonic::Streaming<WatchResponse>,
) -> Result<WatchResponse, StoreError> {
    match responses.message().await {
        Ok(Some(resp)) => Ok(resp),
        Ok(None) => Err(StoreError::Unavailable(
            "etcd closed the watch stream".into(),
        )),
        Err(s) => Err(store_error_from_status(&s)),
    }
}

fn channel(endpoint: &str, tls: Option<&EtcdTls>) -> Result<Channel, EtcdConfigError> {
    let err = |source| EtcdConfigError::Endpoint {
        endpoint: endpoint.to_string(),
        source,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut ep = Endpoint::from_shared(format!("{scheme}://{endpoint}"))
        .map_err(err)?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    if let Some(tls) = tls {
        ep = ep.tls_config(client_tls(tls)?).map_err(err)?;
    }
    Ok(ep.connect_lazy())
}

fn client_tls(tls: &EtcdTls) -> Result<ClientTlsConfig, EtcdConfigError> {
    let mut cfg = ClientTlsConfig::new();
    if let Some(ca) = &tls.ca {
        cfg = cfg.ca_certificate(Certificate::from_pem(ca));
    } else {
        cfg = cfg.with_enabled_roots();
    }
    match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => Ok(cfg.identity(Identity::from_pem(cert, key))),
        (None, None) => Ok(cfg),
        _ => Err(EtcdConfigError::HalfIdentity),
    }
}

#[async_trait]
impl Store for EtcdBackend {
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, StoreError> {
        let res = self.call(|ch| rpc!(Self::kv(ch), range, req.clone())).await;
        self.fill_compacted(res).await
    }

    async fn put(&self, req: PutRequest) -> Result<PutResponse, StoreError> {
        self.call(|ch| rpc!(Self::kv(ch), put, req.clone())).await
    }

    async fn delete_range(
        &self,
        req: DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, StoreError> {
        self.call(|ch| rpc!(Self::kv(ch), delete_range, req.clone()))
            .await
    }

    async fn txn(&self, req: TxnRequest) -> Result<TxnResponse, StoreError> {
        let res = self.call(|ch| rpc!(Self::kv(ch), txn, req.clone())).await;
        self.fill_compacted(res).await
    }

    async fn compact(&self, req: CompactionRequest) -> Result<CompactionResponse, StoreError> {
        let res = self.call(|ch| rpc!(Self::kv(ch), compact, req)).await;
        self.fill_compacted(res).await
    }

    async fn watch(&self, req: WatchCreateRequest) -> Result<WatchStream, StoreError> {
        self.open_watch(req).await
    }

    async fn lease_grant(&self, req: LeaseGrantRequest) -> Result<LeaseGrantResponse, StoreError> {
        self.call(|ch| rpc!(Self::lease(ch), lease_grant, req))
            .await
    }

    async fn lease_revoke(
        &self,
        req: LeaseRevokeRequest,
    ) -> Result<LeaseRevokeResponse, StoreError> {
        self.call(|ch| rpc!(Self::lease(ch), lease_revoke, req))
            .await
    }

    /// etcd answers a renewal of an unknown lease with TTL 0 rather than an error; the trait
    /// reports it as [`StoreError::LeaseNotFound`].
    async fn lease_keep_alive(&self, id: i64) -> Result<LeaseKeepAliveResponse, StoreError> {
        let req = LeaseKeepAliveRequest { id };
        let mut responses = self
            .call(|ch| rpc!(Self::lease(ch), lease_keep_alive, tokio_stream::once(req)))
            .await?;
        match responses.message().await {
            Ok(Some(resp)) if resp.ttl <= 0 => Err(StoreError::LeaseNotFound),
            Ok(Some(resp)) => Ok(resp),
            Ok(None) => Err(StoreError::Unavailable(
                "etcd closed the keep-alive stream".into(),
            )),
            Err(s) => Err(store_error_from_status(&s)),
        }
    }

    async fn lease_time_to_live(
        &self,
        req: LeaseTimeToLiveRequest,
    ) -> Result<LeaseTimeToLiveResponse, StoreError> {
        self.call(|ch| rpc!(Self::lease(ch), lease_time_to_live, req))
            .await
    }

    async fn lease_leases(&self) -> Result<LeaseLeasesResponse, StoreError> {
        self.call(|ch| rpc!(Self::lease(ch), lease_leases, LeaseLeasesRequest {}))
            .await
    }

    async fn status(&self) -> Result<StatusResponse, StoreError> {
        self.call(|ch| rpc!(MaintenanceClient::new(ch), status, StatusRequest {}))
            .await
    }
}
