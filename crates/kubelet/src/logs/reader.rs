//! Reading a CRI log file as upstream's kubelet does (pkg/kubelet/kuberuntime/logs): start at
//! the tail, skip what is older than `since`, prefix timestamps, cut at `limitBytes`, and when
//! following wait at the end of the file for more (reopening it when it was rotated) until the
//! container has exited.

use std::io::SeekFrom;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::fs::File;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncSeekExt, BufReader};
use tokio::sync::mpsc::Sender;

use super::format::{self, Entry};
use super::{LogError, LogOptions};
use crate::cri::{api, Cri};

/// How often a follower looks for growth or rotation, and how often it asks whether the
/// container still runs (upstream: fsnotify, with a forced check every second).
const POLL: Duration = Duration::from_millis(100);
const ALIVE_CHECK: Duration = Duration::from_secs(1);
/// Output is sent in chunks of about this size.
const CHUNK: usize = 16 * 1024;

/// Until when a follower follows.
#[derive(Clone)]
pub enum Until {
    /// Until the reader is dropped.
    Dropped,
    /// Until the container has exited and its file has no more to give.
    Exited { cri: Box<Cri>, container_id: String },
}

impl Until {
    async fn running(&self) -> bool {
        match self {
            Until::Dropped => true,
            Until::Exited { cri, container_id } => cri
                .container_status(container_id)
                .await
                .is_ok_and(|s| s.state == api::ContainerState::ContainerRunning as i32),
        }
    }
}

/// What the reader writes out, in the order written.
struct Writer {
    opts: LogOptions,
    remaining: Option<u64>,
    new_line: bool,
    out: BytesMut,
}

impl Writer {
    /// Adds one entry; false once limitBytes is used up.
    fn write(&mut self, entry: &Entry<'_>) -> bool {
        let starts_line = self.new_line;
        self.new_line = !entry.partial;
        if self.opts.since.is_some_and(|since| entry.timestamp < since) {
            return true;
        }
        let mut line = Vec::with_capacity(entry.text.len() + 40);
        if self.opts.timestamps && starts_line {
            line.extend_from_slice(format::format_timestamp(entry.timestamp).as_bytes());
            line.push(b' ');
        }
        line.extend_from_slice(entry.text);
        if let Some(remaining) = self.remaining.as_mut() {
            line.truncate(usize::try_from(*remaining).unwrap_or(usize::MAX));
            *remaining -= line.len() as u64;
        }
        self.out.extend_from_slice(&line);
        self.remaining != Some(0)
    }

    fn take(&mut self) -> Option<Bytes> {
        (!self.out.is_empty()).then(|| self.out.split().freeze())
    }
}

struct Pump {
    path: PathBuf,
    until: Until,
    tx: Sender<Result<Bytes, LogError>>,
    writer: Writer,
}

/// Reads `path` into `tx` as `opts` say; returns when done or when the receiver is gone.
pub async fn pump(
    path: PathBuf,
    opts: LogOptions,
    until: Until,
    tx: Sender<Result<Bytes, LogError>>,
) {
    let writer = Writer {
        remaining: opts.limit_bytes,
        opts,
        new_line: true,
        out: BytesMut::new(),
    };
    let mut pump = Pump {
        path,
        until,
        tx,
        writer,
    };
    if let Err(e) = pump.run().await {
        let _ = pump.tx.send(Err(e)).await;
    }
}

impl Pump {
    async fn run(&mut self) -> Result<(), LogError> {
        let mut file = self.open().await?;
        // Where the reader is in the file: the end of what read_until gave.
        let mut pos = 0;
        if let Some(n) = self.writer.opts.tail_lines {
            pos = tail_start(&mut file, n).await.map_err(|e| self.io(e))?;
            file.seek(SeekFrom::Start(pos))
                .await
                .map_err(|e| self.io(e))?;
        }
        let mut reader = BufReader::new(file);
        let mut line = Vec::new();
        // The file that replaced ours (rotation), once ours has been read to its end.
        let mut next = None;
        loop {
            let n = reader
                .read_until(b'\n', &mut line)
                .await
                .map_err(|e| self.io(e))?;
            pos += n as u64;
            if n > 0 && line.ends_with(b"\n") {
                if !self.entry(&line) {
                    return self.flush().await;
                }
                line.clear();
                if self.writer.out.len() >= CHUNK && !self.flush_ok().await {
                    return Ok(());
                }
                continue;
            }
            // The end of the file, maybe within a line still being written.
            if !self.writer.opts.follow {
                if !line.is_empty() {
                    self.entry(&line);
                }
                return self.flush().await;
            }
            if let Some(file) = next.take() {
                // The rotated file is read to its end: what the runtime wrote into it between
                // our last look and reopening the log is not lost. Then the new file.
                if !line.is_empty() {
                    self.entry(&line);
                    line.clear();
                }
                reader = BufReader::new(file);
                pos = 0;
                continue;
            }
            if !self.flush_ok().await {
                return Ok(());
            }
            match self.wait(reader.get_ref(), pos).await? {
                Wait::More => {}
                Wait::Rotated(file) => next = Some(file),
                Wait::Done => return Ok(()),
            }
        }
    }

