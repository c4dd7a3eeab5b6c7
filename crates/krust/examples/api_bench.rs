//! API server benchmark (issue 4): starts a real `krust server` on free loopback ports in a
//! temporary data dir and measures it from outside with kube-rs, the way a client program sees it:
//!
//! - creates/s and p50/p99 of create, get and a 100-pod namespace list from 16 concurrent clients;
//! - cluster-wide lists of 10,000 pods (JSON, Table, kubectl's paged Table, kube-rs typed), with
//!   latency and response bytes;
//! - watch delivery latency to 1,000 concurrent watch streams;
//! - the server process's RSS, idle and with 10,000 pods stored.
//!
//! It prints a markdown table comparing each figure with upstream's SLOs, krust's targets and
//! k0s's published memory. Progress goes to stderr, the report to stdout.
//!
//! ```sh
//! cargo build --release -p krust
//! cargo run --release -p krust --example api_bench            # KRUST_BIN or --krust to override
//! cargo run --release -p krust --example api_bench -- --authz-overhead --pods 2000
//! ```
//!
//! `--authz-overhead` measures something else instead: the same gets, lists and creates under
//! AlwaysAllow and under Node,RBAC with 1,000 Roles and 1,000 RoleBindings, and their p99 ratio
//! (see `api_bench/authz.rs`).
//!
//! All latencies are measured at the client, so they include kube-rs's own (de)serialisation and
//! the client's share of the two CPUs; they are upper bounds of what the server spends.

#[path = "api_bench/authz.rs"]
mod authz;
#[path = "api_bench/biglist.rs"]
mod biglist;
#[path = "api_bench/load.rs"]
mod load;
#[path = "api_bench/report.rs"]
mod report;
#[path = "api_bench/server.rs"]
mod server;
#[path = "api_bench/stats.rs"]
mod stats;
#[path = "api_bench/watch.rs"]
mod watch;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;

use crate::biglist::Variant;
use crate::load::Layout;
use crate::server::KrustServer;

#[derive(Debug, Parser)]
#[command(about = "Benchmark a real krust API server with kube-rs")]
struct Args {
    /// The krust binary [default: $CARGO_TARGET_DIR/release/krust, else target/release/krust].
    #[arg(long, env = "KRUST_BIN")]
    krust: Option<PathBuf>,
    /// Concurrent clients for creates, gets and namespace lists.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Pods created (and then listed cluster-wide).
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Pods per namespace: the size of the namespace lists.
    #[arg(long, default_value_t = 100)]
    per_namespace: usize,
    /// Gets, in total over all clients.
    #[arg(long, default_value_t = 10_000)]
    gets: usize,
    /// Namespace lists, in total over all clients.
    #[arg(long, default_value_t = 1_000)]
    lists: usize,
    /// Timed rounds of each cluster-wide list variant (after one warm-up).
    #[arg(long, default_value_t = 5)]
    big_list_rounds: usize,
    /// Concurrent watch streams.
    #[arg(long, default_value_t = 1_000)]
    watchers: usize,
    /// Updates each watcher must receive.
    #[arg(long, default_value_t = 20)]
    watch_updates: usize,
    /// Measure authorization's cost instead: AlwaysAllow against Node,RBAC with `--rbac-objects`
    /// Roles and as many RoleBindings, `--rounds` times each, and report the p99 ratio.
    #[arg(long)]
    authz_overhead: bool,
    #[arg(long, default_value_t = 1_000)]
    rbac_objects: usize,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// ConfigMap creates per mode and round (with --authz-overhead).
    #[arg(long, default_value_t = 2_000)]
    creates: usize,
}

/// Full lists at once in the memory-peak check (at most `--clients`).
const CONCURRENT_LISTS: usize = 4;

/// Time for the server's allocator and background tasks to settle before reading its RSS.
const SETTLE: Duration = Duration::from_secs(2);

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.clients < CONCURRENT_LISTS || args.pods == 0 || args.per_namespace == 0 {
        bail!(
            "--clients must be at least {CONCURRENT_LISTS}, --pods and --per-namespace at least 1"
        );
    }
    let bin = server::krust_binary(args.krust.clone())?;
    let load_before = load_average();
    let started = Instant::now();
    eprintln!("starting {} server", bin.display());
    let server = KrustServer::start(&bin)?;
    eprintln!("server ready, pid {}", server.pid());
    if args.authz_overhead {
        return authz_overhead(&args, &bin, server, &load_before, started).await;
    }
    let results = match measure(&args, &server).await {
        Ok(results) => results,
        Err(e) => bail!("{e:?}\n--- server log (tail) ---\n{}", server.log_tail()),
    };
    // Stopping checks the server is still alive: figures from a crashed server mean nothing.
    server.stop()?;
    print_report(&args, &results, &load_before, started.elapsed());
    Ok(())
}

