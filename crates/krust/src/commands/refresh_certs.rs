//! `krust refresh-certs [--cert NAME] [--check]`.

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cli::RefreshCertsArgs;
use crate::settings::Settings;

pub fn run(args: RefreshCertsArgs) -> Result<ExitCode> {
    let data_dir = &args.data.data_dir;
    if args.check {
        return check(data_dir);
    }
    let which = args
        .cert
        .as_deref()
        .map(str::parse::<pki::CertName>)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let settings = Settings::load_or_default(data_dir)?;
    let report = pki::refresh(&settings.pki_config(data_dir)?, which)
        .context("refreshing certificates failed")?;
    for change in &report.changes {
        println!("{change}");
    }
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    if crate::pidfile::signal_reload(data_dir) {
        println!("the running server reloads its certificates now");
    }
    Ok(ExitCode::SUCCESS)
}

fn check(data_dir: &std::path::Path) -> Result<ExitCode> {
    let infos = pki::check(data_dir).with_context(|| {
        format!(
            "cannot read the certificates under {}",
            data_dir.join("certs").display()
        )
    })?;
    for info in &infos {
        println!("{info}");
    }
    if pki::any_expiring(&infos, pki::CHECK_WITHIN_DAYS) {
        eprintln!(
            "krust: a certificate expires within {} days: run `krust refresh-certs` to renew it",
            pki::CHECK_WITHIN_DAYS
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
