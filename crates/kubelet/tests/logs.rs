//! Container logs: files written by a real containerd for busybox containers (host network in
//! the test's own namespace), read with upstream's options; and a hand-written CRI log file for
//! following across rotation. The containerd tests need root (skipped, saying so, without).

mod probe_support;
mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::jiff::Timestamp;
use kubelet::logs::{self, LogError, LogOptions};
use probe_support::Node;

/// Everything a log stream gives within `limit` (panics if it has not ended by then).
async fn collect<S: Stream<Item = Result<bytes::Bytes, LogError>>>(
    stream: S,
    limit: Duration,
) -> String {
    let all = tokio::time::timeout(limit, stream.collect::<Vec<_>>())
        .await
        .expect("the log stream ended");
    let mut text = Vec::new();
    for chunk in all {
        text.extend_from_slice(&chunk.expect("log chunk"));
    }
    String::from_utf8(text).unwrap()
}

/// The timestamps containerd wrote, line by line.
fn file_timestamps(path: &std::path::Path) -> Vec<Timestamp> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| l.split(' ').next().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn container_logs_with_upstream_options() {
    if !support::can_run_containers() {
        return;
    }
    support::netns::run(async {
        let node = Node::start("krust-logs-").await;
        let sandbox = node.sandbox("writer").await;
        // A line on stderr (first: the two streams are separate pipes), five lines, one longer
        // than containerd's 16 KiB line buffer (written as partial entries), then it exits.
        let script = "echo oops >&2; sleep 0.5; i=1; while [ $i -le 5 ]; do echo line $i; \
                      i=$((i+1)); done; head -c 20000 /dev/zero | tr '\\0' x; echo; echo end";
        let id = node.container(&sandbox, "main", 0, script).await;
        node.wait_exited(&id, Duration::from_secs(10)).await;
        let file = logs::find(&node.cri, &node.layout, "default", "writer", "main", false)
            .await
            .unwrap();
        assert_eq!(file.container_id, id);
        assert_eq!(file.path, sandbox.log_dir.join("main/0.log"));
        assert!(!file.running);
        let raw = std::fs::read_to_string(&file.path).unwrap();
        assert!(
            raw.contains(" stdout P "),
            "containerd split the long line: {raw:.300}"
        );

        let read = |opts: LogOptions| {
            collect(
                logs::read_container(&node.cri, &file, opts),
                Duration::from_secs(10),
            )
        };
        let long = "x".repeat(20000);
        let all = read(LogOptions::default()).await;
        let expected = format!("oops\nline 1\nline 2\nline 3\nline 4\nline 5\n{long}\nend\n");
        assert!(all == expected, "{all:.200}");

        // tailLines counts the file's lines, as upstream: the long line's last piece and "end".
        let last_piece = raw
            .lines()
            .rev()
            .nth(1)
            .unwrap()
            .splitn(4, ' ')
            .nth(3)
            .unwrap();
        assert!(last_piece.len() < long.len());
        let tail = read(LogOptions {
            tail_lines: Some(2),
            ..Default::default()
        })
        .await;
        assert!(tail == format!("{last_piece}\nend\n"), "{tail:.100}");
        assert_eq!(
            read(LogOptions {
                tail_lines: Some(0),
                ..Default::default()
            })
            .await,
            ""
        );
        assert_eq!(
            read(LogOptions {
                limit_bytes: Some(10),
                ..Default::default()
            })
            .await,
            "oops\nline "
        );

        // Timestamps: each line (not each partial piece) starts with the time containerd wrote.
        let stamps = file_timestamps(&file.path);
        let with = read(LogOptions {
            timestamps: true,
            ..Default::default()
        })
        .await;
        let lines: Vec<&str> = with.lines().collect();
        assert_eq!(lines.len(), 8, "{with:.300}");
        assert_eq!(lines[0], format!("{} oops", stamps[0]));
        assert_eq!(lines[5], format!("{} line 5", stamps[5]));
        let (stamp, text) = lines[6].split_once(' ').unwrap();
        assert_eq!(stamp, stamps[6].to_string());
        assert_eq!(text, long);

        // since: nothing written after a future time; from a line's own time, that line on.
        let future = Timestamp::now() + Duration::from_secs(60);
        assert_eq!(
            read(LogOptions {
                since: Some(future),
                ..Default::default()
            })
            .await,
            ""
        );
        let from_third = read(LogOptions {
            since: Some(stamps[2]),
            ..Default::default()
        })
        .await;
        assert!(from_third.ends_with(&format!("{long}\nend\n")));
        assert!(!from_third.contains("line 1") || stamps[0] == stamps[2]);
        let recent = read(LogOptions::default().since_seconds(3600)).await;
        assert_eq!(recent, expected);

        // previous: the restart before the current one, then the file alone once its
        // container is gone.
        let second = node.container(&sandbox, "main", 1, "echo second run").await;
        node.wait_exited(&second, Duration::from_secs(10)).await;
        let current = logs::find(&node.cri, &node.layout, "default", "writer", "main", false)
            .await
            .unwrap();
        assert_eq!(current.container_id, second);
        assert_eq!(read_file(&node, &current).await, "second run\n");
        let previous = logs::find(&node.cri, &node.layout, "default", "writer", "main", true)
            .await
            .unwrap();
        assert_eq!(previous.container_id, id);
        assert!(read_file(&node, &previous).await == expected);
        node.cri.remove_container(&id).await.unwrap();
        match logs::find(&node.cri, &node.layout, "default", "writer", "main", true).await {
            Ok(previous) => {
                assert_eq!(previous.path, sandbox.log_dir.join("main/0.log"));
                assert!(read_file(&node, &previous).await == expected);
            }
            // containerd removed the file with its container.
            Err(LogError::NotFound(msg)) => {
                assert!(!sandbox.log_dir.join("main/0.log").exists(), "{msg}");
                assert_eq!(
                    msg,
                    "previous terminated container \"main\" in pod \"writer\" not found"
                );
            }
            Err(e) => panic!("{e}"),
        }
        let missing = logs::find(&node.cri, &node.layout, "default", "writer", "nope", false).await;
        assert!(matches!(missing, Err(LogError::NotFound(_))));
        node.stop().await;
    });
}

