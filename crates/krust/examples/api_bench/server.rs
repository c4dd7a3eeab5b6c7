//! A real `krust server` child process on free loopback ports in a temporary data dir. The guard
//! stops it by PID when dropped, so an error anywhere in the benchmark never leaves it running.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// How long a SIGTERM'd server may take to drain before it gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(20);

pub struct KrustServer {
    child: Option<Child>,
    pid: u32,
    // Declared last: the data dir is removed only after `drop` has stopped the process using it.
    dir: tempfile::TempDir,
}

/// Resident memory of the server process, from /proc/PID/status, in KiB.
#[derive(Debug, Clone, Copy)]
pub struct Rss {
    pub current_kib: u64,
    pub peak_kib: u64,
}

impl KrustServer {
    /// Starts `krust server` and waits until `krust status --wait-ready` says it serves.
    pub fn start(bin: &Path) -> Result<KrustServer> {
        let dir = tempfile::Builder::new()
            .prefix("krust-api-bench-")
            .tempdir()
            .context("creating the temporary data dir")?;
        let (api, datastore) = (free_port()?, free_port()?);
        let log = std::fs::File::create(dir.path().join("server.log"))
            .context("creating the server log")?;
        let child = Command::new(bin)
            .arg("server")
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--port", &format!("apiserver={api}")])
            .args(["--port", &format!("datastore={datastore}")])
            // Free ports for the components too, so another server on the machine is no clash.
            .args(["--port", &format!("scheduler={}", free_port()?)])
            .args(["--port", &format!("controller-manager={}", free_port()?)])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let server = KrustServer {
            pid: child.id(),
            child: Some(child),
            dir,
        };
        server.wait_ready(bin)?;
        Ok(server)
    }

    fn wait_ready(&self, bin: &Path) -> Result<()> {
        let out = Command::new(bin)
            .args(["status", "--wait-ready", "--timeout", "60", "--data-dir"])
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

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("credentials/client.config")
    }

    /// The last lines of the server's log, to explain a failure.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    pub fn rss(&self) -> Result<Rss> {
        let path = format!("/proc/{}/status", self.pid);
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let field = |name: &str| -> Result<u64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .with_context(|| format!("no {name} in {path}"))
        };
        Ok(Rss {
            current_kib: field("VmRSS:")?,
            peak_kib: field("VmHWM:")?,
        })
    }

    /// SIGTERM, wait for the drain (SIGKILL after the grace period); errors if the server had
    /// already died, since every figure measured after that would be meaningless.
    pub fn stop(mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if let Some(status) = child.try_wait()? {
            bail!("the server exited early ({status}):\n{}", self.log_tail());
        }
        terminate(&mut child);
        Ok(())
    }
}

impl Drop for KrustServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child);
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

/// The krust binary to benchmark: `explicit`, else `$CARGO_TARGET_DIR/release/krust`, else the
/// workspace's `target/release/krust`.
pub fn krust_binary(explicit: Option<PathBuf>) -> Result<PathBuf> {
    let bin = match explicit {
        Some(path) => path,
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target")))
            .join("release/krust"),
    };
    if !bin.is_file() {
        bail!(
            "{} not found: run `cargo build --release -p krust` or pass --krust",
            bin.display()
        );
    }
    Ok(bin)
}

/// A loopback port nobody listens on right now (the kernel picks it; the tiny window before the
/// server binds it is acceptable for a benchmark).
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}
