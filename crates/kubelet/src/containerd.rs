//! containerd, managed: krust writes containerd's config under `<data-dir>/containerd/` and runs
//! Debian's `/usr/bin/containerd` (with Debian's `runc` and shim) as a supervised child; or it
//! uses a runtime that is already running, given by its endpoint
//! (`--container-runtime-endpoint`, as upstream's kubelet takes it).
//!
//! The child is restarted with backoff when it exits, and stopped by its PID (SIGTERM, then
//! SIGKILL after a grace period) on shutdown. Stopping containerd leaves the containers running:
//! every pod has its own shim, which outlives containerd, and a restarted containerd reconnects
//! to them. That is what lets a `krust server` restart keep its pods.
//!
//! Files (`<data-dir>/containerd/`): `config.toml` (rewritten at every start), `containerd.sock`
//! (+ `.ttrpc`), `root/` (content, snapshots, metadata), `state/` (runtime state, runc's root),
//! `containerd.log` (the child's stdout and stderr), `containerd.pid`. CNI configuration lives in
//! `<data-dir>/cni/net.d/`; the plugins are Debian's, in `/usr/lib/cni`.
//!
//! One path is not ours to choose: containerd 1.6 puts each shim's socket in `/run/containerd/s/`
//! under a hash of our socket's path, so it never collides with a system containerd.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cri::Cri;

/// The sandbox (pause) image `scripts/build-images.sh` builds; containerd's CRI plugin starts it
/// as every pod's first process.
pub const SANDBOX_IMAGE: &str = "localhost/krust/pause:3.10";

/// Debian's containerd.
pub const CONTAINERD_BINARY: &str = "/usr/bin/containerd";

/// Where Debian's `containernetworking-plugins` installs the CNI plugins.
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";

/// How long [`Containerd::start`] waits for the socket to answer.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long containerd gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(15);

/// The files of a managed containerd under one data dir.
#[derive(Debug, Clone)]
pub struct Paths {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub root: PathBuf,
    pub state: PathBuf,
    pub log: PathBuf,
    pub pid_file: PathBuf,
    pub cni_conf_dir: PathBuf,
}

impl Paths {
    pub fn new(data_dir: &Path) -> Paths {
        let dir = data_dir.join("containerd");
        Paths {
            config: dir.join("config.toml"),
            socket: dir.join("containerd.sock"),
            root: dir.join("root"),
            state: dir.join("state"),
            log: dir.join("containerd.log"),
            pid_file: dir.join("containerd.pid"),
            cni_conf_dir: data_dir.join("cni").join("net.d"),
            dir,
        }
    }
}

/// What the managed containerd is told.
#[derive(Debug, Clone)]
pub struct Config {
    pub paths: Paths,
    /// The containerd binary.
    pub binary: PathBuf,
    /// The port map's `containerd-metrics` address, when that row is on (1338 on localhost in
    /// the microk8s profile; off in the others).
    pub metrics: Option<SocketAddr>,
    /// The pod sandbox image.
    pub sandbox_image: String,
    pub cni_bin_dir: PathBuf,
    /// containerd's log level (`info` unless asked).
    pub log_level: String,
    /// Clamp containers' `oom_score_adj` to containerd's own instead of setting the negative
    /// values upstream gives sandboxes (-998): lowering it needs CAP_SYS_RESOURCE, which
    /// sandboxed machines (such as this project's CI) do not grant, and runc then fails every
    /// pod with "failed to update /proc/self/oom_score_adj: Permission denied". On by default
    /// exactly when krust itself lacks that capability.
    pub restrict_oom_score_adj: bool,
}

impl Config {
    /// The defaults for a data dir: Debian's containerd, the krust pause image, no metrics.
    pub fn new(data_dir: &Path) -> Config {
        Config {
            paths: Paths::new(data_dir),
            binary: PathBuf::from(CONTAINERD_BINARY),
            metrics: None,
            sandbox_image: SANDBOX_IMAGE.to_string(),
            cni_bin_dir: PathBuf::from(CNI_BIN_DIR),
            log_level: "info".to_string(),
            restrict_oom_score_adj: !has_capability(CAP_SYS_RESOURCE),
        }
    }

