//! The multi-version key index: every retained version of every key, plus the per-revision change
//! history that watches replay. Both are kept in memory; the log and snapshots on disk exist only
//! to rebuild them after a restart.
//!
//! Invariants: versions of one key are in ascending `mod_revision`; a tombstone (`None`) ends a
//! generation; the history holds every revision in `history_start..=current` contiguously (every
//! revision bump has at least one change, as in etcd).

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

use crate::proto::mvccpb::KeyValue;

/// One version of a key: the value written at `mod_rev`, or a tombstone.
#[derive(Clone, Debug)]
pub(crate) struct Version {
    pub mod_rev: i64,
    pub kv: Option<Arc<KeyValue>>,
}

/// One change inside a revision, in the order the request made it.
#[derive(Clone, Debug)]
pub(crate) struct Change {
    /// For a delete: only `key` and `mod_revision` are set, as in etcd's watch events.
    pub kv: Arc<KeyValue>,
    pub prev: Option<Arc<KeyValue>>,
    pub deleted: bool,
}

/// All changes made at one revision.
#[derive(Clone, Debug)]
pub(crate) struct RevChanges {
    pub rev: i64,
    pub changes: Arc<Vec<Change>>,
}

/// Key range of a request: `[key, end)`, a single key, or everything from `key` on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum KeyRange {
    Single(Vec<u8>),
    Span(Vec<u8>, Option<Vec<u8>>),
}

impl KeyRange {
    /// Interprets etcd's (key, range_end) pair: empty end = one key, `\0` end = all keys >= key.
    pub fn new(key: &[u8], range_end: &[u8]) -> KeyRange {
        if range_end.is_empty() {
            KeyRange::Single(key.to_vec())
        } else if range_end == [0] {
            KeyRange::Span(key.to_vec(), None)
        } else {
            KeyRange::Span(key.to_vec(), Some(range_end.to_vec()))
        }
    }

    pub fn contains(&self, k: &[u8]) -> bool {
        match self {
            KeyRange::Single(key) => key == k,
            KeyRange::Span(start, end) => {
                k >= start.as_slice() && end.as_ref().is_none_or(|e| k < e.as_slice())
            }
        }
    }

    /// An end at or before the start selects nothing (etcd returns an empty result).
    pub fn is_empty(&self) -> bool {
        matches!(self, KeyRange::Span(s, Some(e)) if e <= s)
    }

    fn bounds(&self) -> (Bound<&[u8]>, Bound<&[u8]>) {
        match self {
            KeyRange::Single(k) => (Bound::Included(k.as_slice()), Bound::Included(k.as_slice())),
            KeyRange::Span(s, None) => (Bound::Included(s.as_slice()), Bound::Unbounded),
            KeyRange::Span(s, Some(e)) => {
                (Bound::Included(s.as_slice()), Bound::Excluded(e.as_slice()))
            }
        }
    }
}

/// The in-memory multi-version store.
#[derive(Debug)]
pub(crate) struct Mvcc {
    keys: BTreeMap<Vec<u8>, Vec<Version>>,
    /// The newest applied revision.
    pub current: i64,
    /// Reads and watches below this revision fail with `Compacted`.
    pub compacted: i64,
    history: VecDeque<RevChanges>,
    /// Changes of the revision being built (the open transaction).
    pending: Vec<Change>,
    /// Number of live keys and their key+value bytes, for status and the size policy.
    pub live_bytes: i64,
}

impl Default for Mvcc {
    fn default() -> Self {
        Mvcc {
            keys: BTreeMap::new(),
            current: 1,
            compacted: 0,
            history: VecDeque::new(),
            pending: Vec::new(),
            live_bytes: 0,
        }
    }
}

/// Finds the version of a key visible at `rev`: the newest one not newer than `rev`.
fn visible_at(versions: &[Version], rev: i64) -> Option<&Arc<KeyValue>> {
    versions
        .iter()
        .rev()
        .find(|v| v.mod_rev <= rev)
        .and_then(|v| v.kv.as_ref())
}

