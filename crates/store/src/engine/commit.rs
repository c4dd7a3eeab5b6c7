//! The commit path with group commit.
//!
//! All writes go through one writer thread. It takes every request waiting in its queue, applies
//! them one after another to the in-memory state (so each sees the ones before it), appends their
//! log records with one `write`, makes them durable with one `fdatasync`, and only then publishes
//! the new durable revision and answers every caller. Concurrent writers therefore share fsyncs,
//! and readers (which read at the durable revision) never see a write that could still be lost.
//!
//! If the disk fails, the engine stops accepting writes: its memory may hold changes the disk
//! does not, and serving them would break durability.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::{oneshot, watch};

use super::log::{encode_frame, Entry, Segment, Spare};
use super::ops::{State, WriteOp, WriteResult};
use super::snapshot::{self, Reclaimer};
use crate::StoreError;

/// Most requests one group commit takes, so that one batch cannot delay its first caller forever.
const MAX_BATCH: usize = 4096;
/// Largest preallocated segment (etcd's WAL segments are 64 MB too).
const MAX_PREALLOC: u64 = 64 << 20;

/// State shared by the engine, the writer thread and watch streams.
pub(crate) struct Core {
    state: RwLock<State>,
    /// The durable revision, for watchers to wait on.
    pub durable: watch::Sender<i64>,
    failed: AtomicBool,
    /// Log appends (one write + one fdatasync each), to show that writers share them.
    pub appends: AtomicU64,
}

impl Core {
    pub fn new(state: State) -> Arc<Core> {
        let rev = state.durable;
        Arc::new(Core {
            state: RwLock::new(state),
            durable: watch::channel(rev).0,
            failed: AtomicBool::new(false),
            appends: AtomicU64::new(0),
        })
    }

    /// A poisoned lock only means a panic elsewhere; the state itself is still consistent
    /// because every write request is checked before it changes anything.
    pub fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn check_healthy(&self) -> Result<(), StoreError> {
        if self.failed.load(Ordering::Acquire) {
            return Err(StoreError::Storage(
                "engine stopped after a disk write failed".into(),
            ));
        }
        Ok(())
    }

    /// Makes everything applied so far visible to readers and watchers.
    fn publish(&self, state: &mut State) {
        state.durable = state.mvcc.current;
        self.durable.send_replace(state.durable);
    }
}

pub(crate) struct Job {
    op: WriteOp,
    reply: oneshot::Sender<Result<WriteResult, StoreError>>,
}

/// Where writes go: straight into memory, or through the durable writer thread.
pub(crate) enum Committer {
    Memory,
    Disk(Sender<Job>),
}

impl Committer {
    /// Applies `op` and returns once it is durable.
    pub async fn submit(&self, core: &Core, op: WriteOp) -> Result<WriteResult, StoreError> {
        core.check_healthy()?;
        match self {
            Committer::Memory => apply_in_memory(core, op),
            Committer::Disk(tx) => {
                let (reply, rx) = oneshot::channel();
                tx.send(Job { op, reply }).map_err(|_| stopped())?;
                rx.await.map_err(|_| stopped())?
            }
        }
    }

    /// Same as [`Committer::submit`], for threads outside the async runtime.
    pub fn submit_blocking(&self, core: &Core, op: WriteOp) -> Result<WriteResult, StoreError> {
        core.check_healthy()?;
        match self {
            Committer::Memory => apply_in_memory(core, op),
            Committer::Disk(tx) => {
                let (reply, rx) = oneshot::channel();
                tx.send(Job { op, reply }).map_err(|_| stopped())?;
                rx.blocking_recv().map_err(|_| stopped())?
            }
        }
    }
}

fn stopped() -> StoreError {
    StoreError::Storage("engine writer stopped".into())
}

fn apply_in_memory(core: &Core, op: WriteOp) -> Result<WriteResult, StoreError> {
    let mut state = core.write();
    let result = state.apply(op, &mut Vec::new());
    state.enforce_retention(&mut Vec::new());
    core.publish(&mut state);
    result
}

/// The writer thread's loop state.
pub(crate) struct Writer {
    pub core: Arc<Core>,
    pub segment: Segment,
    pub fsync: bool,
    pub reclaimer: Reclaimer,
    pub spare: Spare,
    pub preallocate: bool,
    /// Held until the thread ends, so that no second engine opens the directory meanwhile.
    pub _lock: Arc<File>,
    pub dir: PathBuf,
}

impl Writer {
    /// Starts the writer thread; returns the committer that feeds it.
    pub fn spawn(mut self) -> std::io::Result<Committer> {
        self.prepare_spare();
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || self.run(rx))?;
        Ok(Committer::Disk(tx))
    }

    fn run(mut self, rx: Receiver<Job>) {
        while let Ok(first) = rx.recv() {
            let mut jobs = vec![first];
            while jobs.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            self.commit_batch(jobs);
            if self.reclaimer.due(&self.segment) {
                let image = snapshot::capture(&self.core.read());
                if self.switch_segment() {
                    let seq = self.segment.seq;
                    self.reclaimer.start(image, &self.dir, seq, &self._lock);
                }
            } else if self.segment.outgrown() && self.spare.ready() {
                self.switch_segment();
            }
        }
        tracing::debug!("store writer stopped");
    }

    /// Continues in a new segment, a preallocated one if ready; prepares the next spare.
    fn switch_segment(&mut self) -> bool {
        match self.spare.next_segment(self.segment.seq + 1) {
            Ok(seg) => {
                self.segment = seg;
                self.prepare_spare();
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot start a new log segment");
                false
            }
        }
    }

    /// Spares are as large as a segment grows before the next snapshot, up to `MAX_PREALLOC`.
    pub fn prepare_spare(&mut self) {
        if self.preallocate {
            self.spare
                .prepare(self.reclaimer.threshold().min(MAX_PREALLOC));
        }
    }

    fn commit_batch(&mut self, jobs: Vec<Job>) {
        let mut entries: Vec<Entry> = Vec::new();
        let mut results = Vec::with_capacity(jobs.len());
        let mut replies = Vec::with_capacity(jobs.len());
        {
            let mut state = self.core.write();
            for job in jobs {
                results.push(state.apply(job.op, &mut entries));
                replies.push(job.reply);
            }
            state.enforce_retention(&mut entries);
        }
        if let Err(e) = self.persist(&entries) {
            tracing::error!(error = %e, "store log write failed; refusing further writes");
            self.core.failed.store(true, Ordering::Release);
            for reply in replies {
                let _ = reply.send(Err(StoreError::Storage(format!("log write failed: {e}"))));
            }
            return;
        }
        self.core.publish(&mut self.core.write());
        for (reply, result) in replies.into_iter().zip(results) {
            let _ = reply.send(result);
        }
    }

    fn persist(&mut self, entries: &[Entry]) -> std::io::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for e in entries {
            encode_frame(e, &mut buf);
        }
        self.core.appends.fetch_add(1, Ordering::Relaxed);
        self.segment.append(&buf, self.fsync)
    }
}
