//! `krust status [--wait-ready] [-o json]`: is the server up, which components listen on which
//! ports, the authorization mode, and the nodes.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use ports::{listening_sockets, Service};
use serde::Serialize;

use crate::cli::{Output, StatusArgs};
use crate::settings::Settings;

#[derive(Serialize)]
struct Status {
    running: bool,
    ready: bool,
    profile: String,
    authorization_mode: String,
    rbac: bool,
    components: Vec<Component>,
    nodes: Vec<NodeSummary>,
}

#[derive(Serialize)]
struct NodeSummary {
    name: String,
    /// The Ready condition's status: True, False or Unknown.
    ready: String,
    /// The pod range nodeipam gave it.
    pod_cidr: Option<String>,
}

impl NodeSummary {
    fn of(node: Node) -> NodeSummary {
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.clone())
            .unwrap_or_else(|| "Unknown".into());
        NodeSummary {
            name: node.metadata.name.unwrap_or_default(),
            ready,
            pod_cidr: node.spec.and_then(|s| s.pod_cidr),
        }
    }
}

#[derive(Serialize)]
struct Component {
    service: Service,
    port: u16,
    listening: bool,
}

pub fn run(args: StatusArgs) -> Result<ExitCode> {
    let data_dir = &args.data.data_dir;
    let runtime = tokio::runtime::Runtime::new()?;
    let client = match args.wait_ready {
        true => runtime.block_on(wait_ready(data_dir, Duration::from_secs(args.timeout)))?,
        false => runtime.block_on(admin_client(data_dir))?,
    };
    let Some(settings) = Settings::load(data_dir)? else {
        bail!(not_started(data_dir));
    };
    let status = runtime.block_on(collect(&settings, data_dir, &client))?;
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&status)?),
        Output::Table => print(&status),
    }
    Ok(if status.ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn not_started(data_dir: &std::path::Path) -> String {
    format!(
        "no krust server has been started with {}: run `krust server` (or `make up`) first",
        data_dir.display()
    )
}

pub(super) async fn admin_client(data_dir: &std::path::Path) -> Result<kube::Client> {
    let path = data_dir.join("credentials/client.config");
    if !path.exists() {
        bail!(not_started(data_dir));
    }
    let kubeconfig = kube::config::Kubeconfig::read_from(&path)
        .with_context(|| format!("cannot read the admin kubeconfig {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

async fn is_ready(client: &kube::Client) -> bool {
    let req = http::Request::get("/readyz").body(Vec::new());
    match req {
        Ok(req) => client
            .request_text(req)
            .await
            .is_ok_and(|t| t.trim() == "ok"),
        Err(_) => false,
    }
}

/// Waits, with a spinner, for a server that may still be starting: its admin kubeconfig to be
/// written, then /readyz to answer ok; gives up after `timeout`.
async fn wait_ready(data_dir: &std::path::Path, timeout: Duration) -> Result<kube::Client> {
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_message("waiting for the API server to be ready");
    spinner.enable_steady_tick(Duration::from_millis(120));
    let start = Instant::now();
    loop {
        if let Ok(client) = admin_client(data_dir).await {
            if is_ready(&client).await {
                let secs = start.elapsed().as_secs_f64();
                spinner.finish_with_message(format!("ready after {secs:.1}s"));
                return Ok(client);
            }
        }
        if start.elapsed() > timeout {
            spinner.finish_and_clear();
            bail!(
                "the API server was not ready after {}s: see the server's log",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn collect(
    settings: &Settings,
    data_dir: &std::path::Path,
    client: &kube::Client,
) -> Result<Status> {
    let map = settings.port_map()?;
    let listening = listening_sockets();
    let components = map
        .rows()
        .filter_map(|r| {
            let port = r.listen_port()?;
            Some(Component {
                service: r.service,
                port,
                listening: listening.contains(r.protocol(), port),
            })
        })
        .collect();
    let ready = is_ready(client).await;
    let nodes = match ready {
        true => Api::<Node>::all(client.clone())
            .list(&ListParams::default())
            .await
            .map(|l| l.items.into_iter().map(NodeSummary::of).collect())
            .unwrap_or_default(),
        false => Vec::new(),
    };
    let mode = settings.authorization_mode();
    Ok(Status {
        running: crate::pidfile::running_pid(data_dir).is_some(),
        ready,
        profile: settings.profile.clone(),
        authorization_mode: mode.to_string(),
        rbac: mode == ports::AuthorizationMode::NodeRbac,
        components,
        nodes,
    })
}

fn print(s: &Status) {
    let state = match (s.running, s.ready) {
        (_, true) => "running, ready",
        (true, false) => "running, not ready",
        (false, false) => "not running",
    };
    println!("krust: {state}");
    println!("profile: {}", s.profile);
    println!(
        "authorization: {} (rbac {})",
        s.authorization_mode,
        if s.rbac { "on" } else { "off" }
    );
    println!("components:");
    for c in &s.components {
        let l = if c.listening {
            "listening"
        } else {
            "not listening"
        };
        println!("  {:<28} {:>6}  {l}", c.service.key(), c.port);
    }
    if s.nodes.is_empty() {
        println!("nodes: none (the server runs with --disable-agent, or its agent is starting)");
        return;
    }
    println!("nodes:");
    for n in &s.nodes {
        let state = if n.ready == "True" {
            "Ready"
        } else {
            "NotReady"
        };
        let cidr = n.pod_cidr.as_deref().unwrap_or("no pod CIDR yet");
        println!("  {:<28} {state:<9} pods {cidr}", n.name);
    }
}
