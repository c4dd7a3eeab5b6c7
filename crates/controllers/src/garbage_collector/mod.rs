//! Upstream's garbage collector (pkg/controller/garbagecollector): a dependency graph built
//! from the ownerReferences of every resource that can be listed, watched and deleted
//! (rediscovered every 30 s, so CRDs added later are collected too), and workers that
//!
//! - delete, in the background, dependents whose owners are all gone, after checking each
//!   owner's absence by a live read by uid;
//! - for an owner deleted in the foreground (`foregroundDeletion` finalizer), delete its
//!   dependents and drop the finalizer once no dependent with `blockOwnerDeletion` is left;
//! - for an owner deleted with `orphan`, remove its reference from every dependent, then drop
//!   the finalizer.
//!
//! It watches with the controller manager's own client and reads, patches and deletes as
//! `generic-garbage-collector`, as upstream.

mod graph;
mod queue;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::runtime::events::{Event as Note, EventType, Recorder};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Client;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::context::Context;
use crate::discovery::{self, Served};
use crate::error::{Error, Result};
use graph::{Graph, Identity, Node, Work, FOREGROUND, ORPHAN};
use queue::Queue;

const NAME: &str = "garbagecollector";
/// How often the served resources are discovered again (upstream's 30 s resync of monitors).
const REDISCOVERY: Duration = Duration::from_secs(30);
/// Upstream's `--concurrent-gc-syncs` default.
const WORKERS: usize = 20;
/// Resources upstream's garbage collector never watches.
const IGNORED: &[(&str, &str)] = &[("", "events"), ("events.k8s.io", "events")];

/// Served resources by (group, kind), for resolving owner references.
type Kinds = Arc<RwLock<HashMap<(String, String), Served>>>;

struct Collector {
    ctx: Context,
    client: Client,
    recorder: Recorder,
    graph: Mutex<Graph>,
    kinds: Kinds,
    queue: Queue<Work>,
    /// The uids each relisting resource has listed so far (between Init and InitDone).
    relists: Mutex<HashMap<(String, String), HashSet<String>>>,
}

pub async fn run(ctx: Context) -> Result<()> {
    let client = ctx.client_for("generic-garbage-collector").await?;
    let gc = Arc::new(Collector {
        recorder: ctx.recorder(client.clone(), "garbage-collector-controller"),
        ctx,
        client,
        graph: Mutex::default(),
        kinds: Kinds::default(),
        queue: Queue::default(),
        relists: Mutex::default(),
    });
    let (events, mut incoming) = mpsc::channel(1024);
    let mut monitors: HashMap<(String, String), JoinHandle<()>> = HashMap::new();
    let mut started = false;
    let mut rediscover = tokio::time::interval(REDISCOVERY);
    loop {
        tokio::select! {
            _ = rediscover.tick() => {
                match gc.monitor(&mut monitors, &events).await {
                    Ok(()) if !started => {
                        started = true;
                        gc.start_workers(monitors.len(), &mut incoming).await;
                    }
                    Ok(()) => {}
                    Err(e) => tracing::warn!(error = %e, "garbage collector: discovery failed; keeping the current monitors"),
                }
            }
            Some(change) = incoming.recv() => gc.observe(change),
        }
    }
}

/// One watch event of one resource.
struct Change {
    resource: Served,
    event: Event<DynamicObject>,
}

