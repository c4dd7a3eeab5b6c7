//! Subcommands whose component is not built yet say so plainly instead of pretending.

use std::process::ExitCode;

use anyhow::{bail, Result};

pub fn run(command: &str, component: &str) -> Result<ExitCode> {
    bail!("{command} is not available yet: {component} is not part of this build of krust; see the feature table in README.md")
}
