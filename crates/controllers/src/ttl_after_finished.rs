//! The TTL-after-finished controller (upstream's pkg/controller/ttlafterfinished): deletes a
//! finished Job `ttlSecondsAfterFinished` after it finished, in the foreground so its pods go
//! first.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Preconditions, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::job;

const NAME: &str = "ttl-after-finished-controller";

struct State {
    client: Client,
    metrics: crate::Metrics,
}

pub async fn run(ctx: Context) -> Result<()> {
    let client = ctx.client_for(NAME).await?;
    let state = Arc::new(State {
        client: client.clone(),
        metrics: ctx.metrics.clone(),
    });
    Controller::new(Api::<Job>::all(client), watcher::Config::default())
        .run(reconcile, error_policy, state)
        .for_each(|_| std::future::ready(()))
        .await;
    Ok(())
}

fn error_policy(_job: Arc<Job>, error: &Error, state: Arc<State>) -> Action {
    state.metrics.sync_failed("ttl-after-finished");
    tracing::debug!(%error, "ttl-after-finished sync failed");
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile(job: Arc<Job>, state: Arc<State>) -> Result<Action> {
    state.metrics.synced("ttl-after-finished");
    let Some(left) = time_left(&job, Timestamp::now()) else {
        return Ok(Action::await_change());
    };
    if !left.is_zero() {
        return Ok(Action::requeue(left));
    }
    // The TTL may have changed since the cache saw the Job: check the stored one.
    let api: Api<Job> = Api::namespaced(state.client.clone(), &job.namespace().unwrap_or_default());
    let Some(fresh) = api.get_opt(&job.name_any()).await? else {
        return Ok(Action::await_change());
    };
    match time_left(&fresh, Timestamp::now()) {
        Some(left) if left.is_zero() => {}
        Some(left) => return Ok(Action::requeue(left)),
        None => return Ok(Action::await_change()),
    }
    tracing::info!(job = %fresh.name_any(), "deleting a finished job whose TTL expired");
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        preconditions: Some(Preconditions {
            uid: fresh.uid(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&fresh.name_any(), &params).await {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

/// How long until the Job expires (zero: now); `None` if it has no TTL, is not finished or
/// is already being deleted.
fn time_left(job: &Job, now: Timestamp) -> Option<Duration> {
    if job.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    let finished = ["Complete", "Failed"]
        .iter()
        .find_map(|t| job::condition(job, t))?;
    // Upstream takes the condition's transition time as the finish time.
    let at = finished.last_transition_time.as_ref()?.0;
    let expires = at
        .checked_add(Duration::from_secs(ttl.max(0) as u64))
        .ok()?;
    Some(Duration::try_from(expires.duration_since(now)).unwrap_or(Duration::ZERO))
}
