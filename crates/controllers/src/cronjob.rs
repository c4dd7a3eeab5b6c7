//! The CronJob controller (upstream's cronjob controller v2): creates a Job per scheduled time,
//! named `<cronjob>-<scheduled time in minutes since the epoch>` so a time is never run twice,
//! honouring `timeZone`, `startingDeadlineSeconds`, `concurrencyPolicy`, `suspend` and the
//! history limits, and keeping `status.active`, `lastScheduleTime` and `lastSuccessfulTime`.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, DeleteParams, PostParams, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};

use crate::context::Context;
use crate::cron::Schedule;
use crate::error::{Error, Result};
use crate::events;
use crate::job;
use crate::ownership;

const NAME: &str = "cronjob-controller";
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Upstream's nextScheduleDelta: wake a little after the scheduled time, never before it.
const NEXT_DELTA: Duration = Duration::from_millis(100);
/// More missed times than this get a TooManyMissedTimes warning.
const MANY_MISSED: usize = 100;

/// Seconds this process's CronJob clock runs ahead of the real one.
static CLOCK_OFFSET: AtomicI64 = AtomicI64::new(0);

/// Moves this process's CronJob clock forward, as upstream's tests inject a fake clock; the
/// controller acts on the new time at its next sync of each CronJob.
pub fn advance_clock(by: Duration) {
    CLOCK_OFFSET.fetch_add(by.as_secs() as i64, Ordering::SeqCst);
}

fn now() -> Timestamp {
    let offset = Duration::from_secs(CLOCK_OFFSET.load(Ordering::SeqCst).max(0) as u64);
    Timestamp::now()
        .checked_add(offset)
        .unwrap_or_else(|_| Timestamp::now())
}

struct State {
    client: Client,
    jobs: Store<Job>,
    recorder: Recorder,
    metrics: crate::Metrics,
}

