//! Scheduler benchmark (issue 7) in upstream's scheduler_perf shape, against a real `krust
//! server` with Node objects that have no kubelet behind them (upstream's node-default
//! template: 4 cpu, 32Gi, 110 pods):
//!
//! - SchedulingBasic: 5,000 nodes, 1,000 pods scheduled first, then 10,000 measured pods
//!   (pod-default: 100m cpu, 500Mi); pods/s from the first measured create to the last bind, and
//!   each pod's latency from its create request to the watch event showing it bound.
//! - DaemonSet: on a fresh server with 5,000 nodes, the time from the DaemonSet's create to the
//!   watch event showing its 5,000th pod bound (the DaemonSet controller creates the pods), and
//!   to the event showing its 5,000th pod created (the controller's share).
//!
//! ```sh
//! cargo build --release -p krust
//! cargo run --release -p krust --example scheduler_bench     # KRUST_BIN or --krust to override
//! ```
//!
//! The node lifecycle controller marks nodes whose Lease is not renewed Unknown after 40 s; the
//! benchmark renews each node's Lease every 30 s (as a kubelet would, less often), so a slow run
//! still measures the scheduler and not tainted nodes.

// Shared with the other benchmarks; this one uses only part of them.
#[allow(dead_code)]
#[path = "api_bench/server.rs"]
mod server;
#[allow(dead_code)]
#[path = "api_bench/stats.rs"]
mod stats;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::Mutex;

use crate::server::KrustServer;
use crate::stats::Summary;

#[derive(Debug, Parser)]
#[command(about = "Scheduling throughput of a real krust server, in scheduler_perf's shape")]
struct Args {
    /// The krust binary [default: $CARGO_TARGET_DIR/release/krust, else target/release/krust].
    #[arg(long, env = "KRUST_BIN")]
    krust: Option<PathBuf>,
    #[arg(long, default_value_t = 5_000)]
    nodes: usize,
    /// Pods scheduled before the measurement (upstream's initPods).
    #[arg(long, default_value_t = 1_000)]
    init_pods: usize,
    /// Measured pods (upstream's measurePods).
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Concurrent creating clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Skip the DaemonSet workload.
    #[arg(long)]
    no_daemonset: bool,
    /// Skip the SchedulingBasic workload.
    #[arg(long)]
    no_basic: bool,
    /// Give up on a phase after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

/// Upstream's scheduler_perf threshold for SchedulingBasic on its CI machines.
const UPSTREAM_THRESHOLD: f64 = 680.0;

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let bin = server::krust_binary(args.krust.clone())?;
    let load_before = load_average();
    let basic = if args.no_basic {
        None
    } else {
        Some(run_on_server(&bin, |client| scheduling_basic(&args, client)).await?)
    };
    let daemonset = if args.no_daemonset {
        None
    } else {
        Some(run_on_server(&bin, |client| daemonset(&args, client)).await?)
    };
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "{cpus} CPUs; load average (1/5/15 min) {load_before} before, {} after.\n",
        load_average()
    );
    println!("| workload | pods | seconds | pods/s | p50 create→bound | p99 create→bound | vs 680 pods/s |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let row = |name: &str, r: &Outcome| {
        let rate = r.pods as f64 / r.took.as_secs_f64();
        println!(
            "| {name} | {} | {:.2} | {rate:.0} | {} | {} | {:.2}x |",
            r.pods,
            r.took.as_secs_f64(),
            r.latency.map_or("-".into(), |l| stats::ms(l.p50)),
            r.latency.map_or("-".into(), |l| stats::ms(l.p99)),
            rate / UPSTREAM_THRESHOLD
        );
    };
    if let Some(basic) = &basic {
        row(
            &format!("SchedulingBasic {} nodes / {} pods", args.nodes, args.pods),
            basic,
        );
    }
    if let Some(ds) = &daemonset {
        row(&format!("DaemonSet on {} nodes", args.nodes), ds);
        if let Some(created) = ds.all_created {
            println!(
                "\nDaemonSet: the controller created all {} pods after {:.2} s ({:.0} pods/s); \
                 the last was bound {:.2} s after the last creation.",
                ds.pods,
                created.as_secs_f64(),
                ds.pods as f64 / created.as_secs_f64(),
                ds.took.saturating_sub(created).as_secs_f64()
            );
        }
    }
    Ok(())
}