    /// Writes one complete line; false once limitBytes is used up.
    fn entry(&mut self, line: &[u8]) -> bool {
        match format::parse(line) {
            Some(entry) => self.writer.write(&entry),
            None => {
                tracing::debug!(path = %self.path.display(), "skipped a line not in the CRI log format");
                true
            }
        }
    }

    async fn flush(&mut self) -> Result<(), LogError> {
        self.flush_ok().await;
        Ok(())
    }

    /// Sends what is buffered; false when nobody reads any more.
    async fn flush_ok(&mut self) -> bool {
        match self.writer.take() {
            Some(chunk) => self.tx.send(Ok(chunk)).await.is_ok(),
            None => !self.tx.is_closed(),
        }
    }

    /// At the end of the file while following: waits for it to grow, to be replaced by a new
    /// file (rotation), or for the container to be gone.
    async fn wait(&mut self, file: &File, pos: u64) -> Result<Wait, LogError> {
        let meta = file.metadata().await.map_err(|e| self.io(e))?;
        if meta.len() > pos {
            return Ok(Wait::More);
        }
        let mut since_check = Duration::MAX;
        loop {
            if self.tx.is_closed() {
                return Ok(Wait::Done);
            }
            if since_check >= ALIVE_CHECK {
                if !self.until.running().await {
                    // One last look: the container may have written just before it exited.
                    let grew = file.metadata().await.is_ok_and(|m| m.len() > pos);
                    return Ok(if grew { Wait::More } else { Wait::Done });
                }
                since_check = Duration::ZERO;
            }
            tokio::time::sleep(POLL).await;
            since_check += POLL;
            let now = file.metadata().await.map_err(|e| self.io(e))?;
            if now.len() > pos {
                return Ok(Wait::More);
            }
            if let Ok(current) = tokio::fs::metadata(&self.path).await {
                if current.ino() != meta.ino() || current.len() < pos {
                    return Ok(Wait::Rotated(self.open().await?));
                }
            }
        }
    }

    async fn open(&self) -> Result<File, LogError> {
        File::open(&self.path).await.map_err(|e| self.io(e))
    }

    fn io(&self, e: std::io::Error) -> LogError {
        LogError::Io {
            path: self.path.clone(),
            source: e,
        }
    }
}

enum Wait {
    More,
    Rotated(File),
    Done,
}

/// Where the last `n` lines start (an unterminated last line is not counted, as upstream).
async fn tail_start(file: &mut File, n: u64) -> std::io::Result<u64> {
    const BLOCK: u64 = 8192;
    let len = file.metadata().await?.len();
    let mut end = len;
    let mut newlines = 0u64;
    let mut buf = vec![0u8; BLOCK as usize];
    while end > 0 {
        let start = end.saturating_sub(BLOCK);
        let size = (end - start) as usize;
        file.seek(SeekFrom::Start(start)).await?;
        file.read_exact(&mut buf[..size]).await?;
        for (i, b) in buf[..size].iter().enumerate().rev() {
            if *b == b'\n' {
                newlines += 1;
                if newlines > n {
                    return Ok(start + i as u64 + 1);
                }
            }
        }
        end = start;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    async fn tail_of(content: &str, n: u64) -> String {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(content.as_bytes()).unwrap();
        let mut file = File::open(f.path()).await.unwrap();
        let start = tail_start(&mut file, n).await.unwrap();
        content[start as usize..].to_string()
    }

    #[tokio::test]
    async fn tails() {
        assert_eq!(tail_of("a\nb\nc\n", 2).await, "b\nc\n");
        assert_eq!(tail_of("a\nb\nc\n", 0).await, "");
        assert_eq!(tail_of("a\nb\nc\n", 10).await, "a\nb\nc\n");
        assert_eq!(tail_of("a\nb\nc", 1).await, "b\nc");
        let long: String = (0..5000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(tail_of(&long, 2).await, "line 4998\nline 4999\n");
    }
}