    /// containerd's `config.toml`. Version 2 is the format Debian's containerd (1.6) reads;
    /// containerd 2.x still reads it and migrates it in memory, so one format serves both.
    pub fn render(&self) -> String {
        let p = &self.paths;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# Written by krust at every start; edits are overwritten."
        );
        let _ = writeln!(s, "version = 2");
        let _ = writeln!(s, "root = {}", toml_str(&p.root));
        let _ = writeln!(s, "state = {}", toml_str(&p.state));
        // Snapshotters krust does not use: each probes the host at start and logs about it.
        let _ = writeln!(
            s,
            "disabled_plugins = [\"io.containerd.snapshotter.v1.aufs\", \"io.containerd.snapshotter.v1.btrfs\", \"io.containerd.snapshotter.v1.devmapper\", \"io.containerd.snapshotter.v1.zfs\"]"
        );
        let _ = writeln!(s, "\n[grpc]\n  address = {}", toml_str(&p.socket));
        let _ = writeln!(s, "\n[debug]\n  level = {}", toml_str(&self.log_level));
        let metrics = self.metrics.map(|a| a.to_string()).unwrap_or_default();
        let _ = writeln!(s, "\n[metrics]\n  address = {}", toml_str(&metrics));
        // A second containerd on the same root must fail, not wait for the lock forever.
        let _ = writeln!(
            s,
            "\n[timeouts]\n  \"io.containerd.timeout.bolt.open\" = \"10s\""
        );
        let _ = writeln!(
            s,
            "\n[plugins.\"io.containerd.internal.v1.opt\"]\n  path = {}",
            toml_str(p.dir.join("opt"))
        );
        let cri = "plugins.\"io.containerd.grpc.v1.cri\"";
        let _ = writeln!(s, "\n[{cri}]");
        let _ = writeln!(s, "  sandbox_image = {}", toml_str(&self.sandbox_image));
        // Streaming (exec/attach/port-forward) is proxied by the kubelet: localhost only.
        let _ = writeln!(s, "  stream_server_address = \"127.0.0.1\"");
        let _ = writeln!(s, "  stream_server_port = \"0\"");
        // Pod network namespaces under our state dir, not /var/run/netns.
        let _ = writeln!(s, "  netns_mounts_under_state_dir = true");
        if self.restrict_oom_score_adj {
            let _ = writeln!(s, "  restrict_oom_score_adj = true");
        }
        let _ = writeln!(s, "\n[{cri}.containerd]");
        let _ = writeln!(s, "  snapshotter = \"overlayfs\"");
        let _ = writeln!(s, "  default_runtime_name = \"runc\"");
        let _ = writeln!(s, "\n[{cri}.containerd.runtimes.runc]");
        let _ = writeln!(s, "  runtime_type = \"io.containerd.runc.v2\"");
        let _ = writeln!(s, "\n[{cri}.containerd.runtimes.runc.options]");
        let _ = writeln!(s, "  Root = {}", toml_str(p.state.join("runc")));
        let _ = writeln!(s, "  SystemdCgroup = false");
        let _ = writeln!(s, "\n[{cri}.cni]");
        let _ = writeln!(s, "  bin_dir = {}", toml_str(&self.cni_bin_dir));
        let _ = writeln!(s, "  conf_dir = {}", toml_str(&p.cni_conf_dir));
        let _ = writeln!(s, "\n[{cri}.registry]");
        let _ = writeln!(s, "  config_path = {}", toml_str(p.dir.join("certs.d")));
        s
    }
}

const CAP_SYS_RESOURCE: u32 = 24;

/// Whether this process has capability `cap` in its effective set (/proc/self/status CapEff).
fn has_capability(cap: u32) -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return true;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .map(|caps| caps & (1 << cap) != 0)
        .unwrap_or(true)
}

