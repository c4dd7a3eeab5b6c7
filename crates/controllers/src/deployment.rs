//! The Deployment controller (upstream's pkg/controller/deployment): rolls a Deployment's pod
//! template out through ReplicaSets named `<deployment>-<pod-template-hash>`, one per template
//! revision, scaling the new one up and the old ones down as the strategy allows (RollingUpdate
//! with maxSurge/maxUnavailable, or Recreate), and reports progress in the status conditions
//! `kubectl rollout status` reads.
//!
//! The ReplicaSet and pod reflectors are both caches for the reconcile and triggers: a
//! ReplicaSet wakes its controlling Deployment (or, an orphan, the Deployments that could adopt
//! it); a pod wakes the Deployment of its ReplicaSet only under Recreate, which waits for the
//! old pods to be gone.

mod progress;
mod recreate;
mod rolling;
mod sync;
mod util;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use component_base::label_selector;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::events;
use crate::ownership::{self, Claim};

const NAME: &str = "deployment";
const ACCOUNT: &str = "deployment-controller";

struct State {
    client: Client,
    sets: Store<ReplicaSet>,
    pods: Store<Pod>,
    /// Events get a recorder each: kube-rs's folds events of one reason into a series that
    /// keeps the first note, where upstream keeps each distinct message.
    ctx: Context,
}

pub async fn run(ctx: Context) -> Result<()> {
    let client = ctx.client_for(ACCOUNT).await?;
    let (sets, set_writer) = reflector::store();
    let set_events = watcher(
        Api::<ReplicaSet>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(set_writer)
    .touched_objects();
    let (pods, pod_writer) = reflector::store();
    let pod_events = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(pod_writer)
        .touched_objects();
    let controller = Controller::new(
        Api::<Deployment>::all(client.clone()),
        watcher::Config::default(),
    );
    let deployments = controller.store();
    let for_sets = deployments.clone();
    let sets_for_pods = sets.clone();
    let state = Arc::new(State {
        client,
        sets,
        pods,
        ctx: ctx.clone(),
    });
    controller
        .watches_stream(set_events, move |rs| deployments_for_set(&for_sets, &rs))
        .watches_stream(pod_events, move |pod| {
            recreate_deployment_of_pod(&deployments, &sets_for_pods, &pod)
        })
        .run(reconcile, error_policy, state)
        .for_each(|result| {
            ctx.metrics.reconciled(NAME, &result);
            std::future::ready(())
        })
        .await;
    Ok(())
}

/// The Deployment controlling the ReplicaSet, or, for an orphan, every Deployment that could
/// adopt it.
fn deployments_for_set(
    deployments: &Store<Deployment>,
    rs: &ReplicaSet,
) -> Vec<ObjectRef<Deployment>> {
    let ns = rs.namespace().unwrap_or_default();
    if let Some(owner) = ownership::controller_of(&rs.metadata) {
        return match owner.kind == "Deployment" && owner.api_version == "apps/v1" {
            true => vec![ObjectRef::new(&owner.name).within(&ns)],
            false => Vec::new(),
        };
    }
    deployments
        .state_filter(|d| {
            d.metadata.namespace.as_deref() == Some(ns.as_str())
                && d.spec.as_ref().is_some_and(|s| {
                    label_selector::matches(&s.selector, rs.metadata.labels.as_ref())
                })
        })
        .iter()
        .map(|d| ObjectRef::from_obj(d.as_ref()))
        .collect()
}

/// A Recreate Deployment waits for its old pods to go; their changes wake it.
fn recreate_deployment_of_pod(
    deployments: &Store<Deployment>,
    sets: &Store<ReplicaSet>,
    pod: &Pod,
) -> Option<ObjectRef<Deployment>> {
    let ns = pod.namespace().unwrap_or_default();
    let owner = ownership::controller_of(&pod.metadata).filter(|o| o.kind == "ReplicaSet")?;
    let rs = sets.get(&ObjectRef::new(&owner.name).within(&ns))?;
    let d_owner = ownership::controller_of(&rs.metadata).filter(|o| o.kind == "Deployment")?;
    let key = ObjectRef::new(&d_owner.name).within(&ns);
    let d = deployments.get(&key)?;
    (!util::is_rolling(&d)).then_some(key)
}

/// A conflict (a write from a stale cache) is retried at once, as upstream's rate limiter
/// starts at 5 ms; anything else after a pause.
fn error_policy(_d: Arc<Deployment>, error: &Error, _state: Arc<State>) -> Action {
    tracing::debug!(%error, "deployment: retrying");
    match api_code(error) {
        Some(409) => Action::requeue(Duration::from_millis(100)),
        _ => Action::requeue(Duration::from_secs(1)),
    }
}

async fn reconcile(d: Arc<Deployment>, state: Arc<State>) -> Result<Action> {
    let _ = state.sets.wait_until_ready().await;
    let _ = state.pods.wait_until_ready().await;
    let mut rollout = Rollout::new(&state, (*d).clone());
    rollout.sync().await?;
    Ok(rollout
        .requeue
        .map(Action::requeue)
        .unwrap_or_else(Action::await_change))
}

/// One sync of one Deployment: the working copy `d` is kept as the server last returned it.
struct Rollout<'a> {
    state: &'a State,
    d: Deployment,
    deployments: Api<Deployment>,
    sets: Api<ReplicaSet>,
    /// When to look again although nothing changes (the progress deadline).
    requeue: Option<Duration>,
}

