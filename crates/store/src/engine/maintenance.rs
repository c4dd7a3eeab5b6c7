//! Background upkeep on a small thread per engine: revoking expired leases and automatic
//! compaction. The thread holds only a weak reference and ends with the engine.
//!
//! Compaction policy: history older than `retain_duration`, or more than `retain_revisions`
//! revisions behind the current one, is compacted. Time is mapped to revisions by sampling the
//! current revision at every tick, as etcd's periodic compactor does.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::Instant;

use super::ops::WriteOp;
use super::Engine;
use crate::StoreError;

pub(super) fn spawn(engine: &Arc<Engine>) {
    let weak: Weak<Engine> = Arc::downgrade(engine);
    let interval = engine.opts.maintenance_interval;
    let spawned = std::thread::Builder::new()
        .name("store-maintenance".into())
        .spawn(move || {
            let mut samples = VecDeque::new();
            loop {
                std::thread::sleep(interval);
                let Some(engine) = weak.upgrade() else { return };
                engine.expire_leases();
                engine.auto_compact(&mut samples);
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the datastore maintenance thread");
    }
}

impl Engine {
    fn expire_leases(&self) {
        let expired = self.core.read().expired_leases(Instant::now());
        for id in expired {
            match self
                .committer
                .submit_blocking(&self.core, WriteOp::LeaseRevoke(id))
            {
                Ok(_) => tracing::debug!(lease = id, "lease expired"),
                Err(StoreError::LeaseNotFound) => {}
                Err(e) => tracing::warn!(lease = id, error = %e, "cannot revoke expired lease"),
            }
        }
    }

    fn auto_compact(&self, samples: &mut VecDeque<(Instant, i64)>) {
        let (current, compacted) = {
            let state = self.core.read();
            (state.durable, state.mvcc.compacted)
        };
        let now = Instant::now();
        samples.push_back((now, current));
        // The revision limit is enforced on the commit path; only time is checked here.
        let mut target = 0;
        if let Some(d) = self.opts.retain_duration {
            while samples.len() > 1 && samples[1].0 + d <= now {
                samples.pop_front();
            }
            if let Some(&(_, rev)) = samples.front().filter(|(t, _)| *t + d <= now) {
                target = target.max(rev);
            }
        }
        if target > compacted {
            match self
                .committer
                .submit_blocking(&self.core, WriteOp::Compact(target))
            {
                Ok(_) => tracing::debug!(revision = target, "auto-compacted"),
                Err(e) => tracing::debug!(revision = target, error = %e, "auto-compaction skipped"),
            }
        }
    }
}
