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
    if !matches!(cli.command, cli::Command::Server(_)) {
        restore_default_sigpipe();
    }
    match commands::run(cli.command) {
        Ok(code) => code,
        Err(err) => {
            // One line: the error and its causes, the way a person reads it.
            eprintln!("krust: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Rust ignores SIGPIPE, so `krust ports | head` would fail writing to a closed pipe. A
/// command-line tool should simply end there, as every Unix tool does; the server keeps Rust's
/// behaviour so a client hanging up never kills it.
fn restore_default_sigpipe() {
    // SAFETY: resetting a signal to its default disposition before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
