//! Writing files the way a PKI must: atomically (a crash never leaves half a key), with the
//! permissions set before the content lands, and only when the content actually changes so that
//! repeated starts leave every byte and mtime alone.

use std::fs::{self, OpenOptions, Permissions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::report::EnsureReport;
use crate::PkiError;

/// Mode for private keys, tokens and kubeconfigs.
pub const SECRET: u32 = 0o600;
/// Mode for certificates and the csr template.
pub const PUBLIC: u32 = 0o644;

/// Reads a file as text, `None` when it does not exist.
pub fn read_opt(path: &Path) -> Result<Option<String>, PkiError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(PkiError::io("read", path, e)),
    }
}

/// Creates `dir` (and parents) with `mode` if missing.
pub fn ensure_dir(dir: &Path, mode: u32) -> Result<(), PkiError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|e| PkiError::io("create directory", dir, e))?;
    fs::set_permissions(dir, Permissions::from_mode(mode))
        .map_err(|e| PkiError::io("set permissions on", dir, e))
}

/// Replaces `path` with `content` atomically: write a temporary file beside it, then rename.
pub fn write(path: &Path, content: &[u8], mode: u32) -> Result<(), PkiError> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".krust-tmp");
    let tmp = path.with_file_name(tmp_name);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| PkiError::io("create", &tmp, e))?;
    // The mode given to open() is masked by the umask; secrets must not depend on it.
    file.set_permissions(Permissions::from_mode(mode))
        .map_err(|e| PkiError::io("set permissions on", &tmp, e))?;
    file.write_all(content)
        .and_then(|()| file.sync_all())
        .map_err(|e| PkiError::io("write", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| PkiError::io("rename into place", path, e))
}

/// Writes `content` unless the file already holds exactly that. Returns whether it wrote.
pub fn write_if_changed(path: &Path, content: &str, mode: u32) -> Result<bool, PkiError> {
    if read_opt(path)?.as_deref() == Some(content) {
        restrict_mode(path, mode)?;
        return Ok(false);
    }
    write(path, content.as_bytes(), mode)?;
    Ok(true)
}

/// Tightens an existing file's permissions to `mode` when they are looser, warning about it:
/// a world-readable key is a security problem worth telling the operator about.
pub fn restrict_mode(path: &Path, mode: u32) -> Result<(), PkiError> {
    let meta = fs::metadata(path).map_err(|e| PkiError::io("inspect", path, e))?;
    let current = meta.permissions().mode() & 0o777;
    if current & !mode == 0 {
        return Ok(());
    }
    tracing::warn!(path = %path.display(), mode = format!("{current:o}"), "permissions too open, setting {mode:o}");
    fs::set_permissions(path, Permissions::from_mode(mode))
        .map_err(|e| PkiError::io("set permissions on", path, e))
}

/// Writes a file derived from others (kubeconfig, public key) when its content changed, and
/// records that in `report`.
pub fn write_derived(
    path: &Path,
    content: &str,
    mode: u32,
    report: &mut EnsureReport,
) -> Result<(), PkiError> {
    let existed = path.exists();
    if write_if_changed(path, content, mode)? {
        if existed {
            report.updated(path);
        } else {
            report.created(path);
        }
    }
    Ok(())
}
