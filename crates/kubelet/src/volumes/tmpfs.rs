//! tmpfs volumes (emptyDir `medium: Memory`, secrets, projected): mounted once on the volume
//! directory, found mounted again on later syncs, unmounted at teardown.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::SetUpError;

/// Mounts a tmpfs on `path` (created 0777 first) unless one is there already.
pub(crate) fn ensure(path: &Path, size: Option<i64>) -> Result<(), SetUpError> {
    super::create_volume_dir(path)?;
    if is_mountpoint(path).map_err(SetUpError::io(format!("stat {}", path.display())))? {
        return Ok(());
    }
    let options = match size {
        Some(bytes) => format!("size={bytes}"),
        None => String::new(),
    };
    mount_tmpfs(path, &options)
        .map_err(SetUpError::io(format!("mount tmpfs on {}", path.display())))
}

/// A mount point sits on another device than its parent directory; volume directories are
/// only ever tmpfs mounts, never bind mounts of the same filesystem.
pub(crate) fn is_mountpoint(path: &Path) -> io::Result<bool> {
    let meta = std::fs::symlink_metadata(path)?;
    let Some(parent) = path.parent() else {
        return Ok(true);
    };
    Ok(meta.dev() != std::fs::metadata(parent)?.dev())
}

pub(crate) fn unmount_if_mounted(path: &Path) -> io::Result<()> {
    match is_mountpoint(path) {
        Ok(true) => unmount(path),
        Ok(false) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

fn mount_tmpfs(path: &Path, options: &str) -> io::Result<()> {
    let target = c_path(path)?;
    let source = CString::new("tmpfs").expect("no NUL");
    let data = CString::new(options).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: every pointer is a NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            source.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            data.as_ptr().cast(),
        )
    };
    match rc {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Unmounts; a mount still busy (a process inside it) is detached instead, as it would
/// otherwise keep the pod's directory forever.
fn unmount(path: &Path) -> io::Result<()> {
    let target = c_path(path)?;
    // SAFETY: `target` is a NUL-terminated path that outlives the call.
    if unsafe { libc::umount2(target.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::EBUSY) {
        return Err(err);
    }
    // SAFETY: as above.
    match unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}