fn kv_bytes(kv: &KeyValue) -> i64 {
    (kv.key.len() + kv.value.len()) as i64
}

impl Mvcc {
    /// The revision an open transaction writes at.
    pub fn next_rev(&self) -> i64 {
        self.current + 1
    }

    /// The revision reads inside the open transaction see (its own writes included).
    pub fn txn_read_rev(&self) -> i64 {
        if self.pending.is_empty() {
            self.current
        } else {
            self.current + 1
        }
    }

    pub fn get(&self, key: &[u8], rev: i64) -> Option<&Arc<KeyValue>> {
        self.keys.get(key).and_then(|v| visible_at(v, rev))
    }

    /// Visits every key in `range` live at `rev`, in key order; stops when `f` returns false.
    pub fn scan<'a>(
        &'a self,
        range: &KeyRange,
        rev: i64,
        mut f: impl FnMut(&'a Arc<KeyValue>) -> bool,
    ) {
        if range.is_empty() {
            return;
        }
        for (_, versions) in self.keys.range::<[u8], _>(range.bounds()) {
            if let Some(kv) = visible_at(versions, rev) {
                if !f(kv) {
                    return;
                }
            }
        }
    }

    /// Writes `kv` (its revisions already filled in) into the open transaction.
    pub fn put(&mut self, kv: KeyValue) {
        let rev = self.next_rev();
        let kv = Arc::new(kv);
        let versions = self.keys.entry(kv.key.clone()).or_default();
        let prev = visible_at(versions, rev).cloned();
        self.live_bytes += kv_bytes(&kv) - prev.as_deref().map_or(0, kv_bytes);
        versions.push(Version {
            mod_rev: rev,
            kv: Some(kv.clone()),
        });
        self.pending.push(Change {
            kv,
            prev,
            deleted: false,
        });
    }

    /// Deletes `key` in the open transaction; returns the deleted value, if the key was live.
    pub fn delete(&mut self, key: &[u8]) -> Option<Arc<KeyValue>> {
        let rev = self.next_rev();
        let versions = self.keys.get_mut(key)?;
        let prev = visible_at(versions, rev).cloned()?;
        self.live_bytes -= kv_bytes(&prev);
        versions.push(Version {
            mod_rev: rev,
            kv: None,
        });
        let kv = Arc::new(KeyValue {
            key: key.to_vec(),
            mod_revision: rev,
            ..Default::default()
        });
        self.pending.push(Change {
            kv,
            prev: Some(prev.clone()),
            deleted: true,
        });
        Some(prev)
    }

    /// Closes the open transaction: if it changed anything, the revision advances by one.
    pub fn commit(&mut self) -> Option<RevChanges> {
        if self.pending.is_empty() {
            return None;
        }
        self.current += 1;
        let entry = RevChanges {
            rev: self.current,
            changes: Arc::new(std::mem::take(&mut self.pending)),
        };
        self.history.push_back(entry.clone());
        Some(entry)
    }

    /// Restores a version from a snapshot's base, without history.
    pub fn restore_base(&mut self, kv: KeyValue) {
        self.live_bytes += kv_bytes(&kv);
        let mod_rev = kv.mod_revision;
        self.keys.entry(kv.key.clone()).or_default().push(Version {
            mod_rev,
            kv: Some(Arc::new(kv)),
        });
    }

    /// Restores the changes made at a snapshot's base revision into the watch history only
    /// (their values are already in the base), so that a watch from the compaction revision
    /// sees the same events after a restart as before.
    pub fn restore_history(&mut self, rev: i64, changes: Vec<(KeyValue, bool)>) {
        let changes = changes
            .into_iter()
            .map(|(kv, deleted)| Change {
                kv: Arc::new(kv),
                prev: None,
                deleted,
            })
            .collect();
        self.history.push_back(RevChanges {
            rev,
            changes: Arc::new(changes),
        });
    }