impl Collector {
    /// Watches every deletable resource not yet watched, and stops watching those gone.
    async fn monitor(
        &self,
        monitors: &mut HashMap<(String, String), JoinHandle<()>>,
        events: &mpsc::Sender<Change>,
    ) -> Result<()> {
        let served = discovery::served(&self.ctx.client, &["list", "watch", "delete"]).await?;
        let served: Vec<Served> = served
            .into_iter()
            .filter(|s| !IGNORED.contains(&(s.resource.group.as_str(), s.resource.plural.as_str())))
            .collect();
        let kinds = served
            .iter()
            .map(|s| {
                (
                    (s.resource.group.clone(), s.resource.kind.clone()),
                    s.clone(),
                )
            })
            .collect();
        *self.kinds.write().unwrap_or_else(|e| e.into_inner()) = kinds;
        let wanted: HashSet<_> = served.iter().map(key).collect();
        monitors.retain(|k, task| {
            let keep = wanted.contains(k);
            if !keep {
                tracing::info!(resource = ?k, "garbage collector: resource no longer served; stopped watching it");
                task.abort();
            }
            keep
        });
        for s in served {
            if monitors.contains_key(&key(&s)) {
                continue;
            }
            tracing::debug!(resource = %s.group_resource(), "garbage collector: watching");
            monitors.insert(
                key(&s),
                tokio::spawn(watch(self.ctx.client.clone(), s, events.clone())),
            );
        }
        Ok(())
    }

    /// Feeds the graph until every monitor has listed once (as upstream waits for its caches),
    /// then starts the workers.
    async fn start_workers(
        self: &Arc<Self>,
        monitors: usize,
        incoming: &mut mpsc::Receiver<Change>,
    ) {
        let mut listed = HashSet::new();
        let deadline = tokio::time::sleep(Duration::from_secs(60));
        tokio::pin!(deadline);
        while listed.len() < monitors {
            tokio::select! {
                Some(change) = incoming.recv() => {
                    if matches!(change.event, Event::InitDone) {
                        listed.insert(key(&change.resource));
                    }
                    self.observe(change);
                }
                _ = &mut deadline => {
                    tracing::warn!("garbage collector: not every resource listed within 60 s; starting anyway");
                    break;
                }
            }
        }
        tracing::info!(
            nodes = self.graph().len(),
            "garbage collector: graph built; collecting"
        );
        for _ in 0..WORKERS {
            let gc = self.clone();
            tokio::spawn(async move {
                loop {
                    let work = gc.queue.pop().await;
                    gc.process(work).await;
                }
            });
        }
    }

    fn graph(&self) -> std::sync::MutexGuard<'_, Graph> {
        self.graph.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Upstream's processGraphChanges: the graph follows the watches; a relist that no longer
    /// has an object counts as its deletion.
    fn observe(&self, change: Change) {
        let ar = &change.resource.resource;
        let work = match change.event {
            Event::Apply(obj) | Event::InitApply(obj) => match identity(&change.resource, &obj) {
                Some(id) => {
                    self.relisted(&change.resource, &id.uid);
                    self.graph().apply(id, &obj.metadata)
                }
                None => Vec::new(),
            },
            Event::Delete(obj) => match obj.metadata.uid {
                Some(uid) => self.graph().remove(&uid),
                None => Vec::new(),
            },
            Event::Init => {
                self.relists().insert(key(&change.resource), HashSet::new());
                Vec::new()
            }
            Event::InitDone => {
                let seen = self
                    .relists()
                    .remove(&key(&change.resource))
                    .unwrap_or_default();
                let mut graph = self.graph();
                graph
                    .observed_of(&ar.api_version, &ar.kind)
                    .into_iter()
                    .filter(|uid| !seen.contains(uid))
                    .flat_map(|uid| graph.remove(&uid))
                    .collect()
            }
        };
        self.queue.extend(work);
    }

