//! Upstream's shared informers, as kube-runtime pieces: a reflector store kept current by a
//! watch (with backoff after errors), and the stream of objects that changed, deleted ones
//! included, for a controller's event handlers.
//!
//! Informers use the controller manager's own client, as upstream's `shared-informers` client:
//! its role may list and watch everything; the controllers write with their own accounts.

use std::fmt::Debug;
use std::hash::Hash;

use futures::stream::BoxStream;
use futures::StreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

/// A store of `api`'s objects and the stream that keeps it current; the store changes only while
/// the stream is polled, and an object comes out of the stream after the store has it (or, when
/// deleted, no longer has it).
pub fn start<K>(api: Api<K>, config: watcher::Config) -> (Store<K>, BoxStream<'static, K>)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let (store, writer) = reflector::store();
    let changes = reflector::reflector(writer, watcher::watcher(api, config))
        .default_backoff()
        .scan(Vec::new(), |listed, event| {
            futures::future::ready(Some(after_the_store(listed, event)))
        })
        .flat_map(futures::stream::iter)
        .boxed();
    (store, changes)
}

/// The objects an event makes visible. A (re)list's objects reach the store only at `InitDone`,
/// when the reflector swaps the listed set in, so they are held until then: a controller that
/// looks an object up as it comes out of the stream must find it (a service seen in the initial
/// list was otherwise taken for deleted and never synced).
fn after_the_store<K>(listed: &mut Vec<K>, event: Result<Event<K>, watcher::Error>) -> Vec<K>
where
    K: Resource,
    K::DynamicType: Default,
{
    match event {
        Ok(Event::Apply(o) | Event::Delete(o)) => vec![o],
        Ok(Event::Init) => {
            listed.clear();
            Vec::new()
        }
        Ok(Event::InitApply(o)) => {
            listed.push(o);
            Vec::new()
        }
        Ok(Event::InitDone) => std::mem::take(listed),
        Err(e) => {
            tracing::warn!(error = %e, kind = %K::kind(&Default::default()), "watch failed; retrying");
            Vec::new()
        }
    }
}
