//! Watches. A watch is a cursor over the revision history, pulled by its consumer: it waits for
//! the durable revision to pass its position, then copies the matching events of the next
//! revisions out of the history. Writers never wait for watchers and never buffer for them; a
//! slow watcher simply reads later, from history. Order, no gaps and no duplicates follow from the
//! cursor only ever moving forward over the contiguous history. A watcher that falls behind the
//! compaction point is cancelled with `compact_revision`, as etcd does.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::commit::Core;
use super::mvcc::{KeyRange, RevChanges};
use super::ops::header;
use crate::proto::etcdserverpb::{
    watch_create_request::FilterType, WatchCreateRequest, WatchResponse,
};
use crate::proto::mvccpb::{event::EventType, Event};
use crate::{StoreError, WatchStream};

/// Revisions copied per response at most, so that a far-behind watcher catches up in steps.
const REVS_PER_RESPONSE: usize = 512;

struct Cursor {
    core: Arc<Core>,
    durable: watch::Receiver<i64>,
    range: KeyRange,
    next: i64,
    watch_id: i64,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    progress: Option<Duration>,
    progress_at: Option<Instant>,
    done: bool,
}

/// Starts a watch at `req.start_revision` (0 = after the current durable revision).
pub(crate) fn start(core: Arc<Core>, req: WatchCreateRequest, progress: Duration) -> WatchStream {
    let mut durable = core.durable.subscribe();
    let current = *durable.borrow_and_update();
    let filters = &req.filters;
    let cursor = Cursor {
        range: KeyRange::new(&req.key, &req.range_end),
        next: if req.start_revision > 0 {
            req.start_revision
        } else {
            current + 1
        },
        watch_id: req.watch_id,
        prev_kv: req.prev_kv,
        no_put: filters.contains(&(FilterType::Noput as i32)),
        no_delete: filters.contains(&(FilterType::Nodelete as i32)),
        progress: req.progress_notify.then_some(progress),
        progress_at: req.progress_notify.then(|| Instant::now() + progress),
        done: false,
        durable,
        core,
    };
    Box::pin(futures::stream::unfold(cursor, |mut c| async move {
        let item = c.next().await?;
        Some((item, c))
    }))
}

impl Cursor {
    async fn next(&mut self) -> Option<Result<WatchResponse, StoreError>> {
        loop {
            if self.done {
                return None;
            }
            let durable = *self.durable.borrow_and_update();
            if self.next <= durable {
                if let Some(resp) = self.read(durable) {
                    return Some(Ok(resp));
                }
                continue;
            }
            let changed = self.durable.changed();
            match self.progress_at {
                Some(at) => tokio::select! {
                    r = changed => if r.is_err() { return None },
                    _ = tokio::time::sleep_until(at) => {
                        self.progress_at = self.progress.map(|p| Instant::now() + p);
                        return Some(Ok(self.response(durable, Vec::new())));
                    }
                },
                None => {
                    // The sender lives as long as the engine; when it goes, the watch ends.
                    changed.await.ok()?;
                }
            }
        }
    }

    /// Copies the next revisions' matching events; `None` if they all were filtered out.
    fn read(&mut self, durable: i64) -> Option<WatchResponse> {
        let (revs, compacted) = {
            let state = self.core.read();
            (
                state
                    .mvcc
                    .changes_since(self.next, durable, REVS_PER_RESPONSE),
                state.mvcc.compacted,
            )
        };
        let Some(revs) = revs else {
            self.done = true;
            // etcd sends this cancellation with a header revision of 0.
            return Some(WatchResponse {
                compact_revision: compacted,
                canceled: true,
                ..self.response(0, Vec::new())
            });
        };
        self.next = revs.last().map_or(durable + 1, |r| r.rev + 1);
        let events: Vec<Event> = revs
            .iter()
            .flat_map(|r| self.events(r, compacted))
            .collect();
        (!events.is_empty()).then(|| self.response(durable, events))
    }

    /// The matching events of one revision. The previous value of a change at the compaction
    /// point is gone, as in etcd, so no `prev_kv` is sent for it.
    fn events<'a>(&'a self, r: &'a RevChanges, compacted: i64) -> impl Iterator<Item = Event> + 'a {
        let at_compaction = r.rev <= compacted;
        let with_prev = self.prev_kv && !at_compaction;
        r.changes
            .iter()
            .filter(|c| self.range.contains(&c.kv.key))
            .filter_map(move |c| {
                if (c.deleted && self.no_delete) || (!c.deleted && self.no_put) {
                    return None;
                }
                if c.deleted && at_compaction {
                    // etcd's compaction removes a tombstone at the compaction revision itself,
                    // so a watch from that revision does not see the delete.
                    return None;
                }
                let r#type = if c.deleted {
                    EventType::Delete
                } else {
                    EventType::Put
                } as i32;
                Some(Event {
                    r#type,
                    kv: Some((*c.kv).clone()),
                    prev_kv: if with_prev {
                        c.prev.as_deref().cloned()
                    } else {
                        None
                    },
                })
            })
    }

    fn response(&self, revision: i64, events: Vec<Event>) -> WatchResponse {
        WatchResponse {
            header: header(revision),
            watch_id: self.watch_id,
            events,
            ..Default::default()
        }
    }
}
