//! The on-disk record format shared by log segments and snapshots.
//!
//! A file is a sequence of frames: `len: u32 LE | crc32c(payload): u32 LE | payload`, where the
//! payload is a protobuf-encoded [`Entry`]. A frame whose length runs past the end of the file or
//! whose checksum does not match marks a torn write: recovery keeps everything before it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use prost::Message;

use crate::proto::mvccpb::KeyValue;

/// One change of a committed revision: a full key-value for a put, key only for a delete.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct ChangeRecord {
    #[prost(message, optional, tag = "1")]
    pub kv: Option<KeyValue>,
    #[prost(bool, tag = "2")]
    pub deleted: bool,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct LeaseRecord {
    #[prost(int64, tag = "1")]
    pub id: i64,
    #[prost(int64, tag = "2")]
    pub ttl: i64,
}

/// One logged state transition. Fields not involved are left at their defaults; replay applies
/// grants, then changes (as revision `rev`), then revokes, then the compaction.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Entry {
    #[prost(int64, tag = "1")]
    pub rev: i64,
    #[prost(message, repeated, tag = "2")]
    pub changes: Vec<ChangeRecord>,
    #[prost(message, repeated, tag = "3")]
    pub grants: Vec<LeaseRecord>,
    #[prost(int64, repeated, tag = "4")]
    pub revokes: Vec<i64>,
    #[prost(int64, tag = "5")]
    pub compact: i64,
    /// Snapshot only: versions that form the state at the snapshot's base revision.
    #[prost(message, repeated, tag = "6")]
    pub base: Vec<KeyValue>,
    /// Snapshot only: the last frame, carrying the current revision.
    #[prost(int64, tag = "7")]
    pub end_rev: i64,
    /// Snapshot only: the changes at the base revision, for the watch history (already applied).
    #[prost(bool, tag = "8")]
    pub history_only: bool,
}

impl Entry {
    pub(crate) fn grant(id: i64, ttl: i64) -> Entry {
        Entry {
            grants: vec![LeaseRecord { id, ttl }],
            ..Default::default()
        }
    }
}

/// Appends the frame of `e` to `buf`.
pub(crate) fn encode_frame(e: &Entry, buf: &mut Vec<u8>) {
    let payload = e.encode_to_vec();
    // A zero length marks the preallocated end of a segment; no entry is ever empty.
    debug_assert!(!payload.is_empty());
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&crc32c(&payload).to_le_bytes());
    buf.extend_from_slice(&payload);
}

/// The frames of a file that decode, and the byte length they cover. Stops at the first torn
/// or corrupt frame; `complete` says whether the whole file was valid.
pub(crate) struct Decoded {
    pub entries: Vec<Entry>,
    pub valid_len: u64,
    pub complete: bool,
}

pub(crate) fn read_frames(path: &Path) -> io::Result<Decoded> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    let mut entries = Vec::new();
    let mut pos = 0usize;
    while pos < data.len() {
        if data[pos..].iter().take(4).all(|b| *b == 0) {
            // Preallocated space: the end, unless something was written after it (torn write).
            let clean = data[pos..].iter().all(|b| *b == 0);
            return Ok(Decoded {
                entries,
                valid_len: pos as u64,
                complete: clean,
            });
        }
        let Some(entry) = decode_at(&data, pos) else {
            return Ok(Decoded {
                entries,
                valid_len: pos as u64,
                complete: false,
            });
        };
        entries.push(entry.0);
        pos = entry.1;
    }
    Ok(Decoded {
        entries,
        valid_len: pos as u64,
        complete: true,
    })
}

