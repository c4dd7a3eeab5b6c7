//! One module per subcommand.

mod config;
mod images;
mod kubectl;
mod not_yet;
mod ports;
mod rbac;
mod refresh_certs;
mod status;

mod version;

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::Command;

pub fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Ports(args) => ports::run(args),
        Command::Version => version::run(),
        Command::Kubectl { data, args } => kubectl::run(&data.data_dir, &args),
        Command::Server(args) => crate::server::run(args),
        Command::Status(args) => status::run(args),
        Command::Config(args) => config::run(args),
        Command::RefreshCerts(args) => refresh_certs::run(args),
        Command::Agent(_) => anyhow::bail!(
            "krust agent is not available yet: joining a server needs the cluster agent's join tokens (krust add-node), which are not part of this build; `krust server` runs the node agent itself (--container-runtime-endpoint uses an existing containerd)"
        ),
        Command::Enable { feature, data } => rbac::run(&data.data_dir, &feature, true),
        Command::Disable { feature, data } => rbac::run(&data.data_dir, &feature, false),
        Command::Images { command } => images::run(command),
        Command::AddNode { .. } | Command::Join { .. } | Command::RemoveNode { .. } => {
            not_yet::run("krust add-node/join/remove-node", "the cluster agent")
        }
    }
}