/// A TOML basic string.
fn toml_str(value: impl AsRef<std::ffi::OsStr>) -> String {
    let value = value.as_ref().to_string_lossy();
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The container runtime the node agent talks to.
pub enum Runtime {
    /// containerd run by krust.
    Managed(Containerd),
    /// A runtime someone else runs (`--container-runtime-endpoint`).
    External { socket: PathBuf },
}

impl Runtime {
    /// Uses the runtime at `endpoint` when given (it must answer CRI within the ready timeout),
    /// otherwise starts containerd as `config` says.
    pub async fn start(config: Config, endpoint: Option<&str>) -> Result<Runtime> {
        match endpoint {
            Some(endpoint) => {
                let socket = crate::grpc::socket_path(endpoint).to_path_buf();
                wait_ready(&socket, READY_TIMEOUT, None).await?;
                Ok(Runtime::External { socket })
            }
            None => Ok(Runtime::Managed(Containerd::start(config).await?)),
        }
    }

    pub fn socket(&self) -> &Path {
        match self {
            Runtime::Managed(c) => c.socket(),
            Runtime::External { socket } => socket,
        }
    }

    /// Stops a managed containerd; leaves an external runtime alone.
    pub async fn stop(self) {
        if let Runtime::Managed(c) = self {
            c.stop().await;
        }
    }
}

/// A running, supervised containerd.
pub struct Containerd {
    paths: Paths,
    pid: Arc<AtomicU32>,
    stop: watch::Sender<bool>,
    supervisor: Option<JoinHandle<()>>,
}

impl Containerd {
    /// Writes the config, stops a containerd a previous krust left running on this data dir,
    /// starts containerd under supervision and waits until its CRI service answers.
    pub async fn start(config: Config) -> Result<Containerd> {
        let paths = config.paths.clone();
        if !config.binary.exists() {
            bail!(
                "containerd is not installed at {}: install it with scripts/install-deps.sh (make deps)",
                config.binary.display()
            );
        }
        for dir in [&paths.dir, &paths.root, &paths.state, &paths.cni_conf_dir] {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(&paths.config, config.render())
            .with_context(|| format!("cannot write {}", paths.config.display()))?;
        stop_leftover(&paths).await;

        let pid = Arc::new(AtomicU32::new(0));
        let (stop, stop_rx) = watch::channel(false);
        let (first, first_rx) = tokio::sync::oneshot::channel();
        let supervisor = tokio::spawn(supervise(
            config.binary.clone(),
            paths.clone(),
            pid.clone(),
            stop_rx,
            first,
        ));
        let containerd = Containerd {
            paths,
            pid,
            stop,
            supervisor: Some(supervisor),
        };
        // The first spawn's failure (e.g. the binary cannot be executed) is the caller's error.
        match first_rx.await {
            Ok(Ok(pid)) => tracing::info!(pid, "containerd started"),
            Ok(Err(e)) => {
                containerd.stop().await;
                return Err(e);
            }
            Err(_) => bail!("the containerd supervisor ended before starting containerd"),
        }
        if let Err(e) = wait_ready(
            &containerd.paths.socket,
            READY_TIMEOUT,
            Some(&containerd.paths.log),
        )
        .await
        {
            containerd.stop().await;
            return Err(e);
        }
        Ok(containerd)
    }

    pub fn socket(&self) -> &Path {
        &self.paths.socket
    }

    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// The PID of the running containerd, if one is running right now.
    pub fn pid(&self) -> Option<u32> {
        match self.pid.load(Ordering::SeqCst) {
            0 => None,
            pid => Some(pid),
        }
    }

    /// Stops containerd (SIGTERM to its PID, SIGKILL after 15 s) and its supervisor. The shims,
    /// and so the containers, keep running.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.supervisor.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Containerd {
    /// Not stopped with [`Containerd::stop`] (an error path): at least do not leave containerd
    /// running behind the process.
    fn drop(&mut self) {
        if self.supervisor.is_some() {
            if let Some(pid) = self.pid() {
                signal(pid, libc::SIGTERM);
            }
            let _ = self.stop.send(true);
        }
    }
}

/// Runs containerd until told to stop, restarting it with backoff (1 s doubling to 30 s, back
/// to 1 s after a run of a minute) when it exits on its own.
async fn supervise(
    binary: PathBuf,
    paths: Paths,
    pid: Arc<AtomicU32>,
    mut stop: watch::Receiver<bool>,
    first: tokio::sync::oneshot::Sender<Result<u32>>,
) {
    let mut first = Some(first);
    let mut backoff = Duration::from_secs(1);
    loop {
        let spawned = spawn(&binary, &paths);
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                if let Some(first) = first.take() {
                    let _ = first.send(Err(e));
                    return;
                }
                tracing::error!("cannot restart containerd: {e:#}; retrying in {backoff:?}");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        let child_pid = child.id().unwrap_or(0);
        pid.store(child_pid, Ordering::SeqCst);
        let _ = std::fs::write(&paths.pid_file, format!("{child_pid}\n"));
        if let Some(first) = first.take() {
            let _ = first.send(Ok(child_pid));
        }
        let started = Instant::now();
        tokio::select! {
            status = child.wait() => {
                pid.store(0, Ordering::SeqCst);
                if started.elapsed() > Duration::from_secs(60) {
                    backoff = Duration::from_secs(1);
                }
                let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                tracing::warn!(
                    "containerd exited ({status}); restarting in {backoff:?} (log: {})",
                    paths.log.display()
                );
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => {
                        let _ = std::fs::remove_file(&paths.pid_file);
                        return;
                    }
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            _ = stop.changed() => {
                terminate(&mut child, child_pid).await;
                pid.store(0, Ordering::SeqCst);
                let _ = std::fs::remove_file(&paths.pid_file);
                return;
            }
        }
    }
}

fn spawn(binary: &Path, paths: &Paths) -> Result<tokio::process::Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&paths.log)
        .with_context(|| format!("cannot open {}", paths.log.display()))?;
    let mut cmd = tokio::process::Command::new(binary);
    cmd.arg("--config")
        .arg(&paths.config)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: a Ctrl-C on krust's terminal reaches krust, which then stops
        // containerd in order, instead of reaching containerd directly.
        .process_group(0)
        .kill_on_drop(false);
    // containerd finds its shim (`containerd-shim-runc-v2`) and `runc` on PATH.
    if std::env::var_os("PATH").is_none() {
        cmd.env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        );
    }
    cmd.spawn()
        .with_context(|| format!("cannot start {}", binary.display()))
}

