//! `krust version`.

use std::process::ExitCode;

use anyhow::Result;

/// The Kubernetes API version krust serves; kubectl 1.27-1.33 accept it (skew policy).
pub const KUBERNETES_VERSION: &str = "v1.33.0";

pub fn run() -> Result<ExitCode> {
    println!("krust {}", env!("CARGO_PKG_VERSION"));
    println!("Kubernetes {KUBERNETES_VERSION}");
    Ok(ExitCode::SUCCESS)
}
