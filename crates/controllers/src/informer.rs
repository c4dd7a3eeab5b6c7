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
        .filter_map(|event| async move {
            match event {
                Ok(Event::Apply(o) | Event::Delete(o) | Event::InitApply(o)) => Some(o),
                Ok(Event::Init | Event::InitDone) => None,
                Err(e) => {
                    tracing::warn!(error = %e, kind = %K::kind(&Default::default()), "watch failed; retrying");
                    None
                }
            }
        })
        .boxed();
    (store, changes)
}
