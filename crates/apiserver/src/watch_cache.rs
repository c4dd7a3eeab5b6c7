//! The watch cache: one store watch over all of `/registry/`, fanned out to every HTTP watcher.
//! It keeps a window of recent events so a watcher can resume from a resourceVersion without
//! touching the store, and decodes (and serialises) each object once however many watchers want
//! it. Watchers that start before the window get 410 Gone, as upstream's cacher answers.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use store::proto::etcdserverpb::WatchCreateRequest;
use store::proto::mvccpb::{event::EventType, Event};
use tokio::sync::broadcast;

use crate::storage::{self, prefix_end, DynStore};

/// How many recent events the cache keeps for resuming watchers. Each holds the object decoded
/// and serialised plus its previous state (~15 KB for a typical pod), so this bounds the window
/// to tens of MB; a watcher further behind relists, as with upstream's (smaller) cache window.
const WINDOW: usize = 2_000;
/// How far a slow watcher may fall behind before it is closed (it then re-lists, as upstream).
const CHANNEL: usize = 4096;

/// One change, decoded once and shared by every watcher.
#[derive(Debug)]
pub struct CacheEvent {
    pub key: String,
    pub revision: i64,
    /// True for a delete; `obj` is then the last state with the deletion's resourceVersion.
    pub deleted: bool,
    /// True when the key was created by this event.
    pub created: bool,
    pub obj: Value,
    /// `obj` serialised, for watchers that pass objects through unchanged.
    pub json: Bytes,
    /// The object before this event, when the store reported it.
    pub prev: Option<Value>,
}

struct Window {
    events: VecDeque<Arc<CacheEvent>>,
    /// Every event after this revision is in `events`.
    floor: i64,
    /// The newest revision the cache has seen.
    current: i64,
    tx: broadcast::Sender<Arc<CacheEvent>>,
}

pub struct WatchCache {
    window: Mutex<Window>,
}

/// What a new watcher starts with.
pub struct Subscription {
    pub backlog: Vec<Arc<CacheEvent>>,
    pub live: broadcast::Receiver<Arc<CacheEvent>>,
}

#[derive(Debug, thiserror::Error)]
#[error("too old resource version: {requested} ({floor})")]
pub struct TooOld {
    pub requested: i64,
    pub floor: i64,
}

impl WatchCache {
    /// Starts following the store from its current revision.
    pub async fn start(store: DynStore) -> Result<Arc<Self>, store::StoreError> {
        let rev = storage::current_revision(&store).await?;
        let (tx, _) = broadcast::channel(CHANNEL);
        let cache = Arc::new(WatchCache {
            window: Mutex::new(Window {
                events: VecDeque::new(),
                floor: rev,
                current: rev,
                tx,
            }),
        });
        let weak = Arc::downgrade(&cache);
        tokio::spawn(async move { follow(weak, store, rev).await });
        Ok(cache)
    }

    pub fn current_revision(&self) -> i64 {
        self.lock().current
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Events after `revision`, then live ones; Err when the window no longer reaches back that far.
    pub fn subscribe(&self, revision: i64) -> Result<Subscription, TooOld> {
        let w = self.lock();
        if revision < w.floor {
            return Err(TooOld {
                requested: revision,
                floor: w.floor,
            });
        }
        let backlog = w
            .events
            .iter()
            .filter(|e| e.revision > revision)
            .cloned()
            .collect();
        Ok(Subscription {
            backlog,
            live: w.tx.subscribe(),
        })
    }

    fn push(&self, event: CacheEvent) {
        let mut w = self.lock();
        let event = Arc::new(event);
        w.current = w.current.max(event.revision);
        if w.events.len() == WINDOW {
            if let Some(old) = w.events.pop_front() {
                w.floor = old.revision;
            }
        }
        w.events.push_back(event.clone());
        let _ = w.tx.send(event);
    }

    /// Forgets history the cache can no longer vouch for and closes every watcher, which then
    /// re-lists (upstream's cacher does the same when its etcd watch breaks).
    fn reset(&self, revision: i64) {
        let mut w = self.lock();
        w.events.clear();
        w.floor = revision;
        w.current = revision;
        w.tx = broadcast::channel(CHANNEL).0;
    }
}

fn watch_request(after: i64) -> WatchCreateRequest {
    WatchCreateRequest {
        key: b"/registry/".to_vec(),
        range_end: prefix_end("/registry/"),
        start_revision: after + 1,
        prev_kv: true,
        ..Default::default()
    }
}

/// Follows the store until the cache is dropped, re-establishing the store watch when it ends.
async fn follow(cache: std::sync::Weak<WatchCache>, store: DynStore, mut rev: i64) {
    const IDLE_CHECK: Duration = Duration::from_secs(5);
    while cache.strong_count() > 0 {
        let mut stream = match store.watch(watch_request(rev)).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "watch cache: store watch failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        loop {
            let item = tokio::select! {
                item = stream.next() => item,
                // Notices a dropped cache even while the store is quiet.
                _ = tokio::time::sleep(IDLE_CHECK) => {
                    if cache.strong_count() == 0 {
                        return;
                    }
                    continue;
                }
            };
            let (Some(item), Some(cache)) = (item, cache.upgrade()) else {
                break;
            };
            match item {
                Ok(resp) if resp.canceled => {
                    tracing::warn!(
                        compact = resp.compact_revision,
                        "watch cache: store watch cancelled"
                    );
                    rev = storage::current_revision(&store).await.unwrap_or(rev);
                    cache.reset(rev);
                    break;
                }
                Ok(resp) => {
                    for ce in resp.events.iter().filter_map(decode_event) {
                        rev = rev.max(ce.revision);
                        cache.push(ce);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "watch cache: store watch error; resuming");
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn decode_event(ev: &Event) -> Option<CacheEvent> {
    let kv = ev.kv.as_ref()?;
    let prev = ev.prev_kv.as_ref().and_then(storage::decode).map(|s| s.obj);
    let key = String::from_utf8_lossy(&kv.key).into_owned();
    let deleted = ev.r#type == EventType::Delete as i32;
    let revision = kv.mod_revision;
    let obj = if deleted {
        let mut last = prev.clone().unwrap_or_else(|| stub_from_key(&key));
        crate::metadata::meta_mut(&mut last)
            .insert("resourceVersion".into(), revision.to_string().into());
        last
    } else {
        storage::decode(kv)?.obj
    };
    let json = Bytes::from(serde_json::to_vec(&obj).ok()?);
    let created = !deleted && kv.create_revision == kv.mod_revision;
    Some(CacheEvent {
        key,
        revision,
        deleted,
        created,
        obj,
        json,
        prev,
    })
}

/// When the store did not report the deleted object, the key still names it.
fn stub_from_key(key: &str) -> Value {
    let name = key.rsplit('/').next().unwrap_or_default();
    serde_json::json!({"metadata": {"name": name}})
}
