//! One module per subcommand.

mod add_node;
mod agent;
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
        Command::Agent(args) => agent::run(args),
        Command::Enable { feature, data } => rbac::run(&data.data_dir, &feature, true),
        Command::Disable { feature, data } => rbac::run(&data.data_dir, &feature, false),
        Command::Images { command } => images::run(command),
        Command::AddNode { ttl, data } => add_node::run(&data.data_dir, ttl.as_deref()),
        Command::Join { .. } | Command::RemoveNode { .. } => {
            not_yet::run("krust join/remove-node", "the cluster agent")
        }
    }
}
