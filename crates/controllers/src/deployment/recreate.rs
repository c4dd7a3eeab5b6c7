//! The Recreate strategy (upstream's recreate.go): every old pod goes before the new
//! ReplicaSet is created or scaled up.

use k8s_openapi::api::apps::v1::ReplicaSet;

use super::sync::Sets;
use super::util;
use super::Rollout;
use crate::error::Result;
use crate::pods;

impl Rollout<'_> {
    pub(super) async fn rollout_recreate(&mut self, sets: &mut Vec<ReplicaSet>) -> Result<()> {
        // The new ReplicaSet is not created yet, so nothing scales up before the old are down.
        let mut found = self.replica_sets(sets, false).await?;
        let mut scaled_down = false;
        for rs in found
            .old
            .clone()
            .iter()
            .filter(|rs| util::rs_replicas(rs) > 0)
        {
            let (scaled, updated) = self.scale_and_record(rs, 0).await?;
            scaled_down |= scaled;
            found.update(updated);
        }
        if scaled_down || self.old_pods_running(&found, sets) {
            return self.sync_rollout_status(&found).await;
        }
        if found.new.is_none() {
            let mut current: Vec<ReplicaSet> = found.all().cloned().collect();
            found = self.replica_sets(&mut current, true).await?;
        }
        if let Some(new) = found.new.clone() {
            let want = util::replicas(&self.d);
            let (_, updated) = self.scale_and_record(&new, want).await?;
            found.update(updated);
        }
        let status = self.d.status.clone().unwrap_or_default();
        if util::complete(&self.d, &status) {
            self.cleanup(&found.old).await?;
        }
        self.sync_rollout_status(&found).await
    }

    /// Old ReplicaSets still report pods, or pods of theirs have not finished (oldPodsRunning).
    fn old_pods_running(&self, found: &Sets, sets: &[ReplicaSet]) -> bool {
        if util::actual_sum(&found.old) > 0 {
            return true;
        }
        let new_uid = found.new.as_ref().and_then(|rs| rs.metadata.uid.clone());
        self.pods_by_set(sets)
            .into_iter()
            .filter(|(uid, _)| Some(uid) != new_uid.as_ref())
            .any(|(_, pods)| pods.iter().any(|p| !pods::is_finished(p)))
    }
}
