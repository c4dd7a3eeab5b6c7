//! The scheduling queue: pending pods by priority, with exponential backoff for the ones that
//! did not fit (upstream's activeQ, backoffQ and unschedulablePods).
//!
//! A pod that fits nowhere waits as *unschedulable* until something in the cluster changes (a
//! node is added or updated, a pod leaves a node) and its backoff (1 s doubling to 10 s per
//! failed attempt) has run out; a change seen while its cycle was running sends it straight to
//! backoff so the change is not missed. Unschedulable pods are retried after 5 minutes anyway,
//! as upstream's `podMaxInUnschedulablePodsDuration`.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use tokio::time::Instant;

use crate::cache::pod_key;

pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
pub const MAX_UNSCHEDULABLE: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Active,
    /// Waiting until the instant before going back to active.
    Backoff(Instant),
    /// Parked until a cluster change; `Instant`s are its backoff end and when it was parked.
    Unschedulable {
        backoff_until: Instant,
        since: Instant,
    },
    /// Popped and being scheduled or bound.
    InFlight {
        moves_at_pop: u64,
    },
}

#[derive(Debug)]
struct Entry {
    pod: Arc<Pod>,
    attempts: u32,
    state: State,
    /// Arrival order among pods of equal priority.
    seq: u64,
}

type ActiveKey = (Reverse<i32>, u64, String);

/// Pending pods; see the module docs.
#[derive(Debug, Default)]
pub struct Queue {
    entries: HashMap<String, Entry>,
    active: BTreeSet<ActiveKey>,
    /// Backed-off and parked pods by the instant they become active on their own.
    waiting: BTreeSet<(Instant, String)>,
    seq: u64,
    /// Count of cluster changes, to tell whether one happened during a pod's cycle.
    moves: u64,
    /// How many entries are parked (so a change with none parked costs nothing).
    parked: usize,
}

/// Pods per state, for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Lengths {
    pub active: usize,
    pub backoff: usize,
    pub unschedulable: usize,
}

fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// Backoff after `attempts` failed attempts: 1 s, 2 s, 4 s, 8 s, then 10 s.
pub fn backoff(attempts: u32) -> Duration {
    let exp = attempts.saturating_sub(1).min(16);
    INITIAL_BACKOFF.saturating_mul(1u32 << exp).min(MAX_BACKOFF)
}

impl Queue {
    /// Adds a pending pod or refreshes a queued one. An update to a parked pod may make it
    /// schedulable, so it moves on (after its backoff).
    pub fn add_or_update(&mut self, pod: Arc<Pod>, now: Instant) {
        let key = pod_key(&pod);
        match self.entries.get_mut(&key) {
            Some(e) => {
                // The priority may have changed: re-index an active entry.
                let active = e.state == State::Active;
                if active {
                    self.active.remove(&active_key(e, &key));
                }
                e.pod = pod;
                if active {
                    self.active.insert(active_key(e, &key));
                }
                if let State::Unschedulable { backoff_until, .. } = e.state {
                    self.wake(&key, backoff_until, now);
                }
            }
            None => {
                self.seq += 1;
                let entry = Entry {
                    pod,
                    attempts: 0,
                    state: State::Active,
                    seq: self.seq,
                };
                self.active.insert(active_key(&entry, &key));
                self.entries.insert(key, entry);
            }
        }
    }

    pub fn remove(&mut self, key: &str) {
        if let Some(e) = self.entries.remove(key) {
            self.active.remove(&active_key(&e, key));
            if matches!(e.state, State::Unschedulable { .. }) {
                self.parked = self.parked.saturating_sub(1);
            }
            if let Some(t) = deadline(e.state) {
                self.waiting.remove(&(t, key.to_string()));
            }
        }
    }

    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// The highest-priority pod ready now, marked in flight.
    pub fn pop(&mut self, now: Instant) -> Option<Arc<Pod>> {
        self.flush(now);
        let (_, _, key) = self.active.first()?.clone();
        let state = State::InFlight {
            moves_at_pop: self.moves,
        };
        self.set_state(&key, state);
        self.entries.get(&key).map(|e| e.pod.clone())
    }

    /// The pod fit nowhere: park it, or back it off if the cluster changed meanwhile.
    pub fn unschedulable(&mut self, key: &str, now: Instant) {
        let moves = self.moves;
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        e.attempts += 1;
        let backoff_until = now + backoff(e.attempts);
        let state = match e.state {
            State::InFlight { moves_at_pop } if moves_at_pop != moves => {
                State::Backoff(backoff_until)
            }
            _ => State::Unschedulable {
                backoff_until,
                since: now,
            },
        };
        self.set_state(key, state);
    }

    /// Scheduling or binding failed for another reason (API error): retry after backoff.
    pub fn retry(&mut self, key: &str, now: Instant) {
        if let Some(e) = self.entries.get_mut(key) {
            e.attempts += 1;
            let until = now + backoff(e.attempts);
            self.set_state(key, State::Backoff(until));
        }
    }

