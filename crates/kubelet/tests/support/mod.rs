//! What the end-to-end tests share: the locally built image tarballs, root checks, free ports,
//! and a look for processes a test left behind.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

static BUILD: Mutex<()> = Mutex::new(());

/// The directory holding pause.tar and busybox.tar, built by scripts/build-images.sh when they
/// are missing (`make test` builds them first; a bare `cargo test` builds them here).
pub fn images_dir() -> PathBuf {
    let dir = std::env::var_os("KRUST_IMAGES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/krust-images"));
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    if !dir.join("pause.tar").exists() || !dir.join("busybox.tar").exists() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-images.sh");
        let status = Command::new("bash")
            .arg(&script)
            .arg(&dir)
            .status()
            .expect("run scripts/build-images.sh");
        assert!(status.success(), "scripts/build-images.sh failed");
    }
    dir
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Whether the machine can run these tests (root, containerd and runc installed); says why not.
pub fn can_run_containers() -> bool {
    if !is_root() {
        eprintln!("skipped: running containers needs root");
        return false;
    }
    for bin in ["/usr/bin/containerd", "/usr/bin/containerd-shim-runc-v2"] {
        if !Path::new(bin).exists() {
            panic!("{bin} is missing: run scripts/install-deps.sh (make deps)");
        }
    }
    true
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// PIDs of processes whose command line mentions `needle` (the test's data dir: containerd's
/// `--config`, each shim's `-address`).
pub fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    let me = std::process::id();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push((pid, cmdline));
        }
    }
    found
}

/// Waits (up to `limit`) until no process mentions `needle`; returns what is left.
pub fn wait_none_mentioning(needle: &str, limit: Duration) -> Vec<(u32, String)> {
    let deadline = Instant::now() + limit;
    loop {
        let left = processes_mentioning(needle);
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Mounts under `dir` still in the mount table.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let table = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let dir = dir.to_string_lossy().to_string();
    table
        .lines()
        .filter(|l| l.split(' ').nth(1).is_some_and(|m| m.starts_with(&dir)))
        .map(|l| l.to_string())
        .collect()
}

/// Prints the end of containerd's log if the test fails while this guard lives.
pub struct DumpLogOnPanic(pub PathBuf);

impl Drop for DumpLogOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.0).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!("--- end of {} ---\n{}", self.0.display(), tail.join("\n"));
        }
    }
}
