//! What each signal observes now, from the stats summary (upstream's `makeSignalObservations`):
//! memory.available is the node's capacity less its working set, the filesystems are the data
//! dir's (nodefs) and the runtime's image filesystem (imagefs), pid.available is the kernel's
//! pid_max less the processes running.

use std::collections::BTreeMap;

use super::thresholds::Signal;
use crate::stats::Summary;

/// One signal's observation: what is available of what capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    pub available: u64,
    pub capacity: u64,
}

pub type Observations = BTreeMap<Signal, Observation>;

pub fn observe(summary: &Summary) -> Observations {
    let mut out = Observations::new();
    let mut put = |signal, available: Option<u64>, capacity: Option<u64>| {
        if let (Some(available), Some(capacity)) = (available, capacity) {
            out.insert(
                signal,
                Observation {
                    available,
                    capacity,
                },
            );
        }
    };
    let node = &summary.node;
    if let Some(m) = &node.memory {
        let capacity = m
            .available_bytes
            .zip(m.working_set_bytes)
            .map(|(a, w)| a + w);
        put(Signal::MemoryAvailable, m.available_bytes, capacity);
    }
    if let Some(fs) = &node.fs {
        put(
            Signal::NodeFsAvailable,
            fs.available_bytes,
            fs.capacity_bytes,
        );
        put(Signal::NodeFsInodesFree, fs.inodes_free, fs.inodes);
    }
    if let Some(fs) = node.runtime.as_ref().and_then(|r| r.image_fs.as_ref()) {
        put(
            Signal::ImageFsAvailable,
            fs.available_bytes,
            fs.capacity_bytes,
        );
        put(Signal::ImageFsInodesFree, fs.inodes_free, fs.inodes);
    }
    if let Some(r) = &node.rlimit {
        if let (Some(max), Some(cur)) = (r.maxpid, r.curproc) {
            let max = max.max(0) as u64;
            put(
                Signal::PidAvailable,
                Some(max.saturating_sub(cur.max(0) as u64)),
                Some(max),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{FsStats, MemoryStats, NodeStats, RlimitStats, RuntimeStats, Time};

    #[test]
    fn observations_come_from_the_summary() {
        let fs = |available, capacity, free, inodes| FsStats {
            time: Time::now(),
            available_bytes: Some(available),
            capacity_bytes: Some(capacity),
            inodes_free: Some(free),
            inodes: Some(inodes),
            ..Default::default()
        };
        let summary = Summary {
            node: NodeStats {
                memory: Some(MemoryStats {
                    time: Time::now(),
                    available_bytes: Some(300),
                    working_set_bytes: Some(700),
                    ..Default::default()
                }),
                fs: Some(fs(10, 100, 5, 50)),
                runtime: Some(RuntimeStats {
                    image_fs: Some(fs(20, 200, 7, 70)),
                    container_fs: None,
                }),
                rlimit: Some(RlimitStats {
                    time: Time::now(),
                    maxpid: Some(32768),
                    curproc: Some(768),
                }),
                ..Default::default()
            },
            pods: Vec::new(),
        };
        let o = observe(&summary);
        let get = |s| (o[&s].available, o[&s].capacity);
        assert_eq!(get(Signal::MemoryAvailable), (300, 1000));
        assert_eq!(get(Signal::NodeFsAvailable), (10, 100));
        assert_eq!(get(Signal::NodeFsInodesFree), (5, 50));
        assert_eq!(get(Signal::ImageFsAvailable), (20, 200));
        assert_eq!(get(Signal::ImageFsInodesFree), (7, 70));
        assert_eq!(get(Signal::PidAvailable), (32000, 32768));
    }
}