async fn measure(args: &Args, server: &KrustServer) -> Result<report::Results> {
    tokio::time::sleep(SETTLE).await;
    let rss_idle = server.rss()?;
    let config = kube_config(server).await?;
    let clients = (0..args.clients)
        .map(|_| Client::try_from(config.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    let layout = Arc::new(Layout::new(args.pods, args.per_namespace));
    eprintln!("creating {} namespaces", layout.namespaces.len());
    load::create_namespaces(&clients[0], &layout).await?;

    eprintln!("create: {} pods, {} clients", args.pods, args.clients);
    let creates = load::creates(&clients, &layout).await?;
    phase_done("create", &creates);
    eprintln!("get: {} gets", args.gets);
    let gets = load::gets(&clients, &layout, args.gets).await?;
    phase_done("get", &gets);
    eprintln!("namespace list: {} lists", args.lists);
    let lists = load::lists(&clients, &layout, args.lists).await?;
    phase_done("namespace list", &lists);
    // The same lists from one client: what one list costs when the CPUs are not shared with 15
    // other clients, to tell queueing from per-request cost.
    let lists_alone = load::lists(&clients[..1], &layout, args.lists / 5).await?;
    phase_done("namespace list, 1 client", &lists_alone);
    tokio::time::sleep(SETTLE).await;
    let rss_created = server.rss()?;

    let mut big_lists = Vec::new();
    for variant in Variant::ALL {
        eprintln!("list all {} pods: {}", args.pods, variant.label());
        let list = biglist::measure(&clients[0], variant, args.big_list_rounds, args.pods).await?;
        eprintln!("  {}", list.latency.brief());
        big_lists.push(list);
    }
    tokio::time::sleep(SETTLE).await;
    let rss_stored = server.rss()?;
    eprintln!("{CONCURRENT_LISTS} concurrent cluster-wide JSON lists");
    let slowest = biglist::concurrent_json(&clients[..CONCURRENT_LISTS], args.pods).await?;
    let rss_concurrent = server.rss()?;
    let concurrent = report::Concurrent {
        lists: CONCURRENT_LISTS,
        slowest,
        peak_kib: rss_concurrent.peak_kib,
    };
    drop(clients);
    eprintln!(
        "RSS idle {:.1} MB, with {} pods {:.1} MB, after the big lists {:.1} MB",
        stats::megabytes(rss_idle.current_kib),
        args.pods,
        stats::megabytes(rss_created.current_kib),
        stats::megabytes(rss_stored.current_kib)
    );

    eprintln!("watch: {} watchers", args.watchers);
    let watch = watch::run(&config, server, args.watchers, args.watch_updates).await?;
    eprintln!("  {}", watch.from_response.brief());
    Ok(report::Results {
        clients: args.clients,
        pods: args.pods,
        per_namespace: args.pods / layout.namespaces.len(),
        creates,
        gets,
        lists,
        lists_alone,
        big_lists,
        rss_idle,
        rss_created,
        rss_stored,
        concurrent,
        watch,
    })
}

async fn authz_overhead(
    args: &Args,
    bin: &std::path::Path,
    server: KrustServer,
    load_before: &str,
    started: Instant,
) -> Result<()> {
    let params = authz::Params {
        clients: args.clients,
        pods: args.pods,
        per_namespace: args.per_namespace,
        gets: args.gets,
        lists: args.lists,
        creates: args.creates,
        rbac_objects: args.rbac_objects,
        rounds: args.rounds,
    };
    let config = kube_config(&server).await?;
    let table = match authz::run(bin, &server, config, &params).await {
        Ok(table) => table,
        Err(e) => bail!("{e:?}\n--- server log (tail) ---\n{}", server.log_tail()),
    };
    server.stop()?;
    println!(
        "{} CPUs; load average (1/5/15 min) {load_before} before, {} after; run took {:.0} s.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average(),
        started.elapsed().as_secs_f64()
    );
    println!("{table}");
    Ok(())
}

fn phase_done(name: &str, phase: &load::Phase) {
    eprintln!(
        "  {name}: {:.0}/s, {}",
        phase.per_second(),
        phase.latency.brief()
    );
}

/// The admin kubeconfig the server wrote: a client certificate, as kubectl uses it.
async fn kube_config(server: &KrustServer) -> Result<kube::Config> {
    let path = server.kubeconfig();
    let kubeconfig =
        Kubeconfig::read_from(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn print_report(args: &Args, results: &report::Results, load_before: &str, took: Duration) {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "{} CPUs; load average (1/5/15 min) {load_before} before, {} after; run took {:.0} s.\n",
        cpus,
        load_average(),
        took.as_secs_f64()
    );
    println!("{}", report::markdown(results));
    println!(
        "Setup: {} pods in {} namespaces of {}; {} gets; {} namespace lists; {} rounds per \
         cluster-wide list; {} watchers × {} updates of one ConfigMap, {:?} apart. Latencies \
         are measured in the kube-rs client (HTTP/1.1, one connection per client or watch).",
        args.pods,
        args.pods.div_ceil(args.per_namespace),
        args.per_namespace,
        args.gets,
        args.lists,
        args.big_list_rounds,
        args.watchers,
        args.watch_updates,
        watch::GAP
    );
}
