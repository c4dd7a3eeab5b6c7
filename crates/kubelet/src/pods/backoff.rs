//! Restart back-off (upstream's `flowcontrol.Backoff` as the kubelet uses it for crashing
//! containers and failed image pulls): 10 s doubling to 300 s, forgotten once an entry has not
//! been bumped for twice the maximum (10 minutes), so a container that ran that long starts
//! again from 10 s.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

pub const INITIAL: Duration = Duration::from_secs(10);
pub const MAX: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy)]
struct Entry {
    delay: Duration,
    last_update: SystemTime,
}

#[derive(Debug, Default)]
pub struct Backoff {
    entries: HashMap<String, Entry>,
    /// What the last failure said, per ID (for image pulls).
    notes: HashMap<String, String>,
}

impl Backoff {
    fn expired(entry: &Entry, now: SystemTime) -> bool {
        now.duration_since(entry.last_update).unwrap_or_default() > 2 * MAX
    }

    /// The current delay when `id` is still backing off from an event at `since` (a container's
    /// finish time), as upstream's `IsInBackOffSince`.
    pub fn in_backoff_since(
        &self,
        id: &str,
        since: SystemTime,
        now: SystemTime,
    ) -> Option<Duration> {
        let entry = self.entries.get(id)?;
        if Self::expired(entry, since) {
            return None;
        }
        let elapsed = now.duration_since(since).unwrap_or_default();
        (elapsed < entry.delay).then_some(entry.delay)
    }

    /// The current delay when `id` was bumped less than that long ago (upstream's
    /// `IsInBackOffSinceUpdate`, for image pulls).
    pub fn in_backoff_since_update(&self, id: &str, now: SystemTime) -> Option<Duration> {
        let entry = self.entries.get(id)?;
        self.in_backoff_since(id, entry.last_update, now)
    }

    /// Records a restart: the first one (or one after a long quiet) waits `INITIAL` next time,
    /// each following one twice as long, up to `MAX`.
    pub fn next(&mut self, id: &str, now: SystemTime) {
        let entry = self.entries.entry(id.to_string()).or_insert(Entry {
            delay: Duration::ZERO,
            last_update: now,
        });
        entry.delay = if entry.delay.is_zero() || Self::expired(entry, now) {
            INITIAL
        } else {
            (entry.delay * 2).min(MAX)
        };
        entry.last_update = now;
    }

    /// How long ago `id` was last bumped.
    pub fn since_update(&self, id: &str, now: SystemTime) -> Option<Duration> {
        let entry = self.entries.get(id)?;
        Some(now.duration_since(entry.last_update).unwrap_or_default())
    }

    pub fn set_note(&mut self, id: &str, note: String) {
        self.notes.insert(id.to_string(), note);
    }

    pub fn note(&self, id: &str) -> Option<&str> {
        self.notes.get(id).map(String::as_str)
    }

    /// Forgets `id` (a container that ran long enough, or is gone).
    pub fn reset(&mut self, id: &str) {
        self.entries.remove(id);
        self.notes.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_max_and_expires() {
        let mut b = Backoff::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(b.in_backoff_since("c", t0, t0), None);
        b.next("c", t0);
        assert_eq!(
            b.in_backoff_since("c", t0, t0 + Duration::from_secs(5)),
            Some(INITIAL)
        );
        assert_eq!(
            b.in_backoff_since("c", t0, t0 + Duration::from_secs(11)),
            None
        );
        let mut t = t0;
        for want in [20, 40, 80, 160, 300, 300] {
            t += Duration::from_secs(1);
            b.next("c", t);
            assert_eq!(
                b.in_backoff_since("c", t, t),
                Some(Duration::from_secs(want))
            );
        }
        let later = t + Duration::from_secs(601);
        assert_eq!(b.in_backoff_since("c", later, later), None);
        b.next("c", later);
        assert_eq!(b.in_backoff_since("c", later, later), Some(INITIAL));
    }
}