pub async fn run(ctx: Context) -> Result<()> {
    let client = ctx.client_for(NAME).await?;
    let (store, writer) = reflector::store();
    let job_events = reflector::reflector(
        writer,
        watcher(Api::<Job>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .touched_objects();
    let state = Arc::new(State {
        client: client.clone(),
        jobs: store,
        recorder: ctx.recorder(client.clone(), NAME),
        metrics: ctx.metrics.clone(),
    });
    Controller::new(Api::<CronJob>::all(client), watcher::Config::default())
        .owns_stream(job_events)
        .run(reconcile, error_policy, state)
        .for_each(|_| std::future::ready(()))
        .await;
    Ok(())
}

fn error_policy(_cj: Arc<CronJob>, error: &Error, state: Arc<State>) -> Action {
    state.metrics.sync_failed("cronjob");
    tracing::debug!(%error, "cronjob sync failed");
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile(cj: Arc<CronJob>, state: Arc<State>) -> Result<Action> {
    state.jobs.wait_until_ready().await.ok();
    let ns = cj.namespace().unwrap_or_default();
    let api: Api<CronJob> = Api::namespaced(state.client.clone(), &ns);
    let Some(cj) = api.get_opt(&cj.name_any()).await? else {
        return Ok(Action::await_change());
    };
    let mut sync = Sync {
        state: &state,
        jobs_api: Api::namespaced(state.client.clone(), &ns),
        jobs: owned_jobs(&state.jobs, &cj),
        original: cj.status.clone(),
        cj,
        now: now(),
    };
    let requeue = sync.run().await;
    let cleaned = sync.clean_up_history().await;
    if sync.cj.status != sync.original {
        write_status(&api, sync.cj.clone()).await?;
    }
    let requeue = requeue?;
    cleaned?;
    state.metrics.synced("cronjob");
    Ok(match requeue {
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
    })
}

/// Writes the status; only this controller writes it, so a conflict (a spec or metadata
/// change since the read) is retried on the fresh object rather than losing a created Job from
/// `status.active`.
async fn write_status(api: &Api<CronJob>, mut cj: CronJob) -> Result<()> {
    let name = cj.name_any();
    for _ in 0..5 {
        match api.replace_status(&name, &PostParams::default(), &cj).await {
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let Some(mut fresh) = api.get_opt(&name).await? else {
                    return Ok(());
                };
                fresh.status = cj.status.take();
                cj = fresh;
            }
            Err(e) => return Err(e.into()),
            Ok(_) => return Ok(()),
        }
    }
    Err(Error::Invalid(format!(
        "cronjob {name}: status kept conflicting"
    )))
}

/// The Jobs whose controller is this CronJob.
fn owned_jobs(store: &Store<Job>, cj: &CronJob) -> Vec<Arc<Job>> {
    let uid = cj.uid().unwrap_or_default();
    store
        .state()
        .into_iter()
        .filter(|j| j.namespace() == cj.namespace())
        .filter(|j| ownership::controller_of(&j.metadata).is_some_and(|r| r.uid == uid))
        .collect()
}

struct Sync<'a> {
    state: &'a State,
    jobs_api: Api<Job>,
    cj: CronJob,
    original: Option<k8s_openapi::api::batch::v1::CronJobStatus>,
    jobs: Vec<Arc<Job>>,
    now: Timestamp,
}

impl Sync<'_> {
    /// Upstream's syncCronJob: returns when to look again.
    async fn run(&mut self) -> Result<Option<Duration>> {
        self.reconcile_active().await?;
        if self.cj.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let spec = self.cj.spec.clone().unwrap_or_default();
        let tz = match spec.time_zone.as_deref() {
            None => TimeZone::system(),
            Some(name) => match TimeZone::get(name) {
                Ok(tz) => tz,
                Err(e) => {
                    self.event(
                        EventType::Warning,
                        "UnknownTimeZone",
                        &format!("invalid timeZone: {name:?}: {e}"),
                    )
                    .await;
                    return Ok(None);
                }
            },
        };
        if spec.suspend == Some(true) {
            return Ok(None);
        }
        let schedule: Schedule = match spec.schedule.parse() {
            Ok(s) => s,
            Err(e) => {
                self.event(
                    EventType::Warning,
                    "UnparseableSchedule",
                    &format!("unparseable schedule: {:?} : {e}", spec.schedule),
                )
                .await;
                return Ok(None);
            }
        };
        let now = self.now;
        let next_wake = |cj: &CronJob| wake_after(cj, &schedule, &tz, now);
        let Some((scheduled, missed)) = most_recent(&self.cj, &schedule, &tz, self.now, true)
        else {
            return Ok(next_wake(&self.cj));
        };
        if missed > MANY_MISSED {
            self.event(
                EventType::Warning,
                "TooManyMissedTimes",
                &format!("too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds or check clock skew"),
            )
            .await;
        }
        if let Some(deadline) = spec.starting_deadline_seconds {
            let late = scheduled
                .checked_add(Duration::from_secs(deadline.max(0) as u64))
                .is_ok_and(|t| t < self.now);
            if late {
                let note = format!(
                    "Missed scheduled time to start a job: {}",
                    rfc1123z(scheduled)
                );
                self.event(EventType::Warning, "MissSchedule", &note).await;
                return Ok(next_wake(&self.cj));
            }
        }
        let name = job_name(&self.cj.name_any(), scheduled);
        let status = self.cj.status.clone().unwrap_or_default();
        let already = status
            .active
            .iter()
            .flatten()
            .any(|r| r.name.as_deref() == Some(&name))
            || status.last_schedule_time.as_ref().map(|t| t.0) == Some(scheduled);
        if already {
            return Ok(next_wake(&self.cj));
        }
        let active = status.active.clone().unwrap_or_default();
        match spec.concurrency_policy.as_deref() {
            Some("Forbid") if !active.is_empty() => {
                self.event(
                    EventType::Normal,
                    "JobAlreadyActive",
                    "Not starting job because prior execution is running and concurrency policy is Forbid",
                )
                .await;
                return Ok(next_wake(&self.cj));
            }
            Some("Replace") => {
                for r in &active {
                    let name = r.name.clone().unwrap_or_default();
                    if let Some(job) = self.jobs_api.get_opt(&name).await? {
                        self.delete_job(&job).await?;
                    }
                    self.remove_active(r.uid.as_deref().unwrap_or_default());
                }
            }
            _ => {}
        }
        let job = job_from_template(&self.cj, &name, scheduled, &tz);
        match self.jobs_api.create(&PostParams::default(), &job).await {
            Ok(created) => {
                self.event(
                    EventType::Normal,
                    "SuccessfulCreate",
                    &format!("Created job {}", created.name_any()),
                )
                .await;
                let status = self.cj.status.get_or_insert_with(Default::default);
                status
                    .active
                    .get_or_insert_with(Vec::new)
                    .push(job_ref(&created));
                status.last_schedule_time = Some(Time(scheduled));
            }
            // Someone (a previous sync of ours) made it; it will show in the Job cache.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => {
                self.event(
                    EventType::Warning,
                    "FailedCreate",
                    &format!("Error creating job: {e}"),
                )
                .await;
                return Err(e.into());
            }
        }
        Ok(next_wake(&self.cj))
    }

    /// Upstream's active-list reconciliation: finished Jobs leave it, vanished ones too, and
    /// an unfinished Job of ours missing from it is reported.
    async fn reconcile_active(&mut self) -> Result<()> {
        let jobs = self.jobs.clone();
        let mut children = BTreeSet::new();
        for j in &jobs {
            let uid = j.uid().unwrap_or_default();
            children.insert(uid.clone());
            let listed = self.active_uids().contains(&uid);
            if !listed && !job::finished(j) {
                self.event(
                    EventType::Warning,
                    "UnexpectedJob",
                    &format!(
                        "Saw a job that the controller did not create or forgot: {}",
                        j.name_any()
                    ),
                )
                .await;
            } else if listed && job::finished(j) {
                let condition = if job::condition(j, "Complete").is_some() {
                    "Complete"
                } else {
                    "Failed"
                };
                self.remove_active(&uid);
                self.event(
                    EventType::Normal,
                    "SawCompletedJob",
                    &format!(
                        "Saw completed job: {}, condition: {condition}",
                        j.name_any()
                    ),
                )
                .await;
            }
            if job::condition(j, "Complete").is_some() {
                let done = j.status.as_ref().and_then(|s| s.completion_time.clone());
                let status = self.cj.status.get_or_insert_with(Default::default);
                if done.as_ref().is_some_and(|d| {
                    status
                        .last_successful_time
                        .as_ref()
                        .is_none_or(|l| d.0 > l.0)
                }) {
                    status.last_successful_time = done;
                }
            }
        }
        for r in self
            .cj
            .status
            .clone()
            .unwrap_or_default()
            .active
            .unwrap_or_default()
        {
            let uid = r.uid.clone().unwrap_or_default();
            if children.contains(&uid) {
                continue;
            }
            // The Job cache may lag: ask the API server before calling it missing.
            let name = r.name.clone().unwrap_or_default();
            if self.jobs_api.get_opt(&name).await?.is_none() {
                self.event(
                    EventType::Normal,
                    "MissingJob",
                    &format!("Active job went missing: {name}"),
                )
                .await;
                self.remove_active(&uid);
            }
        }
        Ok(())
    }

    fn active_uids(&self) -> BTreeSet<String> {
        self.cj
            .status
            .iter()
            .flat_map(|s| s.active.iter().flatten())
            .filter_map(|r| r.uid.clone())
            .collect()
    }

    fn remove_active(&mut self, uid: &str) {
        if let Some(active) = self.cj.status.as_mut().and_then(|s| s.active.as_mut()) {
            active.retain(|r| r.uid.as_deref() != Some(uid));
        }
    }

    /// Deletes the oldest finished Jobs beyond the history limits.
    async fn clean_up_history(&mut self) -> Result<()> {
        let spec = self.cj.spec.clone().unwrap_or_default();
        if spec.successful_jobs_history_limit.is_none() && spec.failed_jobs_history_limit.is_none()
        {
            return Ok(());
        }
        let (mut ok, mut failed): (Vec<_>, Vec<_>) = self
            .jobs
            .iter()
            .filter(|j| job::finished(j) && j.metadata.deletion_timestamp.is_none())
            .cloned()
            .partition(|j| job::condition(j, "Complete").is_some());
        for (jobs, limit) in [
            (&mut ok, spec.successful_jobs_history_limit),
            (&mut failed, spec.failed_jobs_history_limit),
        ] {
            let Some(limit) = limit else { continue };
            // Oldest first, by start time as upstream (jobs never started sort first).
            jobs.sort_by_key(|j| {
                (
                    j.status
                        .as_ref()
                        .and_then(|s| s.start_time.as_ref())
                        .map(|t| t.0),
                    j.name_any(),
                )
            });
            let extra = jobs.len().saturating_sub(limit.max(0) as usize);
            for j in jobs.iter().take(extra) {
                self.delete_job(j).await?;
            }
        }
        Ok(())
    }

    async fn delete_job(&mut self, j: &Job) -> Result<()> {
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        };
        match self.jobs_api.delete(&j.name_any(), &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                self.event(
                    EventType::Warning,
                    "FailedDelete",
                    &format!("Deleted job: {e}"),
                )
                .await;
                return Err(e.into());
            }
        }
        self.remove_active(&j.uid().unwrap_or_default());
        self.event(
            EventType::Normal,
            "SuccessfulDelete",
            &format!("Deleted job {}", j.name_any()),
        )
        .await;
        Ok(())
    }

    async fn event(&self, type_: EventType, reason: &str, note: &str) {
        let regarding = self.cj.object_ref(&());
        events::record(&self.state.recorder, &regarding, type_, reason, note).await;
    }
}