    /// Sets the revision counters after a restore.
    pub fn restore_revisions(&mut self, current: i64, compacted: i64) {
        self.current = self.current.max(current);
        self.compacted = self.compacted.max(compacted);
    }

    /// Changes of revisions `from..=to`, at most `max_revs` revisions. `None` if `from` has been
    /// compacted away.
    pub fn changes_since(&self, from: i64, to: i64, max_revs: usize) -> Option<Vec<RevChanges>> {
        if from < self.compacted {
            return None;
        }
        let Some(start) = self.history.front().map(|h| h.rev) else {
            return Some(Vec::new());
        };
        let skip = ((from - start).max(0) as usize).min(self.history.len());
        Some(
            self.history
                .range(skip..)
                .take_while(|h| h.rev <= to)
                .take(max_revs)
                .cloned()
                .collect(),
        )
    }

    /// Drops every version not visible at or after `rev`, and the history before it.
    ///
    /// Only keys changed in the history up to `rev` can have versions to drop (older ones were
    /// trimmed by the previous compaction, and a restored base has one version per key), so the
    /// cost is proportional to the changes compacted, not to the number of keys.
    pub fn compact(&mut self, rev: i64) {
        self.compacted = self.compacted.max(rev);
        let mut touched: Vec<Vec<u8>> = Vec::new();
        for h in self.history.iter().take_while(|h| h.rev <= rev) {
            touched.extend(h.changes.iter().map(|c| c.kv.key.clone()));
        }
        while self.history.front().is_some_and(|h| h.rev < rev) {
            self.history.pop_front();
        }
        touched.sort_unstable();
        touched.dedup();
        for key in touched {
            let Some(versions) = self.keys.get_mut(&key) else {
                continue;
            };
            // Keep the newest version at or below `rev` (unless it is a tombstone) and all newer.
            if let Some(i) = versions.iter().rposition(|v| v.mod_rev <= rev) {
                let drop = if versions[i].kv.is_none() { i + 1 } else { i };
                versions.drain(..drop);
            }
            if versions.is_empty() {
                self.keys.remove(&key);
            }
        }
    }

    /// The state a snapshot must hold: for each key its version at `compacted` (the base), and the
    /// history of every later revision.
    pub fn snapshot(&self) -> (i64, Vec<Arc<KeyValue>>, Vec<RevChanges>) {
        let floor = self.compacted_floor();
        let base = self
            .keys
            .values()
            .filter_map(|versions| visible_at(versions, floor).cloned())
            .collect();
        let history = self
            .history
            .iter()
            .filter(|h| h.rev >= floor)
            .cloned()
            .collect();
        (floor, base, history)
    }

    /// The revision up to which the base of a snapshot goes: the compaction point, or the first
    /// revision the history does not cover.
    fn compacted_floor(&self) -> i64 {
        match self.history.front() {
            Some(h) => (h.rev - 1).max(self.compacted),
            None => self.current,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, rev: i64) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: b"v".to_vec(),
            create_revision: rev,
            mod_revision: rev,
            version: 1,
            lease: 0,
        }
    }

    #[test]
    fn compaction_keeps_newest_version_at_or_below_point() {
        let mut m = Mvcc::default();
        m.put(kv("a", 2));
        m.commit();
        m.put(kv("a", 3));
        m.commit();
        m.delete(b"a");
        m.commit();
        m.put(kv("b", 5));
        m.commit();
        m.compact(3);
        assert!(m.get(b"a", 3).is_some());
        assert!(m.get(b"a", 4).is_none());
        m.compact(4);
        assert!(
            !m.keys.contains_key(b"a".as_slice()),
            "tombstone at the point is dropped"
        );
        assert!(m.changes_since(3, 10, 10).is_none());
        assert_eq!(m.changes_since(4, 10, 10).map(|c| c.len()), Some(2));
    }
}
