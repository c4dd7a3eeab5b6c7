//! The CronJob controller end to end. Its clock is moved forward in this process (as upstream's
//! tests inject a fake clock), so a `*/5` schedule fires without waiting five minutes; the test
//! plays the Job controller by setting Job conditions.

mod support;

use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use support::{eventually, Cluster};

fn cronjob(name: &str, spec: serde_json::Value) -> CronJob {
    let mut cj = json!({
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "schedule": "*/5 * * * *",
            "jobTemplate": {
                "metadata": {"labels": {"app": name}},
                "spec": {"template": {"spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "work", "image": "busybox"}]
                }}}
            }
        }
    });
    support::merge(&mut cj, json!({ "spec": spec }));
    serde_json::from_value(cj).unwrap()
}

/// Five minutes pass; the CronJob is touched so the controller looks at it now.
async fn five_minutes_pass(cronjobs: &Api<CronJob>, name: &str, n: u32) {
    controllers::cronjob::advance_clock(Duration::from_secs(300));
    let touch = json!({"metadata": {"annotations": {"test/touched": n.to_string()}}});
    cronjobs
        .patch(name, &PatchParams::default(), &Patch::Merge(touch))
        .await
        .unwrap();
}

async fn jobs_of(jobs: &Api<Job>, app: &str) -> Vec<Job> {
    let mut list = jobs
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .unwrap()
        .items;
    list.sort_by_key(|j| j.name_any());
    list
}

/// Plays the Job controller: the Job succeeded (or failed).
async fn finish(jobs: &Api<Job>, name: &str, ok: bool) {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let conditions = if ok {
        json!([
            {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached", "lastTransitionTime": now},
            {"type": "Complete", "status": "True", "reason": "CompletionsReached", "lastTransitionTime": now}
        ])
    } else {
        json!([
            {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded", "lastTransitionTime": now},
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "lastTransitionTime": now}
        ])
    };
    let mut status = json!({"startTime": now, "conditions": conditions,
                            "succeeded": i32::from(ok), "failed": i32::from(!ok)});
    if ok {
        status["completionTime"] = json!(now);
    }
    jobs.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .unwrap();
}

async fn event_reasons(cluster: &Cluster) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(cluster.admin.clone(), "default");
    events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect()
}

#[tokio::test]
async fn cronjob_creates_jobs_on_schedule() {
    let mut cluster = Cluster::start().await;
    cluster.controllers(&["cronjob"]).await;
    let cronjobs: Api<CronJob> = Api::namespaced(cluster.admin.clone(), "default");
    let jobs: Api<Job> = Api::namespaced(cluster.admin.clone(), "default");
    cronjobs
        .create(
            &PostParams::default(),
            &cronjob("hello", json!({"timeZone": "Asia/Tokyo"})),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        jobs_of(&jobs, "hello").await.is_empty(),
        "nothing is due yet"
    );
    five_minutes_pass(&cronjobs, "hello", 1).await;
    let job = eventually("the scheduled job", 20, || async {
        jobs_of(&jobs, "hello").await.into_iter().next()
    })
    .await;
    let minutes: i64 = job
        .name_any()
        .strip_prefix("hello-")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(minutes % 5, 0, "a */5 time: {}", job.name_any());
    let stamp = &job.annotations()["batch.kubernetes.io/cronjob-scheduled-timestamp"];
    let scheduled: k8s_openapi::jiff::Timestamp = stamp.parse().unwrap();
    assert_eq!(scheduled.as_second(), minutes * 60);
    assert!(stamp.ends_with("+09:00"), "in the CronJob's zone: {stamp}");
    let owner = &job.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("CronJob", Some(true))
    );
    let cj = eventually("the job in status.active", 20, || async {
        let cj = cronjobs.get("hello").await.unwrap();
        let status = cj.status.clone()?;
        (status.active?.len() == 1).then_some(cj)
    })
    .await;
    let status = cj.status.unwrap();
    assert_eq!(
        status.last_schedule_time.unwrap().0.as_second(),
        minutes * 60
    );
    finish(&jobs, &job.name_any(), true).await;
    eventually("the completed job noticed", 20, || async {
        let status = cronjobs.get("hello").await.unwrap().status?;
        (status.active.unwrap_or_default().is_empty() && status.last_successful_time.is_some())
            .then_some(())
    })
    .await;
    let reasons = event_reasons(&cluster).await;
    for reason in ["SuccessfulCreate", "SawCompletedJob"] {
        assert!(
            reasons.iter().any(|r| r == reason),
            "{reason} in {reasons:?}"
        );
    }
    // kubectl shows the schedule and the last run.
    let out = cluster
        .kubectl(&["get", "cronjob", "hello", "-n", "default"])
        .await;
    assert!(
        out.contains("*/5 * * * *") && out.contains("Asia/Tokyo"),
        "{out}"
    );
    cluster.stop().await;
}

