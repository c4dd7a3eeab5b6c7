//! The RollingUpdate strategy (upstream's rolling.go): scale the new ReplicaSet up within
//! maxSurge, the old ones down within maxUnavailable, unhealthy old pods first.

use k8s_openapi::api::apps::v1::ReplicaSet;

use super::sync::Sets;
use super::util;
use super::Rollout;
use crate::error::Result;

impl Rollout<'_> {
    pub(super) async fn rollout_rolling(&mut self, sets: &mut Vec<ReplicaSet>) -> Result<()> {
        let mut found = self.replica_sets(sets, true).await?;
        if self.reconcile_new_replica_set(&mut found).await? {
            return self.sync_rollout_status(&found).await;
        }
        if self.reconcile_old_replica_sets(&mut found).await? {
            return self.sync_rollout_status(&found).await;
        }
        let status = self.d.status.clone().unwrap_or_default();
        if util::complete(&self.d, &status) {
            self.cleanup(&found.old).await?;
        }
        self.sync_rollout_status(&found).await
    }

    async fn reconcile_new_replica_set(&mut self, found: &mut Sets) -> Result<bool> {
        let Some(new) = found.new.clone() else {
            return Ok(false);
        };
        let want = util::replicas(&self.d);
        let size = util::rs_replicas(&new);
        let target = match size.cmp(&want) {
            std::cmp::Ordering::Equal => return Ok(false),
            std::cmp::Ordering::Greater => want,
            std::cmp::Ordering::Less => self.new_rs_new_replicas(found.all(), &new),
        };
        let (scaled, rs) = self.scale_and_record(&new, target).await?;
        found.update(rs);
        Ok(scaled)
    }

    /// Scales old ReplicaSets down as far as availability allows (reconcileOldReplicaSets).
    async fn reconcile_old_replica_sets(&mut self, found: &mut Sets) -> Result<bool> {
        if util::spec_sum(&found.old) == 0 {
            return Ok(false);
        }
        let all_pods = util::spec_sum(found.all());
        let min_available = util::replicas(&self.d) - util::max_unavailable(&self.d);
        let new_unavailable = found
            .new
            .as_ref()
            .map_or(0, |rs| util::rs_replicas(rs) - util::available(rs));
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        let cleaned = self
            .cleanup_unhealthy_replicas(found, max_scaled_down)
            .await?;
        let scaled = self.scale_down_old_for_rolling_update(found).await?;
        Ok(cleaned + scaled > 0)
    }

    /// Old ReplicaSets lose their unavailable pods first, oldest first, at most `max` in all
    /// (cleanupUnhealthyReplicas).
    async fn cleanup_unhealthy_replicas(&mut self, found: &mut Sets, max: i32) -> Result<i32> {
        let mut old = found.old.clone();
        old.sort_by(util::by_creation);
        let mut total = 0;
        for rs in old {
            if total >= max {
                break;
            }
            let size = util::rs_replicas(&rs);
            let available = util::available(&rs);
            if size == 0 || size == available {
                continue;
            }
            let down = (max - total).min(size - available);
            let (_, updated) = self.scale_and_record(&rs, size - down).await?;
            found.update(updated);
            total += down;
        }
        Ok(total)
    }

    /// Scales old ReplicaSets down, oldest first, while more than minAvailable pods are
    /// available (scaleDownOldReplicaSetsForRollingUpdate).
    async fn scale_down_old_for_rolling_update(&mut self, found: &mut Sets) -> Result<i32> {
        let min_available = util::replicas(&self.d) - util::max_unavailable(&self.d);
        let available = util::available_sum(found.all());
        if available <= min_available {
            return Ok(0);
        }
        let mut old = found.old.clone();
        old.sort_by(util::by_creation);
        let wanted = available - min_available;
        let mut total = 0;
        for rs in old {
            if total >= wanted {
                break;
            }
            let size = util::rs_replicas(&rs);
            if size == 0 {
                continue;
            }
            let down = size.min(wanted - total);
            let (_, updated) = self.scale_and_record(&rs, size - down).await?;
            found.update(updated);
            total += down;
        }
        Ok(total)
    }
}
