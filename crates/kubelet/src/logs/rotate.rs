//! Container log rotation, as upstream's container log manager does it
//! (pkg/kubelet/logs/container_log_manager.go): a running container's log that has grown past
//! `max_size` is renamed to `<log>.<YYYYMMDD-hhmmss>` and the runtime asked (CRI
//! ReopenContainerLog) to write a new one; older rotated files are gzipped
//! (`<log>.<time>.gz`) and at most `max_files` files are kept, the current one included.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::{locate, LogError};
use crate::cri::{api, Cri};
use crate::layout::Layout;

/// containerLogMaxSize and containerLogMaxFiles; upstream's defaults are 10 MiB and 5.
#[derive(Debug, Clone, Copy)]
pub struct RotationPolicy {
    pub max_size: u64,
    pub max_files: usize,
}

impl Default for RotationPolicy {
    fn default() -> RotationPolicy {
        RotationPolicy {
            max_size: 10 << 20,
            max_files: 5,
        }
    }
}

/// Checks every running container's log each `period` (upstream: 10 s) until aborted.
pub fn spawn_rotation(
    cri: Cri,
    layout: Layout,
    policy: RotationPolicy,
    period: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Err(e) = rotate_all(&cri, &layout, policy).await {
                tracing::warn!("container log rotation: {e}");
            }
        }
    })
}

/// One pass over the running containers; returns how many logs were rotated.
pub async fn rotate_all(
    cri: &Cri,
    layout: &Layout,
    policy: RotationPolicy,
) -> Result<usize, LogError> {
    let containers = cri
        .list_containers()
        .await
        .map_err(|e| LogError::Runtime(e.to_string()))?;
    let mut rotated = 0;
    for c in containers
        .iter()
        .filter(|c| c.state == api::ContainerState::ContainerRunning as i32)
    {
        let file = match locate::container_log(cri, layout, &c.id).await {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(container = %c.id, "log rotation: {e}");
                continue;
            }
        };
        let size = std::fs::metadata(&file.path).map(|m| m.len()).unwrap_or(0);
        if size < policy.max_size {
            continue;
        }
        match rotate(cri, &c.id, &file.path, policy).await {
            Ok(()) => rotated += 1,
            Err(e) => tracing::warn!(container = %c.id, "log rotation: {e}"),
        }
    }
    Ok(rotated)
}

async fn rotate(cri: &Cri, id: &str, path: &Path, policy: RotationPolicy) -> Result<(), LogError> {
    let io = |e: std::io::Error| LogError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    cleanup_unused(path).map_err(io)?;
    let rotated = remove_excess(path, policy.max_files).map_err(io)?;
    // The files rotated before are compressed; the one rotated now stays plain.
    for old in &rotated {
        if old.extension().is_some_and(|e| e == "gz") {
            continue;
        }
        compress(old).map_err(io)?;
    }
    let stamp = Timestamp::now().strftime("%Y%m%d-%H%M%S").to_string();
    let target = PathBuf::from(format!("{}.{stamp}", path.display()));
    std::fs::rename(path, &target).map_err(io)?;
    let req = api::ReopenContainerLogRequest {
        container_id: id.to_string(),
    };
    if let Err(status) = cri.runtime().reopen_container_log(req).await {
        // Put it back so the runtime's open file is the log again.
        let _ = std::fs::rename(&target, path);
        return Err(LogError::Runtime(format!(
            "CRI ReopenContainerLog failed: {}",
            status.message()
        )));
    }
    Ok(())
}

/// The rotated files of `path`, oldest first (their names sort by time).
fn rotated_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Removes half-written compressions and rotated files whose compressed copy exists.
fn cleanup_unused(path: &Path) -> std::io::Result<()> {
    for file in rotated_files(path)? {
        let name = file.to_string_lossy().into_owned();
        let unused = name.ends_with(".tmp")
            || (!name.ends_with(".gz") && Path::new(&format!("{name}.gz")).exists());
        if unused {
            std::fs::remove_file(&file)?;
        }
    }
    Ok(())
}

/// Keeps the newest `max_files - 2` rotated files (the current log and the one about to be
/// rotated make up the rest); returns those kept, oldest first.
fn remove_excess(path: &Path, max_files: usize) -> std::io::Result<Vec<PathBuf>> {
    let mut files = rotated_files(path)?;
    let keep = max_files.saturating_sub(2);
    let excess = files.len().saturating_sub(keep);
    for old in files.drain(..excess) {
        std::fs::remove_file(old)?;
    }
    Ok(files)
}

/// gzips `path` into `path.gz` (through a `.tmp` so a crash leaves no half file) and removes it.
fn compress(path: &Path) -> std::io::Result<()> {
    let gz = PathBuf::from(format!("{}.gz", path.display()));
    let tmp = PathBuf::from(format!("{}.tmp", gz.display()));
    {
        let mut input = std::fs::File::open(path)?;
        let out = std::fs::File::create(&tmp)?;
        let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::default());
        std::io::copy(&mut input, &mut encoder)?;
        encoder.finish()?.flush()?;
    }
    std::fs::rename(&tmp, &gz)?;
    std::fs::remove_file(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excess_and_unused_files() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("0.log");
        let touch = |name: &str| std::fs::write(dir.path().join(name), b"x").unwrap();
        touch("0.log");
        touch("0.log.20240101-000001.gz");
        touch("0.log.20240101-000002.gz");
        touch("0.log.20240101-000003");
        touch("0.log.20240101-000003.gz");
        touch("0.log.20240101-000004.gz.tmp");
        touch("0.log.20240101-000005");
        touch("1.log");
        cleanup_unused(&log).unwrap();
        let kept = remove_excess(&log, 4).unwrap();
        let names: Vec<String> = kept
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["0.log.20240101-000003.gz", "0.log.20240101-000005"]);
        assert!(dir.path().join("0.log").exists() && dir.path().join("1.log").exists());
        assert!(!dir.path().join("0.log.20240101-000001.gz").exists());
        compress(&kept[1]).unwrap();
        let gz = dir.path().join("0.log.20240101-000005.gz");
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(std::fs::File::open(gz).unwrap()),
            &mut text,
        )
        .unwrap();
        assert_eq!(text, "x");
    }
}
