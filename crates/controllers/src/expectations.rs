//! What a controller has just written and its caches have not shown yet (upstream's
//! ControllerExpectations and the job controller's finalizer expectations).
//!
//! A reconcile that runs again before the watch delivers its own writes would otherwise create
//! the same pods twice, or count a finished pod again whose finalizer it already removed. Until
//! every expectation of an owner is seen in the store (or has waited five minutes, as upstream's
//! ExpectationsTimeout), the controller only updates status.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::runtime::reflector::{ObjectRef, Store};
use kube::Resource;

const TIMEOUT: Duration = Duration::from_secs(300);

/// What the store should show about one object.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Expect {
    /// It exists (it was created).
    Exists,
    /// It is gone or being deleted.
    Gone,
    /// It is gone or no longer has this finalizer.
    Without(&'static str),
}

/// (namespace, name, what, since when).
type Entry = (String, String, Expect, Instant);

#[derive(Default)]
pub struct Expectations {
    /// Owner key → (namespace, name, what) with when it was expected.
    pending: Mutex<HashMap<String, Vec<Entry>>>,
}

impl Expectations {
    pub fn expect(&self, owner: &str, namespace: &str, name: &str, what: Expect) {
        self.lock().entry(owner.to_string()).or_default().push((
            namespace.to_string(),
            name.to_string(),
            what,
            Instant::now(),
        ));
    }

    /// Whether the store shows everything expected of `owner`; what it shows is forgotten.
    pub fn satisfied<K>(&self, owner: &str, store: &Store<K>) -> bool
    where
        K: Resource<DynamicType = ()> + Clone + 'static,
    {
        let mut pending = self.lock();
        let Some(list) = pending.get_mut(owner) else {
            return true;
        };
        list.retain(|(ns, name, what, since)| {
            let seen = store.get(&ObjectRef::new(name).within(ns));
            let shown = match (what, seen) {
                (Expect::Exists, seen) => seen.is_some(),
                (Expect::Gone, None) => true,
                (Expect::Gone, Some(o)) => o.meta().deletion_timestamp.is_some(),
                (Expect::Without(_), None) => true,
                (Expect::Without(f), Some(o)) => {
                    !o.meta().finalizers.iter().flatten().any(|x| x == f)
                }
            };
            !shown && since.elapsed() < TIMEOUT
        });
        let done = list.is_empty();
        if done {
            pending.remove(owner);
        }
        done
    }

    /// A watch event showed the object: an expected creation counts as seen even if the object
    /// is gone again before the next sync looks at the store (upstream's CreationObserved).
    pub fn observed(&self, owner: &str, namespace: &str, name: &str) {
        if let Some(list) = self.lock().get_mut(owner) {
            list.retain(|(ns, n, what, _)| {
                !(*what == Expect::Exists && ns == namespace && n == name)
            });
        }
    }

    /// Names still expected to lose `finalizer` (so their finalizer is not counted again).
    pub fn losing(&self, owner: &str, finalizer: &str) -> Vec<String> {
        self.lock()
            .get(owner)
            .into_iter()
            .flatten()
            .filter(|(_, _, what, _)| matches!(what, Expect::Without(f) if *f == finalizer))
            .map(|(_, name, _, _)| name.clone())
            .collect()
    }

    pub fn forget(&self, owner: &str) {
        self.lock().remove(owner);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Entry>>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}
