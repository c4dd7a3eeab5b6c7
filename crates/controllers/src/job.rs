//! The Job controller (upstream's pkg/controller/job): runs a Job's pods until enough succeed
//! (or too many fail, or its deadline passes), counting each finished pod exactly once.
//!
//! Counting follows upstream's finalizer tracking: every pod is created with the
//! `batch.kubernetes.io/job-tracking` finalizer; a finished pod's uid first goes to
//! `status.uncountedTerminatedPods`, then its finalizer is removed, then it moves to
//! `succeeded`/`failed`. A crash between any two steps neither loses nor doubles a count.
//! Terminal conditions follow 1.33: `SuccessCriteriaMet`/`FailureTarget` first, `Complete`/
//! `Failed` (and `completionTime`) once no pod is left running or uncounted.
//!
//! [`policy`] decides what a failure means (`podFailurePolicy`: FailJob, FailIndex, Ignore,
//! Count), when an index of an Indexed Job has failed (`backoffLimitPerIndex`, counted in
//! the pods' `job-index-failure-count` annotations, `maxFailedIndexes`) and when a
//! `successPolicy` is met; the Job then fails with reason PodFailurePolicy,
//! MaxFailedIndexesExceeded or FailedIndexes, or succeeds with reason SuccessPolicy.

mod policy;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::mpsc;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::events;
use crate::expectations::{Expect, Expectations};
use crate::ownership::{self, Claim};
use crate::pods;

const NAME: &str = "job-controller";
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
const INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// Upstream's DefaultJobPodFailureBackOff and MaxJobPodFailureBackOff.
const BACKOFF_BASE: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(360);

struct State {
    client: Client,
    pods: Store<Pod>,
    recorder: Recorder,
    expectations: Expectations,
    /// Per job uid: failures since the last success and when the last one was seen
    /// (upstream's in-memory backoff records).
    backoff: Mutex<HashMap<String, (u32, Timestamp)>>,
    metrics: crate::Metrics,
}

pub async fn run(ctx: Context) -> Result<()> {
    let client = ctx.client_for(NAME).await?;
    let (store, writer) = reflector::store();
    let (orphans, orphan_rx) = mpsc::unbounded_channel::<Pod>();
    let pod_events = reflector::reflector(
        writer,
        watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .touched_objects()
    .inspect_ok(move |pod| {
        if has_finalizer(pod) && !owned_by_job(pod) {
            let _ = orphans.send(pod.clone());
        }
    });
    let state = Arc::new(State {
        client: client.clone(),
        pods: store,
        recorder: ctx.recorder(client.clone(), NAME),
        expectations: Expectations::default(),
        backoff: Mutex::default(),
        metrics: ctx.metrics.clone(),
    });
    let controller = Controller::new(Api::<Job>::all(client.clone()), watcher::Config::default())
        .owns_stream(pod_events)
        .run(reconcile, error_policy, state)
        .for_each(|_| std::future::ready(()));
    tokio::select! {
        _ = controller => Ok(()),
        r = release_orphans(client, orphan_rx) => r,
    }
}

fn has_finalizer(pod: &Pod) -> bool {
    pod.finalizers().iter().any(|f| f == TRACKING_FINALIZER)
}

fn owned_by_job(pod: &Pod) -> bool {
    ownership::controller_of(&pod.metadata).is_some_and(|r| r.kind == "Job")
}

/// Pods with the tracking finalizer whose Job is gone (or that no Job controls) would never
/// be released: remove the finalizer, as upstream's orphan queue does.
async fn release_orphans(client: Client, mut rx: mpsc::UnboundedReceiver<Pod>) -> Result<()> {
    while let Some(pod) = rx.recv().await {
        let ns = pod.namespace().unwrap_or_default();
        if let Some(owner) = ownership::controller_of(&pod.metadata) {
            let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
            if let Some(job) = jobs.get_opt(&owner.name).await? {
                if job.uid().as_deref() == Some(owner.uid.as_str()) {
                    continue;
                }
            }
        }
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        if let Err(e) = remove_finalizer(&api, &pod.name_any()).await {
            tracing::warn!(pod = %pod.name_any(), error = %e, "cannot release an orphan job pod");
        }
    }
    Ok(())
}

async fn remove_finalizer(api: &Api<Pod>, name: &str) -> Result<()> {
    let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER]}});
    match api
        .patch(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn error_policy(_job: Arc<Job>, error: &Error, state: Arc<State>) -> Action {
    state.metrics.sync_failed("job");
    tracing::debug!(%error, "job sync failed");
    Action::requeue(Duration::from_secs(1))
}

async fn reconcile(job: Arc<Job>, state: Arc<State>) -> Result<Action> {
    state.pods.wait_until_ready().await.ok();
    let ns = job.namespace().unwrap_or_default();
    let api: Api<Job> = Api::namespaced(state.client.clone(), &ns);
    // The cache may lag our own status writes; decide from the stored object.
    let Some(job) = api.get_opt(&job.name_any()).await? else {
        return Ok(Action::await_change());
    };
    let action = Sync::new(&state, job, ns).await?.run().await?;
    state.metrics.synced("job");
    Ok(action)
}

/// One reconciliation of one Job.
struct Sync<'a> {
    state: &'a State,
    job: Job,
    key: String,
    pods_api: Api<Pod>,
    jobs_api: Api<Job>,
    /// The Job's pods, claimed.
    pods: Vec<Arc<Pod>>,
    now: Timestamp,
    /// The message of a FailJob rule a pod counted in this sync matched.
    fail_job: Option<String>,
}