async fn read_file(node: &Node, file: &logs::LogFile) -> String {
    collect(
        logs::read_container(&node.cri, file, LogOptions::default()),
        Duration::from_secs(10),
    )
    .await
}

/// follow streams lines as the container writes them and ends once it has exited.
#[test]
fn follow_streams_until_the_container_exits() {
    if !support::can_run_containers() {
        return;
    }
    support::netns::run(async {
        let node = Node::start("krust-logs-follow-").await;
        let sandbox = node.sandbox("ticker").await;
        let script =
            "echo start; sleep 1; for i in 1 2 3 4 5 6 7 8; do echo tick $i; sleep 0.3; done";
        let id = node.container(&sandbox, "main", 0, script).await;
        let file = logs::container_log(&node.cri, &node.layout, &id)
            .await
            .unwrap();
        assert!(file.running);
        let opts = LogOptions {
            follow: true,
            ..Default::default()
        };
        let mut stream = Box::pin(logs::read_container(&node.cri, &file, opts));
        let started = Instant::now();
        // The first line arrives while the container still runs.
        let first = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(first.starts_with(b"start\n"), "{first:?}");
        let mut text = String::from_utf8(first.to_vec()).unwrap();
        text.push_str(&collect(stream, Duration::from_secs(15)).await);
        let expected: String = std::iter::once("start\n".to_string())
            .chain((1..=8).map(|i| format!("tick {i}\n")))
            .collect();
        assert_eq!(text, expected);
        assert!(
            started.elapsed() >= Duration::from_secs(2),
            "followed the container's life"
        );

        // tail + follow on an exited container: the tail, and the stream ends.
        let opts = LogOptions {
            follow: true,
            tail_lines: Some(1),
            ..Default::default()
        };
        let file = logs::container_log(&node.cri, &node.layout, &id)
            .await
            .unwrap();
        assert_eq!(
            collect(
                logs::read_container(&node.cri, &file, opts),
                Duration::from_secs(5)
            )
            .await,
            "tick 8\n"
        );
        node.stop().await;
    });
}

/// The next chunk within 5 s.
async fn next<S: Stream<Item = Result<bytes::Bytes, LogError>> + Unpin>(s: &mut S) -> String {
    let item = tokio::time::timeout(Duration::from_secs(5), s.next())
        .await
        .expect("more log");
    String::from_utf8(item.unwrap().unwrap().to_vec()).unwrap()
}