struct Outcome {
    pods: usize,
    took: Duration,
    latency: Option<Summary>,
    /// When the last pod was first seen (created), for workloads whose pods a controller makes.
    all_created: Option<Duration>,
}

/// Starts a fresh server, runs `work` with an admin client, stops the server.
async fn run_on_server<F, Fut>(bin: &std::path::Path, work: F) -> Result<Outcome>
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = Result<Outcome>>,
{
    eprintln!("starting {}", bin.display());
    let server = KrustServer::start(bin)?;
    eprintln!("server ready, pid {}", server.pid());
    let path = server.kubeconfig();
    let kubeconfig =
        Kubeconfig::read_from(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    config.read_timeout = Some(Duration::from_secs(600));
    let client = Client::try_from(config)?;
    let outcome = match work(client).await {
        Ok(o) => o,
        Err(e) => bail!("{e:?}\n--- server log (tail) ---\n{}", server.log_tail()),
    };
    server.stop()?;
    Ok(outcome)
}

/// Creates the nodes and their Leases, and renews the Leases every 30 s until the returned
/// task is aborted.
async fn create_nodes(args: &Args, client: &Client) -> Result<tokio::task::JoinHandle<()>> {
    eprintln!("creating {} nodes", args.nodes);
    let started = Instant::now();
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    futures::stream::iter(0..args.nodes)
        .map(|i| {
            let (nodes, leases) = (nodes.clone(), leases.clone());
            async move {
                let name = node_name(i);
                nodes
                    .create(
                        &PostParams::default(),
                        &serde_json::from_value(node(&name))?,
                    )
                    .await?;
                leases
                    .create(
                        &PostParams::default(),
                        &serde_json::from_value(lease(&name))?,
                    )
                    .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(args.clients)
        .try_collect::<()>()
        .await?;
    eprintln!(
        "  {} nodes in {:.1} s",
        args.nodes,
        started.elapsed().as_secs_f64()
    );
    let count = args.nodes;
    Ok(tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(30)).await;
            let renewals = futures::stream::iter(0..count).map(|i| {
                let leases = leases.clone();
                async move {
                    let renew = json!({"spec": {"renewTime": now()}});
                    let _ = leases
                        .patch(&node_name(i), &PatchParams::default(), &Patch::Merge(renew))
                        .await;
                }
            });
            renewals.buffer_unordered(4).collect::<()>().await;
        }
    }))
}

fn node_name(i: usize) -> String {
    format!("scheduler-perf-node-{i}")
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

/// Upstream's config/templates/node-default.yaml.
fn node(name: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {
            "capacity": {"cpu": "4", "memory": "32Gi", "pods": "110"},
            "allocatable": {"cpu": "4", "memory": "32Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "lastHeartbeatTime": now()}]
        }
    })
}

fn lease(name: &str) -> serde_json::Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": name, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now()}
    })
}

/// Upstream's config/templates/pod-default.yaml.
fn pod(name: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "scheduler-perf"}},
        "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": "100m", "memory": "500Mi"},
                          "limits": {"cpu": "100m", "memory": "500Mi"}}}]}
    })
}

/// When each pod was first seen bound, by name, from one watch over all pods.
type Bound = Arc<Mutex<HashMap<String, Instant>>>;

/// When each pod was first seen at all (created), by name.
type Seen = Arc<Mutex<HashMap<String, Instant>>>;

fn watch_bound(client: &Client) -> Bound {
    watch_pods(client).0
}