    /// The pod is bound: it leaves the queue.
    pub fn done(&mut self, key: &str) {
        self.remove(key);
    }

    /// A cluster change that may make parked pods fit: move them on.
    pub fn move_all(&mut self, now: Instant) {
        self.moves += 1;
        if self.parked == 0 {
            return;
        }
        let parked: Vec<(String, Instant)> = self
            .entries
            .iter()
            .filter_map(|(k, e)| match e.state {
                State::Unschedulable { backoff_until, .. } => Some((k.clone(), backoff_until)),
                _ => None,
            })
            .collect();
        for (key, until) in parked {
            self.wake(&key, until, now);
        }
    }

    /// When the next backed-off or long-parked pod becomes ready.
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.waiting.first().map(|(t, _)| *t)
    }

    pub fn lengths(&self) -> Lengths {
        let mut l = Lengths::default();
        for e in self.entries.values() {
            match e.state {
                State::Active => l.active += 1,
                State::Backoff(_) => l.backoff += 1,
                State::Unschedulable { .. } => l.unschedulable += 1,
                State::InFlight { .. } => {}
            }
        }
        l
    }

    fn wake(&mut self, key: &str, backoff_until: Instant, now: Instant) {
        if backoff_until > now {
            self.set_state(key, State::Backoff(backoff_until));
        } else {
            self.set_state(key, State::Active);
        }
    }

    /// Moves an entry to `state`, keeping the active and waiting indexes in step.
    fn set_state(&mut self, key: &str, state: State) {
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        if let Some(t) = deadline(e.state) {
            self.waiting.remove(&(t, key.to_string()));
        }
        if matches!(e.state, State::Unschedulable { .. }) {
            self.parked = self.parked.saturating_sub(1);
        }
        if matches!(state, State::Unschedulable { .. }) {
            self.parked += 1;
        }
        if e.state == State::Active {
            self.active.remove(&active_key(e, key));
        }
        e.state = state;
        if let Some(t) = deadline(state) {
            self.waiting.insert((t, key.to_string()));
        }
        if state == State::Active {
            self.active.insert(active_key(e, key));
        }
    }

    /// Backoffs that ran out and pods parked too long become active.
    fn flush(&mut self, now: Instant) {
        while let Some((t, key)) = self.waiting.first().cloned() {
            if t > now {
                break;
            }
            self.set_state(&key, State::Active);
        }
    }
}

/// When a waiting entry becomes active on its own.
fn deadline(state: State) -> Option<Instant> {
    match state {
        State::Backoff(t) => Some(t),
        State::Unschedulable { since, .. } => Some(since + MAX_UNSCHEDULABLE),
        _ => None,
    }
}

fn active_key(e: &Entry, key: &str) -> ActiveKey {
    (Reverse(priority(&e.pod)), e.seq, key.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{pod, PodExt};

    fn p(name: &str, prio: i32) -> Arc<Pod> {
        let mut p = pod(name, "", "");
        p.spec_mut().priority = Some(prio);
        Arc::new(p)
    }

    #[test]
    fn backoff_doubles_up_to_ten_seconds() {
        let secs: Vec<u64> = (1..=6).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 10, 10]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn higher_priority_first_then_arrival_order() {
        let now = Instant::now();
        let mut q = Queue::default();
        q.add_or_update(p("low", 0), now);
        q.add_or_update(p("high", 100), now);
        q.add_or_update(p("low2", 0), now);
        let order: Vec<String> = std::iter::from_fn(|| q.pop(now))
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(order, vec!["high", "low", "low2"]);
    }

    #[test]
    fn unschedulable_pods_wait_for_a_change_and_their_backoff() {
        let now = Instant::now();
        let mut q = Queue::default();
        q.add_or_update(p("a", 0), now);
        let pod = q.pop(now).unwrap();
        let key = pod_key(&pod);
        q.unschedulable(&key, now);
        // Parked: no change, nothing to pop even after the backoff.
        assert!(q.pop(now + Duration::from_secs(2)).is_none());
        assert_eq!(q.lengths().unschedulable, 1);
        // A change inside the backoff: it waits for the backoff.
        q.move_all(now);
        assert!(q.pop(now).is_none());
        assert_eq!(q.next_wakeup(), Some(now + INITIAL_BACKOFF));
        assert!(q.pop(now + INITIAL_BACKOFF).is_some());
    }

    #[test]
    fn a_change_during_the_cycle_is_not_missed() {
        let now = Instant::now();
        let mut q = Queue::default();
        q.add_or_update(p("a", 0), now);
        let key = pod_key(&q.pop(now).unwrap());
        q.move_all(now);
        q.unschedulable(&key, now);
        assert!(q.pop(now + INITIAL_BACKOFF).is_some());
    }

    #[test]
    fn parked_pods_retry_after_five_minutes() {
        let now = Instant::now();
        let mut q = Queue::default();
        q.add_or_update(p("a", 0), now);
        let key = pod_key(&q.pop(now).unwrap());
        q.unschedulable(&key, now);
        assert!(q.pop(now + MAX_UNSCHEDULABLE).is_some());
    }
}
