//! Kubelet benchmark (issue 8): pod startup latency and the node's memory, measured on a real
//! `krust server` with its node agent on a real containerd, in a network namespace of its own.
//!
//! - 100 pods (the locally built busybox, `sleep 3600`, image present) created at a steady 5
//!   pods/s: latency from each create request to the first watch event showing it `Running`
//!   (upstream's pod startup SLI), p50 / p99 / max;
//! - the same pods deleted, then 100 created at once: time from the first create to the last
//!   pod seen Running;
//! - memory at 0 and 100 pods: the server process, containerd (the server's child) and the
//!   pods' containerd shims (RSS and PSS). `krust server` runs the kubelet in its own process,
//!   so the kubelet's share is estimated as the server's RSS minus that of a second server
//!   started with `--disable-agent` holding the same number of pods (Pending there: no node).
//!
//! ```sh
//! bench/kubelet/run.sh                  # builds the release binary, then runs this
//! cargo run --release -p krust --example kubelet_bench -- --pods 100 --rate 5
//! ```
//!
//! Needs root (containerd, runc, the CNI plugins, a network namespace). Progress goes to
//! stderr, the report (markdown) to stdout.

#[path = "kubelet_bench/node.rs"]
mod node;
#[path = "kubelet_bench/pods.rs"]
mod pods;
#[path = "kubelet_bench/rss.rs"]
mod rss;
// Shared with api_bench, which uses more of it.
#[allow(dead_code)]
#[path = "api_bench/stats.rs"]
mod stats;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;

use crate::node::Node;
use crate::rss::{mib, Sample};
use crate::stats::{ms, Summary};

#[derive(Debug, Parser)]
#[command(about = "Pod startup latency and node memory of a real krust node")]
struct Args {
    /// The krust binary [default: $CARGO_TARGET_DIR/release/krust, else target/release/krust].
    #[arg(long, env = "KRUST_BIN")]
    krust: Option<PathBuf>,
    /// Where busybox.tar and pause.tar are (scripts/build-images.sh builds them).
    #[arg(
        long,
        env = "KRUST_IMAGES_DIR",
        default_value = "/var/cache/krust-images"
    )]
    images: PathBuf,
    /// Pods per phase.
    #[arg(long, default_value_t = 100)]
    pods: usize,
    /// Creates per second in the steady phase.
    #[arg(long, default_value_t = 5.0)]
    rate: f64,
    /// Stay in the current network namespace (the agent then adds its bridge and rules there).
    #[arg(long)]
    no_netns: bool,
    /// Skip the `--disable-agent` reference server (no kubelet share of the memory then).
    #[arg(long)]
    no_reference: bool,
    /// Copy the agent server's log here at the end (to read the kubelet's phases).
    #[arg(long)]
    keep_log: Option<PathBuf>,
}

/// Time for the processes' memory and background work to settle before a sample.
const SETTLE: Duration = Duration::from_secs(5);
/// How long a phase's pods may take to be Running (or gone) before the run fails.
const PHASE_TIMEOUT: Duration = Duration::from_secs(180);

/// Upstream's pod startup SLO (images present): p99 ≤ 5 s.
const SLO_P99: Duration = Duration::from_secs(5);
/// krust's target at 5 pods/s.
const TARGET_P99: Duration = Duration::from_secs(1);
/// Upstream's node e2e memory limits for the kubelet (density tests), MiB.
const UPSTREAM_KUBELET_0: f64 = 200.0;
const UPSTREAM_KUBELET_100: f64 = 300.0;
/// krust's target for the kubelet at 100 pods, MiB.
const TARGET_KUBELET_100: f64 = 40.0;

