//! Progress reporting (upstream's progress.go): the Progressing condition, the progress
//! deadline, the paused condition, and ReplicaSet failures surfaced on the Deployment.

use std::time::Duration;

use k8s_openapi::api::apps::v1::DeploymentCondition;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::sync::Sets;
use super::util;
use super::Rollout;
use crate::error::Result;

impl Rollout<'_> {
    /// Upstream's checkPausedConditions: Progressing Unknown while paused (unless the deadline
    /// already passed), and again on resume.
    pub(super) async fn check_paused_conditions(&mut self) -> Result<()> {
        if !util::has_progress_deadline(&self.d) {
            return Ok(());
        }
        let paused = util::paused(&self.d);
        let status = self.d.status.get_or_insert_with(Default::default);
        let reason = util::condition(status, util::PROGRESSING).and_then(|c| c.reason.clone());
        if reason.as_deref() == Some(util::TIMED_OUT) {
            return Ok(());
        }
        let shows_paused = reason.as_deref() == Some(util::PAUSED);
        let cond = match (paused, shows_paused) {
            (true, false) => util::new_condition(
                util::PROGRESSING,
                "Unknown",
                util::PAUSED,
                "Deployment is paused".into(),
            ),
            (false, true) => util::new_condition(
                util::PROGRESSING,
                "Unknown",
                util::RESUMED,
                "Deployment is resumed".into(),
            ),
            _ => return Ok(()),
        };
        util::set_condition(status, cond);
        self.write_status().await
    }

    /// Upstream's syncRolloutStatus: the status with the Progressing condition estimated.
    pub(super) async fn sync_rollout_status(&mut self, found: &Sets) -> Result<()> {
        let mut status = self.calculate_status(found);
        let deadline = util::has_progress_deadline(&self.d);
        if !deadline {
            util::remove_condition(&mut status, util::PROGRESSING);
        }
        let old = self.d.status.clone().unwrap_or_default();
        let current = util::condition(&old, util::PROGRESSING).cloned();
        let finished = status.replicas == status.updated_replicas
            && current.as_ref().and_then(|c| c.reason.as_deref()) == Some(util::NEW_RS_AVAILABLE);
        let subject = match &found.new {
            Some(rs) => format!("ReplicaSet {:?}", rs.name_any()),
            None => format!("Deployment {:?}", self.d.name_any()),
        };
        if deadline && !finished {
            if util::complete(&self.d, &status) {
                let message = format!("{subject} has successfully progressed.");
                util::set_condition(
                    &mut status,
                    util::new_condition(util::PROGRESSING, "True", util::NEW_RS_AVAILABLE, message),
                );
            } else if util::progressing(&self.d, &status) {
                // Progress moves lastUpdateTime even with an unchanged reason, which
                // set_condition would not do.
                let message = format!("{subject} is progressing.");
                let mut cond =
                    util::new_condition(util::PROGRESSING, "True", util::RS_UPDATED, message);
                if let Some(current) = &current {
                    if current.status == "True" {
                        cond.last_transition_time = current.last_transition_time.clone();
                    }
                    util::remove_condition(&mut status, util::PROGRESSING);
                }
                util::set_condition(&mut status, cond);
            } else if util::timed_out(&self.d, &status) {
                let message = format!("{subject} has timed out progressing.");
                util::set_condition(
                    &mut status,
                    util::new_condition(util::PROGRESSING, "False", util::TIMED_OUT, message),
                );
            }
        }
        match replica_failure(found) {
            Some(cond) => util::set_condition(&mut status, cond),
            None => util::remove_condition(&mut status, util::REPLICA_FAILURE),
        }
        if self.d.status.as_ref() == Some(&status) {
            self.requeue = self.stuck_requeue(&status);
            return Ok(());
        }
        self.d.status = Some(status);
        self.write_status().await
    }

    /// When to look again at a rollout that shows no progress, to notice its deadline passing
    /// (requeueStuckDeployment).
    fn stuck_requeue(
        &self,
        status: &k8s_openapi::api::apps::v1::DeploymentStatus,
    ) -> Option<Duration> {
        let old = self.d.status.clone().unwrap_or_default();
        let current = util::condition(&old, util::PROGRESSING)?;
        if !util::has_progress_deadline(&self.d)
            || util::complete(&self.d, status)
            || current.reason.as_deref() == Some(util::TIMED_OUT)
        {
            return None;
        }
        let from = current.last_update_time.as_ref()?.0;
        let deadline = from.checked_add(util::progress_deadline(&self.d)).ok()?;
        let left = deadline.duration_since(Timestamp::now());
        let left = Duration::try_from(left).unwrap_or(Duration::ZERO);
        Some(match left < Duration::from_secs(1) {
            true => Duration::from_secs(1),
            false => left + Duration::from_secs(1),
        })
    }
}

/// The ReplicaFailure condition of the new ReplicaSet, else of an old one, as a Deployment
/// condition (getReplicaFailures).
fn replica_failure(found: &Sets) -> Option<DeploymentCondition> {
    found
        .new
        .iter()
        .chain(found.old.iter())
        .find_map(|rs| {
            rs.status
                .as_ref()?
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == util::REPLICA_FAILURE)
                .cloned()
        })
        .map(|c| DeploymentCondition {
            type_: c.type_,
            status: c.status,
            reason: c.reason,
            message: c.message,
            last_update_time: c.last_transition_time.clone(),
            last_transition_time: c.last_transition_time,
        })
}
