//! Controller manager benchmark (issue 7): how long a 1,000-replica Deployment takes to have all
//! its pods created (deployment → ReplicaSet → pods) and bound by the scheduler, against a real
//! `krust server` with Node objects that have no kubelet behind them.
//!
//! ```sh
//! cargo build --release -p krust
//! cargo run --release -p krust --example deployment_bench     # KRUST_BIN or --krust to override
//! ```
//!
//! Times are taken at the client, from the Deployment's create request to the watch event that
//! shows the last pod created and the last pod bound.

#[path = "api_bench/server.rs"]
mod server;

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::server::KrustServer;

#[derive(Debug, Parser)]
#[command(about = "Time a large Deployment's pods to be created and bound by a real krust server")]
struct Args {
    /// The krust binary [default: $CARGO_TARGET_DIR/release/krust, else target/release/krust].
    #[arg(long, env = "KRUST_BIN")]
    krust: Option<PathBuf>,
    /// Replicas of the Deployment.
    #[arg(long, default_value_t = 1_000)]
    replicas: usize,
    /// Node objects (no kubelet) the scheduler spreads the pods over; each holds 110 pods.
    #[arg(long, default_value_t = 20)]
    nodes: usize,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.nodes * 110 < args.replicas {
        bail!(
            "{} nodes of 110 pods cannot hold {} pods",
            args.nodes,
            args.replicas
        );
    }
    let bin = server::krust_binary(args.krust.clone())?;
    let load_before = load_average();
    eprintln!("starting {}", bin.display());
    let server = KrustServer::start(&bin)?;
    eprintln!("server ready, pid {}", server.pid());
    let result = measure(&args, &server).await;
    let result = match result {
        Ok(r) => r,
        Err(e) => bail!("{e:?}\n--- server log (tail) ---\n{}", server.log_tail()),
    };
    server.stop()?;
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "{cpus} CPUs; load average (1/5/15 min) {load_before} before, {} after.\n",
        load_average()
    );
    println!(
        "Server RSS after: {} MiB (peak {} MiB).\n",
        result.rss.current_kib / 1024,
        result.rss.peak_kib / 1024
    );
    println!(
        "| {} replicas, {} nodes | seconds | pods/s |",
        args.replicas, args.nodes
    );
    println!("| --- | --- | --- |");
    for (what, took) in [
        ("all pods created", result.created),
        ("all pods bound", result.bound),
    ] {
        println!(
            "| {what} | {:.2} | {:.0} |",
            took.as_secs_f64(),
            args.replicas as f64 / took.as_secs_f64()
        );
    }
    Ok(())
}

struct Timings {
    created: Duration,
    bound: Duration,
    rss: server::Rss,
}

async fn measure(args: &Args, server: &KrustServer) -> Result<Timings> {
    let path = server.kubeconfig();
    let kubeconfig =
        Kubeconfig::read_from(&path).with_context(|| format!("reading {}", path.display()))?;
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    let client = Client::try_from(config)?;
    let nodes: Api<Node> = Api::all(client.clone());
    for i in 0..args.nodes {
        let name = format!("bench-node-{i}");
        let node = json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {
                "capacity": {"cpu": "64", "memory": "256Gi", "pods": "110"},
                "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]
            }
        });
        nodes
            .create(&PostParams::default(), &serde_json::from_value(node)?)
            .await?;
    }
    // The controllers and the scheduler must be running (holding their leases) before the clock
    // starts: a small Deployment going through first shows they are.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    eprintln!("warming up: a 1-replica Deployment");
    deployments
        .create(&PostParams::default(), &deployment("warmup", 1)?)
        .await?;
    wait_bound(&pods, "warmup", 1, Duration::from_secs(120)).await?;

    eprintln!("creating a {}-replica Deployment", args.replicas);
    let watch = tokio::spawn(watch_pods(
        pods.clone(),
        "bench",
        args.replicas,
        Duration::from_secs(args.timeout),
    ));
    // Let the watch start before the clock does.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start = Instant::now();
    deployments
        .create(&PostParams::default(), &deployment("bench", args.replicas)?)
        .await?;
    let (created, bound) = watch.await??;
    // A fast figure from a controller that made pods twice would mean nothing.
    let rss = server.rss()?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let listed = pods
        .list(&kube::api::ListParams::default().labels("app=bench"))
        .await?
        .items
        .len();
    if listed != args.replicas {
        bail!("{listed} pods exist for {} replicas", args.replicas);
    }
    Ok(Timings {
        created: created - start,
        bound: bound - start,
        rss,
    })
}

fn deployment(name: &str, replicas: usize) -> Result<Deployment> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}
            }
        }
    }))?)
}

/// When the watch first showed `count` pods of `app`, and when it showed them all bound.
async fn watch_pods(
    pods: Api<Pod>,
    app: &str,
    count: usize,
    timeout: Duration,
) -> Result<(Instant, Instant)> {
    let config = watcher::Config::default().labels(&format!("app={app}"));
    let mut events = watcher::watcher(pods, config).boxed();
    let (mut seen, mut bound) = (HashSet::new(), HashSet::new());
    let mut created_at = None;
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = match tokio::time::timeout(left, events.next()).await {
            Ok(Some(event)) => event?,
            Ok(None) => bail!("the watch ended"),
            Err(_) => bail!(
                "{} of {count} pods created, {} bound after {timeout:?}",
                seen.len(),
                bound.len()
            ),
        };
        if let Event::Apply(pod) | Event::InitApply(pod) = event {
            seen.insert(pod.name_any());
            if pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_ref())
                .is_some()
            {
                bound.insert(pod.name_any());
            }
        }
        if seen.len() >= count && created_at.is_none() {
            created_at = Some(Instant::now());
            eprintln!("all {count} pods created");
        }
        if bound.len() >= count {
            return Ok((created_at.unwrap_or_else(Instant::now), Instant::now()));
        }
    }
}

async fn wait_bound(pods: &Api<Pod>, app: &str, count: usize, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let list = pods
            .list(&kube::api::ListParams::default().labels(&format!("app={app}")))
            .await?;
        let bound = list
            .items
            .iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some())
            .count();
        if bound >= count {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{app}: {bound} of {count} pods bound after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