impl<'a> Sync<'a> {
    async fn new(state: &'a State, job: Job, ns: String) -> Result<Sync<'a>> {
        let pods_api: Api<Pod> = Api::namespaced(state.client.clone(), &ns);
        let jobs_api: Api<Job> = Api::namespaced(state.client.clone(), &ns);
        let key = job.uid().unwrap_or_default();
        let selector = job
            .spec
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default();
        let deleting = job.metadata.deletion_timestamp.is_some();
        let mut pods = Vec::new();
        for pod in state.pods.state() {
            if pod.namespace().as_deref() != Some(ns.as_str()) {
                continue;
            }
            match ownership::claim(&key, deleting, &selector, &pod.metadata) {
                Claim::Owned => pods.push(pod),
                Claim::Adopt => {
                    let owner = ownership::controller_ref(&job);
                    pods.push(Arc::new(
                        ownership::adopt(&pods_api, &pod.metadata, owner).await?,
                    ));
                }
                Claim::Release => {
                    ownership::release(&pods_api, &pod.metadata, &key).await?;
                }
                Claim::Ignore => {}
            }
        }
        Ok(Sync {
            state,
            job,
            key,
            pods_api,
            jobs_api,
            pods,
            now: Timestamp::now(),
            fail_job: None,
        })
    }

    fn spec(&self) -> &k8s_openapi::api::batch::v1::JobSpec {
        self.job.spec.as_ref().expect("a stored Job has a spec")
    }

    fn status(&mut self) -> &mut JobStatus {
        self.job.status.get_or_insert_with(Default::default)
    }

    fn indexed(&self) -> bool {
        self.spec().completion_mode.as_deref() == Some("Indexed")
    }

    async fn run(mut self) -> Result<Action> {
        if finished(&self.job) {
            self.release_all().await?;
            self.state.backoff.lock().unwrap().remove(&self.key);
            return Ok(Action::await_change());
        }
        let satisfied = self
            .state
            .expectations
            .satisfied(&self.key, &self.state.pods);
        let original = self.job.status.clone();
        let suspended = self.spec().suspend == Some(true);
        if self
            .job
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .is_none()
            && !suspended
        {
            self.status().start_time = Some(Time(self.now));
        }
        self.track_finished().await?;
        let mut requeue = None;
        let target = self.failure_target().or_else(|| self.success_target());
        match &target {
            Some((kind, reason, message)) => {
                let (kind, reason, message) = (*kind, *reason, message.clone());
                let now = self.now;
                set_condition(self.status(), kind, reason, &message, now);
                self.delete_active().await?;
            }
            None if satisfied => requeue = self.manage(suspended).await?,
            None => {}
        }
        self.count_active();
        self.finish_if_done().await;
        if self.job.status != original {
            let job = self.job.clone();
            self.jobs_api
                .replace_status(&job.name_any(), &PostParams::default(), &job)
                .await?;
        }
        Ok(requeue.map_or_else(Action::await_change, Action::requeue))
    }

    /// Moves finished pods into `uncountedTerminatedPods`, removes their finalizers, then
    /// counts them.
    async fn track_finished(&mut self) -> Result<()> {
        let losing = self
            .state
            .expectations
            .losing(&self.key, TRACKING_FINALIZER);
        let replace_failed = self.spec().pod_replacement_policy.as_deref() == Some("Failed");
        let mut uncounted = self
            .job
            .status
            .as_ref()
            .and_then(|s| s.uncounted_terminated_pods.clone())
            .unwrap_or_default();
        let mut added = false;
        let mut new_failures = 0;
        let mut release = Vec::new();
        let mut failed_indexes = self.failed_indexes();
        let completions = self.spec().completions.unwrap_or(1);
        // Pods stopped after the success criteria were met are no failures (upstream).
        let succeeding = condition(&self.job, "SuccessCriteriaMet").is_some();
        let finishing = succeeding || condition(&self.job, "FailureTarget").is_some();
        for pod in &self.pods {
            let name = pod.name_any();
            if !has_finalizer(pod) || losing.contains(&name) {
                continue;
            }
            let uid = pod.uid().unwrap_or_default();
            let succeeded = pods::phase(pod) == "Succeeded";
            // A pod being deleted counts as failed unless only Failed pods are replaced; once
            // the Job has a terminal target, every pod stopped for it does (upstream).
            let deleting = pod.metadata.deletion_timestamp.is_some();
            let failed = pods::phase(pod) == "Failed"
                || (!succeeded && deleting && (!replace_failed || finishing));
            if !(succeeded || failed) {
                continue;
            }
            let verdict = policy::verdict(&self.job, pod);
            if failed && (succeeding || !verdict.counts) {
                // Ignored by the failure policy, or after success: released uncounted.
                release.push(name);
                continue;
            }
            if failed {
                if self.fail_job.is_none() {
                    self.fail_job = verdict.fail_job;
                }
                if policy::is_index_failed(&self.job, pod) {
                    failed_indexes.extend(completion_index(pod, completions));
                }
            }
            let list = if succeeded {
                uncounted.succeeded.get_or_insert_with(Vec::new)
            } else {
                uncounted.failed.get_or_insert_with(Vec::new)
            };
            if !list.contains(&uid) {
                list.push(uid);
                added = true;
                if failed {
                    new_failures += 1;
                }
            }
            release.push(name);
        }
        self.note_backoff(new_failures);
        if self
            .job
            .spec
            .as_ref()
            .and_then(|s| s.backoff_limit_per_index)
            .is_some()
        {
            let text = format_indexes(&failed_indexes);
            if self
                .job
                .status
                .as_ref()
                .and_then(|s| s.failed_indexes.as_ref())
                != Some(&text)
            {
                self.status().failed_indexes = Some(text);
                added = true;
            }
        }
        if added {
            // Record the uids before the finalizers go, so a crash cannot lose a count.
            self.status().uncounted_terminated_pods = Some(uncounted.clone());
            let job = self.job.clone();
            self.job = self
                .jobs_api
                .replace_status(&job.name_any(), &PostParams::default(), &job)
                .await?;
        }
        for name in &release {
            remove_finalizer(&self.pods_api, name).await?;
            let ns = self.job.namespace().unwrap_or_default();
            self.state.expectations.expect(
                &self.key,
                &ns,
                name,
                Expect::Without(TRACKING_FINALIZER),
            );
        }
        self.count_uncounted(uncounted);
        Ok(())
    }

    /// Uncounted uids whose pods no longer hold the finalizer join the counters (and, when
    /// indexed, the completed indexes).
    fn count_uncounted(&mut self, uncounted: UncountedTerminatedPods) {
        let holding: BTreeSet<String> = self
            .pods
            .iter()
            .filter(|p| has_finalizer(p))
            .filter_map(|p| p.uid())
            .collect();
        let losing = self
            .state
            .expectations
            .losing(&self.key, TRACKING_FINALIZER);
        let released = |uid: &String| {
            !holding.contains(uid)
                || self
                    .pods
                    .iter()
                    .any(|p| p.uid().as_ref() == Some(uid) && losing.contains(&p.name_any()))
        };
        let (done_ok, keep_ok): (Vec<_>, Vec<_>) = uncounted
            .succeeded
            .unwrap_or_default()
            .into_iter()
            .partition(released);
        let (done_failed, keep_failed): (Vec<_>, Vec<_>) = uncounted
            .failed
            .unwrap_or_default()
            .into_iter()
            .partition(released);
        let mut indexes = parse_indexes(
            self.job
                .status
                .as_ref()
                .and_then(|s| s.completed_indexes.as_deref())
                .unwrap_or(""),
        );
        let completions = self.spec().completions.unwrap_or(1);
        for uid in &done_ok {
            let index = self
                .pods
                .iter()
                .find(|p| p.uid().as_ref() == Some(uid))
                .and_then(|p| completion_index(p, completions));
            indexes.extend(index);
        }
        let indexed = self.indexed();
        let status = self.status();
        status.succeeded = Some(status.succeeded.unwrap_or(0) + done_ok.len() as i32);
        status.failed = Some(status.failed.unwrap_or(0) + done_failed.len() as i32);
        if indexed {
            status.completed_indexes = Some(format_indexes(&indexes));
        }
        status.uncounted_terminated_pods = Some(UncountedTerminatedPods {
            succeeded: Some(keep_ok),
            failed: Some(keep_failed),
        });
    }

    fn note_backoff(&self, new_failures: u32) {
        let mut backoff = self.state.backoff.lock().unwrap();
        if new_failures > 0 {
            let entry = backoff.entry(self.key.clone()).or_insert((0, self.now));
            *entry = (entry.0 + new_failures, self.now);
        }
    }

    /// How long pod creation must still wait after recent failures.
    fn backoff_remaining(&self) -> Option<Duration> {
        let (count, last) = *self.state.backoff.lock().unwrap().get(&self.key)?;
        let delay = BACKOFF_BASE
            .saturating_mul(2u32.saturating_pow(count.saturating_sub(1)))
            .min(BACKOFF_MAX);
        let until = last.checked_add(delay).ok()?;
        let left = until.duration_since(self.now);
        (left.is_positive()).then(|| Duration::try_from(left).unwrap_or(delay))
    }

    /// FailureTarget when the backoff limit or the deadline is exceeded.
    fn failure_target(&self) -> Option<(&'static str, &'static str, String)> {
        if let Some(c) = condition(&self.job, "FailureTarget") {
            return Some((
                "FailureTarget",
                reason_static(c.reason.as_deref()),
                c.message.clone().unwrap_or_default(),
            ));
        }
        if let Some(message) = &self.fail_job {
            return Some(("FailureTarget", "PodFailurePolicy", message.clone()));
        }
        let status = self.job.status.clone().unwrap_or_default();
        let failed = status.failed.unwrap_or(0)
            + status
                .uncounted_terminated_pods
                .as_ref()
                .and_then(|u| u.failed.as_ref())
                .map_or(0, Vec::len) as i32;
        let limit = self.spec().backoff_limit.unwrap_or(6);
        if failed > limit || self.restarts_past_limit(limit) {
            return Some((
                "FailureTarget",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit".into(),
            ));
        }
        if self.past_deadline() == Some(true) {
            return Some((
                "FailureTarget",
                "DeadlineExceeded",
                "Job was active longer than specified deadline".into(),
            ));
        }
        self.failed_indexes_target()
    }

    /// `status.failedIndexes` of an Indexed Job with backoffLimitPerIndex.
    fn failed_indexes(&self) -> BTreeSet<i32> {
        let text = self
            .job
            .status
            .as_ref()
            .and_then(|s| s.failed_indexes.as_deref());
        parse_indexes(text.unwrap_or(""))
    }

    /// Upstream: more failed indexes than maxFailedIndexes, or every index finished and some
    /// failed.
    fn failed_indexes_target(&self) -> Option<(&'static str, &'static str, String)> {
        self.spec().backoff_limit_per_index?;
        let failed = self.failed_indexes().len();
        if self
            .spec()
            .max_failed_indexes
            .is_some_and(|max| failed > max.max(0) as usize)
        {
            return Some((
                "FailureTarget",
                "MaxFailedIndexesExceeded",
                "Job has exceeded the specified maximal number of failed indexes".into(),
            ));
        }
        let completions = self.spec().completions.unwrap_or(1).max(0) as usize;
        let succeeded = self.completed_indexes().len();
        (failed > 0 && failed + succeeded >= completions).then(|| {
            (
                "FailureTarget",
                "FailedIndexes",
                "Job has failed indexes".into(),
            )
        })
    }

    fn completed_indexes(&self) -> BTreeSet<i32> {
        let text = self
            .job
            .status
            .as_ref()
            .and_then(|s| s.completed_indexes.as_deref());
        parse_indexes(text.unwrap_or(""))
    }

    /// With `restartPolicy: OnFailure` the kubelet restarts containers in place; their
    /// restarts count against the backoff limit (upstream's pastBackoffLimitOnFailure).
    fn restarts_past_limit(&self, limit: i32) -> bool {
        let template = self.spec().template.spec.as_ref();
        if template.and_then(|s| s.restart_policy.as_deref()) != Some("OnFailure") {
            return false;
        }
        let restarts: i32 = self
            .pods
            .iter()
            .filter(|p| pods::is_active(p))
            .filter_map(|p| p.status.as_ref())
            .flat_map(|s| {
                s.container_statuses
                    .iter()
                    .flatten()
                    .chain(s.init_container_statuses.iter().flatten())
            })
            .map(|c| c.restart_count)
            .sum();
        limit == 0 && restarts > 0 || limit > 0 && restarts >= limit
    }

    /// `Some(true)` past the deadline; `None` without one.
    fn past_deadline(&self) -> Option<bool> {
        Some(self.deadline_left()? <= Duration::ZERO)
    }

    fn deadline_left(&self) -> Option<Duration> {
        let seconds = self.spec().active_deadline_seconds?;
        let start = self.job.status.as_ref()?.start_time.as_ref()?.0;
        let end = start
            .checked_add(Duration::from_secs(seconds.max(0) as u64))
            .ok()?;
        let left = end.duration_since(self.now);
        Some(Duration::try_from(left).unwrap_or(Duration::ZERO))
    }

    fn success_target(&self) -> Option<(&'static str, &'static str, String)> {
        if let Some(c) = condition(&self.job, "SuccessCriteriaMet") {
            return Some((
                "SuccessCriteriaMet",
                reason_static(c.reason.as_deref()),
                c.message.clone().unwrap_or_default(),
            ));
        }
        let success_policy = self
            .spec()
            .success_policy
            .as_ref()
            .filter(|_| self.indexed());
        if let Some(success_policy) = success_policy {
            let completions = self.spec().completions.unwrap_or(1);
            let done = self.completed_indexes();
            if let Some(message) = policy::match_success_policy(success_policy, completions, &done)
            {
                return Some(("SuccessCriteriaMet", "SuccessPolicy", message));
            }
        }
        let status = self.job.status.clone().unwrap_or_default();
        let succeeded = status.succeeded.unwrap_or(0);
        let complete = match self.spec().completions {
            Some(n) if self.indexed() => {
                parse_indexes(status.completed_indexes.as_deref().unwrap_or("")).len() as i32 >= n
            }
            Some(n) => succeeded >= n,
            // Without completions, the first success ends the Job once nothing else runs.
            None => succeeded > 0 && !self.pods.iter().any(|p| pods::is_active(p)),
        };
        complete.then(|| {
            (
                "SuccessCriteriaMet",
                "CompletionsReached",
                "Reached expected number of succeeded pods".into(),
            )
        })
    }

    /// Creates or deletes pods towards the wanted number; returns when to look again.
    async fn manage(&mut self, suspended: bool) -> Result<Option<Duration>> {
        self.suspension(suspended).await;
        let mut active: Vec<Arc<Pod>> = self
            .pods
            .iter()
            .filter(|p| pods::is_active(p))
            .cloned()
            .collect();
        if suspended {
            let all = active.clone();
            self.delete(&all).await?;
            return Ok(None);
        }
        let parallelism = self.spec().parallelism.unwrap_or(1).max(0) as usize;
        let succeeded = self
            .job
            .status
            .as_ref()
            .and_then(|s| s.succeeded)
            .unwrap_or(0)
            .max(0) as usize;
        let deadline = self.deadline_left();
        if self.indexed() {
            return Ok(self.manage_indexed(active, parallelism).await?.or(deadline));
        }
        let wanted = match self.spec().completions {
            None if succeeded > 0 => 0,
            None => parallelism,
            Some(n) => (n.max(0) as usize)
                .saturating_sub(succeeded)
                .min(parallelism),
        };
        if active.len() > wanted {
            sort_for_deletion(&mut active);
            let extra = active[..active.len() - wanted].to_vec();
            self.delete(&extra).await?;
        } else if active.len() < wanted {
            if let Some(wait) = self.backoff_remaining() {
                return Ok(Some(wait));
            }
            for _ in active.len()..wanted {
                self.create(None).await?;
            }
        }
        Ok(deadline)
    }

    async fn manage_indexed(
        &mut self,
        active: Vec<Arc<Pod>>,
        parallelism: usize,
    ) -> Result<Option<Duration>> {
        let completions = self.spec().completions.unwrap_or(1);
        let done = parse_indexes(
            self.job
                .status
                .as_ref()
                .and_then(|s| s.completed_indexes.as_deref())
                .unwrap_or(""),
        );
        // One pod per index: drop pods without a valid index, of a completed index, or a
        // second pod of the same index.
        let mut running = BTreeSet::new();
        let mut extra = Vec::new();
        for pod in &active {
            match completion_index(pod, completions) {
                Some(i) if !done.contains(&i) && running.insert(i) => {}
                _ => extra.push(pod.clone()),
            }
        }
        self.delete(&extra).await?;
        let room = parallelism.saturating_sub(running.len());
        let failed = self.failed_indexes();
        // With podReplacementPolicy Failed, a terminating pod still holds its index.
        if self.spec().pod_replacement_policy.as_deref() == Some("Failed") {
            for pod in self.pods.iter().filter(|p| is_terminating(p)) {
                running.extend(completion_index(pod, completions));
            }
        }
        let missing: Vec<i32> = (0..completions)
            .filter(|i| !done.contains(i) && !running.contains(i) && !failed.contains(i))
            .take(room)
            .collect();
        if !missing.is_empty() {
            if let Some(wait) = self.backoff_remaining() {
                return Ok(Some(wait));
            }
        }
        for index in missing {
            self.create(Some(index)).await?;
        }
        Ok(None)
    }

    /// Suspended / resumed condition and startTime, as upstream.
    async fn suspension(&mut self, suspended: bool) {
        let was = condition(&self.job, "Suspended").is_some();
        if suspended && !was {
            let now = self.now;
            set_condition(
                self.status(),
                "Suspended",
                "JobSuspended",
                "Job suspended",
                now,
            );
            self.status().start_time = None;
            self.event(EventType::Normal, "Suspended", "Job suspended")
                .await;
        } else if !suspended && was {
            let now = self.now;
            let status = self.status();
            for c in status.conditions.iter_mut().flatten() {
                if c.type_ == "Suspended" {
                    c.status = "False".into();
                    c.reason = Some("JobResumed".into());
                    c.message = Some("Job resumed".into());
                    c.last_transition_time = Some(Time(now));
                }
            }
            status.start_time = Some(Time(now));
            self.event(EventType::Normal, "Resumed", "Job resumed")
                .await;
        }
    }

    async fn create(&mut self, index: Option<i32>) -> Result<()> {
        let name = self.job.name_any();
        let ns = self.job.namespace().unwrap_or_default();
        let prefix = match index {
            Some(i) => format!("{name}-{i}-"),
            None => format!("{name}-"),
        };
        let mut pod = pods::from_template(
            &self.spec().template,
            &ns,
            &prefix,
            ownership::controller_ref(&self.job),
        );
        pod.metadata
            .finalizers
            .get_or_insert_with(Vec::new)
            .push(TRACKING_FINALIZER.into());
        if let Some(i) = index {
            add_index(&mut pod, &name, i);
            self.add_failure_counts(&mut pod, i);
        }
        match self.pods_api.create(&PostParams::default(), &pod).await {
            Ok(created) => {
                let pod_name = created.name_any();
                self.state
                    .expectations
                    .expect(&self.key, &ns, &pod_name, Expect::Exists);
                self.event(
                    EventType::Normal,
                    "SuccessfulCreate",
                    &format!("Created pod: {pod_name}"),
                )
                .await;
                Ok(())
            }
            Err(e) => {
                self.event(
                    EventType::Warning,
                    "FailedCreate",
                    &format!("Error creating: {e}"),
                )
                .await;
                Err(e.into())
            }
        }
    }

    /// With backoffLimitPerIndex, the index's failures so far, from the pod it replaces.
    fn add_failure_counts(&self, pod: &mut Pod, index: i32) {
        if self.spec().backoff_limit_per_index.is_none() {
            return;
        }
        let completions = self.spec().completions.unwrap_or(1);
        let replaced =
            policy::latest_failed(self.pods.iter().map(|p| p.as_ref()), index, completions);
        let (failures, ignored) = policy::new_failure_counts(&self.job, replaced);
        let annotations = pod
            .metadata
            .annotations
            .get_or_insert_with(Default::default);
        annotations.insert(policy::INDEX_FAILURE_COUNT.into(), failures.to_string());
        if ignored > 0 {
            annotations.insert(
                policy::INDEX_IGNORED_FAILURE_COUNT.into(),
                ignored.to_string(),
            );
        }
    }

    async fn delete_active(&mut self) -> Result<()> {
        let active: Vec<_> = self
            .pods
            .iter()
            .filter(|p| pods::is_active(p))
            .cloned()
            .collect();
        self.delete(&active).await
    }

    /// Deletes pods; a pod without a node goes at once, and its finalizer is released by the
    /// next sync, which counts it as failed.
    async fn delete(&mut self, victims: &[Arc<Pod>]) -> Result<()> {
        let ns = self.job.namespace().unwrap_or_default();
        for pod in victims {
            let name = pod.name_any();
            match self.pods_api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
            self.state
                .expectations
                .expect(&self.key, &ns, &name, Expect::Gone);
            self.event(
                EventType::Normal,
                "SuccessfulDelete",
                &format!("Deleted pod: {name}"),
            )
            .await;
        }
        Ok(())
    }

    fn count_active(&mut self) {
        let active = self.pods.iter().filter(|p| pods::is_active(p)).count() as i32;
        let ready = self
            .pods
            .iter()
            .filter(|p| pods::is_active(p) && pods::is_ready(p))
            .count() as i32;
        let terminating = self
            .pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_some() && !pods::is_finished(p))
            .count() as i32;
        let status = self.status();
        status.active = Some(active);
        status.ready = Some(ready);
        status.terminating = Some(terminating);
    }

