//! `krust images import FILE.tar` and `krust images ls`: images without a registry, against the
//! containerd of the data dir (`<data-dir>/containerd/containerd.sock`).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use kubelet::containerd::Paths;
use kubelet::cri::Cri;

use crate::cli::{ImagesCommand, Output};

pub fn run(command: ImagesCommand) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        match command {
            ImagesCommand::Import { file, data } => import(&file, &data.data_dir).await,
            ImagesCommand::Ls { data, output } => ls(&data.data_dir, output).await,
        }
    })
}

async fn import(file: &Path, data_dir: &Path) -> Result<ExitCode> {
    let socket = Paths::new(data_dir).socket;
    // Drawn on stderr only when it is a terminal: scripts see the result lines alone.
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "{spinner} {msg:28} [{bar:30}] {binary_bytes}/{binary_total_bytes}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    let result = kubelet::images::import(&socket, file, &bar).await;
    bar.finish_and_clear();
    let imported = match result {
        Err(kubelet::images::ImportError::NotRunning { socket }) => bail!(not_running(&socket)),
        other => other?,
    };
    for image in imported {
        println!("imported {} ({})", image.name, image.digest);
    }
    Ok(ExitCode::SUCCESS)
}

async fn ls(data_dir: &Path, output: Output) -> Result<ExitCode> {
    let socket = Paths::new(data_dir).socket;
    if !socket.exists() {
        bail!(not_running(&socket));
    }
    let cri = Cri::connect(&socket)?;
    let images = cri
        .list_images()
        .await
        .with_context(|| format!("cannot list images from {}", socket.display()))?;
    let mut rows: Vec<(String, String, u64)> = Vec::new();
    for image in &images {
        let names: Vec<String> = if image.repo_tags.is_empty() {
            match image.repo_digests.first() {
                Some(d) => vec![format!("{}:<none>", d.split('@').next().unwrap_or(d))],
                None => vec!["<none>".to_string()],
            }
        } else {
            image.repo_tags.clone()
        };
        for name in names {
            rows.push((name, image.id.clone(), image.size));
        }
    }
    rows.sort();
    match output {
        Output::Json => {
            let items: Vec<serde_json::Value> = rows
                .iter()
                .map(|(name, id, size)| serde_json::json!({"image": name, "id": id, "size": size}))
                .collect();
            println!("{}", serde_json::to_string_pretty(&items)?);
        }
        Output::Table => {
            let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(5);
            println!("{:width$}  {:13}  SIZE", "IMAGE", "ID");
            for (name, id, size) in &rows {
                let short: String = id.trim_start_matches("sha256:").chars().take(13).collect();
                println!("{name:width$}  {short:13}  {}", human_size(*size));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The sentence for a data dir whose containerd does not answer.
fn not_running(socket: &Path) -> String {
    format!(
        "containerd is not running at {}: start `krust server` (its node agent runs containerd unless --disable-agent), or give the data dir of the krust that runs it with --data-dir",
        socket.display()
    )
}

/// Sizes as crictl prints them (powers of 1000).
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        let number = format!("{value:.3}");
        let number = number.trim_end_matches('0').trim_end_matches('.');
        format!("{number}{}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::human_size;

    #[test]
    fn sizes() {
        assert_eq!(human_size(512), "512B");
        assert_eq!(human_size(1_031_618), "1.032MB");
        assert_eq!(human_size(2_000_000), "2MB");
    }
}
