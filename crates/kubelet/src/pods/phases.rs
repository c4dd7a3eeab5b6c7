//! How long each phase of a pod's start took (runtime read, sandbox with CNI, volumes, image
//! check, env, create, start, status write), logged at debug level (`RUST_LOG=kubelet::pods=debug`)
//! to find the long pole of pod startup (`bench/kubelet/run.sh --keep-log`).

use std::fmt::Write;
use std::time::{Duration, Instant};

pub(crate) struct Phases {
    started: Instant,
    last: Instant,
    marks: Vec<(&'static str, Duration)>,
}

impl Phases {
    pub(crate) fn new() -> Phases {
        let now = Instant::now();
        Phases {
            started: now,
            last: now,
            marks: Vec::new(),
        }
    }

    /// The time since the previous mark went to `phase`.
    pub(crate) fn mark(&mut self, phase: &'static str) {
        let now = Instant::now();
        self.marks.push((phase, now - self.last));
        self.last = now;
    }

    /// `phase=12ms ... total=80ms`.
    pub(crate) fn summary(&self) -> String {
        let mut out = String::new();
        for (phase, took) in &self.marks {
            let _ = write!(out, "{phase}={}ms ", took.as_millis());
        }
        let _ = write!(out, "total={}ms", self.started.elapsed().as_millis());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lists_marks_in_order() {
        let mut p = Phases::new();
        p.mark("sandbox");
        p.mark("start");
        let s = p.summary();
        assert!(s.starts_with("sandbox=") && s.contains(" start=") && s.contains(" total="));
    }
}
