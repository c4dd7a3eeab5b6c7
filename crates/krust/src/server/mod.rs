//! `krust server`: one process that runs the control plane and stops it in order.
//!
//! Start order: settings → PKI → datastore → datastore endpoint → API server. SIGHUP (sent by
//! `krust refresh-certs` and `krust enable rbac`) re-reads the PKI and settings and restarts the
//! listeners in process: the store stays open, so nothing is lost. SIGTERM/SIGINT stop the
//! listeners first, then close the store.

mod apiserver;
mod datastore;
mod listeners;
mod logging;

use std::process::ExitCode;

use anyhow::{Context, Result};
use tokio::signal::unix::{signal, SignalKind};

use crate::cli::ServerArgs;
use crate::pidfile::PidFile;
use crate::settings::Settings;

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

async fn serve(args: ServerArgs, mut settings: Settings) -> Result<()> {
    let data_dir = &args.data.data_dir;
    ensure_pki(&settings, data_dir)?;
    let store = datastore::open(&args, data_dir).await?;
    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    loop {
        let mut running = listeners::start(&settings, data_dir, store.clone()).await?;
        tracing::info!(profile = %settings.profile, "krust server is up");
        tokio::select! {
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading certificates and settings");
                running.stop().await;
                // `krust enable rbac` rewrote the saved settings; keep the rest as started.
                if let Some(saved) = Settings::load(data_dir)? {
                    settings.authorization_mode = saved.authorization_mode;
                }
                ensure_pki(&settings, data_dir)?;
            }
            _ = terminate.recv() => return shut_down(running).await,
            _ = tokio::signal::ctrl_c() => return shut_down(running).await,
            failed = running.failed() => {
                running.stop().await;
                return Err(failed);
            }
        }
    }
}

async fn shut_down(running: listeners::Running) -> Result<()> {
    tracing::info!("stopping");
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
