//! A real `krust server` with its node agent (or, as the memory reference, without it) in a
//! temporary data dir, on free ports, with the locally built busybox and pause images dropped
//! into `<data-dir>/images/`. The guard stops the server by PID when dropped and then kills, by
//! PID, whatever still runs from its data dir (the pods' shims and containers outlive the agent
//! by design), and unmounts what is left under it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// How long a SIGTERM'd server may take to drain before it gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(20);

pub struct Node {
    child: Option<Child>,
    pid: u32,
    // Declared last: removed only after `drop` has stopped everything using it.
    dir: tempfile::TempDir,
}

impl Node {
    /// Starts `krust server` (with its agent unless `agent` is false) and waits until `krust
    /// status --wait-ready` says it serves.
    pub fn start(bin: &Path, images: &Path, agent: bool) -> Result<Node> {
        let dir = tempfile::Builder::new()
            .prefix("krust-kubelet-bench-")
            .tempdir()
            .context("creating the temporary data dir")?;
        let image_dir = dir.path().join("images");
        std::fs::create_dir_all(&image_dir)?;
        for tar in ["busybox.tar", "pause.tar"] {
            std::fs::copy(images.join(tar), image_dir.join(tar))
                .with_context(|| format!("copying {}", images.join(tar).display()))?;
        }
        let log = std::fs::File::create(dir.path().join("server.log"))?;
        let mut cmd = Command::new(bin);
        cmd.arg("server").arg("--data-dir").arg(dir.path());
        for key in ["apiserver", "datastore", "scheduler", "controller-manager"] {
            cmd.args(["--port", &format!("{key}={}", free_port()?)]);
        }
        // Shared disks run fuller than the default 5% threshold; DiskPressure would taint the
        // node and nothing would schedule (the tests use the same flag).
        cmd.args(["--eviction-hard", "nodefs.available<1%"]);
        if !agent {
            cmd.arg("--disable-agent");
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let node = Node {
            pid: child.id(),
            child: Some(child),
            dir,
        };
        node.wait_ready(bin)?;
        Ok(node)
    }

    fn wait_ready(&self, bin: &Path) -> Result<()> {
        let out = Command::new(bin)
            .args(["status", "--wait-ready", "--timeout", "90", "--data-dir"])
            .arg(self.dir.path())
            .output()
            .context("running krust status --wait-ready")?;
        if !out.status.success() {
            bail!(
                "the server did not become ready: {}{}\n--- server log ---\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log_tail()
            );
        }
        Ok(())
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("credentials/client.config")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// The last lines of the server's log, to explain a failure.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Errors when the server died: figures measured after that would mean nothing.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(child) = self.child.as_mut() {
            if let Some(status) = child.try_wait()? {
                bail!("the server exited early ({status}):\n{}", self.log_tail());
            }
        }
        Ok(())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child);
        }
        let dir = self.dir.path().to_string_lossy().into_owned();
        for pid in crate::rss::pids_mentioning(&dir) {
            // SAFETY: kill(2) on processes started for this benchmark's data dir.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(500));
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut under: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(1))
            .filter(|m| m.starts_with(&dir))
            .collect();
        // Deepest first, so nested mounts go before their parents.
        under.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for mount in under {
            let _ = Command::new("umount").args(["-l", mount]).status();
        }
    }
}

fn terminate(child: &mut Child) {
    // SAFETY: kill(2) on the PID of our own child, which we have not reaped yet.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + STOP_GRACE;
    while matches!(child.try_wait(), Ok(None)) {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.wait();
}

/// A loopback port nobody listens on right now.
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Moves this thread (and so every thread and process it starts afterwards) into a fresh network
/// namespace with loopback up: the agent's bridge, iptables rules and pod addresses stay in it.
pub fn isolate_network() -> Result<()> {
    // SAFETY: unshare only changes this thread's namespaces.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        bail!(
            "unshare(CLONE_NEWNET) failed (run as root, or pass --no-netns): {}",
            std::io::Error::last_os_error()
        );
    }
    let status = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .context("running ip link set lo up")?;
    if !status.success() {
        bail!("ip link set lo up failed");
    }
    Ok(())
}
