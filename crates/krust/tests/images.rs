//! `krust images import` and `krust images ls`, as a user runs them: against a real containerd
//! (started here through the kubelet crate, as `krust server` will) and with bad input.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use support::KRUST;

fn krust(args: &[&str], data_dir: &Path) -> Output {
    Command::new(KRUST)
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("run krust")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One line on stderr, `krust: ...`, and a failure exit code.
fn assert_one_sentence(out: &Output, contains: &str) {
    assert!(!out.status.success(), "{out:?}");
    let err = stderr(out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.starts_with("krust: "), "{err}");
    assert!(err.contains(contains), "{err}");
}

#[test]
fn a_bad_tarball_gives_one_clear_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.tar");
    std::fs::write(&bad, b"this is not a tarball, just some bytes").unwrap();
    let out = krust(&["images", "import", bad.to_str().unwrap()], dir.path());
    assert_one_sentence(&out, "bad.tar is not an image archive");

    // A real tar that holds no image.
    let plain = dir.path().join("plain.tar");
    let mut builder = tar::Builder::new(std::fs::File::create(&plain).unwrap());
    let mut header = tar::Header::new_gnu();
    header.set_size(2);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, "hello.txt", &b"hi"[..])
        .unwrap();
    builder.finish().unwrap();
    drop(builder);
    let out = krust(&["images", "import", plain.to_str().unwrap()], dir.path());
    assert_one_sentence(&out, "neither index.json");

    let out = krust(&["images", "import", "/nonexistent/x.tar"], dir.path());
    assert_one_sentence(&out, "cannot open /nonexistent/x.tar");
}

#[test]
fn without_containerd_the_commands_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = krust(&["images", "ls"], dir.path());
    assert_one_sentence(&out, "containerd is not running");
    assert!(stderr(&out).contains("krust server"), "{}", stderr(&out));
}

fn images_dir() -> PathBuf {
    let dir = std::env::var_os("KRUST_IMAGES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/krust-images"));
    if !dir.join("busybox.tar").exists() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-images.sh");
        let status = Command::new("bash").arg(script).arg(&dir).status().unwrap();
        assert!(status.success(), "scripts/build-images.sh failed");
    }
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_and_list_on_a_real_containerd() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: running containerd needs root");
        return;
    }
    let images = images_dir();
    let dir = tempfile::Builder::new()
        .prefix("krust-images-cli-")
        .tempdir_in("/tmp")
        .unwrap();
    let data_dir = dir.path().to_path_buf();
    let containerd =
        kubelet::containerd::Containerd::start(kubelet::containerd::Config::new(&data_dir))
            .await
            .expect("containerd starts");

    let tarball = images.join("busybox.tar");
    let (d, t) = (data_dir.clone(), tarball.clone());
    let out =
        tokio::task::spawn_blocking(move || krust(&["images", "import", t.to_str().unwrap()], &d))
            .await
            .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out);
    assert!(
        printed.contains("imported localhost/krust/busybox:latest (sha256:"),
        "{printed}"
    );

    let d = data_dir.clone();
    let out = tokio::task::spawn_blocking(move || krust(&["images", "ls"], &d))
        .await
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("IMAGE") && header.contains("ID") && header.ends_with("SIZE"));
    let row = lines
        .find(|l| l.starts_with("localhost/krust/busybox:latest "))
        .unwrap_or_else(|| panic!("no busybox row in:\n{table}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols.len(), 3, "{row}");
    assert_eq!(cols[1].len(), 13, "{row}");
    assert!(cols[1].chars().all(|c| c.is_ascii_hexdigit()), "{row}");
    assert!(cols[2].ends_with("MB"), "{row}");

    let d = data_dir.clone();
    let out = tokio::task::spawn_blocking(move || krust(&["images", "ls", "-o", "json"], &d))
        .await
        .unwrap();
    let items: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(items
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["image"] == "localhost/krust/busybox:latest"
            && i["id"].as_str().unwrap().starts_with("sha256:")
            && i["size"].as_u64().unwrap() > 0));

    containerd.stop().await;
    assert_nothing_left(&data_dir);
}

/// Waits up to 10 s until no process mentions `data_dir` (containerd's --config, a shim's
/// -address).
fn assert_nothing_left(data_dir: &Path) {
    let needle = data_dir.to_string_lossy().into_owned();
    let me = std::process::id().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<String> = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy() != me)
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.contains(&needle))
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "left running: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `krust server`'s node agent runs containerd under the data dir, imports <data-dir>/images/
/// once, and stops containerd when it stops.
#[test]
fn server_runs_containerd_and_imports_its_image_dir() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: running containerd needs root");
        return;
    }
    let images = images_dir();
    support::isolate_network();
    let mut server = support::Server::with_agent(&[]);
    let drop_dir = server.path("images");
    std::fs::create_dir_all(&drop_dir).unwrap();
    std::fs::copy(images.join("pause.tar"), drop_dir.join("pause.tar")).unwrap();
    server.start();
    // The node agent imports the image dir in the background once the API server is up.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let out = loop {
        let out = server.krust(&["images", "ls"]);
        let listed = out.status.success() && stdout(&out).contains("localhost/krust/pause:3.10 ");
        if listed || std::time::Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("localhost/krust/pause:3.10 "),
        "{}",
        stdout(&out)
    );
    let state = std::fs::read_to_string(server.path("containerd/imported-images.json")).unwrap();
    assert!(state.contains("pause.tar"), "{state}");
    server.stop();
    assert_nothing_left(server.data_dir());
    assert!(!server.path("containerd/containerd.pid").exists());
}
