//! `krust kubectl ARGS...`: the real kubectl with the admin kubeconfig.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Result};

pub fn run(data_dir: &Path, args: &[String]) -> Result<ExitCode> {
    let kubeconfig = data_dir.join("credentials/client.config");
    if !kubeconfig.exists() {
        bail!(
            "{} does not exist: start the cluster with `krust server` (or `make up`) first",
            kubeconfig.display()
        );
    }
    // exec replaces this process, so kubectl's exit code and signals reach the caller unchanged.
    let err = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(args)
        .exec();
    bail!("cannot run kubectl ({err}): install kubectl or put it on PATH")
}
