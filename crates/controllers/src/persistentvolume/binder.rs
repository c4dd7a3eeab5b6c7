//! Upstream's `persistentvolume-binder` (pkg/controller/volume/persistentvolume): claims and
//! volumes synced from informers, every change and every 15 s (upstream's
//! `--pvclaimbinder-sync-period`), writes through the `persistent-volume-binder` account.
//!
//! A claim: bound to the volume it names or the best match, else handed to its class's
//! provisioner, else left Pending with upstream's event. A volume: Available without a claim,
//! Bound with its claim, Released when the claim is gone, then reclaimed by its policy.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use futures::{stream, StreamExt};
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use tokio::time::Instant;

use super::matching::{self, claim_class};
use super::*;
use crate::context::Context;
use crate::error::Result;
use crate::events::{self, Normal, Warning};
use crate::informer;

const ACCOUNT: &str = "persistent-volume-binder";
/// Upstream's event source for this controller.
const COMPONENT: &str = "persistentvolume-controller";
const RESYNC: Duration = Duration::from_secs(15);
const RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Claim(String, String),
    Volume(String),
}

fn claim_key(c: &PersistentVolumeClaim) -> Key {
    Key::Claim(c.namespace().unwrap_or_default(), c.name_any())
}

fn bound_claim(pv: &PersistentVolume) -> Option<Key> {
    let r = pv.spec.as_ref()?.claim_ref.as_ref()?;
    Some(Key::Claim(r.namespace.clone()?, r.name.clone()?))
}

fn volume_name(c: &PersistentVolumeClaim) -> Option<String> {
    c.spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|n| !n.is_empty())
}

