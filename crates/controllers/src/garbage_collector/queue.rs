//! A work queue that holds each item once (upstream's workqueue): adding what is already
//! waiting does nothing, and failed work comes back after a delay.

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

pub struct Queue<T> {
    inner: Arc<Inner<T>>,
}

struct Inner<T> {
    items: Mutex<(VecDeque<T>, HashSet<T>)>,
    ready: Notify,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Queue {
            inner: Arc::new(Inner {
                items: Mutex::new((VecDeque::new(), HashSet::new())),
                ready: Notify::new(),
            }),
        }
    }
}

impl<T: Clone + Eq + Hash + Send + 'static> Queue<T> {
    pub fn push(&self, item: T) {
        let mut items = self.inner.items.lock().unwrap_or_else(|e| e.into_inner());
        if items.1.insert(item.clone()) {
            items.0.push_back(item);
            self.inner.ready.notify_one();
        }
    }

    pub fn extend(&self, items: impl IntoIterator<Item = T>) {
        items.into_iter().for_each(|i| self.push(i));
    }

    /// Adds `item` again after `delay`.
    pub fn later(&self, item: T, delay: Duration) {
        let queue = Queue {
            inner: self.inner.clone(),
        };
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.push(item);
        });
    }

    /// The next item, waiting for one.
    pub async fn pop(&self) -> T {
        loop {
            let notified = self.inner.ready.notified();
            {
                let mut items = self.inner.items.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(item) = items.0.pop_front() {
                    items.1.remove(&item);
                    if !items.0.is_empty() {
                        self.inner.ready.notify_one();
                    }
                    return item;
                }
            }
            notified.await;
        }
    }
}
