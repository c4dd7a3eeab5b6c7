//! What every strategy shares (upstream's sync.go): finding or creating the new ReplicaSet,
//! scaling ReplicaSets (proportionally while a rollout is under way), cleaning up old
//! revisions, and the status.

use k8s_openapi::api::apps::v1::{DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::events::EventType;
use kube::ResourceExt;

use super::util::{self, HASH_LABEL};
use super::Rollout;
use crate::error::Result;
use crate::ownership;

/// The new ReplicaSet (if any) and all the old ones.
pub(super) struct Sets {
    pub new: Option<ReplicaSet>,
    pub old: Vec<ReplicaSet>,
}

impl Sets {
    pub fn all(&self) -> impl Iterator<Item = &ReplicaSet> {
        self.old.iter().chain(self.new.as_ref())
    }

    /// Replaces the stored copy of a ReplicaSet with what the server returned.
    pub fn update(&mut self, rs: ReplicaSet) {
        if self
            .new
            .as_ref()
            .is_some_and(|n| n.metadata.uid == rs.metadata.uid)
        {
            self.new = Some(rs);
        } else if let Some(old) = self
            .old
            .iter_mut()
            .find(|o| o.metadata.uid == rs.metadata.uid)
        {
            *old = rs;
        }
    }
}

impl Rollout<'_> {
    fn template(&self) -> k8s_openapi::api::core::v1::PodTemplateSpec {
        self.d
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default()
    }

    /// Upstream's getAllReplicaSetsAndSyncRevision: the new ReplicaSet (the oldest whose
    /// template equals the Deployment's, created if asked and missing) and the others. `sets`
    /// takes what was written, so a second call in the same sync does not write a stale copy.
    pub(super) async fn replica_sets(
        &mut self,
        sets: &mut Vec<ReplicaSet>,
        create: bool,
    ) -> Result<Sets> {
        let mut sorted = sets.clone();
        sorted.sort_by(util::by_creation);
        let template = self.template();
        let new_index = sorted.iter().position(|rs| {
            util::equal_ignore_hash(
                &rs.spec
                    .clone()
                    .unwrap_or_default()
                    .template
                    .unwrap_or_default(),
                &template,
            )
        });
        let existing = new_index.map(|i| sorted.remove(i));
        let new = self.new_replica_set(existing, &sorted, create).await?;
        let found = Sets { new, old: sorted };
        *sets = found.all().cloned().collect();
        Ok(found)
    }

    /// Upstream's getNewReplicaSet.
    async fn new_replica_set(
        &mut self,
        existing: Option<ReplicaSet>,
        old: &[ReplicaSet],
        create: bool,
    ) -> Result<Option<ReplicaSet>> {
        let new_revision = util::max_revision(old) + 1;
        if let Some(rs) = existing {
            return self
                .refresh_new_replica_set(rs, new_revision)
                .await
                .map(Some);
        }
        if !create {
            return Ok(None);
        }
        self.create_replica_set(old, new_revision).await
    }

    /// An existing new ReplicaSet gets the Deployment's annotations, the newest revision and
    /// its minReadySeconds; the Deployment gets its revision.
    async fn refresh_new_replica_set(
        &mut self,
        rs: ReplicaSet,
        new_revision: i64,
    ) -> Result<ReplicaSet> {
        let mut copy = rs.clone();
        let annotations_changed =
            util::set_new_rs_annotations(&self.d, &mut copy, new_revision, true);
        let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
        let spec = copy.spec.get_or_insert_with(Default::default);
        let min_ready_changed = spec.min_ready_seconds.unwrap_or(0) != min_ready.unwrap_or(0);
        if annotations_changed || min_ready_changed {
            spec.min_ready_seconds = min_ready;
            return Ok(self
                .sets
                .replace(&copy.name_any(), &PostParams::default(), &copy)
                .await?);
        }
        let revision = copy
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(util::REVISION))
            .cloned()
            .unwrap_or_default();
        let mut needs_update = util::set_deployment_revision(&mut self.d, &revision);
        let has_progressing = self
            .d
            .status
            .as_ref()
            .is_some_and(|s| util::condition(s, util::PROGRESSING).is_some());
        if util::has_progress_deadline(&self.d) && !has_progressing {
            let message = format!("Found new replica set {:?}", copy.name_any());
            let status = self.d.status.get_or_insert_with(Default::default);
            util::set_condition(
                status,
                util::new_condition(util::PROGRESSING, "True", util::FOUND_NEW_RS, message),
            );
            needs_update = true;
        }
        if needs_update {
            self.write_status().await?;
        }
        Ok(copy)
    }

    async fn create_replica_set(
        &mut self,
        old: &[ReplicaSet],
        new_revision: i64,
    ) -> Result<Option<ReplicaSet>> {
        let collisions = self.d.status.as_ref().and_then(|s| s.collision_count);
        let mut template = self.template();
        let hash = util::template_hash(&template, collisions);
        let meta = template.metadata.get_or_insert_with(Default::default);
        meta.labels
            .get_or_insert_with(Default::default)
            .insert(HASH_LABEL.into(), hash.clone());
        let labels = meta.labels.clone();
        let mut selector = self
            .d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        selector
            .match_labels
            .get_or_insert_with(Default::default)
            .insert(HASH_LABEL.into(), hash.clone());
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(format!("{}-{hash}", self.d.name_any())),
                namespace: self.d.namespace(),
                owner_references: Some(vec![ownership::controller_ref(&self.d)]),
                labels,
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: self.d.spec.as_ref().and_then(|s| s.min_ready_seconds),
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let count = {
            let all: Vec<&ReplicaSet> = old.iter().chain([&rs]).collect();
            self.new_rs_new_replicas(all.into_iter(), &rs)
        };
        util::set_rs_replicas(&mut rs, count);
        util::set_new_rs_annotations(&self.d, &mut rs, new_revision, false);
        let name = rs.name_any();
        let (created, already_existed) = match self.sets.create(&PostParams::default(), &rs).await {
            Ok(created) => (created, false),
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let found = self.sets.get(&name).await?;
                let ours = ownership::controller_of(&found.metadata)
                    .is_some_and(|o| Some(&o.uid) == self.d.metadata.uid.as_ref());
                let same = util::equal_ignore_hash(
                    &found
                        .spec
                        .clone()
                        .unwrap_or_default()
                        .template
                        .unwrap_or_default(),
                    &self.template(),
                );
                if !(ours && same) {
                    // A hash collision: the next name comes from a higher collision count.
                    let status = self.d.status.get_or_insert_with(Default::default);
                    status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
                    self.write_status().await?;
                    return Err(kube::Error::Api(e).into());
                }
                (found, true)
            }
            Err(kube::Error::Api(e)) if e.message.contains("because it is being terminated") => {
                return Err(kube::Error::Api(e).into());
            }
            Err(e) => {
                let detail = match &e {
                    kube::Error::Api(s) => s.message.clone(),
                    other => other.to_string(),
                };
                let message = format!("Failed to create new replica set {name:?}: {detail}");
                if util::has_progress_deadline(&self.d) {
                    let status = self.d.status.get_or_insert_with(Default::default);
                    util::set_condition(
                        status,
                        util::new_condition(
                            util::PROGRESSING,
                            "False",
                            util::FAILED_RS_CREATE,
                            message.clone(),
                        ),
                    );
                    let _ = self.write_status().await;
                }
                self.event(EventType::Warning, util::FAILED_RS_CREATE, message);
                return Err(e.into());
            }
        };
        if !already_existed && count > 0 {
            self.event(
                EventType::Normal,
                "ScalingReplicaSet",
                format!("Scaled up replica set {} to {count}", created.name_any()),
            );
        }
        let mut needs_update =
            util::set_deployment_revision(&mut self.d, &new_revision.to_string());
        if !already_existed && util::has_progress_deadline(&self.d) {
            let message = format!("Created new replica set {:?}", created.name_any());
            let status = self.d.status.get_or_insert_with(Default::default);
            util::set_condition(
                status,
                util::new_condition(util::PROGRESSING, "True", util::NEW_RS_CREATED, message),
            );
            needs_update = true;
        }
        if needs_update {
            self.write_status().await?;
        }
        Ok(Some(created))
    }

    /// How many replicas the new ReplicaSet may have now (NewRSNewReplicas).
    pub(super) fn new_rs_new_replicas<'s>(
        &self,
        all: impl Iterator<Item = &'s ReplicaSet>,
        new: &ReplicaSet,
    ) -> i32 {
        let want = util::replicas(&self.d);
        if !util::is_rolling(&self.d) {
            return want;
        }
        let current = util::spec_sum(all);
        let max_total = want + util::max_surge(&self.d);
        let new_replicas = util::rs_replicas(new);
        if current >= max_total {
            return new_replicas;
        }
        new_replicas + (max_total - current).min(want - new_replicas)
    }

    /// Upstream's isScalingEvent: an active ReplicaSet was sized for a different replica count.
    pub(super) async fn is_scaling_event(&mut self, sets: &mut Vec<ReplicaSet>) -> Result<bool> {
        let found = self.replica_sets(sets, false).await?;
        let want = util::replicas(&self.d);
        let scaling = found
            .all()
            .filter(|rs| util::rs_replicas(rs) > 0)
            .any(|rs| util::desired_replicas_annotation(rs).is_some_and(|d| d != want));
        Ok(scaling)
    }

    /// Upstream's sync: scaling only, for a paused Deployment or a changed replica count.
    pub(super) async fn sync_scale(&mut self, sets: &mut Vec<ReplicaSet>) -> Result<()> {
        let mut found = self.replica_sets(sets, false).await?;
        self.scale(&mut found).await?;
        if util::paused(&self.d) {
            self.cleanup(&found.old).await?;
        }
        self.sync_deployment_status(&found).await
    }

    pub(super) async fn sync_status_only(&mut self, sets: &mut Vec<ReplicaSet>) -> Result<()> {
        let found = self.replica_sets(sets, false).await?;
        self.sync_deployment_status(&found).await
    }

    /// Upstream's scale: the only active ReplicaSet takes the whole count; a saturated new one
    /// empties the old; otherwise, during a rolling update, the difference is spread over the
    /// active ReplicaSets in proportion to their size.
    async fn scale(&mut self, found: &mut Sets) -> Result<()> {
        let want = util::replicas(&self.d);
        if let Some(rs) = util::active_or_latest(found.new.as_ref(), &found.old).cloned() {
            if util::rs_replicas(&rs) != want {
                let (_, rs) = self.scale_and_record(&rs, want).await?;
                found.update(rs);
            }
            return Ok(());
        }
        if util::is_saturated(&self.d, found.new.as_ref()) {
            for old in found
                .old
                .clone()
                .iter()
                .filter(|rs| util::rs_replicas(rs) > 0)
            {
                let (_, rs) = self.scale_and_record(old, 0).await?;
                found.update(rs);
            }
            return Ok(());
        }
        if !util::is_rolling(&self.d) {
            return Ok(());
        }
        let mut active: Vec<ReplicaSet> = found
            .all()
            .filter(|rs| util::rs_replicas(rs) > 0)
            .cloned()
            .collect();
        let allowed = if want > 0 {
            want + util::max_surge(&self.d)
        } else {
            0
        };
        let to_add = allowed - util::spec_sum(&active);
        let operation = match to_add {
            n if n > 0 => {
                active.sort_by(util::by_size_newer);
                "up"
            }
            n if n < 0 => {
                active.sort_by(util::by_size_older);
                "down"
            }
            _ => "",
        };
        let mut added = 0;
        let mut sizes: Vec<i32> = Vec::with_capacity(active.len());
        for rs in &active {
            let proportion = self.proportion(rs, to_add, added);
            sizes.push(util::rs_replicas(rs) + proportion);
            added += proportion;
        }
        if to_add != 0 {
            if let Some(first) = sizes.first_mut() {
                *first = (*first + to_add - added).max(0);
            }
        }
        for (rs, size) in active.iter().zip(sizes) {
            let (_, rs) = self.scale_replica_set(rs, size, operation).await?;
            found.update(rs);
        }
        Ok(())
    }

    /// This ReplicaSet's share of `to_add`, by its size against the max-replicas it was sized
    /// for (GetProportion).
    fn proportion(&self, rs: &ReplicaSet, to_add: i32, added: i32) -> i32 {
        let size = util::rs_replicas(rs);
        if size == 0 || to_add == 0 || to_add == added {
            return 0;
        }
        let want = util::replicas(&self.d);
        let fraction = if want == 0 {
            -size
        } else {
            let total = want + util::max_surge(&self.d);
            let sized_for = util::max_replicas_annotation(rs)
                .unwrap_or_else(|| self.d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0));
            if sized_for == 0 {
                0
            } else {
                ((size * total) as f64 / sized_for as f64).round() as i32 - size
            }
        };
        let allowed = to_add - added;
        if to_add > 0 {
            fraction.min(allowed)
        } else {
            fraction.max(allowed)
        }
    }

    /// Scales to `size` and says so in an event (scaleReplicaSetAndRecordEvent).
    pub(super) async fn scale_and_record(
        &mut self,
        rs: &ReplicaSet,
        size: i32,
    ) -> Result<(bool, ReplicaSet)> {
        let current = util::rs_replicas(rs);
        if current == size {
            return Ok((false, rs.clone()));
        }
        let operation = if current < size { "up" } else { "down" };
        self.scale_replica_set(rs, size, operation).await
    }

    /// Sets the size and the replica annotations (scaleReplicaSet).
    async fn scale_replica_set(
        &mut self,
        rs: &ReplicaSet,
        size: i32,
        operation: &str,
    ) -> Result<(bool, ReplicaSet)> {
        let want = util::replicas(&self.d);
        let max = want + util::max_surge(&self.d);
        let old = util::rs_replicas(rs);
        let resize = old != size;
        if !resize && !util::replicas_annotations_need_update(rs, want, max) {
            return Ok((false, rs.clone()));
        }
        let mut copy = rs.clone();
        util::set_rs_replicas(&mut copy, size);
        util::set_replicas_annotations(&mut copy, want, max);
        let updated = self
            .sets
            .replace(&copy.name_any(), &PostParams::default(), &copy)
            .await?;
        if resize {
            self.event(
                EventType::Normal,
                "ScalingReplicaSet",
                format!(
                    "Scaled {operation} replica set {} to {size} from {old}",
                    updated.name_any()
                ),
            );
        }
        Ok((resize, updated))
    }

    /// Deletes the oldest empty old ReplicaSets beyond revisionHistoryLimit (cleanupDeployment).
    pub(super) async fn cleanup(&mut self, old: &[ReplicaSet]) -> Result<()> {
        let Some(limit) = util::revision_history_limit(&self.d) else {
            return Ok(());
        };
        let mut cleanable: Vec<&ReplicaSet> = old
            .iter()
            .filter(|rs| rs.metadata.deletion_timestamp.is_none())
            .collect();
        let surplus = cleanable.len() as i64 - i64::from(limit);
        if surplus <= 0 {
            return Ok(());
        }
        cleanable.sort_by(|a, b| {
            util::revision(a)
                .cmp(&util::revision(b))
                .then_with(|| util::by_creation(a, b))
        });
        for rs in cleanable.into_iter().take(surplus as usize) {
            let status = rs.status.clone().unwrap_or_default();
            let settled =
                status.observed_generation.unwrap_or(0) >= rs.metadata.generation.unwrap_or(0);
            if status.replicas != 0 || util::rs_replicas(rs) != 0 || !settled {
                continue;
            }
            match self
                .sets
                .delete(&rs.name_any(), &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Writes the computed status if it differs (syncDeploymentStatus).
    pub(super) async fn sync_deployment_status(&mut self, found: &Sets) -> Result<()> {
        let status = self.calculate_status(found);
        if self.d.status.as_ref() == Some(&status) {
            return Ok(());
        }
        self.d.status = Some(status);
        self.write_status().await
    }

    /// Counts over the ReplicaSets and the Available condition (calculateStatus).
    pub(super) fn calculate_status(&self, found: &Sets) -> DeploymentStatus {
        let available = util::available_sum(found.all());
        let total = util::spec_sum(found.all());
        let old = self.d.status.clone().unwrap_or_default();
        let mut status = DeploymentStatus {
            observed_generation: self.d.metadata.generation,
            replicas: Some(util::actual_sum(found.all())),
            updated_replicas: Some(util::actual_sum(found.new.iter())),
            ready_replicas: Some(util::ready_sum(found.all())),
            available_replicas: Some(available),
            unavailable_replicas: Some((total - available).max(0)),
            collision_count: old.collision_count,
            conditions: old.conditions.clone(),
            terminating_replicas: old.terminating_replicas,
        };
        let cond = if available >= util::replicas(&self.d) - util::max_unavailable(&self.d) {
            util::new_condition(
                util::AVAILABLE,
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
            )
        } else {
            util::new_condition(
                util::AVAILABLE,
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
            )
        };
        util::set_condition(&mut status, cond);
        status
    }
}
