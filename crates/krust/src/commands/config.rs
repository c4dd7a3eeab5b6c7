//! `krust config`: the admin kubeconfig, pointed at this machine's primary address so it works
//! from another machine too.

use std::process::ExitCode;

use anyhow::{Context, Result};
use ports::Service;

use crate::cli::DataDirArgs;
use crate::settings::Settings;

pub fn run(args: DataDirArgs) -> Result<ExitCode> {
    let settings = Settings::load_or_default(&args.data_dir)?;
    let port = settings
        .port_map()?
        .port(Service::Apiserver)
        .context("the API server is turned off in this configuration")?;
    let url = format!("https://{}", host_port(pki::primary_address(), port));
    let kubeconfig = pki::admin_kubeconfig(&args.data_dir, &url).with_context(|| {
        format!(
            "no admin credentials in {}: start the server once with `krust server`",
            args.data_dir.display()
        )
    })?;
    print!("{kubeconfig}");
    Ok(ExitCode::SUCCESS)
}

/// `ADDR:PORT`, with IPv6 addresses in brackets as URLs need.
fn host_port(addr: std::net::IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(addr, port).to_string()
}
