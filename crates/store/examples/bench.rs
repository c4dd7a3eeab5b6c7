//! Datastore benchmark: krust's etcd endpoint over the durable embedded engine versus a real etcd
//! 3.4 on the same machine, in one run, with the same gRPC client code, both fsyncing every
//! acknowledged write. Measures put, range and txn throughput and p50/p99 latency at 1, 16 and 64
//! concurrent clients with 1 KiB values, then the resident memory of each server process holding
//! 100k keys. Prints a markdown table with the krust/etcd ratio.
//!
//! Run: `cargo run --release -p store --example bench [-- --seconds N --reps N]`
//! (`bench serve DIR PORT CERTDIR` is the krust server child it starts itself.)

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use store::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use store::proto::etcdserverpb::kv_client::KvClient;
use store::proto::etcdserverpb::request_op::Request;
use store::proto::etcdserverpb::*;
use support::{ChildGuard, EtcdProcess, Pki};
use tonic::transport::Channel;

const VALUE_BYTES: usize = 1024;
/// Each client cycles over this many keys of its own.
const KEYS_PER_CLIENT: usize = 16;
const RSS_KEYS: usize = 100_000;
const CONCURRENCY: [usize; 3] = [1, 16, 64];
/// Clients share this many HTTP/2 connections, as etcd's own benchmark tool does.
const MAX_CONNECTIONS: usize = 8;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Put,
    Range,
    Txn,
}

struct Result_ {
    ops_per_sec: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if args.get(1).map(String::as_str) == Some("serve") {
        return rt.block_on(serve(&args[2], &args[3], &args[4]));
    }
    let flag = |name: &str, default: u64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let window = Duration::from_secs(flag("--seconds", 3));
    rt.block_on(compare(window, flag("--reps", 3) as usize))
}

/// The krust server child: the endpoint over a durable engine in `dir`.
async fn serve(dir: &str, port: &str, certs: &str) -> Result<(), BoxError> {
    let engine = store::engine::Engine::open(
        std::path::Path::new(dir),
        store::engine::EngineOptions::default(),
    )
    .await?;
    let read = |n: &str| std::fs::read(std::path::Path::new(certs).join(n));
    let tls = store::server::TlsPems {
        cert: read("server.crt")?,
        key: read("server.key")?,
        client_ca: read("ca.crt")?,
    };
    let addr = format!("127.0.0.1:{port}").parse()?;
    store::server::serve(engine, addr, tls, std::future::pending()).await?;
    Ok(())
}

struct Server {
    name: &'static str,
    pid: u32,
    endpoint: String,
}

fn median(mut runs: Vec<Result_>) -> Result_ {
    runs.sort_by(|a, b| a.ops_per_sec.total_cmp(&b.ops_per_sec));
    runs.swap_remove(runs.len() / 2)
}

async fn compare(window: Duration, reps: usize) -> Result<(), BoxError> {
    let pki = Pki::generate();
    let krust_dir = tempfile::tempdir()?;
    let port = support::free_port();
    let krust = ChildGuard(
        Command::new(std::env::current_exe()?)
            .arg("serve")
            .arg(krust_dir.path())
            .arg(port.to_string())
            .arg(pki.dir.path())
            .stdout(Stdio::null())
            .spawn()?,
    );
    let etcd = EtcdProcess::start(&pki);
    let servers = [
        Server {
            name: "krust",
            pid: krust.pid(),
            endpoint: format!("127.0.0.1:{port}"),
        },
        Server {
            name: "etcd",
            pid: etcd.child.pid(),
            endpoint: etcd.endpoint.clone(),
        },
    ];
    for s in &servers {
        wait_up(&s.endpoint, &pki).await?;
    }
    let mut rows = Vec::new();
    for op in [Op::Put, Op::Range, Op::Txn] {
        for clients in CONCURRENCY {
            // Alternating repetitions, median kept: other load on the machine hits both alike.
            let mut runs: Vec<Vec<Result_>> = servers.iter().map(|_| Vec::new()).collect();
            for _ in 0..reps {
                for (s, runs) in servers.iter().zip(runs.iter_mut()) {
                    let conns = connect(&s.endpoint, &pki, clients.min(MAX_CONNECTIONS)).await?;
                    let r = run(op, clients, &conns, window, s.name).await?;
                    eprintln!(
                        "{:5} {:?} x{clients}: {:.0} ops/s p50 {:?} p99 {:?} max {:?}",
                        s.name, op, r.ops_per_sec, r.p50, r.p99, r.max
                    );
                    runs.push(r);
                }
            }
            rows.push((op, clients, runs.into_iter().map(median).collect()));
        }
    }
    let mut rss = Vec::new();
    for s in &servers {
        let conns = connect(&s.endpoint, &pki, MAX_CONNECTIONS).await?;
        load_keys(&conns, RSS_KEYS).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss.push(vm_rss_kib(s.pid)?);
    }
    print_report(&rows, &rss, window, reps);
    drop(krust);
    drop(etcd);
    Ok(())
}

