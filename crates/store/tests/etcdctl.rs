//! End to end with the real `etcdctl` (Debian `etcd-client`, API v3) against krust's endpoint over
//! TLS with client certificates: put, get (prefix, rev, limit), del, txn, watch, leases and
//! `endpoint status`; and the same command without a client certificate is refused.

mod support;

use std::process::{Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use store::Store;
use support::{Endpoint, Pki};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

struct Ctl<'a> {
    endpoint: String,
    pki: &'a Pki,
}

impl Ctl<'_> {
    fn command(&self, with_cert: bool, args: &[&str]) -> Command {
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint))
            .arg(format!("--cacert={}", self.pki.path("ca.crt").display()))
            .args(["--dial-timeout=3s", "--command-timeout=5s"])
            .kill_on_drop(true);
        if with_cert {
            cmd.arg(format!("--cert={}", self.pki.path("client.crt").display()))
                .arg(format!("--key={}", self.pki.path("client.key").display()));
        }
        cmd.args(args);
        cmd
    }

    async fn try_run(&self, with_cert: bool, args: &[&str]) -> Output {
        self.command(with_cert, args)
            .output()
            .await
            .expect("run etcdctl (Debian package etcd-client)")
    }

    /// Runs etcdctl with the client certificate and returns stdout; fails the test on error.
    async fn run(&self, args: &[&str]) -> String {
        let out = self.try_run(true, args).await;
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "etcdctl {args:?} failed: {}{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }
}

