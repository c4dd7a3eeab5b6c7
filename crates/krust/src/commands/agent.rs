//! `krust agent --server URL --token T`: the node agent alone, on a machine that joins a
//! `krust server` (issue 8: "`krust agent` runs it alone"). The first start joins through
//! `kubelet::bootstrap` (CA pinned by the token, kubelet certificates requested and awaited,
//! progress on stderr); later starts reuse the credentials in the data dir. Then the same node
//! agent `krust server` runs: containerd managed under the data dir (or
//! `--container-runtime-endpoint`), the kubelet API on the port map's kubelet rows.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use kubelet::agent::AgentConfig;
use kubelet::bootstrap::{BootstrapConfig, JoinToken};
use ports::Service;
use tokio::signal::unix::{signal, SignalKind};

use crate::cli::AgentArgs;
use crate::settings::Settings;

/// The same default hard eviction thresholds as `krust server`'s agent.
const EVICTION_HARD: &str = "memory.available<100Mi,nodefs.available<5%";

pub fn run(args: AgentArgs) -> Result<ExitCode> {
    let data_dir = args.data.data_dir.clone();
    let mut settings = Settings::new(args.layout.profile.unwrap_or_default());
    settings.ports = args.layout.ports.iter().map(|o| o.to_string()).collect();
    if let Some(name) = &args.node_name {
        settings.node_name = name.clone();
    }
    let map = settings.port_map()?;
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    init_logging();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        join(&args, &settings.node_name, &data_dir).await?;
        serve(&args, &settings.node_name, &map, &data_dir).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Joins unless this data dir already holds a joined node's credentials.
async fn join(args: &AgentArgs, node_name: &str, data_dir: &Path) -> Result<()> {
    if kubelet::bootstrap::joined(data_dir) {
        eprintln!(
            "Using the credentials of an earlier join in {}",
            data_dir.display()
        );
        return Ok(());
    }
    let (Some(server), Some(token)) = (&args.server, &args.token) else {
        bail!("this machine has not joined a cluster yet: give --server and --token as `krust add-node` printed them");
    };
    let token: JoinToken = token.parse()?;
    let config = BootstrapConfig {
        server: server.trim_end_matches('/').to_string(),
        token,
        node_name: node_name.to_string(),
        data_dir: data_dir.to_path_buf(),
        serving_sans: serving_sans(node_name),
    };
    let progress = |line: &str| eprintln!("{line}");
    kubelet::bootstrap::bootstrap(&config, &progress).await?;
    eprintln!("Joined {server} as node {node_name}");
    Ok(())
}

/// The kubelet serving certificate's names: the node name, localhost and every address of the
/// machine (the node's InternalIP among them).
fn serving_sans(node_name: &str) -> Vec<pki::San> {
    let mut sans = vec![pki::San::Dns(node_name.to_string())];
    if node_name != "localhost" {
        sans.push(pki::San::Dns("localhost".into()));
    }
    sans.push(pki::San::Ip(std::net::Ipv4Addr::LOCALHOST.into()));
    for ip in pki::machine_addresses() {
        if !ip.is_loopback() {
            sans.push(pki::San::Ip(ip));
        }
    }
    sans
}

/// Runs the node agent until SIGTERM or SIGINT, then stops it (containers keep running).
async fn serve(
    args: &AgentArgs,
    node_name: &str,
    map: &ports::PortMap,
    data_dir: &Path,
) -> Result<()> {
    let mut config = AgentConfig::new(data_dir, node_name);
    config.container_runtime_endpoint = args.container_runtime_endpoint.clone();
    config.containerd_metrics = map.addr(Service::ContainerdMetrics);
    config.node.kubelet_port = map.port(Service::Kubelet).unwrap_or(10250);
    let paths = pki::Paths::new(data_dir);
    config.server = Some(kubelet::server::Config {
        secure: map.addr(Service::Kubelet),
        read_only: map.addr(Service::KubeletReadonly),
        healthz: map.addr(Service::KubeletHealthz),
        cert: paths.kubelet_crt.clone(),
        key: paths.kubelet_key.clone(),
        client_ca: paths.ca_crt.clone(),
    });
    let thresholds = args.eviction_hard.as_deref().unwrap_or(EVICTION_HARD);
    config.node.eviction_hard = thresholds
        .parse()
        .map_err(|e| anyhow::anyhow!("--eviction-hard {thresholds:?}: {e}"))?;
    // Node-pressure eviction on the hard thresholds, as `krust server`'s agent by default.
    let eviction = kubelet::eviction::thresholds::parse(thresholds, "", "")
        .map_err(|e| anyhow::anyhow!("--eviction-hard {thresholds:?}: {e}"))?;
    config.eviction = Some(kubelet::eviction::Config {
        thresholds: eviction,
        ..Default::default()
    });
    let mut terminate = signal(SignalKind::terminate())?;
    let agent = kubelet::agent::start(config)
        .await
        .context("cannot start the node agent")?;
    tracing::info!(node = %node_name, "krust agent is up");
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM: stopping"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
    }
    agent.stop().await;
    Ok(())
}

/// Logs through `tracing` to stderr, as `krust server` does (`RUST_LOG` overrides `info`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
