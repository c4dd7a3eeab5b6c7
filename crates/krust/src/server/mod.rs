//! `krust server`: one process that runs the control plane and stops it in order.
//!
//! Start order: settings → PKI → datastore → datastore endpoint → API server. SIGHUP (sent by
//! `krust refresh-certs` and `krust enable/disable rbac`) re-reads the PKI and settings: a changed
//! authorization mode goes to the running API server through a channel, with no restart; changed
//! certificates restart the listeners in process (the store stays open, so nothing is lost).
//! The node agent (`node`) starts once the API server is up, unless `--disable-agent`, and
//! lives across those restarts. SIGTERM/SIGINT stop the node agent, then the listeners, then
//! close the store.

mod apiserver;
mod datastore;
mod listeners;
mod logging;
mod node;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{Context, Result};
use ports::AuthorizationMode;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::cli::ServerArgs;
use crate::pidfile::PidFile;
use crate::settings::{LiveAuthorization, Settings};

pub fn run(args: ServerArgs) -> Result<ExitCode> {
    let data_dir = args.data.data_dir.clone();
    let settings = Settings::for_server(&args)?;
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    logging::init();
    let _pid = PidFile::create(&data_dir)?;
    settings.save(&data_dir)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(serve(args, settings))?;
    Ok(ExitCode::SUCCESS)
}

/// The control plane, and the node agent once the API server is up; the agent stops first.
async fn serve(args: ServerArgs, settings: Settings) -> Result<()> {
    let mut node = None;
    let result = serve_control_plane(&args, settings, &mut node).await;
    node::stop(node).await;
    result
}

async fn serve_control_plane(
    args: &ServerArgs,
    mut settings: Settings,
    node: &mut Option<node::NodeAgent>,
) -> Result<()> {
    let data_dir = &args.data.data_dir;
    ensure_pki(&settings, data_dir)?;
    let store = datastore::open(args, data_dir).await?;
    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let (mode, mode_updates) = watch::channel(settings.authorization_mode());
    settings.live_authorization = Some(LiveAuthorization(mode_updates));
    loop {
        let pki_at_start = pki_fingerprint(data_dir);
        let mut running = listeners::start(&settings, data_dir, store.clone()).await?;
        tracing::info!(profile = %settings.profile, "krust server is up");
        if node.is_none() {
            match node::start(args, &settings, data_dir).await {
                Ok(started) => *node = started,
                Err(e) => {
                    running.stop().await;
                    return Err(e);
                }
            }
        }
        loop {
            tokio::select! {
                _ = hangup.recv() => {
                    tracing::info!("SIGHUP: reloading certificates and settings");
                    // A bad config.yaml must not take down a running cluster: keep the mode.
                    let switched = reload_mode(&mut settings, data_dir, &mode).unwrap_or_else(|e| {
                        tracing::warn!("SIGHUP: keeping the current authorization mode: {e:#}");
                        false
                    });
                    if let Err(e) = ensure_pki(&settings, data_dir) {
                        running.stop().await;
                        return Err(e);
                    }
                    // A mode change alone is applied in place: watches and requests carry on.
                    if switched && pki_fingerprint(data_dir) == pki_at_start {
                        continue;
                    }
                    running.stop().await;
                    break;
                }
                _ = terminate.recv() => return shut_down(running, node.take()).await,
                _ = tokio::signal::ctrl_c() => return shut_down(running, node.take()).await,
                failed = running.failed() => {
                    running.stop().await;
                    return Err(failed);
                }
            }
        }
    }
}

/// Applies the authorization mode `krust enable/disable rbac` saved, if it changed; the rest of
/// the settings stay as the server started. True when the mode changed.
fn reload_mode(
    settings: &mut Settings,
    data_dir: &Path,
    mode: &watch::Sender<AuthorizationMode>,
) -> Result<bool> {
    let Some(saved) = Settings::load(data_dir)? else {
        return Ok(false);
    };
    if saved.authorization_mode == settings.authorization_mode {
        return Ok(false);
    }
    settings.authorization_mode = saved.authorization_mode;
    mode.send_replace(settings.authorization_mode());
    tracing::info!(mode = %settings.authorization_mode(), "authorization mode changed");
    Ok(true)
}

/// Size and modification time of every PKI file: a change means `krust refresh-certs` (or the
/// renewal at reload) rewrote something, and the listeners must restart to serve it.
fn pki_fingerprint(data_dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut files = Vec::new();
    for dir in ["certs", "credentials"] {
        let Ok(entries) = std::fs::read_dir(data_dir.join(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            if let Ok(meta) = entry.metadata() {
                files.push((entry.path(), meta.len(), meta.modified().ok()));
            }
        }
    }
    files.sort();
    files
}

async fn shut_down(running: listeners::Running, node: Option<node::NodeAgent>) -> Result<()> {
    tracing::info!("stopping");
    node::stop(node).await;
    running.stop().await;
    tracing::info!("stopped");
    Ok(())
}

/// Creates what is missing, renews what expires soon, and says so in the log.
fn ensure_pki(settings: &Settings, data_dir: &std::path::Path) -> Result<()> {
    let report = pki::ensure(&settings.pki_config(data_dir)?)?;
    for change in &report.changes {
        tracing::info!("pki: {change}");
    }
    for warning in &report.warnings {
        tracing::warn!("pki: {warning}");
    }
    Ok(())
}
