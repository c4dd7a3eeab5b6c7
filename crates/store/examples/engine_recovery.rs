//! How long the engine takes to reopen a directory: writes N keys with 1 KiB values (in txns of
//! 100 puts), then some updates, closes, and times `Engine::open`.
//!
//! Run: `cargo run --release -p store --example engine_recovery -- [KEYS]`

use std::time::{Duration, Instant};

use store::engine::{Engine, EngineOptions};
use store::proto::etcdserverpb::{request_op::Request, PutRequest, RequestOp, TxnRequest};
use store::Store;

#[tokio::main]
async fn main() {
    let keys: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir_in(".").unwrap();
    let engine = Engine::open(dir.path(), EngineOptions::default())
        .await
        .unwrap();
    let start = Instant::now();
    for chunk in 0..keys.div_ceil(100) {
        let success = (0..100)
            .map(|i| RequestOp {
                request: Some(Request::RequestPut(PutRequest {
                    key: format!("/registry/configmaps/default/cm-{}", chunk * 100 + i).into(),
                    value: vec![b'x'; 1024],
                    ..Default::default()
                })),
            })
            .collect();
        engine
            .txn(TxnRequest {
                success,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    println!("wrote {keys} keys in {:?}", start.elapsed());
    drop(engine);
    // The writer thread releases the directory lock when it has finished its last batch.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = Instant::now();
    let engine = Engine::open(dir.path(), EngineOptions::default())
        .await
        .unwrap();
    println!(
        "reopened at revision {} in {:?}; files {} MB",
        engine.revision(),
        start.elapsed(),
        engine.disk_size() >> 20
    );
}
