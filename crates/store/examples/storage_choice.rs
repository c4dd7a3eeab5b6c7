//! The measurement behind the engine's storage choice (see `ENGINE.md`): durable write cost of an
//! append-only checksummed log versus redb, one commit per write and 64 writes per commit, with
//! 1 KiB values and fsync on; then the engine itself with 1, 16 and 64 concurrent writers.
//!
//! Run: `cargo run --release -p store --example storage_choice`

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redb::{Database, TableDefinition};
use store::engine::{Engine, EngineOptions};
use store::proto::etcdserverpb::PutRequest;
use store::Store;

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
const VALUE: [u8; 1024] = [7u8; 1024];
const RUN: Duration = Duration::from_secs(3);

fn rate(n: u64, t: Duration, written: u64) -> String {
    format!(
        "{:>7.0} writes/s, {:>6.0} bytes to disk per write",
        n as f64 / t.as_secs_f64(),
        written as f64 / n.max(1) as f64
    )
}

/// Bytes this process has caused to be written to storage (`/proc/self/io`).
fn disk_bytes() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Runs `f` and reports its rate and bytes written per write.
fn measure(f: impl FnOnce() -> (u64, Duration)) -> String {
    let before = disk_bytes();
    let (n, t) = f();
    rate(n, t, disk_bytes() - before)
}

/// Appends `batch` framed records and fdatasyncs, repeatedly, for `RUN`. With `prealloc`, the
/// file is first filled with zeros and then overwritten, so fdatasync has no size to update.
fn log_writes(dir: &std::path::Path, batch: usize, prealloc: bool) -> (u64, Duration) {
    let path = dir.join(format!("log-{batch}-{prealloc}"));
    let mut f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)
        .unwrap();
    if prealloc {
        f.write_all(&vec![0u8; 256 << 20]).unwrap();
        f.sync_all().unwrap();
        std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(0)).unwrap();
    }
    let (start, mut n) = (Instant::now(), 0u64);
    while start.elapsed() < RUN {
        let mut buf = Vec::with_capacity(batch * 1100);
        for _ in 0..batch {
            let key = format!("/registry/pods/default/pod-{}", n % 1000);
            buf.extend_from_slice(&((key.len() + VALUE.len()) as u32).to_le_bytes());
            buf.extend_from_slice(&0u32.to_le_bytes()); // checksum slot
            buf.extend_from_slice(key.as_bytes());
            buf.extend_from_slice(&VALUE);
            n += 1;
        }
        f.write_all(&buf).unwrap();
        f.sync_data().unwrap();
    }
    (n, start.elapsed())
}

/// Puts `batch` keys per redb write transaction (default durability: fsync on commit).
fn redb_writes(dir: &std::path::Path, batch: usize) -> (u64, Duration) {
    let db = Database::create(dir.join(format!("redb-{batch}"))).unwrap();
    let (start, mut n) = (Instant::now(), 0u64);
    while start.elapsed() < RUN {
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(TABLE).unwrap();
            for _ in 0..batch {
                let key = format!("/registry/pods/default/pod-{}", n % 1000);
                t.insert(key.as_bytes(), VALUE.as_slice()).unwrap();
                n += 1;
            }
        }
        txn.commit().unwrap();
    }
    (n, start.elapsed())
}

async fn engine_writes(dir: &std::path::Path, clients: u64, preallocate: bool) -> (u64, Duration) {
    let opts = EngineOptions {
        preallocate,
        ..Default::default()
    };
    let engine = Engine::open(dir, opts).await.unwrap();
    // Let the first preallocated segment get ready, as it is on a running server.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let engine: Arc<Engine> = engine.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                while start.elapsed() < RUN {
                    let key = format!("/registry/pods/c{c}/pod-{}", n % 1000);
                    let req = PutRequest {
                        key: key.into(),
                        value: VALUE.to_vec(),
                        ..Default::default()
                    };
                    engine.put(req).await.unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    (total, start.elapsed())
}

#[tokio::main]
async fn main() {
    let dir =
        tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into())).unwrap();
    for batch in [1, 64] {
        let r = measure(|| log_writes(dir.path(), batch, false));
        println!("append-only log,       {batch:>2} writes per fsync:  {r}");
        let r = measure(|| log_writes(dir.path(), batch, true));
        println!("preallocated log,      {batch:>2} writes per fsync:  {r}");
        let r = measure(|| redb_writes(dir.path(), batch));
        println!("redb 4.6,              {batch:>2} writes per commit: {r}");
    }
    for clients in [1, 16, 64] {
        for preallocate in [false, true] {
            let sub = dir.path().join(format!("engine-{clients}-{preallocate}"));
            let before = disk_bytes();
            let (n, t) = engine_writes(&sub, clients, preallocate).await;
            let r = rate(n, t, disk_bytes() - before);
            let kind = if preallocate { "preallocated" } else { "plain" };
            println!("engine, {kind:>12} segments, {clients:>2} clients: {r}");
        }
    }
}
