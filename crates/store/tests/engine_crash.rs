//! Crash test: a child process (this test binary, re-run as `crash_child`) writes with many
//! concurrent writers and prints every acknowledged write; the parent SIGKILLs it at random
//! moments, reopens the directory, and checks that every acknowledged write is there and that the
//! revision never went backwards. Small snapshot and retention settings make snapshots, segment
//! switches and compactions happen while the child is being killed.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use store::engine::{Engine, EngineOptions};
use store::proto::etcdserverpb::{
    request_op::Request, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use store::Store;

const DIR_ENV: &str = "KRUST_CRASH_CHILD_DIR";
const RUN_ENV: &str = "KRUST_CRASH_CHILD_RUN";
const KILLS: usize = 24;
const WRITERS: usize = 16;

fn options() -> EngineOptions {
    EngineOptions {
        snapshot_min_log_bytes: 64 << 10,
        retain_revisions: Some(2_000),
        maintenance_interval: Duration::from_millis(50),
        ..Default::default()
    }
}

/// The child: writes until killed. Not a test of its own; it returns at once without the env.
#[test]
fn crash_child() {
    let (Ok(dir), Ok(run)) = (std::env::var(DIR_ENV), std::env::var(RUN_ENV)) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let engine = Engine::open(Path::new(&dir), options()).await.unwrap();
        // A newline first: libtest has already printed "test crash_child ... " on this line.
        println!("\nREADY {}", engine.revision());
        let tasks: Vec<_> = (0..WRITERS)
            .map(|w| tokio::spawn(write_forever(engine.clone(), run.clone(), w)))
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    });
}

async fn write_forever(engine: Arc<Engine>, run: String, w: usize) {
    for n in 0.. {
        let key = format!("r{run}/w{w}/{n}");
        let value = format!("value of {key}").repeat(4);
        if n % 4 == 3 {
            // A txn writing two keys at one revision.
            let put = |k: &str| RequestOp {
                request: Some(Request::RequestPut(PutRequest {
                    key: k.into(),
                    value: value.clone().into(),
                    ..Default::default()
                })),
            };
            let other = format!("{key}/t");
            let txn = TxnRequest {
                success: vec![put(&key), put(&other)],
                ..Default::default()
            };
            let rev = engine.txn(txn).await.unwrap().header.unwrap().revision;
            println!("ACK {key} {rev}\nACK {other} {rev}");
        } else {
            let req = PutRequest {
                key: key.clone().into(),
                value: value.into(),
                ..Default::default()
            };
            let rev = engine.put(req).await.unwrap().header.unwrap().revision;
            println!("ACK {key} {rev}");
        }
    }
}

/// Runs the child for `millis`, SIGKILLs it, and returns the acknowledged (key, revision) pairs.
fn run_child(dir: &Path, run: usize, millis: u64) -> Vec<(String, i64)> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(DIR_ENV, dir)
        .env(RUN_ENV, run.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let acks = Arc::new(Mutex::new(Vec::new()));
    let ready = Arc::new(Mutex::new(None::<Instant>));
    let reader = {
        let (acks, ready) = (acks.clone(), ready.clone());
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = Vec::new();
            // Only complete lines count: a line cut by the kill was never fully acknowledged.
            while r.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
                if line.ends_with(b"\n") {
                    let text = String::from_utf8_lossy(&line);
                    let parts: Vec<&str> = text.split_whitespace().collect();
                    match parts.as_slice() {
                        ["ACK", key, rev] => acks
                            .lock()
                            .unwrap()
                            .push((key.to_string(), rev.parse().unwrap())),
                        ["READY", _] => *ready.lock().unwrap() = Some(Instant::now()),
                        _ => {}
                    }
                }
                line.clear();
            }
        })
    };
    // Kill at a random moment after the engine is up (recovery time is not the point here).
    let deadline = Instant::now() + Duration::from_secs(20);
    while ready.lock().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(ready.lock().unwrap().is_some(), "child did not start");
    std::thread::sleep(Duration::from_millis(millis));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    reader.join().unwrap();
    let acks = acks.lock().unwrap().clone();
    acks
}

/// Checks every acknowledged write; returns the current revision.
async fn verify(dir: &Path, acked: &HashMap<String, i64>, min_rev: i64) -> i64 {
    let engine = Engine::open(dir, options()).await.unwrap();
    let rev = engine.revision();
    assert!(rev >= min_rev, "revision went backwards: {rev} < {min_rev}");
    let all = engine
        .range(RangeRequest {
            key: vec![0],
            range_end: vec![0],
            ..Default::default()
        })
        .await
        .unwrap();
    let found: HashMap<Vec<u8>, i64> = all
        .kvs
        .into_iter()
        .map(|kv| (kv.key, kv.mod_revision))
        .collect();
    for (key, ack_rev) in acked {
        let got = found.get(key.as_bytes());
        assert_eq!(
            got,
            Some(ack_rev),
            "acknowledged write {key}@{ack_rev} lost or changed"
        );
    }
    rev
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut acked: HashMap<String, i64> = HashMap::new();
    let mut last_rev = 1;
    let mut max_ack = 0;
    for run in 0..KILLS {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let millis = 30 + (seed >> 33) % 300;
        let path = dir.path().to_path_buf();
        let t0 = Instant::now();
        let acks = tokio::task::spawn_blocking(move || run_child(&path, run, millis))
            .await
            .unwrap();
        let t1 = Instant::now();
        for (key, rev) in acks {
            max_ack = max_ack.max(rev);
            acked.insert(key, rev);
        }
        last_rev = verify(dir.path(), &acked, last_rev.max(max_ack)).await;
        eprintln!(
            "run {run}: child {:?} verify {:?} acks {}",
            t1 - t0,
            t1.elapsed(),
            acked.len()
        );
    }
    assert!(
        acked.len() > 1000,
        "too few writes to mean anything: {}",
        acked.len()
    );
    eprintln!(
        "{KILLS} kills, {} acknowledged writes, final revision {last_rev}",
        acked.len()
    );
}
