//! Leases: TTL-bound handles that keys attach to. When a lease is revoked or expires, its keys are
//! deleted in one revision. Expiry deadlines live only in memory; after a restart every lease gets
//! its full TTL again, as etcd does.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::StoreError;

/// etcd's minimum TTL with default timing (1.5 election timeouts, rounded up to seconds).
pub(crate) const MIN_TTL: i64 = 2;
/// etcd's `MaxLeaseTTL`.
pub(crate) const MAX_TTL: i64 = 9_000_000_000;

#[derive(Debug)]
pub(crate) struct Lease {
    pub ttl: i64,
    pub deadline: Instant,
    pub keys: BTreeSet<Vec<u8>>,
}

impl Lease {
    pub fn remaining_secs(&self, now: Instant) -> i64 {
        self.deadline.saturating_duration_since(now).as_secs() as i64
    }
}

#[derive(Debug, Default)]
pub(crate) struct Leases {
    map: HashMap<i64, Lease>,
}

impl Leases {
    /// Adds a lease; its deadline starts now.
    pub fn grant(&mut self, id: i64, ttl: i64) -> Result<(), StoreError> {
        if self.map.contains_key(&id) {
            return Err(StoreError::LeaseExists);
        }
        let deadline = Instant::now() + Duration::from_secs(ttl.max(0) as u64);
        self.map.insert(
            id,
            Lease {
                ttl,
                deadline,
                keys: BTreeSet::new(),
            },
        );
        Ok(())
    }

    pub fn get(&self, id: i64) -> Option<&Lease> {
        self.map.get(&id)
    }

    pub fn contains(&self, id: i64) -> bool {
        self.map.contains_key(&id)
    }

    pub fn remove(&mut self, id: i64) -> Option<Lease> {
        self.map.remove(&id)
    }

    /// Restarts the lease's countdown; fails if it is unknown or already past its deadline.
    pub fn renew(&mut self, id: i64) -> Result<i64, StoreError> {
        let now = Instant::now();
        match self.map.get_mut(&id) {
            Some(l) if l.deadline > now => {
                l.deadline = now + Duration::from_secs(l.ttl as u64);
                Ok(l.ttl)
            }
            _ => Err(StoreError::LeaseNotFound),
        }
    }

    pub fn attach(&mut self, id: i64, key: &[u8]) {
        if let Some(l) = self.map.get_mut(&id) {
            l.keys.insert(key.to_vec());
        }
    }

    pub fn detach(&mut self, id: i64, key: &[u8]) {
        if let Some(l) = self.map.get_mut(&id) {
            l.keys.remove(key);
        }
    }

    pub fn expired(&self, now: Instant) -> Vec<i64> {
        self.map
            .iter()
            .filter(|(_, l)| l.deadline <= now)
            .map(|(id, _)| *id)
            .collect()
    }

    pub fn ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.map.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// (id, ttl) of every lease, for snapshots.
    pub fn all(&self) -> Vec<(i64, i64)> {
        self.ids()
            .into_iter()
            .map(|id| (id, self.map[&id].ttl))
            .collect()
    }

    /// A fresh positive ID not in use.
    pub fn new_id(&self) -> i64 {
        loop {
            let id = next_random() & i64::MAX;
            if id != 0 && !self.map.contains_key(&id) {
                return id;
            }
        }
    }
}

/// IDs only need to be unique and hard to guess by accident, not secret: a splitmix64 sequence
/// seeded from the clock is enough and needs no extra dependency.
fn next_random() -> i64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let _ = STATE.compare_exchange(0, seed | 1, Ordering::Relaxed, Ordering::Relaxed);
    let mut z = STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) as i64
}

/// Clamps a requested TTL the way etcd's lessor does.
pub(crate) fn effective_ttl(requested: i64) -> Result<i64, StoreError> {
    if requested > MAX_TTL {
        return Err(StoreError::InvalidArgument(
            "etcdserver: too large lease TTL".into(),
        ));
    }
    Ok(requested.max(MIN_TTL))
}