fn main() -> Result<()> {
    let args = Args::parse();
    // Before the runtime starts its threads: they and every child inherit the namespace.
    if !args.no_netns {
        node::isolate_network()?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

struct Results {
    steady: Summary,
    steady_load: (String, String),
    burst: Summary,
    burst_all: Duration,
    burst_load: (String, String),
    idle: Sample,
    loaded: Sample,
    /// CPU seconds the server, containerd and the new shims spent on each phase's pods.
    steady_cpu: Cpu,
    burst_cpu: Cpu,
    reference: Option<(rss::Mem, rss::Mem)>,
}

async fn run(args: Args) -> Result<()> {
    let bin = krust_binary(args.krust.clone())?;
    if !args.images.join("busybox.tar").exists() || !args.images.join("pause.tar").exists() {
        bail!(
            "{} lacks busybox.tar or pause.tar: run scripts/build-images.sh {}",
            args.images.display(),
            args.images.display()
        );
    }
    let load_start = load_average();
    let started = Instant::now();
    eprintln!("starting {} server with its agent", bin.display());
    let mut node = Node::start(&bin, &args.images, true)?;
    let measured = measure(&args, &mut node).await;
    if let Some(path) = &args.keep_log {
        std::fs::copy(node.log_path(), path)
            .with_context(|| format!("copying the server log to {}", path.display()))?;
    }
    let mut results = match measured {
        Ok(r) => r,
        Err(e) => bail!("{e:?}\n--- server log (tail) ---\n{}", node.log_tail()),
    };
    drop(node);
    if !args.no_reference {
        eprintln!("reference: the same server with --disable-agent");
        results.reference = Some(reference(&bin, &args).await?);
    }
    report(&args, &results, &load_start, started.elapsed());
    Ok(())
}

async fn measure(args: &Args, node: &mut Node) -> Result<Results> {
    let client = client(&node.kubeconfig()).await?;
    pods::wait_node_ready(&client, Duration::from_secs(120)).await?;
    eprintln!("node Ready");
    let (seen, watch) = pods::watch_running(client.clone());

    // One pod first: the images' background import and the first CNI setup are not startup.
    let warm = pods::create(&client, "warmup", 1, None).await?;
    pods::wait_running(&seen, &warm, PHASE_TIMEOUT).await?;
    pods::delete_all(&client, PHASE_TIMEOUT).await?;
    tokio::time::sleep(SETTLE).await;
    node.check_alive()?;
    let idle = rss::sample(node.pid(), node.data_dir());
    eprintln!("0 pods: {}", brief(&idle));

    eprintln!("steady: {} pods at {}/s", args.pods, args.rate);
    let load_before = load_average();
    let sent = pods::create(&client, "steady", args.pods, Some(args.rate)).await?;
    let steady = Summary::of(pods::wait_running(&seen, &sent, PHASE_TIMEOUT).await?);
    let steady_load = (load_before, load_average());
    eprintln!("  {}", steady.brief());
    tokio::time::sleep(SETTLE).await;
    node.check_alive()?;
    let loaded = rss::sample(node.pid(), node.data_dir());
    let steady_cpu = Cpu::between(&idle, &loaded);
    eprintln!("{} pods: {}", args.pods, brief(&loaded));

    eprintln!("deleting");
    pods::delete_all(&client, PHASE_TIMEOUT).await?;
    tokio::time::sleep(SETTLE).await;

    eprintln!("burst: {} pods at once", args.pods);
    let before = rss::sample(node.pid(), node.data_dir());
    let load_before = load_average();
    let first = Instant::now();
    let sent = pods::create(&client, "burst", args.pods, None).await?;
    let latencies = pods::wait_running(&seen, &sent, PHASE_TIMEOUT).await;
    let latencies = match latencies {
        Ok(l) => l,
        Err(e) => bail!("{e} ({})", pods::phases(&client).await?),
    };
    let last = sent.iter().filter_map(|(n, _)| seen.get(n)).max();
    let burst_all = last.map_or(Duration::ZERO, |l| l.duration_since(first));
    let burst = Summary::of(latencies);
    let burst_load = (load_before, load_average());
    let burst_cpu = Cpu::between(&before, &rss::sample(node.pid(), node.data_dir()));
    eprintln!("  all Running after {}; {}", ms(burst_all), burst.brief());
    eprintln!("deleting ({} seen Running in all)", seen.count());
    pods::delete_all(&client, PHASE_TIMEOUT).await?;
    watch.abort();
    node.check_alive()?;
    Ok(Results {
        steady,
        steady_load,
        burst,
        burst_all,
        burst_load,
        idle,
        loaded,
        steady_cpu,
        burst_cpu,
        reference: None,
    })
}

/// The server's RSS without its agent, idle and with as many pods stored (Pending: no node).
async fn reference(bin: &Path, args: &Args) -> Result<(rss::Mem, rss::Mem)> {
    let mut node = Node::start(bin, &args.images, false)?;
    let client = client(&node.kubeconfig()).await?;
    pods::wait_service_account(&client, Duration::from_secs(60)).await?;
    // The same objects the agent server saw before its idle sample: one pod created and gone.
    pods::create(&client, "warmup", 1, None).await?;
    let api: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(client.clone(), pods::NAMESPACE);
    api.delete("warmup-0", &kube::api::DeleteParams::default())
        .await?;
    tokio::time::sleep(SETTLE).await;
    let idle = rss::of_pid(node.pid());
    pods::create(&client, "steady", args.pods, None).await?;
    tokio::time::sleep(SETTLE).await;
    node.check_alive()?;
    let loaded = rss::of_pid(node.pid());
    eprintln!(
        "reference: {:.1} MiB idle, {:.1} MiB with {} pods",
        mib(idle.rss_kib),
        mib(loaded.rss_kib),
        args.pods
    );
    Ok((idle, loaded))
}

/// CPU seconds spent between two samples (the shims of the later one are all new).
struct Cpu {
    server: f64,
    containerd: f64,
    shims: f64,
}

impl Cpu {
    fn between(before: &Sample, after: &Sample) -> Cpu {
        Cpu {
            server: after.server.cpu_secs - before.server.cpu_secs,
            containerd: after.containerd.cpu_secs - before.containerd.cpu_secs,
            shims: after.shims.cpu_secs,
        }
    }

    fn brief(&self) -> String {
        format!(
            "krust {:.1} s, containerd (with CNI plugins) {:.1} s, shims (with runc) {:.1} s",
            self.server, self.containerd, self.shims
        )
    }
}

async fn client(kubeconfig: &Path) -> Result<Client> {
    let kc = Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

fn brief(s: &Sample) -> String {
    format!(
        "server {:.1} MiB, containerd {:.1} MiB, {} shims {:.1} MiB RSS ({:.1} MiB PSS)",
        mib(s.server.rss_kib),
        mib(s.containerd.rss_kib),
        s.shims.processes,
        mib(s.shims.rss_kib),
        mib(s.shims.pss_kib)
    )
}

fn report(args: &Args, r: &Results, load_start: &str, took: Duration) {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "{cpus} CPUs; load average (1/5/15 min) {load_start} at the start, {} at the end; run \
         took {:.0} s.\n",
        load_average(),
        took.as_secs_f64()
    );
    println!("| measure | krust | upstream | krust/upstream | krust target |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    let s = &r.steady;
    println!("| startup p50 at {}/s | {} | | | |", args.rate, ms(s.p50));
    println!(
        "| startup p99 at {}/s | {} | SLO ≤ 5 s | {:.2}x | ≤ 1 s: {} |",
        args.rate,
        ms(s.p99),
        ratio(s.p99, SLO_P99),
        if s.p99 <= TARGET_P99 {
            "met"
        } else {
            "not met"
        }
    );
    println!("| startup max at {}/s | {} | | | |", args.rate, ms(s.max));
    println!(
        "| {} at once: all Running after | {} | | | |",
        args.pods,
        ms(r.burst_all)
    );
    println!(
        "| {} at once: p50 / p99 | {} / {} | SLO ≤ 5 s (p99) | {:.2}x | |",
        args.pods,
        ms(r.burst.p50),
        ms(r.burst.p99),
        ratio(r.burst.p99, SLO_P99)
    );
    if let Some((ref_idle, ref_loaded)) = r.reference {
        let kubelet =
            |with: &rss::Mem, without: &rss::Mem| mib(with.rss_kib) - mib(without.rss_kib);
        let k0 = kubelet(&r.idle.server, &ref_idle);
        let k100 = kubelet(&r.loaded.server, &ref_loaded);
        println!(
            "| kubelet RSS, 0 pods (server with agent − without) | {k0:.1} MiB | ≤ 200 MiB | \
             {:.2}x | |",
            k0 / UPSTREAM_KUBELET_0
        );
        println!(
            "| kubelet RSS, {} pods | {k100:.1} MiB | ≤ 300 MiB | {:.2}x | ≤ 40 MiB: {} |",
            args.pods,
            k100 / UPSTREAM_KUBELET_100,
            if k100 <= TARGET_KUBELET_100 {
                "met"
            } else {
                "not met"
            }
        );
        println!(
            "| server RSS without agent, 0 / {} pods | {:.1} / {:.1} MiB | | | |",
            args.pods,
            mib(ref_idle.rss_kib),
            mib(ref_loaded.rss_kib)
        );
    }
    println!(
        "| server RSS with agent, 0 / {} pods | {:.1} / {:.1} MiB | | | |",
        args.pods,
        mib(r.idle.server.rss_kib),
        mib(r.loaded.server.rss_kib)
    );
    println!(
        "| containerd RSS, 0 / {} pods | {:.1} / {:.1} MiB | | | |",
        args.pods,
        mib(r.idle.containerd.rss_kib),
        mib(r.loaded.containerd.rss_kib)
    );
    let shims = &r.loaded.shims;
    let per = |kib: u64| mib(kib) / shims.processes.max(1) as f64;
    println!(
        "| containerd shims at {} pods ({} shims): RSS sum (per shim) | {:.1} MiB ({:.2}) | | | |",
        args.pods,
        shims.processes,
        mib(shims.rss_kib),
        per(shims.rss_kib)
    );
    println!(
        "| containerd shims: PSS sum (per shim) | {:.1} MiB ({:.2}) | | | |",
        mib(shims.pss_kib),
        per(shims.pss_kib)
    );
    println!(
        "| runtime total at {} pods (containerd + shims, RSS) | {:.1} MiB | | | |",
        args.pods,
        mib(r.loaded.containerd.rss_kib + shims.rss_kib)
    );
    println!(
        "\nCPU time spent on the pods: steady {}; at once {}.",
        r.steady_cpu.brief(),
        r.burst_cpu.brief()
    );
    println!(
        "Load average (1/5/15 min) before → after each phase: steady {} → {}; at once {} → {}.",
        r.steady_load.0, r.steady_load.1, r.burst_load.0, r.burst_load.1
    );
    println!(
        "Startup latency: from sending each create to the first watch event with phase \
         Running, measured in the kube-rs client. Memory sampled {}s after the pods were \
         Running; 0 pods after a warm-up pod was created and deleted.",
        SETTLE.as_secs()
    );
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The krust binary to benchmark: `explicit`, else `$CARGO_TARGET_DIR/release/krust`, else the
/// workspace's `target/release/krust`.
fn krust_binary(explicit: Option<PathBuf>) -> Result<PathBuf> {
    let bin = match explicit {
        Some(path) => path,
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target")))
            .join("release/krust"),
    };
    if !bin.is_file() {
        bail!(
            "{} not found: run `cargo build --release -p krust` or pass --krust",
            bin.display()
        );
    }
    Ok(bin)
}
