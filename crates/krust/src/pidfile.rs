//! `<data-dir>/server.pid`: how `make down`, `krust refresh-certs` and `krust enable rbac` find
//! the running server.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Holds `server.pid` while the server runs and removes it when dropped.
pub struct PidFile(PathBuf);

impl PidFile {
    pub fn create(data_dir: &Path) -> Result<PidFile> {
        let path = path(data_dir);
        if let Some(pid) = running_pid(data_dir) {
            bail!(
                "a krust server (pid {pid}) already runs with {}: stop it first (`make down`) or use another --data-dir",
                data_dir.display()
            );
        }
        crate::settings::write_atomically(&path, format!("{}\n", std::process::id()).as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(PidFile(path))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("server.pid")
}

/// The pid of a live server using `data_dir`, if any. A stale file (its process gone) counts as
/// none.
pub fn running_pid(data_dir: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(path(data_dir))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: kill with signal 0 only checks that the process exists; it sends nothing.
    (pid > 0 && unsafe { libc::kill(pid, 0) } == 0).then_some(pid)
}

/// Asks the running server to reload its certificates and settings (SIGHUP). Returns whether a
/// server was running.
pub fn signal_reload(data_dir: &Path) -> bool {
    match running_pid(data_dir) {
        // SAFETY: plain kill(2) on a pid read from our own pid file.
        Some(pid) => unsafe { libc::kill(pid, libc::SIGHUP) == 0 },
        None => false,
    }
}
