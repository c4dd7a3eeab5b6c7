//! Starts a real `krust server` on free loopback ports in a temporary data dir, and stops it by
//! PID when dropped, whatever the test's outcome.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const KRUST: &str = env!("CARGO_BIN_EXE_krust");

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Server {
    pub dir: tempfile::TempDir,
    pub api_port: u16,
    pub datastore_port: u16,
    /// The scheduler's secure port, and its insecure one in the microk8s profile: free ports
    /// unless the extra flags set them, so that servers in parallel tests do not collide on
    /// 10259/10251.
    pub scheduler_port: u16,
    pub scheduler_insecure_port: u16,
    /// The same for the controller manager's 10257/10252.
    pub controller_manager_port: u16,
    pub controller_manager_insecure_port: u16,
    child: Option<Child>,
    extra: Vec<String>,
    /// Run the node agent (containerd, the Node); off unless a test asks with
    /// [`Server::with_agent`], so that servers which run no pods do not pay for a containerd.
    agent: bool,
}

impl Server {
    /// A server with the given extra flags, not started yet.
    pub fn new(extra: &[&str]) -> Server {
        Server {
            dir: tempfile::tempdir().unwrap(),
            api_port: free_port(),
            datastore_port: free_port(),
            scheduler_port: free_port(),
            scheduler_insecure_port: free_port(),
            controller_manager_port: free_port(),
            controller_manager_insecure_port: free_port(),
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            agent: false,
        }
    }

    /// A server that runs its node agent too. Call [`isolate_network`] first: the agent's pod
    /// network (bridge, iptables rules) then stays in the test's own network namespace.
    pub fn with_agent(extra: &[&str]) -> Server {
        let mut server = Server::new(extra);
        server.agent = true;
        server
    }

    /// Whether the next [`Server::start`] runs the node agent.
    pub fn set_agent(&mut self, on: bool) {
        self.agent = on;
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(KRUST);
        cmd.arg("server")
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--port")
            .arg(format!("apiserver={}", self.api_port))
            .arg("--port")
            .arg(format!("datastore={}", self.datastore_port))
            .args(self.default_ports())
            .args(&self.extra);
        if !self.agent && !self.extra.iter().any(|a| a == "--disable-agent") {
            cmd.arg("--disable-agent");
        }
        cmd
    }

    /// `--port` flags for the fixed component ports the extra flags leave alone.
    fn default_ports(&self) -> Vec<String> {
        let sets = |key: &str| self.extra.iter().any(|a| a.starts_with(&format!("{key}=")));
        let microk8s = self.extra.iter().any(|a| a == "microk8s");
        // (key, port, whether the port is on only in the microk8s profile)
        let fixed = [
            ("scheduler", self.scheduler_port, false),
            ("scheduler-insecure", self.scheduler_insecure_port, true),
            ("controller-manager", self.controller_manager_port, false),
            (
                "controller-manager-insecure",
                self.controller_manager_insecure_port,
                true,
            ),
        ];
        fixed
            .into_iter()
            .filter(|(key, _, only_microk8s)| !sets(key) && (microk8s || !only_microk8s))
            .flat_map(|(key, port, _)| ["--port".to_string(), format!("{key}={port}")])
            .collect()
    }

    /// Starts the server and waits until `krust status --wait-ready` says it is ready.
    pub fn start(&mut self) -> &mut Server {
        // The log stays in the data dir, so a failing test can print it.
        let log = std::fs::File::create(self.path("server.log")).unwrap();
        let child = self
            .command()
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let out = self.krust(&["status", "--wait-ready", "--timeout", "60"]);
        assert!(
            out.status.success(),
            "server did not become ready: {}{}\n--- server log ---\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.path("server.log")).unwrap_or_default()
        );
        self
    }

    /// Runs the server to completion expecting it to fail at start; returns its output.
    pub fn start_expecting_failure(&self) -> Output {
        let mut child = self
            .command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("server kept running although it should have refused to start");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.wait_with_output().unwrap()
    }

    /// SIGTERM, then waits for the process to exit (SIGKILL after 20 s).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on the pid of our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.wait();
    }

    /// Runs `krust ARGS --data-dir DIR`.
    pub fn krust(&self, args: &[&str]) -> Output {
        Command::new(KRUST)
            .args(args)
            .arg("--data-dir")
            .arg(self.data_dir())
            .output()
            .unwrap()
    }

    /// Runs the real kubectl with the admin kubeconfig.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.path("credentials/client.config"))
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs kubectl every 200 ms until it succeeds (for what a controller makes shortly after
    /// the start), for up to `secs` seconds; returns the last attempt.
    pub fn kubectl_until_ok(&self, args: &[&str], secs: u64) -> Output {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let out = self.kubectl(args);
            if out.status.success() || std::time::Instant::now() > deadline {
                return out;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.api_port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Moves the calling thread, and so every process it starts afterwards (the server, kubectl),
/// into a fresh network namespace with loopback up. Call it first in a plain `#[test]`.
pub fn isolate_network() {
    // SAFETY: unshare only changes this thread's namespaces.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(
        rc,
        0,
        "unshare(CLONE_NEWNET) failed (needs root): {}",
        std::io::Error::last_os_error()
    );
    let status = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("run ip");
    assert!(status.success(), "ip link set lo up failed");
}
