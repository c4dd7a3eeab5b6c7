//! Space reclaim and recovery.
//!
//! The directory holds `snap-<seq>.snap` files (the whole retained state as of the start of log
//! segment `<seq>`) and `log-<seq>.wal` segments. When the active segment outgrows the last
//! snapshot by the configured ratio, the writer switches to a new segment and a background thread
//! writes a snapshot of what compaction left (live data plus retained history) to a temporary
//! file, fsyncs it, renames it into place, fsyncs the directory, and only then deletes the older
//! snapshot and segments. A crash at any point leaves either the old or the new snapshot complete.
//!
//! Recovery loads the newest snapshot, replays every segment from its sequence on, and truncates a
//! torn tail of the last segment.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use super::log::{
    encode_frame, parse_name, read_frames, snap_path, sync_dir, Entry, LeaseRecord, Segment,
    SPARE_NAME,
};
use super::mvcc::RevChanges;
use super::ops::State;
use crate::proto::mvccpb::KeyValue;
use crate::StoreError;

/// Base versions per snapshot frame, to keep frames small.
const BASE_CHUNK: usize = 1024;

fn storage(e: impl std::fmt::Display) -> StoreError {
    StoreError::Storage(e.to_string())
}

/// Decides when to snapshot and runs snapshots in the background.
pub(crate) struct Reclaimer {
    pub min_log_bytes: u64,
    pub ratio: u64,
    pub last_snapshot_bytes: Arc<AtomicU64>,
    pub running: Arc<AtomicBool>,
}

/// What a snapshot holds, captured under the state lock.
pub(crate) struct Image {
    floor: i64,
    compacted: i64,
    current: i64,
    base: Vec<Arc<KeyValue>>,
    history: Vec<RevChanges>,
    leases: Vec<(i64, i64)>,
}

impl Reclaimer {
    /// Log bytes after which a snapshot is due.
    pub fn threshold(&self) -> u64 {
        self.min_log_bytes
            .max(self.ratio * self.last_snapshot_bytes.load(Ordering::Relaxed))
    }

    /// Whether the active segment has outgrown the last snapshot (and none is being written).
    pub fn due(&self, seg: &Segment) -> bool {
        seg.bytes >= self.threshold() && !self.running.load(Ordering::Acquire)
    }

    /// Writes `image` as snapshot `seq` in the background, then deletes what it makes redundant.
    /// The writer has just started segment `seq`, so `image` is exactly the state before it.
    pub fn start(&mut self, image: Image, dir: &Path, seq: u64, lock: &Arc<File>) {
        self.running.store(true, Ordering::Release);
        let (running, size, dir, lock) = (
            self.running.clone(),
            self.last_snapshot_bytes.clone(),
            dir.to_path_buf(),
            lock.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name("store-snapshot".into())
            .spawn(move || {
                let _lock = lock;
                let _done = Done(running);
                match write_snapshot(&dir, seq, &image).and_then(|bytes| {
                    remove_older(&dir, seq)?;
                    Ok(bytes)
                }) {
                    Ok(bytes) => size.store(bytes, Ordering::Relaxed),
                    Err(e) => {
                        tracing::warn!(error = %e, "snapshot failed; the log keeps everything")
                    }
                }
            });
        if spawned.is_err() {
            self.running.store(false, Ordering::Release);
        }
    }
}

/// Clears the "snapshot running" flag however the snapshot thread ends, so that a failed
/// snapshot never blocks the next one.
struct Done(Arc<AtomicBool>);

impl Drop for Done {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

pub(crate) fn capture(state: &State) -> Image {
    let (floor, base, history) = state.mvcc.snapshot();
    Image {
        floor,
        compacted: state.mvcc.compacted,
        current: state.mvcc.current,
        base,
        history,
        leases: state.leases.all(),
    }
}

fn write_snapshot(dir: &Path, seq: u64, img: &Image) -> std::io::Result<u64> {
    let tmp = dir.join(format!("snap-{seq:016x}.tmp"));
    let mut out = BufWriter::new(File::create(&tmp)?);
    let mut bytes = 0u64;
    let mut put = |e: Entry, out: &mut BufWriter<File>| -> std::io::Result<()> {
        let mut buf = Vec::new();
        encode_frame(&e, &mut buf);
        bytes += buf.len() as u64;
        out.write_all(&buf)
    };
    put(
        Entry {
            rev: img.floor,
            compact: img.compacted,
            ..Default::default()
        },
        &mut out,
    )?;
    // Leases before the base, so that restored keys find the lease they are attached to.
    // (An empty entry would encode to a zero-length frame, which marks the end of the data.)
    let grants: Vec<LeaseRecord> = img
        .leases
        .iter()
        .map(|&(id, ttl)| LeaseRecord { id, ttl })
        .collect();
    if !grants.is_empty() {
        put(
            Entry {
                grants,
                ..Default::default()
            },
            &mut out,
        )?;
    }
    for chunk in img.base.chunks(BASE_CHUNK) {
        let base = chunk.iter().map(|kv| (**kv).clone()).collect();
        put(
            Entry {
                base,
                ..Default::default()
            },
            &mut out,
        )?;
    }
    for rc in &img.history {
        let history_only = rc.rev <= img.floor;
        put(
            Entry {
                history_only,
                ..Entry::commit(rc)
            },
            &mut out,
        )?;
    }
    put(
        Entry {
            end_rev: img.current,
            ..Default::default()
        },
        &mut out,
    )?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, snap_path(dir, seq))?;
    sync_dir(dir)?;
    Ok(bytes)
}

/// Deletes snapshots and segments that the snapshot `seq` makes redundant.
fn remove_older(dir: &Path, seq: u64) -> std::io::Result<()> {
    for (path, _, s) in list(dir)? {
        if s < seq {
            fs::remove_file(path)?;
        }
    }
    sync_dir(dir)
}

/// (path, kind, seq) of every snapshot and segment, sorted by seq then kind ("log" < "snap").
fn list(dir: &Path) -> std::io::Result<Vec<(PathBuf, &'static str, u64)>> {
    let mut files = Vec::new();
    for ent in fs::read_dir(dir)? {
        let ent = ent?;
        let name = ent.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".tmp") {
            fs::remove_file(ent.path())?;
        } else if let Some((kind, seq)) = parse_name(&name) {
            files.push((ent.path(), kind, seq));
        }
    }
    files.sort_by_key(|(_, kind, seq)| (*seq, *kind));
    Ok(files)
}