/// The latest scheduled time not after `now` since the last one (or creation), and how many
/// were missed in between (upstream's mostRecentScheduleTime); `None` if none is due.
fn most_recent(
    cj: &CronJob,
    schedule: &Schedule,
    tz: &TimeZone,
    now: Timestamp,
    with_deadline: bool,
) -> Option<(Timestamp, usize)> {
    let mut earliest = earliest(cj);
    if with_deadline {
        if let Some(deadline) = cj.spec.as_ref().and_then(|s| s.starting_deadline_seconds) {
            let limit = now
                .checked_sub(Duration::from_secs(deadline.max(0) as u64))
                .ok()?;
            earliest = earliest.max(limit);
        }
    }
    let mut t = schedule.next(earliest, tz)?;
    if t > now {
        return None;
    }
    let mut missed = 1;
    // Past a few thousand times only the count's order matters: stop counting.
    while missed <= 10 * MANY_MISSED {
        match schedule.next(t, tz) {
            Some(n) if n <= now => {
                t = n;
                missed += 1;
            }
            _ => return Some((t, missed)),
        }
    }
    // Too many to walk: find the latest one below `now` from just before it.
    let recent = now.checked_sub(Duration::from_secs(366 * 24 * 3600)).ok()?;
    let mut t = schedule.next(recent.max(t), tz)?;
    while let Some(n) = schedule.next(t, tz).filter(|n| *n <= now) {
        t = n;
    }
    Some((t, missed))
}