#[tokio::test]
async fn forbid_skips_while_a_job_runs_and_history_is_trimmed() {
    let mut cluster = Cluster::start().await;
    cluster.controllers(&["cronjob"]).await;
    let cronjobs: Api<CronJob> = Api::namespaced(cluster.admin.clone(), "default");
    let jobs: Api<Job> = Api::namespaced(cluster.admin.clone(), "default");
    let spec = json!({"concurrencyPolicy": "Forbid", "successfulJobsHistoryLimit": 1,
                      "failedJobsHistoryLimit": 1});
    cronjobs
        .create(&PostParams::default(), &cronjob("tick", spec))
        .await
        .unwrap();
    five_minutes_pass(&cronjobs, "tick", 1).await;
    let first = eventually("the first job", 20, || async {
        jobs_of(&jobs, "tick").await.into_iter().next()
    })
    .await;
    // The next time comes while the first still runs: Forbid skips it.
    five_minutes_pass(&cronjobs, "tick", 2).await;
    eventually("JobAlreadyActive", 20, || async {
        event_reasons(&cluster)
            .await
            .contains(&"JobAlreadyActive".to_string())
            .then_some(())
    })
    .await;
    assert_eq!(jobs_of(&jobs, "tick").await.len(), 1);
    // Once it finishes, the most recent missed time runs.
    finish(&jobs, &first.name_any(), true).await;
    let second = eventually("the second job", 20, || async {
        let list = jobs_of(&jobs, "tick").await;
        list.into_iter().find(|j| j.name_any() != first.name_any())
    })
    .await;
    finish(&jobs, &second.name_any(), true).await;
    // successfulJobsHistoryLimit 1: the older success goes.
    eventually("the first job deleted", 20, || async {
        let names: Vec<_> = jobs_of(&jobs, "tick")
            .await
            .into_iter()
            .filter(|j| j.metadata.deletion_timestamp.is_none())
            .map(|j| j.name_any())
            .collect();
        (names == vec![second.name_any()]).then_some(())
    })
    .await;
    // Failures have their own limit: two failures leave one.
    for n in 3..5 {
        five_minutes_pass(&cronjobs, "tick", n).await;
        let job = eventually("a new job", 20, || async {
            let cj = cronjobs.get("tick").await.unwrap();
            cj.status?.active?.first()?.name.clone()
        })
        .await;
        finish(&jobs, &job, false).await;
        eventually("the failed job noticed", 20, || async {
            let cj = cronjobs.get("tick").await.unwrap();
            cj.status?
                .active
                .unwrap_or_default()
                .is_empty()
                .then_some(())
        })
        .await;
    }
    eventually("one failed and one succeeded job kept", 20, || async {
        let kept: Vec<_> = jobs_of(&jobs, "tick")
            .await
            .into_iter()
            .filter(|j| j.metadata.deletion_timestamp.is_none())
            .collect();
        (kept.len() == 2).then_some(())
    })
    .await;
    cluster.stop().await;
}