/// One watch over all pods recording when each was first seen and first seen bound.
fn watch_pods(client: &Client) -> (Bound, Seen) {
    let bound: Bound = Arc::default();
    let seen: Seen = Arc::default();
    let pods: Api<Pod> = Api::all(client.clone());
    let (bound_sink, seen_sink) = (bound.clone(), seen.clone());
    tokio::spawn(async move {
        let mut events = watcher::watcher(pods, watcher::Config::default()).boxed();
        while let Some(event) = events.next().await {
            let (Ok(Event::Apply(pod)) | Ok(Event::InitApply(pod))) = event else {
                continue;
            };
            let now = Instant::now();
            seen_sink.lock().await.entry(pod.name_any()).or_insert(now);
            if pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_ref())
                .is_some()
            {
                bound_sink.lock().await.entry(pod.name_any()).or_insert(now);
            }
        }
    });
    (bound, seen)
}

async fn wait_for(bound: &Bound, count: usize, what: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let have = bound.lock().await.len();
        if have >= count {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what}: {have} of {count} pods bound after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Creates pods `prefix-0..count` from `clients` concurrent requests; returns each one's
/// create-request start.
async fn create_pods(
    args: &Args,
    client: &Client,
    prefix: &str,
    count: usize,
) -> Result<HashMap<String, Instant>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    futures::stream::iter(0..count)
        .map(|i| {
            let pods = pods.clone();
            let name = format!("{prefix}-{i}");
            async move {
                let start = Instant::now();
                pods.create(&PostParams::default(), &serde_json::from_value(pod(&name))?)
                    .await?;
                anyhow::Ok((name, start))
            }
        })
        .buffer_unordered(args.clients)
        .try_collect()
        .await
}

async fn scheduling_basic(args: &Args, client: Client) -> Result<Outcome> {
    let leases = create_nodes(args, &client).await?;
    let bound = watch_bound(&client);
    let timeout = Duration::from_secs(args.timeout);
    eprintln!("scheduling {} initial pods", args.init_pods);
    create_pods(args, &client, "init", args.init_pods).await?;
    wait_for(&bound, args.init_pods, "initial pods", timeout).await?;
    eprintln!("measuring {} pods", args.pods);
    let start = Instant::now();
    let created = create_pods(args, &client, "measured", args.pods).await?;
    eprintln!("  created in {:.1} s", start.elapsed().as_secs_f64());
    wait_for(&bound, args.init_pods + args.pods, "measured pods", timeout).await?;
    leases.abort();
    let bound = bound.lock().await;
    let last = created
        .keys()
        .filter_map(|n| bound.get(n))
        .max()
        .copied()
        .unwrap_or(start);
    let latencies = created
        .iter()
        .filter_map(|(n, at)| Some(bound.get(n)?.saturating_duration_since(*at)))
        .collect();
    let latency = Summary::of(latencies);
    eprintln!("  bound: {}", latency.brief());
    Ok(Outcome {
        pods: args.pods,
        took: last - start,
        latency: Some(latency),
        all_created: None,
    })
}

async fn daemonset(args: &Args, client: Client) -> Result<Outcome> {
    let leases = create_nodes(args, &client).await?;
    let (bound, seen) = watch_pods(&client);
    let sets: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    let ds = json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "scheduler-perf"},
        "spec": {"selector": {"matchLabels": {"app": "scheduler-perf-ds"}},
                 "template": {"metadata": {"labels": {"app": "scheduler-perf-ds"}},
                              "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10",
                                  "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}}}]}}}
    });
    eprintln!("creating a DaemonSet over {} nodes", args.nodes);
    let start = Instant::now();
    sets.create(&PostParams::default(), &serde_json::from_value(ds)?)
        .await?;
    wait_for(
        &bound,
        args.nodes,
        "daemonset pods",
        Duration::from_secs(args.timeout),
    )
    .await?;
    leases.abort();
    let last = bound.lock().await.values().max().copied().unwrap_or(start);
    let last_created = seen.lock().await.values().max().copied().unwrap_or(start);
    Ok(Outcome {
        pods: args.nodes,
        took: last - start,
        latency: None,
        all_created: Some(last_created - start),
    })
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}