fn earliest(cj: &CronJob) -> Timestamp {
    cj.status
        .as_ref()
        .and_then(|s| s.last_schedule_time.as_ref())
        .or(cj.metadata.creation_timestamp.as_ref())
        .map(|t| t.0)
        .unwrap_or_default()
}

/// How long until just after the next scheduled time (upstream's nextScheduleTimeDuration).
fn wake_after(
    cj: &CronJob,
    schedule: &Schedule,
    tz: &TimeZone,
    now: Timestamp,
) -> Option<Duration> {
    let from = most_recent(cj, schedule, tz, now, false)
        .map(|(t, _)| t)
        .unwrap_or_else(|| earliest(cj));
    let next = schedule.next(from, tz)?;
    let wait = Duration::try_from(next.duration_since(now)).unwrap_or(Duration::ZERO);
    Some(wait + NEXT_DELTA)
}

/// `<cronjob>-<scheduled time in minutes since the epoch>`.
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

fn job_from_template(cj: &CronJob, name: &str, scheduled: Timestamp, tz: &TimeZone) -> Job {
    let template = cj.spec.clone().unwrap_or_default().job_template;
    let meta = template.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert(SCHEDULED_TIMESTAMP.into(), rfc3339(scheduled, tz));
    Job {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: cj.namespace(),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![ownership::controller_ref(cj)]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

fn job_ref(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        ..Default::default()
    }
}

/// Go's time.RFC3339 in the CronJob's zone (`Z` for UTC), as upstream writes the annotation.
fn rfc3339(t: Timestamp, tz: &TimeZone) -> String {
    let zoned = t.to_zoned(tz.clone());
    let offset = if zoned.offset().seconds() == 0 {
        "Z".to_string()
    } else {
        zoned.strftime("%:z").to_string()
    };
    format!("{}{offset}", zoned.strftime("%Y-%m-%dT%H:%M:%S"))
}

/// Go's time.RFC1123Z, as upstream's MissSchedule event prints the time.
fn rfc1123z(t: Timestamp) -> String {
    t.to_zoned(TimeZone::UTC)
        .strftime("%a, %d %b %Y %H:%M:%S %z")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cronjob(created: &str, last: Option<&str>, deadline: Option<i64>) -> CronJob {
        let mut cj = CronJob::default();
        cj.metadata.creation_timestamp = Some(Time(created.parse().unwrap()));
        cj.spec = Some(k8s_openapi::api::batch::v1::CronJobSpec {
            starting_deadline_seconds: deadline,
            ..Default::default()
        });
        cj.status = Some(k8s_openapi::api::batch::v1::CronJobStatus {
            last_schedule_time: last.map(|t| Time(t.parse().unwrap())),
            ..Default::default()
        });
        cj
    }

    #[test]
    fn the_most_recent_missed_time_runs_once() {
        let every_minute: Schedule = "* * * * *".parse().unwrap();
        let now: Timestamp = "2024-01-01T00:10:30Z".parse().unwrap();
        let cj = cronjob("2024-01-01T00:00:10Z", None, None);
        let (t, missed) = most_recent(&cj, &every_minute, &TimeZone::UTC, now, true).unwrap();
        assert_eq!(t.to_string(), "2024-01-01T00:10:00Z");
        assert_eq!(missed, 10);
        // Already run at 00:10: nothing due until 00:11 (woken just after).
        let cj = cronjob("2024-01-01T00:00:10Z", Some("2024-01-01T00:10:00Z"), None);
        assert!(most_recent(&cj, &every_minute, &TimeZone::UTC, now, true).is_none());
        let wait = wake_after(&cj, &every_minute, &TimeZone::UTC, now).unwrap();
        assert_eq!(wait, Duration::from_secs(30) + NEXT_DELTA);
        // A starting deadline ignores times before it.
        let cj = cronjob("2024-01-01T00:00:10Z", None, Some(45));
        let (t, missed) = most_recent(&cj, &every_minute, &TimeZone::UTC, now, true).unwrap();
        assert_eq!(
            (t.to_string().as_str(), missed),
            ("2024-01-01T00:10:00Z", 1)
        );
    }

    #[test]
    fn job_names_count_minutes_since_the_epoch() {
        let t: Timestamp = "2024-01-01T00:10:00Z".parse().unwrap();
        assert_eq!(job_name("hello", t), format!("hello-{}", 1704067800 / 60));
    }
}
