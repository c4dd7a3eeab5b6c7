//! The Watch service: one bidirectional stream carries many watchers. Create, cancel and progress
//! requests are handled in arrival order; each watcher forwards its store stream into the shared
//! response stream, tagged with its watch ID, after its `created` response.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::validate;
use crate::proto::etcdserverpb::watch_request::RequestUnion;
use crate::proto::etcdserverpb::watch_server::Watch;
use crate::proto::etcdserverpb::{
    RangeRequest, ResponseHeader, WatchCreateRequest, WatchRequest, WatchResponse,
};
use crate::{Store, StoreError, WatchStream};

/// Responses buffered per stream before watchers wait for a slow client.
const STREAM_BUFFER: usize = 256;

type Tx = mpsc::Sender<Result<WatchResponse, Status>>;

pub struct WatchService {
    store: Arc<dyn Store>,
}

impl WatchService {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = ReceiverStream<Result<WatchResponse, Status>>;

    async fn watch(
        &self,
        req: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let session = Session {
            store: self.store.clone(),
            tx,
            watchers: HashMap::new(),
            next_id: 0,
        };
        tokio::spawn(session.run(req.into_inner()));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// The watchers of one gRPC stream.
struct Session {
    store: Arc<dyn Store>,
    tx: Tx,
    watchers: HashMap<i64, JoinHandle<()>>,
    next_id: i64,
}

impl Session {
    async fn run(mut self, mut requests: Streaming<WatchRequest>) {
        // etcd ends the whole stream when the client stops sending, and so do we.
        while let Some(Ok(req)) = requests.next().await {
            let sent = match req.request_union {
                Some(RequestUnion::CreateRequest(c)) => self.create(c).await,
                Some(RequestUnion::CancelRequest(c)) => self.cancel(c.watch_id).await,
                Some(RequestUnion::ProgressRequest(_)) => self.progress().await,
                None => true,
            };
            if !sent {
                break;
            }
        }
        for handle in self.watchers.values() {
            handle.abort();
        }
    }

    async fn send(&self, resp: WatchResponse) -> bool {
        self.tx.send(Ok(resp)).await.is_ok()
    }

    /// The store's current revision: the point a watcher created now starts after. A count of
    /// one key is the cheapest request that carries it on every backend.
    async fn current_header(&self) -> Result<ResponseHeader, StoreError> {
        let probe = RangeRequest {
            key: vec![0],
            count_only: true,
            ..Default::default()
        };
        Ok(self.store.range(probe).await?.header.unwrap_or_default())
    }

    fn assign_id(&mut self, requested: i64) -> Result<i64, StoreError> {
        self.watchers.retain(|_, h| !h.is_finished());
        if requested != 0 {
            if self.watchers.contains_key(&requested) {
                return Err(StoreError::InvalidArgument(
                    "mvcc: duplicate watch ID provided on the WatchStream".into(),
                ));
            }
            return Ok(requested);
        }
        while self.watchers.contains_key(&self.next_id) {
            self.next_id += 1;
        }
        self.next_id += 1;
        Ok(self.next_id - 1)
    }

    async fn start(
        &mut self,
        mut req: WatchCreateRequest,
    ) -> Result<(i64, ResponseHeader, WatchStream), StoreError> {
        validate::check_watch(&req)?;
        let id = self.assign_id(req.watch_id)?;
        let header = self.current_header().await?;
        // Pin "from now" to the revision the created response reports, so that a client resuming
        // from that revision neither misses nor repeats an event.
        if req.start_revision <= 0 {
            req.start_revision = header.revision + 1;
        }
        let stream = self.store.watch(req).await?;
        Ok((id, header, stream))
    }

    async fn create(&mut self, req: WatchCreateRequest) -> bool {
        match self.start(req).await {
            Ok((id, header, stream)) => {
                let created = WatchResponse {
                    header: Some(header),
                    watch_id: id,
                    created: true,
                    ..Default::default()
                };
                if !self.send(created).await {
                    return false;
                }
                let handle = tokio::spawn(forward(id, stream, self.tx.clone()));
                self.watchers.insert(id, handle);
                true
            }
            Err(err) => {
                tracing::debug!(error = %err, "watch refused");
                self.send(WatchResponse {
                    header: self.current_header().await.ok(),
                    watch_id: -1,
                    created: true,
                    canceled: true,
                    cancel_reason: err.to_string(),
                    ..Default::default()
                })
                .await
            }
        }
    }

    async fn cancel(&mut self, id: i64) -> bool {
        let Some(handle) = self.watchers.remove(&id) else {
            return true;
        };
        let was_running = !handle.is_finished();
        handle.abort();
        if !was_running {
            return true;
        }
        self.send(WatchResponse {
            header: self.current_header().await.ok(),
            watch_id: id,
            canceled: true,
            ..Default::default()
        })
        .await
    }

    /// etcd answers a progress request with one response for the whole stream (watch ID -1).
    async fn progress(&mut self) -> bool {
        match self.current_header().await {
            Ok(header) => {
                self.send(WatchResponse {
                    header: Some(header),
                    watch_id: -1,
                    ..Default::default()
                })
                .await
            }
            Err(err) => self
                .tx
                .send(Err(super::status_from_store_error(err)))
                .await
                .is_ok(),
        }
    }
}

/// Copies one watcher's responses into the stream; a watcher the store ends is reported
/// cancelled, as etcd does.
async fn forward(id: i64, mut stream: WatchStream, tx: Tx) {
    while let Some(item) = stream.next().await {
        let resp = match item {
            Ok(mut resp) => {
                resp.watch_id = id;
                resp
            }
            Err(err) => WatchResponse {
                watch_id: id,
                canceled: true,
                cancel_reason: err.to_string(),
                ..Default::default()
            },
        };
        let last = resp.canceled;
        if tx.send(Ok(resp)).await.is_err() || last {
            return;
        }
    }
    let _ = tx
        .send(Ok(WatchResponse {
            watch_id: id,
            canceled: true,
            ..Default::default()
        }))
        .await;
}