    /// The terminal condition once the target is reached and nothing is running or
    /// uncounted.
    async fn finish_if_done(&mut self) {
        let status = self.job.status.clone().unwrap_or_default();
        let uncounted = status.uncounted_terminated_pods.unwrap_or_default();
        let settled = uncounted.succeeded.as_ref().is_none_or(Vec::is_empty)
            && uncounted.failed.as_ref().is_none_or(Vec::is_empty)
            && status.active.unwrap_or(0) == 0
            && status.terminating.unwrap_or(0) == 0;
        if !settled {
            return;
        }
        let now = self.now;
        if let Some(c) = condition(&self.job, "FailureTarget").cloned() {
            let reason = c.reason.clone().unwrap_or_default();
            let message = c.message.clone().unwrap_or_default();
            set_condition(
                self.status(),
                "Failed",
                reason_static(Some(&reason)),
                &message,
                now,
            );
            self.event(EventType::Warning, &reason, &message).await;
        } else if let Some(c) = condition(&self.job, "SuccessCriteriaMet").cloned() {
            let reason = reason_static(c.reason.as_deref());
            let message = c.message.unwrap_or_default();
            let status = self.status();
            set_condition(status, "Complete", reason, &message, now);
            status.completion_time = Some(Time(now));
            self.event(EventType::Normal, "Completed", "Job completed")
                .await;
        }
    }

