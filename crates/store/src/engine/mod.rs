//! The embedded storage engine: etcd v3 semantics over an in-memory multi-version index, made
//! durable by an append-only, checksummed log with group commit, and kept bounded on disk by
//! automatic compaction plus snapshot-and-truncate. See `ENGINE.md` next to this crate.
//!
//! Layout: [`mvcc`] (versions and history), [`ops`] (the state machine), [`validate`] (limits and
//! request checks), [`commit`] (group commit), [`log`] (record format), [`snapshot`] (space
//! reclaim and recovery), [`watch`], [`lease`], [`maintenance`] (lease expiry, compaction policy).

mod commit;
mod lease;
mod log;
mod maintenance;
mod mvcc;
mod ops;
mod snapshot;
mod validate;
mod watch;

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse,
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveResponse, LeaseLeasesResponse,
    LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus, LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, StatusResponse,
    TxnRequest, TxnResponse, WatchCreateRequest,
};
use crate::{Store, StoreError, WatchStream};
use commit::{Committer, Core, Writer};
use ops::{header, State, WriteOp, WriteResult};
pub use validate::{DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_TXN_OPS};

/// The etcd version the engine reports in `status`: the API level it implements.
pub const REPORTED_VERSION: &str = "3.5.0";

/// How the engine stores, compacts and limits.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Wait for `fdatasync` before acknowledging a write. Off only for throwaway data.
    pub fsync: bool,
    /// Automatic compaction keeps at most this many revisions of history (`None`: no limit).
    pub retain_revisions: Option<i64>,
    /// Automatic compaction drops history older than this (`None`: no limit). History beyond
    /// either limit is compacted.
    pub retain_duration: Option<Duration>,
    /// How often the compaction policy and lease deadlines are checked.
    pub maintenance_interval: Duration,
    /// A snapshot is written once the active log segment exceeds both this many bytes and
    /// `snapshot_log_ratio` times the last snapshot; then older files are deleted.
    pub snapshot_min_log_bytes: u64,
    pub snapshot_log_ratio: u64,
    /// Write the log into zero-filled, preallocated segments, as etcd does with its WAL. Costs
    /// a spare segment of disk; measured no faster on ext4 here, so off by default.
    pub preallocate: bool,
    /// etcd's `--max-request-bytes`.
    pub max_request_bytes: usize,
    /// etcd's `--max-txn-ops`.
    pub max_txn_ops: usize,
    /// Interval of watch progress notifications (etcd: 10 minutes).
    pub progress_notify_interval: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            fsync: true,
            retain_revisions: Some(10_000),
            retain_duration: Some(Duration::from_secs(300)),
            maintenance_interval: Duration::from_millis(250),
            snapshot_min_log_bytes: 16 << 20,
            snapshot_log_ratio: 2,
            preallocate: false,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_txn_ops: DEFAULT_MAX_TXN_OPS,
            progress_notify_interval: Duration::from_secs(600),
        }
    }
}

/// The embedded engine. Implements the whole [`Store`] trait.
pub struct Engine {
    core: Arc<Core>,
    committer: Committer,
    opts: EngineOptions,
    limits: validate::Limits,
    dir: Option<PathBuf>,
}

impl Engine {
    /// Opens (or creates) a durable engine in `dir`, recovering everything acknowledged before.
    pub async fn open(dir: &Path, opts: EngineOptions) -> Result<Arc<Engine>, StoreError> {
        let dir = dir.to_path_buf();
        let opts2 = opts.clone();
        tokio::task::spawn_blocking(move || Engine::open_blocking(&dir, opts2))
            .await
            .map_err(|e| StoreError::Storage(format!("open task failed: {e}")))?
    }