async fn terminate(child: &mut tokio::process::Child, pid: u32) {
    signal(pid, libc::SIGTERM);
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            pid,
            "containerd did not stop within {STOP_GRACE:?}; killing it"
        );
        let _ = child.kill().await;
    }
    tracing::info!(pid, "containerd stopped");
}

fn signal(pid: u32, sig: libc::c_int) {
    if pid > 1 {
        // SAFETY: kill(2) on a PID we started; no memory is shared.
        unsafe {
            libc::kill(pid as libc::pid_t, sig);
        }
    }
}

/// A containerd that a previous krust started on this data dir and could not stop (it was
/// killed) still holds the root: stop it, so the new one can open it. Only a process whose
/// command line names our config file is touched.
async fn stop_leftover(paths: &Paths) {
    let Ok(text) = std::fs::read_to_string(&paths.pid_file) else {
        return;
    };
    let Ok(pid) = text.trim().parse::<u32>() else {
        return;
    };
    if !runs_with_config(pid, &paths.config) {
        return;
    }
    tracing::info!(pid, "stopping the containerd a previous krust left running");
    signal(pid, libc::SIGTERM);
    let deadline = Instant::now() + STOP_GRACE;
    while runs_with_config(pid, &paths.config) {
        if Instant::now() > deadline {
            signal(pid, libc::SIGKILL);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn runs_with_config(pid: u32, config: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    // A zombie has an empty command line: it is gone as far as the root is concerned.
    let config = config.as_os_str().as_encoded_bytes();
    cmdline.split(|b| *b == 0).any(|arg| arg == config)
}

/// Waits until the CRI service on `socket` answers `Version`, logging progress every few
/// seconds. On timeout the error names the socket and, for a managed containerd, the last line
/// of its log.
pub async fn wait_ready(socket: &Path, timeout: Duration, log: Option<&Path>) -> Result<()> {
    let started = Instant::now();
    let mut next_note = Duration::from_secs(2);
    let mut last_error = String::from("no socket yet");
    loop {
        if socket.exists() {
            match Cri::connect(socket) {
                Ok(cri) => {
                    match tokio::time::timeout(Duration::from_secs(2), cri.version()).await {
                        Ok(Ok(v)) => {
                            tracing::info!(
                                runtime = %v.runtime_name,
                                version = %v.runtime_version,
                                cri = %v.runtime_api_version,
                                socket = %socket.display(),
                                "container runtime ready in {:.1?}",
                                started.elapsed()
                            );
                            return Ok(());
                        }
                        Ok(Err(e)) => last_error = format!("{e:#}"),
                        Err(_) => last_error = "no answer within 2 s".into(),
                    }
                }
                Err(e) => last_error = format!("{e:#}"),
            }
        }
        let waited = started.elapsed();
        if waited >= timeout {
            let hint = match log.and_then(last_log_line) {
                Some(line) => format!("; its log ends with: {line}"),
                None => String::new(),
            };
            bail!(
                "the container runtime at {} did not answer within {timeout:?} ({last_error}){hint}",
                socket.display()
            );
        }
        if waited >= next_note {
            tracing::info!(
                "waiting for the container runtime at {} ({}s: {last_error})",
                socket.display(),
                waited.as_secs()
            );
            next_note += Duration::from_secs(5);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn last_log_line(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_puts_everything_under_the_data_dir() {
        let mut config = Config::new(Path::new("/var/lib/krust"));
        config.metrics = Some("127.0.0.1:1338".parse().unwrap());
        let toml = config.render();
        assert!(toml.contains("version = 2\n"));
        assert!(toml.contains("root = \"/var/lib/krust/containerd/root\""));
        assert!(toml.contains("state = \"/var/lib/krust/containerd/state\""));
        assert!(toml.contains("address = \"/var/lib/krust/containerd/containerd.sock\""));
        assert!(toml.contains("[metrics]\n  address = \"127.0.0.1:1338\""));
        assert!(toml.contains("snapshotter = \"overlayfs\""));
        assert!(toml.contains("bin_dir = \"/usr/lib/cni\""));
        assert!(toml.contains("conf_dir = \"/var/lib/krust/cni/net.d\""));
        assert!(toml.contains(&format!("sandbox_image = \"{SANDBOX_IMAGE}\"")));
    }

    #[test]
    fn metrics_off_leaves_the_address_empty() {
        let toml = Config::new(Path::new("/d")).render();
        assert!(toml.contains("[metrics]\n  address = \"\""));
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_str(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