impl<'a> Rollout<'a> {
    fn new(state: &'a State, d: Deployment) -> Rollout<'a> {
        let ns = d.namespace().unwrap_or_default();
        Rollout {
            deployments: Api::namespaced(state.client.clone(), &ns),
            sets: Api::namespaced(state.client.clone(), &ns),
            state,
            d,
            requeue: None,
        }
    }

    /// Upstream's syncDeployment.
    async fn sync(&mut self) -> Result<()> {
        let selector = self
            .d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        let selects_all = selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
            && selector
                .match_expressions
                .as_ref()
                .is_none_or(|e| e.is_empty());
        if selects_all {
            self.event(
                EventType::Warning,
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.".into(),
            );
            let status = self.d.status.get_or_insert_with(Default::default);
            if status.observed_generation < self.d.metadata.generation {
                status.observed_generation = self.d.metadata.generation;
                self.write_status().await?;
            }
            return Ok(());
        }
        let mut sets = self.claim_replica_sets().await?;
        if self.d.metadata.deletion_timestamp.is_some() {
            return self.sync_status_only(&mut sets).await;
        }
        self.check_paused_conditions().await?;
        if util::paused(&self.d) || self.is_scaling_event(&mut sets).await? {
            return self.sync_scale(&mut sets).await;
        }
        match util::is_rolling(&self.d) {
            true => self.rollout_rolling(&mut sets).await,
            false => self.rollout_recreate(&mut sets).await,
        }
    }

    /// ReplicaSets of the namespace that are this Deployment's, adopting matching orphans and
    /// releasing owned ones that no longer match (upstream's getReplicaSetsForDeployment).
    async fn claim_replica_sets(&mut self) -> Result<Vec<ReplicaSet>> {
        let ns = self.d.namespace().unwrap_or_default();
        let uid = self.d.uid().unwrap_or_default();
        let selector = self
            .d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        let deleting = self.d.metadata.deletion_timestamp.is_some();
        let candidates = self
            .state
            .sets
            .state_filter(|rs| rs.metadata.namespace.as_deref() == Some(ns.as_str()));
        let mut owned = Vec::new();
        let mut fresh_checked = false;
        for rs in candidates {
            match ownership::claim(&uid, deleting, &selector, &rs.metadata) {
                Claim::Owned => owned.push((*rs).clone()),
                Claim::Adopt => {
                    if !fresh_checked {
                        let fresh = self.deployments.get(&self.d.name_any()).await?;
                        if fresh.uid() != self.d.uid()
                            || fresh.metadata.deletion_timestamp.is_some()
                        {
                            return Err(Error::Invalid("deployment changed; not adopting".into()));
                        }
                        fresh_checked = true;
                    }
                    let owner = ownership::controller_ref(&self.d);
                    match ownership::adopt(&self.sets, &rs.metadata, owner).await {
                        Ok(adopted) => owned.push(adopted),
                        Err(e) if api_code(&e).is_some_and(|c| c == 404 || c == 409) => {}
                        Err(e) => return Err(e),
                    }
                }
                Claim::Release => match ownership::release(&self.sets, &rs.metadata, &uid).await {
                    Ok(_) => {}
                    Err(e) if api_code(&e).is_some_and(|c| c == 404 || c == 409) => {}
                    Err(e) => return Err(e),
                },
                Claim::Ignore => {}
            }
        }
        Ok(owned)
    }

    /// Active pods selected by the Deployment, by the uid of the owned ReplicaSet controlling
    /// them (upstream's getPodMapForDeployment, for Recreate).
    fn pods_by_set(&self, sets: &[ReplicaSet]) -> HashMap<String, Vec<Arc<Pod>>> {
        let ns = self.d.namespace().unwrap_or_default();
        let uids: Vec<String> = sets.iter().filter_map(|rs| rs.uid()).collect();
        let mut map: HashMap<String, Vec<Arc<Pod>>> = HashMap::new();
        for pod in self
            .state
            .pods
            .state_filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
        {
            if let Some(owner) = ownership::controller_of(&pod.metadata) {
                if uids.contains(&owner.uid) {
                    map.entry(owner.uid.clone()).or_default().push(pod);
                }
            }
        }
        map
    }

    /// Writes the working copy's status; a changed revision annotation goes through the main
    /// resource, as our status update keeps the stored metadata.
    async fn write_status(&mut self) -> Result<()> {
        let revision = annotation(&self.d, util::REVISION);
        let name = self.d.name_any();
        let mut updated = self
            .deployments
            .replace_status(&name, &PostParams::default(), &self.d)
            .await?;
        if annotation(&updated, util::REVISION) != revision {
            if let Some(r) = &revision {
                util::set_deployment_revision(&mut updated, r);
                updated = self
                    .deployments
                    .replace(&name, &PostParams::default(), &updated)
                    .await?;
            }
        }
        self.d = updated;
        Ok(())
    }

    /// Publishes an event about the Deployment off the sync path, with a recorder of its own
    /// (see [`crate::replicaset`]: kube-rs's recorder would fold distinct notes of one reason).
    fn event(&self, type_: EventType, reason: &'static str, note: String) {
        let recorder = self.state.ctx.recorder(self.state.client.clone(), ACCOUNT);
        let regarding = self.d.object_ref(&());
        tokio::spawn(
            async move { events::record(&recorder, &regarding, type_, reason, &note).await },
        );
    }
}

fn annotation(d: &Deployment, key: &str) -> Option<String> {
    d.metadata.annotations.as_ref()?.get(key).cloned()
}

fn api_code(e: &Error) -> Option<u16> {
    match e {
        Error::Kube(kube::Error::Api(s)) => Some(s.code),
        _ => None,
    }
}
