//! What the end-to-end tests share: the locally built image tarballs, root checks, free ports,
//! and a look for processes a test left behind.
#![allow(dead_code)]

pub mod netns;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

static BUILD: Mutex<()> = Mutex::new(());

/// The directory holding pause.tar and busybox.tar, built by scripts/build-images.sh when they
/// are missing (`make test` builds them first; a bare `cargo test` builds them here).
pub fn images_dir() -> PathBuf {
    let dir = std::env::var_os("KRUST_IMAGES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/krust-images"));
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    if !dir.join("pause.tar").exists() || !dir.join("busybox.tar").exists() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-images.sh");
        let status = Command::new("bash")
            .arg(&script)
            .arg(&dir)
            .status()
            .expect("run scripts/build-images.sh");
        assert!(status.success(), "scripts/build-images.sh failed");
    }
    dir
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Whether the machine can run these tests (root, containerd and runc installed); says why not.
pub fn can_run_containers() -> bool {
    if !is_root() {
        eprintln!("skipped: running containers needs root");
        return false;
    }
    for bin in ["/usr/bin/containerd", "/usr/bin/containerd-shim-runc-v2"] {
        if !Path::new(bin).exists() {
            panic!("{bin} is missing: run scripts/install-deps.sh (make deps)");
        }
    }
    true
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// PIDs of processes whose command line mentions `needle` (the test's data dir: containerd's
/// `--config`, each shim's `-address`).
pub fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    let me = std::process::id();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push((pid, cmdline));
        }
    }
    found
}

/// Waits (up to `limit`) until no process mentions `needle`; returns what is left.
pub fn wait_none_mentioning(needle: &str, limit: Duration) -> Vec<(u32, String)> {
    let deadline = Instant::now() + limit;
    loop {
        let left = processes_mentioning(needle);
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Mounts under `dir` still in the mount table.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let table = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let dir = dir.to_string_lossy().to_string();
    table
        .lines()
        .filter(|l| l.split(' ').nth(1).is_some_and(|m| m.starts_with(&dir)))
        .map(|l| l.to_string())
        .collect()
}

/// Prints the end of containerd's log if the test fails while this guard lives.
pub struct DumpLogOnPanic(pub PathBuf);

impl Drop for DumpLogOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.0).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!("--- end of {} ---\n{}", self.0.display(), tail.join("\n"));
        }
    }
}

/// Rewrites an OCI image-layout tarball with one gzip layer (as scripts/build-images.sh makes
/// them) as a gzip-compressed docker archive, the way `docker save IMAGE | gzip` writes one:
/// manifest.json, the config as `<hex>.json`, the layer uncompressed as `<id>/layer.tar`, and a
/// second layer entry that is a symlink to the first (docker links repeated layers).
pub fn docker_archive_from_oci(oci: &Path, out: &Path, tag: &str) {
    use std::io::Read;
    let mut blobs = std::collections::HashMap::new();
    let mut archive = tar::Archive::new(std::fs::File::open(oci).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        blobs.insert(path, bytes);
    }
    let json = |name: &str| -> serde_json::Value { serde_json::from_slice(&blobs[name]).unwrap() };
    let blob = |digest: &str| format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
    let index = json("index.json");
    let manifest = json(&blob(index["manifests"][0]["digest"].as_str().unwrap()));
    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    let config = blobs[&blob(config_digest)].clone();
    let layer_gz = &blobs[&blob(manifest["layers"][0]["digest"].as_str().unwrap())];
    let mut layer = Vec::new();
    flate2::read::GzDecoder::new(&layer_gz[..])
        .read_to_end(&mut layer)
        .unwrap();
    // Two layers in the config: the same diff twice (a layer that changes nothing on top).
    let mut config_json: serde_json::Value = serde_json::from_slice(&config).unwrap();
    let diff_id = config_json["rootfs"]["diff_ids"][0].clone();
    config_json["rootfs"]["diff_ids"] = serde_json::json!([diff_id, diff_id]);
    let config = serde_json::to_vec(&config_json).unwrap();
    let config_name = format!("{}.json", hex_sha256(&config));

    let file = std::fs::File::create(out).unwrap();
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    let mut add = |name: &str, bytes: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, bytes).unwrap();
    };
    add(&config_name, &config);
    add("aaaa/layer.tar", &layer);
    let manifest_json = serde_json::json!([{
        "Config": config_name,
        "RepoTags": [tag],
        "Layers": ["aaaa/layer.tar", "bbbb/layer.tar"],
    }]);
    add(
        "manifest.json",
        &serde_json::to_vec(&manifest_json).unwrap(),
    );
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_size(0);
    link.set_mode(0o777);
    builder
        .append_link(&mut link, "bbbb/layer.tar", "../aaaa/layer.tar")
        .unwrap();
    builder.into_inner().unwrap().finish().unwrap();
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