/// What recovery found.
pub(crate) struct Recovered {
    pub state: State,
    pub next_seq: u64,
    pub snapshot_bytes: u64,
}

/// Rebuilds the state from `dir`: newest snapshot, then every later segment in order.
pub(crate) fn recover(dir: &Path) -> Result<Recovered, StoreError> {
    match fs::remove_file(dir.join(SPARE_NAME)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(storage(e)),
        _ => {}
    }
    let files = list(dir).map_err(storage)?;
    let snap = files
        .iter()
        .filter(|(_, k, _)| *k == "snap")
        .max_by_key(|(_, _, s)| *s);
    let mut state = State::default();
    let mut snapshot_bytes = 0;
    let from = match snap {
        Some((path, _, seq)) => {
            snapshot_bytes = load_snapshot(path, &mut state)?;
            *seq
        }
        None => 0,
    };
    let logs: Vec<_> = files
        .iter()
        .filter(|(_, k, s)| *k == "log" && *s >= from)
        .collect();
    for (i, (path, _, _)) in logs.iter().enumerate() {
        let d = read_frames(path).map_err(storage)?;
        if !d.complete {
            // A torn write can only be the last thing written: every later segment is empty.
            let later_empty = logs[i + 1..]
                .iter()
                .all(|(p, _, _)| read_frames(p).is_ok_and(|d| d.entries.is_empty()));
            if !later_empty {
                return Err(StoreError::Storage(format!(
                    "corrupt log segment {}",
                    path.display()
                )));
            }
            tracing::warn!(path = %path.display(), valid = d.valid_len, "truncating torn log tail");
            truncate(path, d.valid_len).map_err(storage)?;
        }
        for e in d.entries {
            state.replay(e)?;
        }
    }
    remove_older(dir, from).map_err(storage)?;
    state.durable = state.mvcc.current;
    let next_seq = files.iter().map(|(_, _, s)| s + 1).max().unwrap_or(0);
    Ok(Recovered {
        state,
        next_seq,
        snapshot_bytes,
    })
}

fn load_snapshot(path: &Path, state: &mut State) -> Result<u64, StoreError> {
    let d = read_frames(path).map_err(storage)?;
    let ended = d.entries.last().is_some_and(|e| e.end_rev > 0);
    if !d.complete || !ended {
        return Err(StoreError::Storage(format!(
            "corrupt snapshot {}",
            path.display()
        )));
    }
    let mut entries = d.entries.into_iter();
    if let Some(head) = entries.next() {
        state.mvcc.restore_revisions(head.rev, head.compact);
    }
    for e in entries {
        if e.end_rev > 0 {
            state.mvcc.restore_revisions(e.end_rev, 0);
        } else if !e.base.is_empty() {
            e.base.into_iter().for_each(|kv| state.restore_base(kv));
        } else if e.history_only {
            let changes = e.changes.into_iter();
            let changes = changes
                .map(|c| (c.kv.unwrap_or_default(), c.deleted))
                .collect();
            state.mvcc.restore_history(e.rev, changes);
        } else {
            state.replay(e)?;
        }
    }
    Ok(d.valid_len)
}

fn truncate(path: &Path, len: u64) -> std::io::Result<()> {
    let f = OpenOptions::new().write(true).open(path)?;
    f.set_len(len)?;
    f.sync_all()
}