    /// A finished Job releases every pod it still holds.
    async fn release_all(&mut self) -> Result<()> {
        for pod in self.pods.iter().filter(|p| has_finalizer(p)) {
            remove_finalizer(&self.pods_api, &pod.name_any()).await?;
        }
        Ok(())
    }

    async fn event(&self, type_: EventType, reason: &str, note: &str) {
        let regarding = self.job.object_ref(&());
        events::record(&self.state.recorder, &regarding, type_, reason, note).await;
    }
}

/// Complete or Failed.
pub fn finished(job: &Job) -> bool {
    ["Complete", "Failed"]
        .iter()
        .any(|t| condition(job, t).is_some())
}

/// The condition of that type if it is `True`.
pub fn condition<'j>(job: &'j Job, type_: &str) -> Option<&'j JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

/// Sets a `True` condition; false if it was already there.
fn set_condition(
    status: &mut JobStatus,
    type_: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let fresh = JobCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) if c.status == "True" => false,
        Some(c) => {
            *c = fresh;
            true
        }
        None => {
            conditions.push(fresh);
            true
        }
    }
}

/// The condition reasons the controller writes (upstream's JobReason* constants).
fn reason_static(reason: Option<&str>) -> &'static str {
    const REASONS: &[&str] = &[
        "DeadlineExceeded",
        "BackoffLimitExceeded",
        "PodFailurePolicy",
        "FailedIndexes",
        "MaxFailedIndexesExceeded",
        "SuccessPolicy",
        "CompletionsReached",
    ];
    reason
        .and_then(|r| REASONS.iter().find(|known| **known == r))
        .copied()
        .unwrap_or("FailureTarget")
}

