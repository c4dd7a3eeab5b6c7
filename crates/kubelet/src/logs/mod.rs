//! Container logs as the kubelet API serves them (`/containerLogs/NS/POD/CONTAINER`), read from
//! the CRI-format files containerd writes (owner: probes work; the kubelet-server work serves
//! them over HTTP).
//!
//! Contract: [`read`]`(path, LogOptions)` streams a file's log text (following until the stream
//! is dropped when `follow`); [`read_container`] follows until the container has exited and its
//! file stops growing; [`find`]`(cri, layout, ns, pod, container, previous)` finds the file of a
//! pod's container (or its previous restart's) by the kubelet's labels, [`container_log`] the
//! file of a container ID. Options as upstream's (`tailLines`, `sinceSeconds`/`sinceTime` as
//! [`LogOptions::since`], `timestamps`, `limitBytes`, `follow`); partial lines (`P`) joined.
//!
//! Rotation (for the agent to start): [`spawn_rotation`]`(cri, layout, RotationPolicy, period)`
//! rotates running containers' logs past containerLogMaxSize (10 MiB) keeping
//! containerLogMaxFiles (5), older ones gzipped, as upstream's container log manager.

mod format;
mod locate;
mod reader;
mod rotate;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::Stream;
use k8s_openapi::jiff::Timestamp;
use tokio_stream::wrappers::ReceiverStream;

pub use locate::{container_log, find, LogFile};
use reader::Until;
pub use rotate::{rotate_all, spawn_rotation, RotationPolicy};

use crate::cri::Cri;

/// How much of a log to read, as the kubelet API's query parameters say.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// The last n lines only (`tailLines`); all when None.
    pub tail_lines: Option<u64>,
    /// Only lines written at or after this (`sinceTime`, or now - `sinceSeconds`).
    pub since: Option<Timestamp>,
    /// Each line prefixed with its RFC 3339 timestamp and a space.
    pub timestamps: bool,
    /// Stop after this many bytes (`limitBytes`).
    pub limit_bytes: Option<u64>,
    /// Keep streaming what is written after the end.
    pub follow: bool,
}

impl LogOptions {
    /// `since` from `sinceSeconds`.
    pub fn since_seconds(mut self, seconds: u64) -> LogOptions {
        let at = SystemTime::now() - Duration::from_secs(seconds);
        self.since = Timestamp::try_from(at).ok();
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("failed to read log file {path:?}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Runtime(String),
}

/// Streams the log text of the CRI log file at `path`; when following, until dropped.
pub fn read(path: &Path, opts: LogOptions) -> impl Stream<Item = Result<Bytes, LogError>> {
    spawn(path.to_path_buf(), opts, Until::Dropped)
}

/// Streams a container's log; a follower stops once the container has exited and everything
/// it wrote has been read.
pub fn read_container(
    cri: &Cri,
    file: &LogFile,
    opts: LogOptions,
) -> impl Stream<Item = Result<Bytes, LogError>> {
    let opts = LogOptions {
        follow: opts.follow && file.running,
        ..opts
    };
    let until = Until::Exited {
        cri: Box::new(cri.clone()),
        container_id: file.container_id.clone(),
    };
    spawn(file.path.clone(), opts, until)
}

fn spawn(path: PathBuf, opts: LogOptions, until: Until) -> ReceiverStream<Result<Bytes, LogError>> {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(reader::pump(path, opts, until, tx));
    ReceiverStream::new(rx)
}
