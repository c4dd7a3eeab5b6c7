//! The StatefulSet controller (upstream's pkg/controller/statefulset): pods with stable names
//! `<set>-<ordinal>` and hostnames under the governing service, a PersistentVolumeClaim per
//! volumeClaimTemplate and ordinal, OrderedReady (one at a time, in order, each Running and
//! Ready before the next; scale down from the highest) or Parallel management, and
//! RollingUpdate from the highest ordinal down to the partition (with
//! `rollingUpdate.maxUnavailable`, up to that many pods at once), or OnDelete.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::events;
use crate::history;
use crate::ownership::{self, Claim};
use crate::pods;

const NAME: &str = "statefulset-controller";
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

struct State {
    client: Client,
    pods: Store<Pod>,
    recorder: Recorder,
    metrics: crate::Metrics,
}

pub async fn run(ctx: Context) -> Result<()> {
    let client = ctx.client_for(NAME).await?;
    let (pods, writer) = reflector::store();
    let pod_events = reflector::reflector(
        writer,
        watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .touched_objects();
    let state = Arc::new(State {
        client: client.clone(),
        pods,
        recorder: ctx.recorder(client.clone(), NAME),
        metrics: ctx.metrics.clone(),
    });
    Controller::new(Api::<StatefulSet>::all(client), watcher::Config::default())
        .owns_stream(pod_events)
        .run(reconcile, error_policy, state)
        .for_each(|_| std::future::ready(()))
        .await;
    Ok(())
}

fn error_policy(_set: Arc<StatefulSet>, error: &Error, state: Arc<State>) -> Action {
    state.metrics.sync_failed("statefulset");
    tracing::debug!(%error, "statefulset sync failed");
    Action::requeue(Duration::from_secs(1))
}

async fn reconcile(set: Arc<StatefulSet>, state: Arc<State>) -> Result<Action> {
    state.pods.wait_until_ready().await.ok();
    let ns = set.namespace().unwrap_or_default();
    let api: Api<StatefulSet> = Api::namespaced(state.client.clone(), &ns);
    let Some(set) = api.get_opt(&set.name_any()).await? else {
        return Ok(Action::await_change());
    };
    let requeue = Sync::new(&state, set, &ns).await?.run().await?;
    state.metrics.synced("statefulset");
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

/// The ordinal in a pod name `<set>-<ordinal>`.
fn ordinal(set: &str, pod: &str) -> Option<i32> {
    pod.strip_prefix(set)?.strip_prefix('-')?.parse().ok()
}

/// Running and Ready: what OrderedReady waits for.
fn healthy(pod: &Pod) -> bool {
    pods::is_active(pod) && pods::phase(pod) == "Running" && pods::is_ready(pod)
}

/// The pod template a revision holds.
fn revision_template(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = revision.data.as_ref()?.0.pointer("/spec/template")?.clone();
    t.as_object_mut()?.remove("$patch");
    serde_json::from_value(t).ok()
}

struct Sync<'a> {
    state: &'a State,
    set: StatefulSet,
    pods_api: Api<Pod>,
    claims_api: Api<PersistentVolumeClaim>,
    revisions_api: Api<ControllerRevision>,
    /// The set's pods by ordinal.
    pods: BTreeMap<i32, Arc<Pod>>,
    now: Timestamp,
}

impl<'a> Sync<'a> {
    async fn new(state: &'a State, set: StatefulSet, ns: &str) -> Result<Sync<'a>> {
        let pods_api: Api<Pod> = Api::namespaced(state.client.clone(), ns);
        let uid = set.uid().unwrap_or_default();
        let name = set.name_any();
        let selector = set
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        let deleting = set.metadata.deletion_timestamp.is_some();
        let mut by_ordinal = BTreeMap::new();
        for pod in state.pods.state() {
            if pod.namespace().as_deref() != Some(ns) {
                continue;
            }
            let pod = match ownership::claim(&uid, deleting, &selector, &pod.metadata) {
                Claim::Owned => pod,
                // Only pods named as ours are adopted (upstream's isMemberOf).
                Claim::Adopt if ordinal(&name, &pod.name_any()).is_some() => Arc::new(
                    ownership::adopt(&pods_api, &pod.metadata, ownership::controller_ref(&set))
                        .await?,
                ),
                Claim::Release => {
                    ownership::release(&pods_api, &pod.metadata, &uid).await?;
                    continue;
                }
                _ => continue,
            };
            if let Some(i) = ordinal(&name, &pod.name_any()) {
                by_ordinal.insert(i, pod);
            }
        }
        Ok(Sync {
            state,
            pods_api,
            claims_api: Api::namespaced(state.client.clone(), ns),
            revisions_api: Api::namespaced(state.client.clone(), ns),
            pods: by_ordinal,
            set,
            now: Timestamp::now(),
        })
    }

    fn spec(&self) -> &k8s_openapi::api::apps::v1::StatefulSetSpec {
        self.set
            .spec
            .as_ref()
            .expect("a stored StatefulSet has a spec")
    }

    fn parallel(&self) -> bool {
        self.spec().pod_management_policy.as_deref() == Some("Parallel")
    }

    fn rolling(&self) -> Option<i32> {
        let strategy = self.spec().update_strategy.clone().unwrap_or_default();
        match strategy.type_.as_deref().unwrap_or("RollingUpdate") {
            "RollingUpdate" => Some(
                strategy
                    .rolling_update
                    .and_then(|r| r.partition)
                    .unwrap_or(0),
            ),
            _ => None,
        }
    }

    async fn run(mut self) -> Result<Option<Duration>> {
        let status = self.set.status.clone().unwrap_or_default();
        let mut collisions = status.collision_count.unwrap_or(0);
        let template = self.spec().template.clone();
        let (update, revisions) =
            history::current(&self.revisions_api, &self.set, &template, &mut collisions).await?;
        let current = status
            .current_revision
            .as_ref()
            .and_then(|name| revisions.iter().find(|r| &r.name_any() == name))
            .cloned()
            .unwrap_or_else(|| update.clone());
        if self.set.metadata.deletion_timestamp.is_none() {
            self.update_pods(&current, &update).await?;
        }
        let live: std::collections::BTreeSet<String> = self
            .pods
            .values()
            .filter_map(|p| p.labels().get(history::REVISION_HASH).cloned())
            .collect();
        let limit = self.spec().revision_history_limit.unwrap_or(10);
        let keep = [current.name_any(), update.name_any()];
        let keep: Vec<&str> = keep.iter().map(String::as_str).collect();
        history::truncate(&self.revisions_api, &revisions, &live, &keep, limit).await?;
        self.update_status(&current, &update, collisions).await?;
        let min_ready = self.spec().min_ready_seconds.unwrap_or(0);
        Ok((min_ready > 0).then(|| Duration::from_secs(min_ready as u64)))
    }

    /// Upstream's updateStatefulSet: create, replace failed, scale down, then roll.
    async fn update_pods(
        &mut self,
        current: &ControllerRevision,
        update: &ControllerRevision,
    ) -> Result<()> {
        let start = self
            .spec()
            .ordinals
            .as_ref()
            .and_then(|o| o.start)
            .unwrap_or(0);
        let end = start + self.spec().replicas.unwrap_or(1).max(0);
        let parallel = self.parallel();
        // Failed pods are deleted and made again.
        for (_, pod) in self.pods.clone().range(start..end) {
            if pods::phase(pod) == "Failed" && pod.metadata.deletion_timestamp.is_none() {
                self.delete(pod).await?;
                self.pods.retain(|_, p| p.name_any() != pod.name_any());
            }
        }
        for i in start..end {
            match self.pods.get(&i).cloned() {
                None => {
                    self.create(i, current, update).await?;
                    if !parallel {
                        return Ok(());
                    }
                }
                Some(pod) if !parallel && !healthy(&pod) => return Ok(()),
                Some(_) => {}
            }
        }
        // Scale down from the highest ordinal; OrderedReady one at a time, after the rest are
        // healthy.
        let condemned: Vec<_> = self
            .pods
            .iter()
            .filter(|(i, _)| **i < start || **i >= end)
            .map(|(_, p)| p.clone())
            .rev()
            .collect();
        for pod in condemned {
            if pod.metadata.deletion_timestamp.is_some() {
                if !parallel {
                    return Ok(());
                }
                continue;
            }
            if !parallel
                && self
                    .pods
                    .values()
                    .any(|p| !healthy(p) && p.name_any() != pod.name_any())
            {
                return Ok(());
            }
            self.condemn_claims(&pod).await?;
            self.delete(&pod).await?;
            if !parallel {
                return Ok(());
            }
        }
        let Some(partition) = self.rolling() else {
            return Ok(());
        };
        let hash = history::hash_of(update);
        if let Some(max) = self.max_unavailable() {
            return self
                .roll_unavailable(start, start.max(partition), end, &hash, max)
                .await;
        }
        // Roll from the highest ordinal down to the partition, one unhealthy pod at a time.
        for i in (start.max(partition)..end).rev() {
            let Some(pod) = self.pods.get(&i).cloned() else {
                return Ok(());
            };
            let current_hash = pod.labels().get(history::REVISION_HASH).cloned();
            if current_hash.as_deref() != Some(hash.as_str())
                && pod.metadata.deletion_timestamp.is_none()
            {
                self.delete(&pod).await?;
                return Ok(());
            }
            if !healthy(&pod) {
                return Ok(());
            }
        }
        Ok(())
    }

    /// `rollingUpdate.maxUnavailable` as a number of pods (a percentage of replicas rounded
    /// up, at least one), when set (upstream's MaxUnavailableStatefulSet).
    fn max_unavailable(&self) -> Option<i32> {
        let strategy = self.spec().update_strategy.as_ref()?;
        let value = strategy.rolling_update.as_ref()?.max_unavailable.as_ref()?;
        let replicas = self.spec().replicas.unwrap_or(1).max(0);
        let n = match value {
            IntOrString::Int(n) => *n,
            IntOrString::String(p) => {
                let percent: i32 = p.trim_end_matches('%').parse().unwrap_or(1);
                (replicas * percent + 99) / 100
            }
        };
        Some(n.max(1))
    }

    /// Upstream's rolling update with maxUnavailable: the unhealthy pods count first; as many
    /// more outdated pods as the budget leaves are deleted at once, highest ordinal first,
    /// down to `min`.
    async fn roll_unavailable(
        &mut self,
        start: i32,
        min: i32,
        end: i32,
        hash: &str,
        max: i32,
    ) -> Result<()> {
        // A missing ordinal (just deleted, or created in this sync) is unavailable too.
        let unavailable = (start..end)
            .filter(|i| self.pods.get(i).is_none_or(|p| !healthy(p)))
            .count() as i32;
        let budget = max - unavailable;
        if budget <= 0 {
            return Ok(());
        }
        let outdated: Vec<Arc<Pod>> = (min..end)
            .rev()
            .filter_map(|i| self.pods.get(&i).cloned())
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| p.labels().get(history::REVISION_HASH).map(String::as_str) != Some(hash))
            .take(budget as usize)
            .collect();
        for pod in outdated {
            self.delete(&pod).await?;
        }
        Ok(())
    }

    /// The pod for an ordinal, at the current revision below the partition, else the update
    /// revision (upstream's newVersionedStatefulSetPod).
    async fn create(
        &mut self,
        i: i32,
        current: &ControllerRevision,
        update: &ControllerRevision,
    ) -> Result<()> {
        let below_partition = self.rolling().is_some_and(|p| i < p);
        let revision = if below_partition { current } else { update };
        let template = revision_template(revision).unwrap_or_else(|| self.spec().template.clone());
        let set_name = self.set.name_any();
        let name = format!("{set_name}-{i}");
        let ns = self.set.namespace().unwrap_or_default();
        let mut pod = pods::from_template(&template, &ns, "", ownership::controller_ref(&self.set));
        pod.metadata.generate_name = None;
        pod.metadata.name = Some(name.clone());
        let labels = pod.metadata.labels.get_or_insert_with(Default::default);
        labels.insert(POD_NAME_LABEL.into(), name.clone());
        labels.insert(POD_INDEX_LABEL.into(), i.to_string());
        labels.insert(history::REVISION_HASH.into(), history::hash_of(revision));
        let service = self.spec().service_name.clone().filter(|s| !s.is_empty());
        let claims = self.ensure_claims(i).await?;
        if let Some(spec) = pod.spec.as_mut() {
            spec.hostname = Some(name.clone());
            spec.subdomain = service;
            let volumes = spec.volumes.get_or_insert_with(Vec::new);
            for (volume, claim) in claims {
                volumes.retain(|v| v.name != volume);
                volumes.push(Volume {
                    name: volume,
                    persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                        claim_name: claim,
                        read_only: None,
                    }),
                    ..Default::default()
                });
            }
        }
        match self.pods_api.create(&PostParams::default(), &pod).await {
            Ok(_) => {
                self.event(
                    EventType::Normal,
                    "SuccessfulCreate",
                    &format!("create Pod {name} in StatefulSet {set_name} successful"),
                )
                .await;
                Ok(())
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => {
                self.event(
                    EventType::Warning,
                    "FailedCreate",
                    &format!("create Pod {name} in StatefulSet {set_name} failed error: {e}"),
                )
                .await;
                Err(e.into())
            }
        }
    }

    /// Creates the ordinal's missing claims `<template>-<set>-<ordinal>`; returns (volume name,
    /// claim name) pairs.
    async fn ensure_claims(&mut self, i: i32) -> Result<Vec<(String, String)>> {
        let set_name = self.set.name_any();
        let templates = self
            .spec()
            .volume_claim_templates
            .clone()
            .unwrap_or_default();
        let delete_with_set = self
            .spec()
            .persistent_volume_claim_retention_policy
            .as_ref()
            .and_then(|p| p.when_deleted.as_deref())
            == Some("Delete");
        let match_labels = self
            .spec()
            .selector
            .match_labels
            .clone()
            .unwrap_or_default();
        let mut pairs = Vec::new();
        for template in templates {
            let volume = template.name_any();
            let claim_name = format!("{volume}-{set_name}-{i}");
            pairs.push((volume, claim_name.clone()));
            if self.claims_api.get_opt(&claim_name).await?.is_some() {
                continue;
            }
            let mut claim = template.clone();
            claim.metadata.name = Some(claim_name.clone());
            claim.metadata.namespace = self.set.namespace();
            claim.metadata.resource_version = None;
            claim.metadata.uid = None;
            claim.status = None;
            let labels = claim.metadata.labels.get_or_insert_with(Default::default);
            labels.extend(match_labels.clone());
            if delete_with_set {
                claim.metadata.owner_references = Some(vec![owner_ref(&self.set)]);
            }
            match self.claims_api.create(&PostParams::default(), &claim).await {
                Ok(_) => {
                    self.event(
                        EventType::Normal,
                        "SuccessfulCreate",
                        &format!("create Claim {claim_name} Pod {set_name}-{i} in StatefulSet {set_name} success"),
                    )
                    .await;
                }
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => {
                    self.event(
                        EventType::Warning,
                        "FailedCreate",
                        &format!("create Claim {claim_name} for Pod {set_name}-{i} in StatefulSet {set_name} failed error: {e}"),
                    )
                    .await;
                    return Err(e.into());
                }
            }
        }
        Ok(pairs)
    }

    /// With `whenScaled: Delete`, a scaled-down pod's claims become its dependents, so the
    /// garbage collector deletes them with it.
    async fn condemn_claims(&mut self, pod: &Pod) -> Result<()> {
        let delete = self
            .spec()
            .persistent_volume_claim_retention_policy
            .as_ref()
            .and_then(|p| p.when_scaled.as_deref())
            == Some("Delete");
        if !delete {
            return Ok(());
        }
        let Some(i) = ordinal(&self.set.name_any(), &pod.name_any()) else {
            return Ok(());
        };
        for (_, claim_name) in self.claim_names(i) {
            let Some(mut claim) = self.claims_api.get_opt(&claim_name).await? else {
                continue;
            };
            let refs = claim.metadata.owner_references.get_or_insert_with(Vec::new);
            if refs
                .iter()
                .any(|r| Some(&r.uid) == pod.metadata.uid.as_ref())
            {
                continue;
            }
            refs.push(owner_ref(pod));
            self.claims_api
                .replace(&claim_name, &PostParams::default(), &claim)
                .await?;
        }
        Ok(())
    }

    fn claim_names(&self, i: i32) -> Vec<(String, String)> {
        let set_name = self.set.name_any();
        self.spec()
            .volume_claim_templates
            .iter()
            .flatten()
            .map(|t| (t.name_any(), format!("{}-{set_name}-{i}", t.name_any())))
            .collect()
    }

    async fn delete(&mut self, pod: &Pod) -> Result<()> {
        let params = DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                uid: pod.uid(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match self.pods_api.delete(&pod.name_any(), &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let note = format!(
            "delete Pod {} in StatefulSet {} successful",
            pod.name_any(),
            self.set.name_any()
        );
        self.event(EventType::Normal, "SuccessfulDelete", &note)
            .await;
        Ok(())
    }

    async fn update_status(
        &mut self,
        current: &ControllerRevision,
        update: &ControllerRevision,
        collisions: i32,
    ) -> Result<()> {
        let min_ready =
            Duration::from_secs(self.spec().min_ready_seconds.unwrap_or(0).max(0) as u64);
        let current_hash = history::hash_of(current);
        let update_hash = history::hash_of(update);
        let mut status = StatefulSetStatus {
            observed_generation: self.set.metadata.generation,
            collision_count: Some(collisions),
            current_revision: Some(current.name_any()),
            update_revision: Some(update.name_any()),
            ..Default::default()
        };
        let (mut ready, mut available, mut cur, mut upd) = (0, 0, 0, 0);
        for pod in self
            .pods
            .values()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
        {
            status.replicas += 1;
            if healthy(pod) {
                ready += 1;
                if pods::is_available(pod, min_ready, self.now) {
                    available += 1;
                }
            }
            let hash = pod
                .labels()
                .get(history::REVISION_HASH)
                .cloned()
                .unwrap_or_default();
            if hash == current_hash {
                cur += 1;
            }
            if hash == update_hash {
                upd += 1;
            }
        }
        status.ready_replicas = Some(ready);
        status.available_replicas = Some(available);
        status.current_replicas = Some(cur);
        status.updated_replicas = Some(upd);
        // A finished rolling update makes the update revision current.
        let wanted = self.spec().replicas.unwrap_or(1);
        if upd == status.replicas && ready == status.replicas && status.replicas == wanted {
            status.current_revision = status.update_revision.clone();
            status.current_replicas = Some(upd);
        }
        if self.set.status.as_ref() == Some(&status) {
            return Ok(());
        }
        let mut set = self.set.clone();
        set.status = Some(status);
        let api: Api<StatefulSet> = Api::namespaced(
            self.state.client.clone(),
            &set.namespace().unwrap_or_default(),
        );
        api.replace_status(&set.name_any(), &PostParams::default(), &set)
            .await?;
        Ok(())
    }

    async fn event(&self, type_: EventType, reason: &str, note: &str) {
        let regarding = self.set.object_ref(&());
        events::record(&self.state.recorder, &regarding, type_, reason, note).await;
    }
}

/// A plain (non-controller) owner reference: the claim goes when its owner goes.
fn owner_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        controller: None,
        block_owner_deletion: None,
        ..ownership::controller_ref(owner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals_come_from_the_name() {
        assert_eq!(ordinal("web", "web-0"), Some(0));
        assert_eq!(ordinal("web", "web-12"), Some(12));
        assert_eq!(ordinal("web", "web-x"), None);
        assert_eq!(ordinal("web", "webby-1"), None);
    }
}