async fn wait_up(endpoint: &str, pki: &Pki) -> Result<(), BoxError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match connect(endpoint, pki, 1).await {
            Ok(c) => {
                let mut kv = KvClient::new(c[0].clone());
                if kv.range(range_req(b"probe".to_vec())).await.is_ok() {
                    return Ok(());
                }
            }
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn connect(endpoint: &str, pki: &Pki, n: usize) -> Result<Vec<Channel>, BoxError> {
    let mut conns = Vec::new();
    for _ in 0..n {
        conns.push(support::grpc_channel(endpoint, pki, true).await?);
    }
    Ok(conns)
}

fn key(client: usize, i: usize) -> Vec<u8> {
    format!("/bench/{client:03}/{:06}", i % KEYS_PER_CLIENT).into_bytes()
}

fn range_req(key: Vec<u8>) -> RangeRequest {
    RangeRequest {
        key,
        ..Default::default()
    }
}

fn put_req(key: Vec<u8>) -> PutRequest {
    PutRequest {
        key,
        value: vec![b'v'; VALUE_BYTES],
        ..Default::default()
    }
}

/// The Kubernetes update pattern: write only if the key still exists.
fn txn_req(key: Vec<u8>) -> TxnRequest {
    TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Greater as i32,
            target: CompareTarget::Mod as i32,
            key: key.clone(),
            target_union: Some(TargetUnion::ModRevision(0)),
            range_end: Vec::new(),
        }],
        success: vec![RequestOp {
            request: Some(Request::RequestPut(put_req(key.clone()))),
        }],
        failure: vec![RequestOp {
            request: Some(Request::RequestRange(range_req(key))),
        }],
    }
}

async fn one(kv: &mut KvClient<Channel>, op: Op, key: Vec<u8>) -> Result<(), tonic::Status> {
    match op {
        Op::Put => kv.put(put_req(key)).await.map(drop),
        Op::Range => kv.range(range_req(key)).await.map(drop),
        Op::Txn => kv.txn(txn_req(key)).await.map(drop),
    }
}

/// `clients` tasks issue `op` back to back for `window`; returns throughput and latencies.
async fn run(
    op: Op,
    clients: usize,
    conns: &[Channel],
    window: Duration,
    name: &str,
) -> Result<Result_, BoxError> {
    if op != Op::Put {
        // Reads and txns hit existing keys.
        for c in 0..clients {
            let mut kv = KvClient::new(conns[c % conns.len()].clone());
            for i in 0..KEYS_PER_CLIENT {
                one(&mut kv, Op::Put, key(c, i)).await?;
            }
        }
    }
    let start = Instant::now();
    let deadline = start + window;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let mut kv = KvClient::new(conns[c % conns.len()].clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = 0;
            while Instant::now() < deadline {
                let t = Instant::now();
                one(&mut kv, op, key(c, i)).await?;
                lat.push(t.elapsed());
                i += 1;
            }
            Ok::<_, tonic::Status>(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await?.map_err(|s| format!("{name}: {s}"))?);
    }
    let elapsed = start.elapsed();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Ok(Result_ {
        ops_per_sec: all.len() as f64 / elapsed.as_secs_f64(),
        p50: pct(0.50),
        p99: pct(0.99),
        max: all.last().copied().unwrap_or_default(),
    })
}

/// Writes `n` distinct 1 KiB keys in transactions of 100 puts.
async fn load_keys(conns: &[Channel], n: usize) -> Result<(), BoxError> {
    let batches = n / 100;
    let mut tasks = Vec::new();
    for w in 0..conns.len() {
        let mut kv = KvClient::new(conns[w].clone());
        let step = conns.len();
        tasks.push(tokio::spawn(async move {
            for b in (w..batches).step_by(step) {
                let success = (0..100)
                    .map(|i| RequestOp {
                        request: Some(Request::RequestPut(put_req(
                            format!("/rss/{:08}", b * 100 + i).into_bytes(),
                        ))),
                    })
                    .collect();
                kv.txn(TxnRequest {
                    success,
                    ..Default::default()
                })
                .await?;
            }
            Ok::<_, tonic::Status>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

fn vm_rss_kib(pid: u32) -> Result<u64, BoxError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or("no VmRSS")?;
    Ok(line.split_whitespace().nth(1).ok_or("bad VmRSS")?.parse()?)
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn print_report(rows: &[(Op, usize, Vec<Result_>)], rss: &[u64], window: Duration, reps: usize) {
    println!("| op | clients | krust ops/s | etcd ops/s | krust/etcd | krust p50 / p99 ms | etcd p50 / p99 ms |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (op, clients, r) in rows {
        println!(
            "| {op:?} | {clients} | {:.0} | {:.0} | {:.2}x | {} / {} | {} / {} |",
            r[0].ops_per_sec,
            r[1].ops_per_sec,
            r[0].ops_per_sec / r[1].ops_per_sec,
            ms(r[0].p50),
            ms(r[0].p99),
            ms(r[1].p50),
            ms(r[1].p99),
        );
    }
    println!();
    println!(
        "RSS with {RSS_KEYS} keys of {VALUE_BYTES} B: krust {} MiB, etcd {} MiB (krust/etcd {:.2}x)",
        rss[0] / 1024,
        rss[1] / 1024,
        rss[0] as f64 / rss[1] as f64
    );
    println!(
        "Each cell: median of {reps} alternating runs of {}s of back-to-back requests per client; \
         TLS with client certificates on both; load average at the end: {}",
        window.as_secs(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
}
