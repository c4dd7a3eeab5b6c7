//! A small map whose entries expire, for the delegated review answers: the API server is asked
//! again only after an answer's time to live, as upstream's cached token authenticator and
//! webhook authorizer do.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Above this many entries, expired ones are dropped before inserting, so that a stream of
/// distinct bad tokens cannot grow the map without bound for long.
const SWEEP_ABOVE: usize = 4096;

pub struct TtlCache<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
}

impl<K: Eq + Hash, V: Clone> Default for TtlCache<K, V> {
    fn default() -> Self {
        TtlCache {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash, V: Clone> TtlCache<K, V> {
    /// The value for `key` unless it expired by `now`.
    pub fn get(&self, key: &K, now: Instant) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key)
            .filter(|(_, expires)| *expires > now)
            .map(|(value, _)| value.clone())
    }

    /// Remembers `value` for `ttl` from `now`.
    pub fn insert(&self, key: K, value: V, ttl: Duration, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= SWEEP_ABOVE {
            entries.retain(|_, (_, expires)| *expires > now);
        }
        entries.insert(key, (value, now + ttl));
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_until_the_ttl_passes() {
        let cache = TtlCache::default();
        let t0 = Instant::now();
        cache.insert("token", true, Duration::from_secs(10), t0);
        assert_eq!(cache.get(&"token", t0), Some(true));
        assert_eq!(cache.get(&"token", t0 + Duration::from_secs(9)), Some(true));
        assert_eq!(cache.get(&"token", t0 + Duration::from_secs(10)), None);
        assert_eq!(cache.get(&"other", t0), None);
    }

    #[test]
    fn a_new_answer_replaces_the_old_one() {
        let cache = TtlCache::default();
        let t0 = Instant::now();
        cache.insert(1, "denied", Duration::from_secs(10), t0);
        cache.insert(
            1,
            "allowed",
            Duration::from_secs(10),
            t0 + Duration::from_secs(5),
        );
        assert_eq!(cache.get(&1, t0 + Duration::from_secs(12)), Some("allowed"));
    }

    #[test]
    fn expired_entries_are_swept_when_the_map_is_full() {
        let cache = TtlCache::default();
        let t0 = Instant::now();
        for i in 0..SWEEP_ABOVE {
            cache.insert(i, (), Duration::from_secs(1), t0);
        }
        cache.insert(
            usize::MAX,
            (),
            Duration::from_secs(1),
            t0 + Duration::from_secs(2),
        );
        assert_eq!(cache.len(), 1);
    }
}
