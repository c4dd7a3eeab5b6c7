//! `krust`: one binary for the whole distribution. This file only turns the command line into a
//! command and a command's error into one sentence on stderr with a non-zero exit code.

mod cli;
mod commands;
mod pidfile;
mod server;
mod settings;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli.command) {
        Ok(code) => code,
        Err(err) => {
            // One line: the error and its causes, the way a person reads it.
            eprintln!("krust: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
