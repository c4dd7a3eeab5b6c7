//! The pod sandbox process (what upstream's `pause` does): hold the pod's namespaces open, reap
//! the zombies re-parented to it when the pod shares one PID namespace, and exit at once on
//! SIGTERM or SIGINT.
//!
//! Why a program of our own and not busybox: as PID 1 in its PID namespace a process gets only
//! the signals it installed handlers for, and `busybox sleep` installs none, so SIGTERM would
//! be ignored and every pod stop would wait for the SIGKILL after the grace period. A shell
//! with `trap` would exit, but does not reap arbitrary orphans. This is upstream pause.c's few
//! lines, with libc's calls declared by hand so the package has no dependencies.

use std::os::raw::c_int;

const SIGINT: c_int = 2;
const SIGTERM: c_int = 15;
const SIGCHLD: c_int = 17;
const WNOHANG: c_int = 1;

extern "C" {
    fn signal(signum: c_int, handler: extern "C" fn(c_int)) -> usize;
    fn pause() -> c_int;
    fn waitpid(pid: c_int, status: *mut c_int, options: c_int) -> c_int;
    fn _exit(status: c_int) -> !;
    fn getpid() -> c_int;
}

extern "C" fn down(_: c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { _exit(0) }
}

extern "C" fn reap(_: c_int) {
    // SAFETY: waitpid is async-signal-safe; a null status pointer is allowed.
    unsafe { while waitpid(-1, std::ptr::null_mut(), WNOHANG) > 0 {} }
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("-v") {
        println!("krust-pause {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    // SAFETY: installing handlers before any other thread exists; the handlers only call
    // async-signal-safe functions.
    unsafe {
        if getpid() != 1 {
            eprintln!("pause: warning: not running as PID 1");
        }
        signal(SIGINT, down);
        signal(SIGTERM, down);
        signal(SIGCHLD, reap);
        loop {
            pause();
        }
    }
}