async fn start(pki: &Pki) -> (Endpoint, Arc<dyn Store>) {
    let engine: Arc<dyn Store> = store::engine::Engine::in_memory();
    let endpoint = Endpoint::start(engine.clone(), pki).await;
    (endpoint, engine)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_kv_txn_and_status() {
    let pki = Pki::generate();
    let (endpoint, _engine) = start(&pki).await;
    let ctl = Ctl {
        endpoint: endpoint.endpoint(),
        pki: &pki,
    };
    assert_eq!(ctl.run(&["put", "foo", "bar"]).await, "OK\n");
    assert_eq!(ctl.run(&["put", "foo", "baz"]).await, "OK\n");
    ctl.run(&["put", "foo2", "v2"]).await;
    assert_eq!(ctl.run(&["get", "foo"]).await, "foo\nbaz\n");
    assert_eq!(
        ctl.run(&["get", "--prefix", "foo"]).await,
        "foo\nbaz\nfoo2\nv2\n"
    );
    assert_eq!(
        ctl.run(&["get", "--prefix", "--limit=1", "foo"]).await,
        "foo\nbaz\n"
    );
    // The first put was revision 2 on a fresh store.
    assert_eq!(ctl.run(&["get", "--rev=2", "foo"]).await, "foo\nbar\n");
    let json = ctl.run(&["get", "foo", "-w", "json"]).await;
    assert!(json.contains("\"version\":2"), "{json}");

    let txn = "value(\"foo2\") = \"v2\"\n\nput foo3 yes\n\nput foo3 no\n\n";
    let mut child = ctl
        .command(true, &["txn", "-i"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("etcdctl txn");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(txn.as_bytes()).await.expect("write txn");
    drop(stdin);
    let out = child.wait_with_output().await.expect("txn output");
    // Interactive mode prints its prompts on stdout first.
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.ends_with("SUCCESS\n\nOK\n"), "{printed}");
    assert_eq!(
        ctl.run(&["get", "foo3", "--print-value-only"]).await,
        "yes\n"
    );

    assert_eq!(ctl.run(&["del", "foo"]).await, "1\n");
    assert_eq!(ctl.run(&["del", "--prefix", "foo"]).await, "2\n");
    assert_eq!(ctl.run(&["get", "--prefix", "foo"]).await, "");

    let status = ctl.run(&["endpoint", "status"]).await;
    assert!(status.contains(&ctl.endpoint), "{status}");
    let status = ctl.run(&["endpoint", "status", "-w", "json"]).await;
    assert!(status.contains("\"revision\""), "{status}");
    // etcdctl 3.4 prints the health line on stderr.
    let health = ctl.try_run(true, &["endpoint", "health"]).await;
    let said = String::from_utf8_lossy(&health.stderr);
    assert!(
        health.status.success() && said.contains("is healthy"),
        "{said}"
    );
    assert_eq!(ctl.run(&["alarm", "list"]).await, "");
    let members = ctl.run(&["member", "list"]).await;
    assert!(
        members.contains(&format!("https://{}", ctl.endpoint)),
        "{members}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_watch_sees_puts_and_deletes() {
    let pki = Pki::generate();
    let (endpoint, _engine) = start(&pki).await;
    let ctl = Ctl {
        endpoint: endpoint.endpoint(),
        pki: &pki,
    };
    let mut watch = ctl
        .command(true, &["watch", "--prefix", "w/", "--prev-kv"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("etcdctl watch");
    let mut lines = BufReader::new(watch.stdout.take().expect("stdout")).lines();
    // etcdctl prints nothing when the watch is created; give it time to register.
    tokio::time::sleep(Duration::from_millis(500)).await;
    ctl.run(&["put", "w/a", "1"]).await;
    ctl.run(&["put", "w/a", "2"]).await;
    ctl.run(&["del", "w/a"]).await;
    let mut seen = Vec::new();
    while seen.len() < 11 {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("watch output in time")
            .expect("read watch output")
            .expect("watch still running");
        seen.push(line);
    }
    let _ = watch.kill().await;
    assert_eq!(
        seen,
        ["PUT", "w/a", "1", "PUT", "w/a", "1", "w/a", "2", "DELETE", "w/a", "2"],
        "watch output: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_leases() {
    let pki = Pki::generate();
    let (endpoint, _engine) = start(&pki).await;
    let ctl = Ctl {
        endpoint: endpoint.endpoint(),
        pki: &pki,
    };
    let granted = ctl.run(&["lease", "grant", "60"]).await;
    // "lease 694d77aa9e38260f granted with TTL(60s)"
    let id = granted
        .split_whitespace()
        .nth(1)
        .expect("lease id")
        .to_string();
    assert!(granted.contains("granted with TTL(60s)"), "{granted}");
    ctl.run(&["put", "--lease", &id, "leased", "v"]).await;
    let kept = ctl.run(&["lease", "keep-alive", "--once", &id]).await;
    assert!(kept.contains("keepalived with TTL(60)"), "{kept}");
    let ttl = ctl.run(&["lease", "timetolive", "--keys", &id]).await;
    assert!(ttl.contains("attached keys([leased])"), "{ttl}");
    let list = ctl.run(&["lease", "list"]).await;
    assert!(list.contains(&id), "{list}");
    let revoked = ctl.run(&["lease", "revoke", &id]).await;
    assert!(revoked.contains("revoked"), "{revoked}");
    assert_eq!(ctl.run(&["get", "leased"]).await, "");
    let gone = ctl.try_run(true, &["lease", "revoke", &id]).await;
    assert!(!gone.status.success());
    let err = String::from_utf8_lossy(&gone.stderr);
    assert!(err.contains("requested lease not found"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_without_client_certificate_is_refused() {
    let pki = Pki::generate();
    let (endpoint, engine) = start(&pki).await;
    let ctl = Ctl {
        endpoint: endpoint.endpoint(),
        pki: &pki,
    };
    assert_eq!(ctl.run(&["put", "secret", "v"]).await, "OK\n");
    for args in [
        &["get", "secret"][..],
        &["put", "secret", "stolen"],
        &["endpoint", "status"],
    ] {
        let out = ctl.try_run(false, args).await;
        assert!(
            !out.status.success(),
            "etcdctl {args:?} without a client certificate succeeded"
        );
        assert!(out.stdout.is_empty() || !String::from_utf8_lossy(&out.stdout).contains("stolen"));
    }
    let value = engine
        .range(store::proto::etcdserverpb::RangeRequest {
            key: b"secret".to_vec(),
            ..Default::default()
        })
        .await
        .expect("range");
    assert_eq!(value.kvs[0].value, b"v");
    // The refused connections did not take the endpoint down.
    assert_eq!(
        ctl.run(&["get", "secret", "--print-value-only"]).await,
        "v\n"
    );
}