fn decode_at(data: &[u8], pos: usize) -> Option<(Entry, usize)> {
    let head = data.get(pos..pos + 8)?;
    let len = u32::from_le_bytes(head[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(head[4..].try_into().ok()?);
    let payload = data.get(pos + 8..pos + 8 + len)?;
    if crc32c(payload) != crc {
        return None;
    }
    Some((Entry::decode(payload).ok()?, pos + 8 + len))
}

/// The active log segment.
pub(crate) struct Segment {
    file: File,
    pub seq: u64,
    /// Bytes of frames written (the file may be longer: preallocated zeros).
    pub bytes: u64,
    /// Size of the zero-filled file this segment was made from (0: a plain, growing file).
    pub preallocated: u64,
}

impl Segment {
    pub fn create(dir: &Path, seq: u64) -> io::Result<Segment> {
        let file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(log_path(dir, seq))?;
        sync_dir(dir)?;
        Ok(Segment {
            file,
            seq,
            bytes: 0,
            preallocated: 0,
        })
    }

    /// Turns a prepared zero-filled spare file into segment `seq`.
    fn adopt(dir: &Path, seq: u64, spare: &Path, len: u64) -> io::Result<Segment> {
        let path = log_path(dir, seq);
        fs::rename(spare, &path)?;
        sync_dir(dir)?;
        let file = OpenOptions::new().write(true).open(path)?;
        Ok(Segment {
            file,
            seq,
            bytes: 0,
            preallocated: len,
        })
    }

    /// Whether the segment writes beyond its preallocated space (or never had any).
    pub fn outgrown(&self) -> bool {
        self.bytes >= self.preallocated
    }

    /// Writes `buf` in one call and, if asked, waits until it is on disk.
    pub fn append(&mut self, buf: &[u8], fsync: bool) -> io::Result<()> {
        self.file.write_all(buf)?;
        if fsync {
            self.file.sync_data()?;
        }
        self.bytes += buf.len() as u64;
        Ok(())
    }
}

/// A zero-filled file prepared in the background to become the next segment, so that
/// `fdatasync` has no file size or extent change to journal (etcd preallocates its WAL the same
/// way). Off by default: on this project's ext4 VMs it measured no faster (see ENGINE.md).
pub(crate) struct Spare {
    dir: PathBuf,
    job: Option<JoinHandle<io::Result<(PathBuf, u64)>>>,
}

/// Name of the spare file; recovery deletes a leftover one.
pub(crate) const SPARE_NAME: &str = "next.spare";

impl Spare {
    pub fn new(dir: &Path) -> Spare {
        Spare {
            dir: dir.to_path_buf(),
            job: None,
        }
    }

    /// Starts zero-filling a spare of `len` bytes, unless one is already on its way.
    pub fn prepare(&mut self, len: u64) {
        if self.job.is_some() || len == 0 {
            return;
        }
        let path = self.dir.join(SPARE_NAME);
        let spawned = std::thread::Builder::new()
            .name("store-spare".into())
            .spawn(move || zero_fill(&path, len).map(|()| (path, len)));
        self.job = spawned.ok();
    }

    pub fn ready(&self) -> bool {
        self.job.as_ref().is_some_and(|j| j.is_finished())
    }

    /// Segment `seq`, made from the spare if it is ready, else a plain file.
    pub fn next_segment(&mut self, seq: u64) -> io::Result<Segment> {
        if self.ready() {
            if let Some(job) = self.job.take() {
                match job.join() {
                    Ok(Ok((path, len))) => return Segment::adopt(&self.dir, seq, &path, len),
                    Ok(Err(e)) => tracing::warn!(error = %e, "cannot preallocate a log segment"),
                    Err(_) => tracing::warn!("log segment preallocation panicked"),
                }
            }
        }
        Segment::create(&self.dir, seq)
    }
}

fn zero_fill(path: &Path, len: u64) -> io::Result<()> {
    let mut f = File::create(path)?;
    let zeros = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        f.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    f.sync_all()
}

pub(crate) fn log_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("log-{seq:016x}.wal"))
}

pub(crate) fn snap_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("snap-{seq:016x}.snap"))
}

/// Parses `log-<seq>.wal` / `snap-<seq>.snap` names.
pub(crate) fn parse_name(name: &str) -> Option<(&'static str, u64)> {
    let (kind, rest) = if let Some(r) = name.strip_prefix("log-") {
        ("log", r.strip_suffix(".wal")?)
    } else {
        ("snap", name.strip_prefix("snap-")?.strip_suffix(".snap")?)
    };
    Some((kind, u64::from_str_radix(rest, 16).ok()?))
}

/// Makes a create, rename or delete in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// CRC-32C (Castagnoli), table-driven; small enough not to need a dependency.
pub(crate) fn crc32c(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0x82F6_3B78 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *slot = c;
        }
        t
    });
    let mut crc = !0u32;
    for &b in data {
        crc = table[((crc ^ b as u32) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_known_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn torn_tail_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut buf = Vec::new();
        encode_frame(
            &Entry {
                rev: 2,
                ..Default::default()
            },
            &mut buf,
        );
        let good = buf.len();
        encode_frame(
            &Entry {
                rev: 3,
                compact: 1,
                ..Default::default()
            },
            &mut buf,
        );
        std::fs::write(&path, &buf[..buf.len() - 1]).unwrap();
        let d = read_frames(&path).unwrap();
        assert_eq!(
            (d.entries.len(), d.valid_len, d.complete),
            (1, good as u64, false)
        );
        assert_eq!(parse_name("log-00000000000000ff.wal"), Some(("log", 255)));
    }
}
