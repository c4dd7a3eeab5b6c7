//! Images without a registry.
//!
//! [`import`] puts an OCI image-layout tarball or a docker archive (`docker save`) into
//! containerd's `k8s.io` namespace through containerd's own gRPC API: blobs into the content
//! store, layers unpacked into the overlayfs snapshotter (so the CRI plugin can start containers
//! from the image at once), names into the image store, which the CRI plugin follows.
//! [`import_dir`] imports the tarballs in `<data-dir>/images/` at start, each only once: the
//! digests of what was imported are remembered in `<data-dir>/containerd/imported-images.json`
//! (k3s re-imports every tarball at every start; that costs seconds per image for nothing).

mod archive;
pub mod keyring;
mod plan;
mod reference;
mod store;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub use plan::host_arch;
pub use reference::normalize as normalize_reference;
pub use store::NAMESPACE;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{} is not an image archive: {reason}", file.display())]
    NotAnArchive { file: PathBuf, reason: String },
    #[error("{0}")]
    Invalid(String),
    #[error("{what}: {error}")]
    Io { what: String, error: std::io::Error },
    #[error("containerd is not running at {}", socket.display())]
    NotRunning { socket: PathBuf },
    #[error("{0}")]
    Runtime(String),
}

/// One name the import registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Imported {
    pub name: String,
    /// The digest of the manifest or index the name points at.
    pub digest: String,
}

/// Imports the image tarball `file` into containerd at `socket`, reporting bytes stored on
/// `progress` (its length is set here; pass [`ProgressBar::hidden`] for none).
pub async fn import(
    socket: &Path,
    file: &Path,
    progress: &ProgressBar,
) -> Result<Vec<Imported>, ImportError> {
    let path = file.to_path_buf();
    progress.set_message(format!("reading {}", file.display()));
    // Indexing the tarball (and hashing docker-archive layers) is blocking file I/O.
    let (archive, plan) = tokio::task::spawn_blocking(move || {
        let archive = archive::Archive::open(&path)?;
        let plan = plan::plan(&archive)?;
        Ok::<_, ImportError>((Arc::new(archive), plan))
    })
    .await
    .expect("reading an archive does not panic")?;

    let mut store = store::Store::open(socket).await?;
    let result = async {
        progress.set_length(plan.total_bytes());
        progress.set_position(0);
        let count = plan.blobs.len();
        for (i, blob) in plan.blobs.iter().enumerate() {
            progress.set_message(format!("storing {} {}/{count}", blob.kind, i + 1));
            store.put(blob, &archive, progress).await?;
        }
        for unpack in &plan.unpacks {
            store.unpack(unpack, progress).await?;
        }
        let mut imported = Vec::new();
        for named in &plan.images {
            store.name(named).await?;
            imported.push(Imported {
                name: named.name.clone(),
                digest: named.target.digest.clone(),
            });
        }
        Ok(imported)
    }
    .await;
    store.close().await;
    result
}

/// What [`import_dir`] did.
#[derive(Debug, Default)]
pub struct DirReport {
    /// Tarballs imported now, with the names they brought.
    pub imported: Vec<(PathBuf, Vec<Imported>)>,
    /// Tarballs imported at an earlier start (or the same content under another name).
    pub already: Vec<PathBuf>,
    /// Tarballs that failed; they are tried again at the next start.
    pub failed: Vec<(PathBuf, String)>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct ImportState {
    #[serde(default)]
    imported: Vec<StateEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StateEntry {
    file: String,
    sha256: String,
    size: u64,
    /// Modification time (seconds): with the name and size, the cheap check that spares
    /// hashing an unchanged tarball at every start.
    mtime: i64,
    images: Vec<String>,
}

/// The tarballs in `<data-dir>/images/` (`*.tar`, `*.tar.gz`, `*.tgz`), sorted by name.
pub fn image_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("images")
}

fn state_path(data_dir: &Path) -> PathBuf {
    data_dir.join("containerd").join("imported-images.json")
}

/// Imports each tarball in `<data-dir>/images/` that has not been imported before into the
/// containerd at `socket`. A tarball that fails is logged and retried at the next start; it
/// does not stop the others.
pub async fn import_dir(socket: &Path, data_dir: &Path) -> Result<DirReport, ImportError> {
    let dir = image_dir(data_dir);
    let mut report = DirReport::default();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(report),
        Err(e) => {
            return Err(ImportError::Io {
                what: format!("cannot read {}", dir.display()),
                error: e,
            })
        }
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            p.is_file()
                && name.is_some_and(|n| {
                    n.ends_with(".tar") || n.ends_with(".tar.gz") || n.ends_with(".tgz")
                })
        })
        .collect();
    files.sort();
    let state_file = state_path(data_dir);
    let mut state: ImportState = std::fs::read(&state_file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    for file in files {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Ok(meta) = std::fs::metadata(&file) else {
            continue;
        };
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let unchanged = state
            .imported
            .iter()
            .any(|e| e.file == name && e.size == meta.len() && e.mtime == mtime);
        if unchanged {
            report.already.push(file);
            continue;
        }
        let hashed = file.clone();
        let digest = tokio::task::spawn_blocking(move || sha256_file(&hashed))
            .await
            .expect("hashing does not panic");
        let digest = match digest {
            Ok(d) => d,
            Err(e) => {
                report.failed.push((file, format!("cannot read it: {e}")));
                continue;
            }
        };
        if let Some(known) = state.imported.iter().find(|e| e.sha256 == digest).cloned() {
            // The same content, renamed or touched: remember it under this name too.
            state.imported.push(StateEntry {
                file: name,
                size: meta.len(),
                mtime,
                ..known
            });
            save_state(&state_file, &state);
            report.already.push(file);
            continue;
        }
        match import(socket, &file, &ProgressBar::hidden()).await {
            Ok(images) => {
                state.imported.push(StateEntry {
                    file: name,
                    sha256: digest,
                    size: meta.len(),
                    mtime,
                    images: images.iter().map(|i| i.name.clone()).collect(),
                });
                save_state(&state_file, &state);
                report.imported.push((file, images));
            }
            // Without a runtime nothing else can work either.
            Err(e @ ImportError::NotRunning { .. }) => return Err(e),
            Err(e) => report.failed.push((file, e.to_string())),
        }
    }
    Ok(report)
}

fn save_state(path: &Path, state: &ImportState) {
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(state).expect("the state serializes");
    let written = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        tracing::warn!("cannot record imported images in {}: {e}", path.display());
    }
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}