    fn open_blocking(dir: &Path, opts: EngineOptions) -> Result<Arc<Engine>, StoreError> {
        let io = |e: std::io::Error| StoreError::Storage(format!("{}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(io)?;
        let lock = Arc::new(lock_dir(dir)?);
        let rec = snapshot::recover(dir)?;
        tracing::info!(
            dir = %dir.display(),
            revision = rec.state.mvcc.current,
            compacted = rec.state.mvcc.compacted,
            "datastore engine recovered"
        );
        let mut state = rec.state;
        state.retain_revisions = opts.retain_revisions;
        let core = Core::new(state);
        let segment = log::Segment::create(dir, rec.next_seq).map_err(io)?;
        let reclaimer = snapshot::Reclaimer {
            min_log_bytes: opts.snapshot_min_log_bytes,
            ratio: opts.snapshot_log_ratio.max(1),
            last_snapshot_bytes: Arc::new(AtomicU64::new(rec.snapshot_bytes)),
            running: Arc::new(AtomicBool::new(false)),
        };
        let writer = Writer {
            core: core.clone(),
            segment,
            fsync: opts.fsync,
            reclaimer,
            spare: log::Spare::new(dir),
            preallocate: opts.preallocate,
            _lock: lock,
            dir: dir.to_path_buf(),
        };
        let committer = writer.spawn().map_err(io)?;
        Ok(Engine::start(
            core,
            committer,
            opts,
            Some(dir.to_path_buf()),
        ))
    }

    /// An engine without disk: same semantics, nothing survives the process.
    pub fn in_memory() -> Arc<Engine> {
        Engine::in_memory_with(EngineOptions::default())
    }

    /// [`Engine::in_memory`] with options (compaction policy, limits, progress interval).
    pub fn in_memory_with(opts: EngineOptions) -> Arc<Engine> {
        let state = State {
            durable: 1,
            retain_revisions: opts.retain_revisions,
            ..Default::default()
        };
        Engine::start(Core::new(state), Committer::Memory, opts, None)
    }

    fn start(
        core: Arc<Core>,
        committer: Committer,
        opts: EngineOptions,
        dir: Option<PathBuf>,
    ) -> Arc<Engine> {
        let limits = validate::Limits {
            max_request_bytes: opts.max_request_bytes,
            max_txn_ops: opts.max_txn_ops,
        };
        let engine = Arc::new(Engine {
            core,
            committer,
            opts,
            limits,
            dir,
        });
        maintenance::spawn(&engine);
        engine
    }

    async fn submit(&self, op: WriteOp) -> Result<WriteResult, StoreError> {
        self.committer.submit(&self.core, op).await
    }

    /// The newest durable revision.
    pub fn revision(&self) -> i64 {
        self.core.read().durable
    }

    /// How many log appends (each one `write` + one `fdatasync`) the engine has made: with
    /// concurrent writers, far fewer than writes, thanks to group commit. 0 in memory.
    pub fn log_appends(&self) -> u64 {
        self.core.appends.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Total size of the engine's files in bytes (0 in memory).
    pub fn disk_size(&self) -> u64 {
        let Some(dir) = &self.dir else { return 0 };
        let Ok(rd) = std::fs::read_dir(dir) else {
            return 0;
        };
        rd.filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum()
    }
}

/// Takes an exclusive lock on the directory. A previous engine in this process may still be
/// finishing its last write, so wait a little before giving up.
fn lock_dir(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join("LOCK");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::Storage(format!("{}: {e}", path.display())))?;
    for _ in 0..200 {
        if file.try_lock().is_ok() {
            return Ok(file);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Err(StoreError::Storage(format!(
        "{} is in use by another datastore process",
        dir.display()
    )))
}

fn unexpected() -> StoreError {
    StoreError::Storage("unexpected result from the commit path".into())
}

#[async_trait]
impl Store for Engine {
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, StoreError> {
        self.limits.range(&req)?;
        let state = self.core.read();
        let selection = ops::select(&state.mvcc, &req, state.durable)?;
        // Copy values only after releasing the lock, so that big lists do not stall the writer.
        drop(state);
        Ok(selection.into_response(&req))
    }

    async fn put(&self, req: PutRequest) -> Result<PutResponse, StoreError> {
        self.limits.put(&req)?;
        match self.submit(WriteOp::Put(req)).await? {
            WriteResult::Put(r) => Ok(r),
            _ => Err(unexpected()),
        }
    }

    async fn delete_range(
        &self,
        req: DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, StoreError> {
        self.limits.delete(&req)?;
        match self.submit(WriteOp::Delete(req)).await? {
            WriteResult::Delete(r) => Ok(r),
            _ => Err(unexpected()),
        }
    }

    async fn txn(&self, req: TxnRequest) -> Result<TxnResponse, StoreError> {
        self.limits.txn(&req)?;
        if validate::is_read_only(&req) {
            let state = self.core.read();
            return ops::read_only_txn(&state.mvcc, &req, state.durable);
        }
        match self.submit(WriteOp::Txn(req)).await? {
            WriteResult::Txn(r) => Ok(r),
            _ => Err(unexpected()),
        }
    }

    async fn compact(&self, req: CompactionRequest) -> Result<CompactionResponse, StoreError> {
        match self.submit(WriteOp::Compact(req.revision)).await? {
            WriteResult::Done { revision, .. } => Ok(CompactionResponse {
                header: header(revision),
            }),
            _ => Err(unexpected()),
        }
    }

    async fn watch(&self, req: WatchCreateRequest) -> Result<WatchStream, StoreError> {
        if mvcc::KeyRange::new(&req.key, &req.range_end).is_empty() {
            return Err(StoreError::InvalidArgument(
                "mvcc: watcher range is empty".into(),
            ));
        }
        Ok(watch::start(
            self.core.clone(),
            req,
            self.opts.progress_notify_interval,
        ))
    }

    async fn lease_grant(&self, req: LeaseGrantRequest) -> Result<LeaseGrantResponse, StoreError> {
        match self
            .submit(WriteOp::LeaseGrant {
                id: req.id,
                ttl: req.ttl,
            })
            .await?
        {
            WriteResult::Done { revision, id, ttl } => Ok(LeaseGrantResponse {
                header: header(revision),
                id,
                ttl,
                error: String::new(),
            }),
            _ => Err(unexpected()),
        }
    }

    async fn lease_revoke(
        &self,
        req: LeaseRevokeRequest,
    ) -> Result<LeaseRevokeResponse, StoreError> {
        match self.submit(WriteOp::LeaseRevoke(req.id)).await? {
            WriteResult::Done { revision, .. } => Ok(LeaseRevokeResponse {
                header: header(revision),
            }),
            _ => Err(unexpected()),
        }
    }

    async fn lease_keep_alive(&self, id: i64) -> Result<LeaseKeepAliveResponse, StoreError> {
        let mut state = self.core.write();
        let ttl = state.leases.renew(id)?;
        Ok(LeaseKeepAliveResponse {
            header: header(state.durable),
            id,
            ttl,
        })
    }

    async fn lease_time_to_live(
        &self,
        req: LeaseTimeToLiveRequest,
    ) -> Result<LeaseTimeToLiveResponse, StoreError> {
        let state = self.core.read();
        let now = std::time::Instant::now();
        // etcd answers an unknown lease with TTL -1 rather than an error.
        let Some(lease) = state.leases.get(req.id) else {
            return Ok(LeaseTimeToLiveResponse {
                header: header(state.durable),
                id: req.id,
                ttl: -1,
                ..Default::default()
            });
        };
        Ok(LeaseTimeToLiveResponse {
            header: header(state.durable),
            id: req.id,
            ttl: lease.remaining_secs(now),
            granted_ttl: lease.ttl,
            keys: if req.keys {
                lease.keys.iter().cloned().collect()
            } else {
                Vec::new()
            },
        })
    }

    async fn lease_leases(&self) -> Result<LeaseLeasesResponse, StoreError> {
        let state = self.core.read();
        let leases = state
            .leases
            .ids()
            .into_iter()
            .map(|id| LeaseStatus { id })
            .collect();
        Ok(LeaseLeasesResponse {
            header: header(state.durable),
            leases,
        })
    }

    async fn status(&self) -> Result<StatusResponse, StoreError> {
        let (revision, live) = {
            let state = self.core.read();
            (state.durable, state.mvcc.live_bytes)
        };
        let db_size = match self.dir {
            Some(_) => self.disk_size() as i64,
            None => live,
        };
        Ok(StatusResponse {
            header: header(revision),
            version: REPORTED_VERSION.into(),
            db_size,
            db_size_in_use: live,
            ..Default::default()
        })
    }
}
