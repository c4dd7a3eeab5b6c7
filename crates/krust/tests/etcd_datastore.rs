//! `krust server --datastore etcd://...`: the cluster's objects live in a real etcd started by the
//! test, and a bad datastore URL is one clear sentence.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{free_port, stderr, stdout, Server};

/// A real etcd on loopback, killed by PID when dropped.
struct Etcd {
    child: Child,
    client_port: u16,
    _dir: tempfile::TempDir,
}

impl Etcd {
    fn start() -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let (client_port, peer_port) = (free_port(), free_port());
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let child = Command::new("etcd")
            .arg("--data-dir")
            .arg(dir.path())
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &format!("default={peer}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let etcd = Etcd {
            child,
            client_port,
            _dir: dir,
        };
        etcd.wait_healthy();
        etcd
    }

    fn etcdctl(&self, args: &[&str]) -> std::process::Output {
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints=127.0.0.1:{}", self.client_port))
            .args(args)
            .output()
            .unwrap()
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.etcdctl(&["endpoint", "health"]).status.success() {
            assert!(Instant::now() < deadline, "etcd did not start");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn objects_are_stored_in_the_external_etcd() {
    let etcd = Etcd::start();
    let url = format!("etcd://127.0.0.1:{}", etcd.client_port);
    let mut server = Server::new(&["--datastore", &url]);
    server.start();
    let out = server.kubectl(&["create", "configmap", "kept", "--from-literal=k=v"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = etcd.etcdctl(&[
        "get",
        "/registry/configmaps/default/kept",
        "--print-value-only",
    ]);
    assert!(
        stdout(&out).contains("\"kept\""),
        "not in etcd: {}",
        stdout(&out)
    );

    // A restart on the same etcd finds the object again.
    server.stop();
    server.start();
    let out = server.kubectl(&["get", "configmap", "kept", "-o", "jsonpath={.data.k}"]);
    assert_eq!(stdout(&out), "v", "{}", stderr(&out));
}

#[test]
fn a_bad_datastore_url_is_one_clear_sentence() {
    let server = Server::new(&["--datastore", "etcd://"]);
    let out = server.start_expecting_failure();
    assert!(!out.status.success());
    let err = stderr(&out);
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("krust: ") && last.contains("etcd://HOST:PORT"),
        "{err}"
    );
}
