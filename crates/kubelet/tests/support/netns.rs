//! A network namespace of the test's own, so pods get a CNI bridge, iptables rules and
//! addresses that nothing outside the test sees.
//!
//! Call [`isolate`] first thing in a plain `#[test]` (before any runtime or thread starts):
//! it moves the calling thread into a new network namespace with `lo` up, and every thread and
//! child process it creates afterwards (the tokio runtime, containerd, its shims and the CNI
//! plugins, kubectl) inherits it. The namespace goes away with the last of them.

use std::process::Command;

/// Moves this thread into a fresh network namespace with loopback up.
pub fn isolate() {
    // SAFETY: unshare only changes this thread's namespaces; no memory is involved.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(
        rc,
        0,
        "unshare(CLONE_NEWNET) failed (needs root): {}",
        std::io::Error::last_os_error()
    );
    let status = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("run ip");
    assert!(status.success(), "ip link set lo up failed");
}

/// Runs `test` in a fresh network namespace on a new multi-threaded runtime.
pub fn run<F: std::future::Future<Output = ()>>(test: F) {
    isolate();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(test);
}