fn cri_line(text: &str, tag: &str) -> String {
    format!("{} stdout {tag} {text}\n", Timestamp::now())
}

/// A follower keeps up with a file that is rotated (renamed and recreated, as log rotation
/// does) and a line written in pieces; it stops when dropped.
#[tokio::test]
async fn follow_survives_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("0.log");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(cri_line("one", "F").as_bytes()).unwrap();
    let opts = LogOptions {
        follow: true,
        timestamps: false,
        ..Default::default()
    };
    let mut stream = Box::pin(logs::read(&path, opts));
    assert_eq!(next(&mut stream).await, "one\n");
    f.write_all(cri_line("tw", "P").as_bytes()).unwrap();
    f.write_all(cri_line("o", "F").as_bytes()).unwrap();
    f.flush().unwrap();
    let mut got = next(&mut stream).await;
    if got == "tw" {
        got.push_str(&next(&mut stream).await);
    }
    assert_eq!(got, "two\n");
    std::fs::rename(&path, dir.path().join("0.log.20240101-000000")).unwrap();
    let mut g = std::fs::File::create(&path).unwrap();
    g.write_all(cri_line("three", "F").as_bytes()).unwrap();
    assert_eq!(next(&mut stream).await, "three\n");
    // A line without its newline yet is held until the rest comes.
    g.write_all(format!("{} stderr F fo", Timestamp::now()).as_bytes())
        .unwrap();
    g.flush().unwrap();
    let early =
        tokio::time::timeout(Duration::from_millis(500), StreamExt::next(&mut stream)).await;
    assert!(early.is_err(), "a half-written line was sent: {early:?}");
    g.write_all(b"ur\n").unwrap();
    assert_eq!(next(&mut stream).await, "four\n");
    drop(stream);
}

/// A busy container's log is rotated past the size limit (renamed, the runtime reopens it,
/// older files gzipped, at most max_files kept) while a follower reads on without a gap.
#[test]
fn rotation_keeps_a_follower_going() {
    if !support::can_run_containers() {
        return;
    }
    support::netns::run(async {
        let node = Node::start("krust-logs-rotate-").await;
        let sandbox = node.sandbox("busy").await;
        let script = "i=0; while :; do i=$((i+1)); \
                      echo \"line $i ..................................................\"; \
                      sleep 0.01; done";
        let id = node.container(&sandbox, "main", 0, script).await;
        let file = logs::container_log(&node.cri, &node.layout, &id)
            .await
            .unwrap();
        let opts = LogOptions {
            follow: true,
            ..Default::default()
        };
        let mut stream = Box::pin(logs::read_container(&node.cri, &file, opts));
        let policy = logs::RotationPolicy {
            max_size: 16 * 1024,
            max_files: 3,
        };
        let mut text = String::new();
        for round in 0..4 {
            // Read along until the file is past the limit, then rotate.
            let deadline = Instant::now() + Duration::from_secs(20);
            while std::fs::metadata(&file.path).map_or(0, |m| m.len()) < policy.max_size {
                assert!(Instant::now() < deadline, "the log does not grow");
                text.push_str(&next(&mut stream).await);
            }
            let rotated = logs::rotate_all(&node.cri, &node.layout, policy)
                .await
                .unwrap();
            assert_eq!(rotated, 1, "round {round}");
            // Rotated names carry the second: the next round in another second.
            let until = Instant::now() + Duration::from_millis(1100);
            while Instant::now() < until {
                text.push_str(&next(&mut stream).await);
            }
        }
        let dir = file.path.parent().unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names.len(), 3, "{names:?}");
        assert_eq!(names[0], "0.log");
        assert!(
            names[1].starts_with("0.log.") && names[1].ends_with(".gz"),
            "{names:?}"
        );
        assert!(
            names[2].starts_with("0.log.") && !names[2].ends_with(".gz"),
            "{names:?}"
        );

        // Every line once, in order, across four rotations.
        let numbers: Vec<u64> = text
            .lines()
            .map(|l| l.split(' ').nth(1).unwrap().parse().unwrap())
            .collect();
        assert!(numbers.len() > 300, "{}", numbers.len());
        for pair in numbers.windows(2) {
            assert_eq!(
                pair[1],
                pair[0] + 1,
                "a gap or a repeat around line {}",
                pair[0]
            );
        }
        drop(stream);
        node.stop().await;
    });
}