pub async fn run(ctx: Context) -> Result<()> {
    let client = ctx.client_for(ACCOUNT).await?;
    let shared = ctx.client.clone();
    let (claims, claim_changes) = informer::start(
        Api::<PersistentVolumeClaim>::all(shared.clone()),
        Default::default(),
    );
    let (volumes, volume_changes) = informer::start(
        Api::<PersistentVolume>::all(shared.clone()),
        Default::default(),
    );
    let (classes, class_changes) =
        informer::start(Api::<StorageClass>::all(shared), Default::default());
    let mut changes = stream::select_all([
        claim_changes
            .map(|c| {
                let mut keys = vec![claim_key(&c)];
                keys.extend(volume_name(&c).map(Key::Volume));
                keys
            })
            .boxed(),
        volume_changes
            .map(|v| {
                let mut keys = vec![Key::Volume(v.name_any())];
                keys.extend(bound_claim(&v));
                keys
            })
            .boxed(),
        class_changes.map(|_| Vec::new()).boxed(),
    ]);
    let binder = Binder {
        recorder: ctx.recorder(client.clone(), COMPONENT),
        client,
        claims,
        volumes,
        classes,
        metrics: ctx.metrics.clone(),
        reported: Default::default(),
    };
    // Nothing is decided before all three caches are filled: an empty volume cache would
    // send every claim to a provisioner, an empty claim cache would release every volume.
    let stores = (
        binder.claims.clone(),
        binder.volumes.clone(),
        binder.classes.clone(),
    );
    let ready = async move {
        let _ = stores.0.wait_until_ready().await;
        let _ = stores.1.wait_until_ready().await;
        let _ = stores.2.wait_until_ready().await;
    };
    tokio::pin!(ready);
    let mut is_ready = false;
    let mut pending: BTreeSet<Key> = BTreeSet::new();
    let mut retry: (BTreeSet<Key>, Option<Instant>) = (BTreeSet::new(), None);
    let mut resync = tokio::time::interval(RESYNC);
    let mut binder = binder;
    loop {
        tokio::select! {
            biased;
            keys = changes.next() => match keys {
                Some(keys) => pending.extend(keys),
                None => return Ok(()),
            },
            _ = &mut ready, if !is_ready => is_ready = true,
            _ = resync.tick() => pending.extend(binder.all_keys()),
            _ = sleep_until(retry.1) => {
                pending.append(&mut retry.0);
                retry.1 = None;
            }
            _ = std::future::ready(()), if is_ready && !pending.is_empty() => {
                for key in std::mem::take(&mut pending) {
                    if let Err(e) = binder.sync(&key).await {
                        binder.metrics.sync_failed("persistentvolume-binder");
                        tracing::debug!(?key, error = %e, "persistent volume sync failed; retrying");
                        retry.0.insert(key);
                        retry.1.get_or_insert(Instant::now() + RETRY);
                    }
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

struct Binder {
    client: Client,
    recorder: Recorder,
    claims: Store<PersistentVolumeClaim>,
    volumes: Store<PersistentVolume>,
    classes: Store<StorageClass>,
    metrics: crate::Metrics,
    /// (uid, reason) of pending-claim events already recorded, so a resync does not repeat them.
    reported: HashSet<(String, String)>,
}

impl Binder {
    fn all_keys(&self) -> Vec<Key> {
        let claims = self.claims.state().into_iter().map(|c| claim_key(&c));
        let volumes = self
            .volumes
            .state()
            .into_iter()
            .map(|v| Key::Volume(v.name_any()));
        claims.chain(volumes).collect()
    }

    async fn sync(&mut self, key: &Key) -> Result<()> {
        self.metrics.synced("persistentvolume-binder");
        match key {
            Key::Claim(ns, name) => {
                let Some(claim) = self.claims.get(&ObjectRef::new(name).within(ns)) else {
                    return Ok(());
                };
                self.sync_claim(&claim).await
            }
            Key::Volume(name) => {
                let Some(pv) = self.volumes.get(&ObjectRef::new(name)) else {
                    return Ok(());
                };
                self.sync_volume(&pv).await
            }
        }
    }

    fn claims_api(&self, ns: &str) -> Api<PersistentVolumeClaim> {
        Api::namespaced(self.client.clone(), ns)
    }

    fn volumes_api(&self) -> Api<PersistentVolume> {
        Api::all(self.client.clone())
    }

    /// Upstream's `syncClaim`.
    async fn sync_claim(&mut self, claim: &PersistentVolumeClaim) -> Result<()> {
        if claim.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        match volume_name(claim) {
            None => self.sync_unbound_claim(claim).await,
            Some(pv_name) => self.sync_named_claim(claim, &pv_name).await,
        }
    }

    async fn sync_unbound_claim(&mut self, claim: &PersistentVolumeClaim) -> Result<()> {
        // Read live, not from the cache: a volume created just before the claim (one pre-bound
        // to it, say) must not lose to an older one or to a provisioned one.
        let volumes = self.volumes_api().list(&Default::default()).await?.items;
        if let Some(pv) = matching::find(claim, &volumes) {
            return self.bind(pv, claim).await;
        }
        let class_name = claim_class(claim);
        if class_name.is_empty() {
            self.set_claim_phase(claim, "Pending").await?;
            return self
                .report(
                    claim,
                    Normal,
                    "FailedBinding",
                    "no persistent volumes available for this claim and no storage class is set",
                )
                .await;
        }
        let Some(class) = self.classes.get(&ObjectRef::new(&class_name)) else {
            self.set_claim_phase(claim, "Pending").await?;
            let note = format!("storageclass.storage.k8s.io \"{class_name}\" not found");
            return self
                .report(claim, Warning, "ProvisioningFailed", &note)
                .await;
        };
        self.set_claim_phase(claim, "Pending").await?;
        if class.provisioner == "kubernetes.io/no-provisioner" {
            let note = "no persistent volumes available for this claim and no storage class is set";
            return self.report(claim, Normal, "FailedBinding", note).await;
        }
        let waits = class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer");
        if waits && !claim.annotations().contains_key(ANN_SELECTED_NODE) {
            let note = "waiting for first consumer to be created before binding";
            return self
                .report(claim, Normal, "WaitForFirstConsumer", note)
                .await;
        }
        self.hand_to_provisioner(claim, &class.provisioner).await
    }

    /// Upstream's `provisionClaim` for an external provisioner: the claim is annotated with
    /// the provisioner's name, which it watches for.
    async fn hand_to_provisioner(
        &mut self,
        claim: &PersistentVolumeClaim,
        provisioner: &str,
    ) -> Result<()> {
        let annotations = claim.annotations();
        if annotations.get(ANN_STORAGE_PROVISIONER).map(String::as_str) != Some(provisioner)
            || annotations
                .get(ANN_BETA_STORAGE_PROVISIONER)
                .map(String::as_str)
                != Some(provisioner)
        {
            // The binder's role may update claims, not patch them (as upstream's).
            let mut updated = claim.clone();
            for key in [ANN_STORAGE_PROVISIONER, ANN_BETA_STORAGE_PROVISIONER] {
                updated
                    .annotations_mut()
                    .insert(key.into(), provisioner.into());
            }
            self.claims_api(&claim.namespace().unwrap_or_default())
                .replace(&claim.name_any(), &PostParams::default(), &updated)
                .await?;
        }
        let note = format!(
            "Waiting for a volume to be created either by the external provisioner '{provisioner}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered."
        );
        self.report(claim, Normal, "ExternalProvisioning", &note)
            .await
    }

    /// A claim naming its volume (pre-bound by the user, or bound before).
    async fn sync_named_claim(
        &mut self,
        claim: &PersistentVolumeClaim,
        pv_name: &str,
    ) -> Result<()> {
        let completed = claim.annotations().contains_key(ANN_BIND_COMPLETED);
        let Some(pv) = self.volumes.get(&ObjectRef::new(pv_name)) else {
            let phase = if completed { "Lost" } else { "Pending" };
            self.set_claim_phase(claim, phase).await?;
            if completed {
                let note = "Bound claim has lost its PersistentVolume. Data on the volume is lost!";
                return self.report(claim, Warning, "ClaimLost", note).await;
            }
            return Ok(());
        };
        let claim_ref = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
        let ours = claim_ref.is_none() || matching::is_pre_bound_to(&pv, claim);
        if ours && (claim_ref.is_some() || matching::satisfies(&pv, claim)) {
            return self.bind(&pv, claim).await;
        }
        if completed {
            self.set_claim_phase(claim, "Lost").await?;
            let note = "Two claims are bound to the same volume, this one is bound incorrectly";
            return self.report(claim, Warning, "ClaimMisbound", note).await;
        }
        self.set_claim_phase(claim, "Pending").await?;
        let note = if claim_ref.is_some() {
            "volume already bound to a different claim."
        } else {
            "Cannot bind to requested volume: it does not satisfy the claim"
        };
        self.report(claim, Warning, "FailedBinding", note).await
    }

    /// Upstream's `bind`: the volume's claimRef and phase, then the claim's volumeName,
    /// annotations and status, each written only when it differs.
    async fn bind(&mut self, pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> Result<()> {
        let pv = self.bind_volume_to_claim(pv, claim).await?;
        let pv = self.set_volume_phase(&pv, "Bound").await?;
        let claim = self.bind_claim_to_volume(claim, &pv).await?;
        let status = claim.status.clone().unwrap_or_default();
        let spec = pv.spec.clone().unwrap_or_default();
        if status.phase.as_deref() != Some("Bound")
            || status.capacity != spec.capacity
            || status.access_modes != spec.access_modes
        {
            let mut updated = claim.clone();
            let st = updated.status.get_or_insert_with(Default::default);
            st.phase = Some("Bound".into());
            st.capacity = spec.capacity;
            st.access_modes = spec.access_modes;
            self.claims_api(&claim.namespace().unwrap_or_default())
                .replace_status(&claim.name_any(), &PostParams::default(), &updated)
                .await?;
            tracing::info!(claim = %claim.name_any(), volume = %pv.name_any(), "bound");
        }
        // A bound claim's pending events are history: forget them, so the set stays small.
        let uid = claim.uid().unwrap_or_default();
        self.reported.retain(|(u, _)| *u != uid);
        Ok(())
    }

    async fn bind_volume_to_claim(
        &self,
        pv: &PersistentVolume,
        claim: &PersistentVolumeClaim,
    ) -> Result<PersistentVolume> {
        let current = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
        let want = claim_reference(claim);
        if current.is_some_and(|r| {
            r.uid == want.uid && r.name == want.name && r.namespace == want.namespace
        }) {
            return Ok(pv.clone());
        }
        let mut updated = pv.clone();
        if current.is_none() {
            updated
                .annotations_mut()
                .insert(ANN_BOUND_BY_CONTROLLER.into(), "yes".into());
        }
        updated.spec.get_or_insert_with(Default::default).claim_ref = Some(want);
        // Replaced at the cached resourceVersion: a volume another sync bound meanwhile is a
        // conflict, retried from a fresher cache, never bound twice.
        Ok(self
            .volumes_api()
            .replace(&pv.name_any(), &PostParams::default(), &updated)
            .await?)
    }

    async fn bind_claim_to_volume(
        &self,
        claim: &PersistentVolumeClaim,
        pv: &PersistentVolume,
    ) -> Result<PersistentVolumeClaim> {
        let annotations = claim.annotations();
        let named = volume_name(claim).as_deref() == Some(pv.name_any().as_str());
        if named && annotations.contains_key(ANN_BIND_COMPLETED) {
            return Ok(claim.clone());
        }
        let mut updated = claim.clone();
        if !named {
            updated
                .annotations_mut()
                .insert(ANN_BOUND_BY_CONTROLLER.into(), "yes".into());
        }
        updated
            .annotations_mut()
            .insert(ANN_BIND_COMPLETED.into(), "yes".into());
        updated
            .spec
            .get_or_insert_with(Default::default)
            .volume_name = Some(pv.name_any());
        Ok(self
            .claims_api(&claim.namespace().unwrap_or_default())
            .replace(&claim.name_any(), &PostParams::default(), &updated)
            .await?)
    }

    /// Status writes replace the status at the cached resourceVersion (the binder's role may
    /// update status, not patch it); a stale cache is a conflict, retried.
    async fn set_claim_phase(&self, claim: &PersistentVolumeClaim, phase: &str) -> Result<()> {
        if claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some(phase) {
            return Ok(());
        }
        let mut updated = claim.clone();
        updated.status.get_or_insert_with(Default::default).phase = Some(phase.into());
        self.claims_api(&claim.namespace().unwrap_or_default())
            .replace_status(&claim.name_any(), &PostParams::default(), &updated)
            .await?;
        Ok(())
    }

    async fn set_volume_phase(
        &self,
        pv: &PersistentVolume,
        phase: &str,
    ) -> Result<PersistentVolume> {
        if pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some(phase) {
            return Ok(pv.clone());
        }
        let mut updated = pv.clone();
        let status = updated.status.get_or_insert_with(Default::default);
        status.phase = Some(phase.into());
        status.message = None;
        status.reason = None;
        Ok(self
            .volumes_api()
            .replace_status(&pv.name_any(), &PostParams::default(), &updated)
            .await?)
    }

    /// Upstream's `syncVolume`.
    async fn sync_volume(&mut self, pv: &PersistentVolume) -> Result<()> {
        if pv.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let Some(claim_ref) = pv.spec.as_ref().and_then(|s| s.claim_ref.clone()) else {
            return self.set_volume_phase(pv, "Available").await.map(drop);
        };
        if claim_ref.uid.as_deref().unwrap_or("").is_empty() {
            // Pre-bound to a claim that has not bound yet.
            return self.set_volume_phase(pv, "Available").await.map(drop);
        }
        let (ns, name) = (
            claim_ref.namespace.clone().unwrap_or_default(),
            claim_ref.name.clone().unwrap_or_default(),
        );
        let cached = self.claims.get(&ObjectRef::new(&name).within(&ns));
        // The cache may not show a claim created a moment ago: ask before releasing.
        let claim = match cached {
            Some(c) if c.uid() == claim_ref.uid => Some((*c).clone()),
            _ => self.claims_api(&ns).get_opt(&name).await?,
        };
        match claim {
            Some(claim) if claim.uid() == claim_ref.uid => {
                if volume_name(&claim).as_deref() == Some(pv.name_any().as_str()) {
                    self.set_volume_phase(pv, "Bound").await.map(drop)
                } else {
                    // The claim's sync binds it (a volume pre-bound to it) or it went elsewhere.
                    Ok(())
                }
            }
            _ => self.release(pv).await,
        }
    }

    /// The claim is gone: Released, then reclaimed by the volume's policy.
    async fn release(&mut self, pv: &PersistentVolume) -> Result<()> {
        let pv = &self.set_volume_phase(pv, "Released").await?;
        let policy = pv
            .spec
            .as_ref()
            .and_then(|s| s.persistent_volume_reclaim_policy.clone())
            .unwrap_or_else(|| "Retain".into());
        match policy.as_str() {
            "Delete" if pv.annotations().contains_key(ANN_PROVISIONED_BY) => {
                // The provisioner that made it deletes it (and its storage), as upstream
                // leaves an external provisioner's volumes to it.
                Ok(())
            }
            "Delete" => {
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: pv.uid(),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                match self.volumes_api().delete(&pv.name_any(), &params).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
            "Recycle" => {
                let reference = pv.object_ref(&());
                let note =
                    "Recycle is deprecated and not supported by krust; the volume stays Released";
                events::record(
                    &self.recorder,
                    &reference,
                    Warning,
                    "VolumeFailedRecycle",
                    note,
                )
                .await;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Records a claim's event once per reason (resyncs repeat the decision, not the event).
    async fn report(
        &mut self,
        claim: &PersistentVolumeClaim,
        type_: kube::runtime::events::EventType,
        reason: &str,
        note: &str,
    ) -> Result<()> {
        let key = (claim.uid().unwrap_or_default(), reason.to_string());
        if self.reported.insert(key) {
            events::record(&self.recorder, &claim.object_ref(&()), type_, reason, note).await;
        }
        Ok(())
    }
}

fn claim_reference(claim: &PersistentVolumeClaim) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        namespace: claim.namespace(),
        name: Some(claim.name_any()),
        uid: claim.uid(),
        resource_version: claim.resource_version(),
        ..Default::default()
    }
}
