//! HTTP watches: newline-delimited `{"type": ..., "object": ...}` events for one resource scope,
//! fed by the watch cache. Selector changes turn into ADDED/DELETED as upstream (an object that
//! stops matching is DELETED for that watcher), and a start point the cache no longer covers is
//! one ERROR event with a 410 Expired Status.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use crate::content::Output;
use crate::conversion::from_storage;
use crate::registry::{parse_rv, ListOptions};
use crate::resources::Resource;
use crate::rest::Call;
use crate::selectors::Selector;
use crate::status::{ApiError, ApiResult};
use crate::table::{self, IncludeObject};
use crate::watch_cache::{CacheEvent, Subscription};

/// Upstream closes watches after a random 30–60 minutes so clients rebalance; same here.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);
const BOOKMARK_EVERY: Duration = Duration::from_secs(30);

type Chunk = Result<Bytes, std::convert::Infallible>;

/// What one watcher filters and how it encodes.
struct Watcher {
    res: Arc<Resource>,
    /// Keys under this prefix are watched; for a watch on one named object, only this key.
    prefix: String,
    exact: bool,
    selector: Selector,
    output: Output,
    include: IncludeObject,
    bookmarks: bool,
}

pub async fn serve(call: &Call<'_>, output: Output) -> ApiResult<Response> {
    let res = &call.info.res;
    let w = Watcher {
        res: res.clone(),
        prefix: match &call.info.name {
            Some(name) => res.key(call.info.namespace.as_deref(), name),
            None => res.scope_prefix(call.info.namespace.as_deref()),
        },
        exact: call.info.name.is_some(),
        selector: call.selector()?,
        output,
        include: call.include_object(),
        bookmarks: call.query.allow_bookmarks,
    };
    let q = &call.query;
    let rv = q.resource_version.as_deref().unwrap_or("");
    let initial = q.send_initial_events.unwrap_or(rv.is_empty() || rv == "0");
    let (tx, rx) = mpsc::channel::<Chunk>(64);
    let mut initial_lines = Vec::new();
    let start = if initial {
        let opts = ListOptions {
            selector: w.selector.clone(),
            ..Default::default()
        };
        let listed = call
            .registry
            .list(res, call.info.namespace.as_deref(), &opts)
            .await?;
        let named = call.info.name.as_deref();
        initial_lines = listed
            .items
            .iter()
            .filter(|obj| named.is_none_or(|n| crate::metadata::name(obj) == n))
            .map(|obj| w.line("ADDED", obj))
            .collect();
        if q.send_initial_events == Some(true) {
            initial_lines.push(w.bookmark(listed.revision, true));
        }
        listed.revision
    } else {
        match parse_rv(rv)? {
            // sendInitialEvents=false without a resourceVersion: changes from now on.
            0 => call.registry.cache.current_revision(),
            after => after,
        }
    };
    let timeout = q
        .timeout_seconds
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TIMEOUT);
    match call.registry.cache.subscribe(start) {
        Ok(sub) => {
            let cache = call.registry.cache.clone();
            tokio::spawn(run(
                Arc::new(w),
                initial_lines,
                sub,
                start,
                tx,
                timeout,
                cache,
            ));
        }
        Err(too_old) => {
            let status = ApiError::Gone(format!(
                "too old resource version: {} ({})",
                too_old.requested, too_old.floor
            ))
            .to_status();
            let line = encode_line(&json!({"type": "ERROR", "object": status}));
            let _ = tx.try_send(Ok(line));
        }
    }
    Ok(stream_response(rx))
}

fn stream_response(rx: mpsc::Receiver<Chunk>) -> Response {
    let mut resp = Response::new(Body::from_stream(ReceiverStream::new(rx)));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    resp
}