/// Being deleted and not finished: still running until the kubelet stops it.
fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some() && !pods::is_finished(pod)
}

/// The completion index a pod was created for, if valid for `completions`.
pub fn completion_index(pod: &Pod, completions: i32) -> Option<i32> {
    let value = pod.annotations().get(COMPLETION_INDEX)?;
    value.parse().ok().filter(|i| (0..completions).contains(i))
}

/// Upstream's addCompletionIndexAnnotation, addCompletionIndexEnvVariables and hostname.
fn add_index(pod: &mut Pod, job: &str, index: i32) {
    pod.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(COMPLETION_INDEX.into(), index.to_string());
    pod.metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(COMPLETION_INDEX.into(), index.to_string());
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    if spec.hostname.as_deref().unwrap_or("").is_empty() {
        spec.hostname = Some(format!("{job}-{index}"));
    }
    let env = EnvVar {
        name: INDEX_ENV.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let containers = spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten());
    for c in containers {
        let vars = c.env.get_or_insert_with(Vec::new);
        if !vars.iter().any(|v| v.name == INDEX_ENV) {
            vars.push(env.clone());
        }
    }
}

/// Upstream's ActivePods order, first to delete first: unscheduled, pending, not ready, newest.
fn sort_for_deletion(pods: &mut [Arc<Pod>]) {
    pods.sort_by_key(|p| {
        let scheduled = p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty());
        let running = pods::phase(p) == "Running";
        let created = p.creation_timestamp().map(|t| t.0).unwrap_or_default();
        (
            scheduled,
            running,
            pods::is_ready(p),
            std::cmp::Reverse(created),
        )
    });
}

/// "1,3-5" → {1,3,4,5}.
pub fn parse_indexes(text: &str) -> BTreeSet<i32> {
    let mut set = BTreeSet::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
            set.extend(a..=b);
        }
    }
    set
}

/// {1,3,4,5} → "1,3-5", upstream's compressed interval form.
pub fn format_indexes(set: &BTreeSet<i32>) -> String {
    let mut parts = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end = iter.next().unwrap_or(end);
        }
        // Upstream's orderedIntervals.String: two neighbours are listed, not a range.
        parts.push(match end - start {
            0 => start.to_string(),
            1 => format!("{start},{end}"),
            _ => format!("{start}-{end}"),
        });
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_round_trip_in_interval_form() {
        let set = parse_indexes("1,3-5,7");
        assert_eq!(set.iter().copied().collect::<Vec<_>>(), vec![1, 3, 4, 5, 7]);
        assert_eq!(format_indexes(&set), "1,3-5,7");
        assert_eq!(format_indexes(&BTreeSet::new()), "");
        assert_eq!(format_indexes(&parse_indexes("0-1,3-4,6-8")), "0,1,3,4,6-8");
    }
}
