//! Bounded on disk: 1,000,000 updates to the same 1,000 keys, from many concurrent writers (so
//! group commit applies, fsync on), must leave the engine's directory under 10x the live data.
//! History is kept for the last 1,000 revisions here; the peak size seen during the run is
//! printed as well as the final one.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use store::engine::{Engine, EngineOptions};
use store::proto::etcdserverpb::{PutRequest, RangeRequest};
use store::Store;

const KEYS: u64 = 1_000;
const UPDATES: u64 = 1_000_000;
const WRITERS: u64 = 100;
const VALUE_BYTES: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn million_updates_stay_under_ten_times_live_data() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EngineOptions {
        retain_revisions: Some(1_000),
        retain_duration: None,
        snapshot_min_log_bytes: 128 << 10,
        snapshot_log_ratio: 1,
        ..Default::default()
    };
    let engine = Engine::open(dir.path(), opts).await.unwrap();
    let started = Instant::now();
    let (peak, stop) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let sampler = {
        let (engine, peak, stop) = (engine.clone(), peak.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(engine.disk_size(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let engine = engine.clone();
            tokio::spawn(async move {
                for n in 0..UPDATES / WRITERS {
                    let i = (w * 7919 + n) % KEYS;
                    let mut value = format!("{w}-{n}-").into_bytes();
                    value.resize(VALUE_BYTES, b'x');
                    let req = PutRequest {
                        key: format!("key/{i:04}").into(),
                        value,
                        ..Default::default()
                    };
                    engine.put(req).await.unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    sampler.await.unwrap();

    let all = engine
        .range(RangeRequest {
            key: b"key/".to_vec(),
            range_end: b"key0".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.count, KEYS as i64);
    let live: u64 = all
        .kvs
        .iter()
        .map(|kv| (kv.key.len() + kv.value.len()) as u64)
        .sum();
    assert_eq!(engine.revision(), 1 + UPDATES as i64);
    // A snapshot may still be in flight (old and new files side by side): give it time to finish.
    let settle = Instant::now();
    let mut size = engine.disk_size();
    while size >= 10 * live && settle.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        size = engine.disk_size();
    }
    let peak = peak.load(Ordering::Relaxed).max(size);
    eprintln!(
        "{UPDATES} updates in {elapsed:?} ({:.0}/s); live data {live} B; directory {size} B \
         ({:.1}x live, after {:?} settling), peak {peak} B ({:.1}x)",
        UPDATES as f64 / elapsed.as_secs_f64(),
        size as f64 / live as f64,
        settle.elapsed(),
        peak as f64 / live as f64,
    );
    assert!(
        size < 10 * live,
        "directory {size} B is not under 10x live data {live} B"
    );
    // The peak is reported, not asserted: while a snapshot is being written the log keeps
    // growing, by however much the machine's load slows the snapshot down.
}