fn encode_line(v: &Value) -> Bytes {
    let mut b = serde_json::to_vec(v).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

/// `{"type":KIND,"object":<already serialised object>}` without re-encoding the object, so a
/// thousand watchers of one change cost one serialisation.
fn raw_line(kind: &str, object_json: &[u8]) -> Bytes {
    let mut b = Vec::with_capacity(object_json.len() + 32);
    b.extend_from_slice(b"{\"type\":\"");
    b.extend_from_slice(kind.as_bytes());
    b.extend_from_slice(b"\",\"object\":");
    b.extend_from_slice(object_json);
    b.extend_from_slice(b"}\n");
    Bytes::from(b)
}

impl Watcher {
    fn line(&self, kind: &str, obj: &Value) -> Bytes {
        let object = match self.output {
            Output::Table => {
                let meta = json!({"resourceVersion": obj["metadata"]["resourceVersion"].clone()});
                table::table(&self.res, std::slice::from_ref(obj), meta, self.include)
            }
            Output::PartialObjectMetadata => table::partial_metadata(obj),
            _ => obj.clone(),
        };
        encode_line(&json!({"type": kind, "object": object}))
    }

    fn bookmark(&self, revision: i64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": revision.to_string(), "creationTimestamp": null});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let object =
            json!({"kind": self.res.kind, "apiVersion": self.res.api_version(), "metadata": meta});
        encode_line(&json!({"type": "BOOKMARK", "object": object}))
    }

    /// The event this watcher sees for a cache event, if any.
    fn translate(&self, ev: &CacheEvent) -> Option<Bytes> {
        let in_scope = if self.exact {
            ev.key == self.prefix
        } else {
            ev.key.starts_with(&self.prefix)
        };
        if !in_scope {
            return None;
        }
        let passthrough = self.output == Output::Json && !self.converts();
        let obj = if passthrough {
            None
        } else {
            Some(from_storage(&self.res, ev.obj.clone()))
        };
        let view = obj.as_ref().unwrap_or(&ev.obj);
        let now = self.selector.matches(&self.res, view);
        let before = match (&ev.prev, ev.created) {
            (_, true) => false,
            _ if self.selector.is_empty() => true,
            (Some(p), _) if self.converts() => self
                .selector
                .matches(&self.res, &from_storage(&self.res, p.clone())),
            (Some(p), _) => self.selector.matches(&self.res, p),
            (None, _) => now,
        };
        let kind = match (ev.deleted, before, now) {
            (true, _, true) => "DELETED",
            (true, _, false) => return None,
            (false, false, true) => "ADDED",
            (false, true, true) => "MODIFIED",
            (false, true, false) => "DELETED",
            (false, false, false) => return None,
        };
        if passthrough {
            return Some(raw_line(kind, &ev.json));
        }
        Some(self.line(kind, view))
    }

    /// Whether this resource's objects are converted from their stored form on the way out.
    fn converts(&self) -> bool {
        self.res.group == "events.k8s.io"
    }
}

async fn run(
    w: Arc<Watcher>,
    initial: Vec<Bytes>,
    sub: Subscription,
    start: i64,
    tx: mpsc::Sender<Chunk>,
    timeout: Duration,
    cache: Arc<crate::watch_cache::WatchCache>,
) {
    for line in initial {
        if tx.send(Ok(line)).await.is_err() {
            return;
        }
    }
    let mut last = start;
    for ev in sub.backlog {
        if !send_event(&w, &ev, &mut last, &tx).await {
            return;
        }
    }
    let mut live = sub.live;
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut ticker = tokio::time::interval(BOOKMARK_EVERY);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = &mut deadline => return,
            _ = tx.closed() => return,
            _ = ticker.tick(), if w.bookmarks => {
                let rev = cache.current_revision().max(last);
                if tx.send(Ok(w.bookmark(rev, false))).await.is_err() {
                    return;
                }
            }
            ev = live.recv() => match ev {
                Ok(ev) => {
                    if !send_event(&w, &ev, &mut last, &tx).await {
                        return;
                    }
                }
                // A watcher that fell behind the cache is closed; the client re-watches from
                // its last resourceVersion.
                Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

async fn send_event(
    w: &Watcher,
    ev: &CacheEvent,
    last: &mut i64,
    tx: &mpsc::Sender<Chunk>,
) -> bool {
    if ev.revision <= *last {
        return true;
    }
    *last = ev.revision;
    match w.translate(ev) {
        Some(line) => tx.send(Ok(line)).await.is_ok(),
        None => true,
    }
}