    fn relists(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), HashSet<String>>> {
        self.relists.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn relisted(&self, resource: &Served, uid: &str) {
        if let Some(seen) = self.relists().get_mut(&key(resource)) {
            seen.insert(uid.to_string());
        }
    }

    async fn process(&self, work: Work) {
        let result = match &work {
            Work::Delete(uid) => self.attempt_to_delete(uid).await,
            Work::Orphan(uid) => self.attempt_to_orphan(uid).await,
        };
        match result {
            Ok(()) => self.ctx.metrics.synced(NAME),
            Err(e) => {
                tracing::warn!(?work, error = %e, "garbage collector: retrying");
                self.ctx.metrics.sync_failed(NAME);
                self.queue.later(work, Duration::from_secs(1));
            }
        }
    }

    /// The API of the node's resource, in its namespace (if the resource is namespaced).
    fn api_for(&self, id: &Identity) -> Result<(Api<DynamicObject>, bool), Unresolved> {
        let group = id
            .api_version
            .rsplit_once('/')
            .map(|(g, _)| g)
            .unwrap_or("");
        let kinds = self.kinds.read().unwrap_or_else(|e| e.into_inner());
        let served = kinds
            .get(&(group.to_string(), id.kind.clone()))
            .ok_or(Unresolved)?;
        let api = match (&id.namespace, served.namespaced) {
            (Some(ns), true) => Api::namespaced_with(self.client.clone(), ns, &served.resource),
            (None, true) => {
                return Ok((Api::all_with(self.client.clone(), &served.resource), true))
            }
            (_, false) => Api::all_with(self.client.clone(), &served.resource),
        };
        Ok((api, served.namespaced))
    }

    /// The object as it is now, if it is still the one of that uid.
    async fn live(&self, id: &Identity) -> Result<Option<DynamicObject>> {
        let Ok((api, _)) = self.api_for(id) else {
            return Err(Error::Invalid(format!(
                "no served resource for {} {}",
                id.api_version, id.kind
            )));
        };
        let found = api.get_opt(&id.name).await?;
        Ok(found.filter(|o| o.metadata.uid.as_deref() == Some(id.uid.as_str())))
    }

    /// Upstream's attemptToDeleteItem.
    async fn attempt_to_delete(&self, uid: &str) -> Result<()> {
        let Some(node) = self.graph().node(uid).cloned() else {
            return Ok(());
        };
        let Some(latest) = self.live(&node.identity).await? else {
            tracing::debug!(uid, name = %node.identity.name, "garbage collector: object absent; its dependents are checked");
            let work = self.graph().remove(uid);
            self.queue.extend(work);
            return Ok(());
        };
        if !node.observed {
            // A virtual owner that exists: the watch will bring it.
            return Ok(());
        }
        let finalizers = latest.metadata.finalizers.clone().unwrap_or_default();
        let deleting = latest.metadata.deletion_timestamp.is_some();
        if deleting && finalizers.iter().any(|f| f == FOREGROUND) {
            return self.deleting_dependents(&node, &latest).await;
        }
        if deleting {
            return Ok(());
        }
        let owners = latest.metadata.owner_references.clone().unwrap_or_default();
        if owners.is_empty() {
            return Ok(());
        }
        let mut solid = Vec::new();
        let mut dangling = Vec::new();
        let mut waiting = Vec::new();
        for owner in &owners {
            match self.owner_state(&node, owner).await? {
                OwnerState::Solid => solid.push(owner.uid.clone()),
                OwnerState::Dangling => dangling.push(owner.uid.clone()),
                OwnerState::Waiting => waiting.push(owner.uid.clone()),
            }
        }
        if !solid.is_empty() {
            let gone: Vec<String> = dangling.into_iter().chain(waiting).collect();
            if !gone.is_empty() {
                tracing::info!(name = %node.identity.name, owners = ?gone, "garbage collector: removing references to owners that are gone or going");
                self.remove_owner_refs(&node.identity, &latest, &gone)
                    .await?;
            }
            return Ok(());
        }
        let has_dependents = !self.graph().dependents(uid).is_empty();

        let policy = if !waiting.is_empty() && has_dependents {
            // Its owner waits for it and it has dependents of its own: go in the foreground
            // too, and stop blocking the owner meanwhile, as upstream.
            self.unblock(&node.identity, &latest, &waiting).await?;
            PropagationPolicy::Foreground
        } else if finalizers.iter().any(|f| f == ORPHAN) {
            PropagationPolicy::Orphan
        } else if finalizers.iter().any(|f| f == FOREGROUND) {
            PropagationPolicy::Foreground
        } else {
            PropagationPolicy::Background
        };
        tracing::info!(kind = %node.identity.kind, name = %node.identity.name, namespace = ?node.identity.namespace, ?policy, "garbage collector: deleting an object whose owners are gone");
        self.delete(&node.identity, policy).await
    }

    /// Upstream's processDeletingDependentsItem: the finalizer goes once no blocking dependent
    /// is left; until then the blocking dependents are deleted.
    async fn deleting_dependents(&self, node: &Node, latest: &DynamicObject) -> Result<()> {
        let blocking = self.graph().blocking_dependents(&node.identity.uid);
        if blocking.is_empty() {
            tracing::info!(name = %node.identity.name, "garbage collector: dependents deleted; removing foregroundDeletion");
            return self
                .remove_finalizer(&node.identity, latest, FOREGROUND)
                .await;
        }
        let pending = blocking.into_iter().filter(|d| !d.deleting);
        self.queue
            .extend(pending.map(|d| Work::Delete(d.identity.uid)));
        Ok(())
    }

    /// Whether one owner of `node` exists: from the graph when it was observed there, else by
    /// a live read by uid (upstream's isDangling).
    async fn owner_state(
        &self,
        node: &Node,
        owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    ) -> Result<OwnerState> {
        if let Some(o) = self.graph().node(&owner.uid).filter(|o| o.observed) {
            return Ok(match o.deleting_dependents {
                true => OwnerState::Waiting,
                false => OwnerState::Solid,
            });
        }
        let id = Identity {
            api_version: owner.api_version.clone(),
            kind: owner.kind.clone(),
            namespace: node.identity.namespace.clone(),
            name: owner.name.clone(),
            uid: owner.uid.clone(),
        };
        match self.api_for(&id) {
            Err(Unresolved) => {
                return Err(Error::Invalid(format!(
                    "owner {} {} of {} is of no served resource",
                    owner.api_version, owner.kind, node.identity.name
                )))
            }
            Ok((_, true)) if node.identity.namespace.is_none() => {
                // A cluster-scoped object cannot be owned by a namespaced one.
                self.invalid_owner(node, owner).await;
                return Ok(OwnerState::Dangling);
            }
            Ok(_) => {}
        }
        Ok(match self.live(&id).await? {
            None => OwnerState::Dangling,
            Some(o)
                if o.metadata.deletion_timestamp.is_some()
                    && o.metadata
                        .finalizers
                        .iter()
                        .flatten()
                        .any(|f| f == FOREGROUND) =>
            {
                OwnerState::Waiting
            }
            Some(_) => OwnerState::Solid,
        })
    }

    async fn invalid_owner(
        &self,
        node: &Node,
        owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    ) {
        let note = Note {
            type_: EventType::Warning,
            reason: "OwnerRefInvalidNamespace".into(),
            note: Some(format!(
                "ownerRef [{}/{}, namespace: , name: {}, uid: {}] does not exist in namespace \"\"",
                owner.api_version, owner.kind, owner.name, owner.uid
            )),
            action: "GarbageCollect".into(),
            secondary: None,
        };
        let reference = ObjectReference {
            api_version: Some(node.identity.api_version.clone()),
            kind: Some(node.identity.kind.clone()),
            name: Some(node.identity.name.clone()),
            uid: Some(node.identity.uid.clone()),
            ..Default::default()
        };
        if let Err(e) = self.recorder.publish(&note, &reference).await {
            tracing::debug!(error = %e, "cannot record the event");
        }
    }

    /// Upstream's attemptToOrphan: every dependent loses its reference to the owner, then the
    /// owner loses its `orphan` finalizer.
    async fn attempt_to_orphan(&self, uid: &str) -> Result<()> {
        let Some(node) = self.graph().node(uid).cloned() else {
            return Ok(());
        };
        let Some(latest) = self.live(&node.identity).await? else {
            return Ok(());
        };
        let orphaning = latest.metadata.deletion_timestamp.is_some()
            && latest
                .metadata
                .finalizers
                .iter()
                .flatten()
                .any(|f| f == ORPHAN);
        if !orphaning {
            return Ok(());
        }
        let dependents = self.graph().dependents(uid);
        for dependent in dependents {
            let Some(obj) = self.live(&dependent.identity).await? else {
                continue;
            };
            self.remove_owner_refs(&dependent.identity, &obj, &[uid.to_string()])
                .await?;
        }
        tracing::info!(name = %node.identity.name, "garbage collector: dependents orphaned; removing the orphan finalizer");
        self.remove_finalizer(&node.identity, &latest, ORPHAN).await
    }

    async fn delete(&self, id: &Identity, policy: PropagationPolicy) -> Result<()> {
        let (api, _) = self
            .api_for(id)
            .map_err(|_| Error::Invalid(format!("no resource for {}", id.kind)))?;
        let params = DeleteParams {
            propagation_policy: Some(policy),
            preconditions: Some(Preconditions {
                uid: Some(id.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&id.name, &params).await {
            Ok(_) => Ok(()),
            // Gone already, or a newer object of the same name: nothing to do.
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Drops the references to `owners` from the object.
    async fn remove_owner_refs(
        &self,
        id: &Identity,
        obj: &DynamicObject,
        owners: &[String],
    ) -> Result<()> {
        let refs: Vec<_> = obj
            .metadata
            .owner_references
            .iter()
            .flatten()
            .filter(|r| !owners.contains(&r.uid))
            .collect();
        self.patch(id, obj, "ownerReferences", json!(refs)).await
    }

    /// Sets `blockOwnerDeletion: false` on the references to owners waiting for this object.
    async fn unblock(&self, id: &Identity, obj: &DynamicObject, owners: &[String]) -> Result<()> {
        let refs: Vec<_> = obj
            .metadata
            .owner_references
            .iter()
            .flatten()
            .cloned()
            .map(|mut r| {
                if owners.contains(&r.uid) {
                    r.block_owner_deletion = Some(false);
                }
                r
            })
            .collect();
        self.patch(id, obj, "ownerReferences", json!(refs)).await
    }

    async fn remove_finalizer(
        &self,
        id: &Identity,
        obj: &DynamicObject,
        finalizer: &str,
    ) -> Result<()> {
        let finalizers: Vec<_> = obj
            .metadata
            .finalizers
            .iter()
            .flatten()
            .filter(|f| *f != finalizer)
            .collect();
        self.patch(id, obj, "finalizers", json!(finalizers)).await
    }

    /// Sets one metadata field by a merge patch guarded by uid and resourceVersion, so a
    /// concurrent change is not lost (the conflict requeues the work, which reads again).
    async fn patch(
        &self,
        id: &Identity,
        obj: &DynamicObject,
        field: &str,
        value: serde_json::Value,
    ) -> Result<()> {
        let patch = json!({"metadata": {
            "uid": id.uid,
            "resourceVersion": obj.metadata.resource_version,
            field: value,
        }});
        let (api, _) = self
            .api_for(id)
            .map_err(|_| Error::Invalid(format!("no resource for {}", id.kind)))?;
        match api
            .patch(&id.name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            // 409: changed meanwhile; the error requeues the work, which reads it again.
            Err(e) => Err(e.into()),
        }
    }
}

enum OwnerState {
    Solid,
    Dangling,
    /// Being deleted in the foreground: it waits for its dependents.
    Waiting,
}

/// The owner's kind is not served (any more).
struct Unresolved;

fn key(s: &Served) -> (String, String) {
    (s.resource.group.clone(), s.resource.plural.clone())
}

fn identity(served: &Served, obj: &DynamicObject) -> Option<Identity> {
    Some(Identity {
        api_version: served.resource.api_version.clone(),
        kind: served.resource.kind.clone(),
        namespace: obj.metadata.namespace.clone(),
        name: obj.metadata.name.clone()?,
        uid: obj.metadata.uid.clone()?,
    })
}

/// One resource's watch, forwarded to the graph until the monitor is stopped.
async fn watch(client: Client, resource: Served, events: mpsc::Sender<Change>) {
    let api: Api<DynamicObject> = Api::all_with(client, &resource.resource);
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = stream.next().await {
        match event {
            Ok(event) => {
                let change = Change {
                    resource: resource.clone(),
                    event,
                };
                if events.send(change).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::debug!(resource = %resource.group_resource(), error = %e, "garbage collector: watch failed; retrying")
            }
        }
    }
}
