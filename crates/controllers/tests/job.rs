//! The Job and TTL-after-finished controllers end to end; the test plays the kubelet by
//! setting pod phases.

mod support;

use std::collections::BTreeSet;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use support::{eventually, Cluster};

const FINALIZER: &str = "batch.kubernetes.io/job-tracking";

fn job(name: &str, spec: serde_json::Value) -> Job {
    let mut job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "work", "image": "busybox"}]
            }}
        }
    });
    support::merge(&mut job, json!({ "spec": spec }));
    serde_json::from_value(job).unwrap()
}

async fn job_pods(pods: &Api<Pod>, job: &str) -> Vec<Pod> {
    pods.list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await
        .unwrap()
        .items
}

fn active(pods: &[Pod]) -> Vec<&Pod> {
    pods.iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none()
                && !matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
        })
        .collect()
}

async fn set_phase(pods: &Api<Pod>, name: &str, phase: &str) {
    let status = json!({"status": {"phase": phase}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
}

fn condition(job: &Job, type_: &str) -> Option<String> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .map(|c| c.reason.clone().unwrap_or_default())
}

#[tokio::test]
async fn parallel_job_completes_when_its_pods_succeed() {
    let mut cluster = Cluster::start().await;
    cluster.controllers(&["job"]).await;
    let jobs: Api<Job> = Api::namespaced(cluster.admin.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(cluster.admin.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job("batch", json!({"parallelism": 3, "completions": 6})),
    )
    .await
    .unwrap();
    let mut succeeded = BTreeSet::new();
    while succeeded.len() < 6 {
        let running = eventually("three running pods", 20, || async {
            let all = job_pods(&pods, "batch").await;
            let running: Vec<String> = active(&all).iter().map(|p| p.name_any()).collect();
            let want = 3.min(6 - succeeded.len());
            (running.len() == want).then_some(running)
        })
        .await;
        // Never more than parallelism at once.
        assert!(active(&job_pods(&pods, "batch").await).len() <= 3);
        let pod = pods.get(&running[0]).await.unwrap();
        assert!(pod.finalizers().iter().any(|f| f == FINALIZER), "{pod:?}");
        assert_eq!(pod.labels()["batch.kubernetes.io/job-name"], "batch");
        assert!(pod
            .labels()
            .contains_key("batch.kubernetes.io/controller-uid"));
        assert_eq!(pod.labels()["job-name"], "batch");
        for name in &running {
            set_phase(&pods, name, "Succeeded").await;
            succeeded.insert(name.clone());
        }
    }
    let done = eventually("the job complete", 20, || async {
        let job = jobs.get("batch").await.unwrap();
        condition(&job, "Complete").map(|_| job)
    })
    .await;
    let status = done.status.unwrap();
    assert_eq!(status.succeeded, Some(6));
    assert_eq!(status.failed.unwrap_or(0), 0);
    assert_eq!(status.active.unwrap_or(0), 0);
    assert!(status.completion_time.is_some() && status.start_time.is_some());
    let conditions: Vec<_> = status
        .conditions
        .unwrap()
        .into_iter()
        .map(|c| c.type_)
        .collect();
    assert!(
        conditions.contains(&"SuccessCriteriaMet".to_string()),
        "{conditions:?}"
    );
    // Counted pods are released from the tracking finalizer.
    let all = job_pods(&pods, "batch").await;
    assert_eq!(all.len(), 6);
    assert!(all
        .iter()
        .all(|p| !p.finalizers().iter().any(|f| f == FINALIZER)));
    // kubectl sees it complete too.
    let out = cluster
        .kubectl(&["get", "job", "batch", "-n", "default"])
        .await;
    assert!(out.contains("6/6"), "{out}");
    cluster.stop().await;
}

#[tokio::test]
async fn indexed_job_gives_each_pod_its_index() {
    let mut cluster = Cluster::start().await;
    cluster.controllers(&["job"]).await;
    let jobs: Api<Job> = Api::namespaced(cluster.admin.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(cluster.admin.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job(
            "idx",
            json!({"parallelism": 3, "completions": 3, "completionMode": "Indexed",
                   "template": {"spec": {"subdomain": "workers"}}}),
        ),
    )
    .await
    .unwrap();
    let created = eventually("three indexed pods", 20, || async {
        let all = job_pods(&pods, "idx").await;
        (all.len() == 3).then_some(all)
    })
    .await;
    let mut indexes = BTreeSet::new();
    for pod in &created {
        let index = pod.annotations()["batch.kubernetes.io/job-completion-index"].clone();
        assert_eq!(
            pod.labels()["batch.kubernetes.io/job-completion-index"],
            index
        );
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(
            spec.hostname.as_deref(),
            Some(format!("idx-{index}").as_str())
        );
        assert_eq!(spec.subdomain.as_deref(), Some("workers"));
        let env = spec.containers[0].env.as_ref().unwrap();
        let var = env
            .iter()
            .find(|e| e.name == "JOB_COMPLETION_INDEX")
            .unwrap();
        let field = &var
            .value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap()
            .field_path;
        assert_eq!(
            field,
            "metadata.annotations['batch.kubernetes.io/job-completion-index']"
        );
        assert!(pod.name_any().starts_with(&format!("idx-{index}-")));
        indexes.insert(index);
    }
    assert_eq!(indexes, ["0", "1", "2"].map(String::from).into());
    // Index 1 fails: a new pod is made for index 1 only (after upstream's 10 s backoff).
    let one = created
        .iter()
        .find(|p| p.annotations()["batch.kubernetes.io/job-completion-index"] == "1")
        .unwrap()
        .name_any();
    let others: Vec<_> = created
        .iter()
        .map(|p| p.name_any())
        .filter(|n| *n != one)
        .collect();
    for name in &others {
        set_phase(&pods, name, "Succeeded").await;
    }
    eventually("indexes 0 and 2 completed", 20, || async {
        let job = jobs.get("idx").await.unwrap();
        (job.status?.completed_indexes.as_deref() == Some("0,2")).then_some(())
    })
    .await;
    set_phase(&pods, &one, "Failed").await;
    let replacement = eventually("a replacement for index 1", 30, || async {
        let all = job_pods(&pods, "idx").await;
        active(&all).first().map(|p| (*p).clone())
    })
    .await;
    assert_eq!(
        replacement.annotations()["batch.kubernetes.io/job-completion-index"],
        "1"
    );
    set_phase(&pods, &replacement.name_any(), "Succeeded").await;
    let done = eventually("the indexed job complete", 20, || async {
        let job = jobs.get("idx").await.unwrap();
        condition(&job, "Complete").map(|_| job)
    })
    .await;
    let status = done.status.unwrap();
    assert_eq!(status.completed_indexes.as_deref(), Some("0-2"));
    assert_eq!((status.succeeded, status.failed), (Some(3), Some(1)));
    cluster.stop().await;
}

#[tokio::test]
async fn exceeding_the_backoff_limit_fails_the_job_and_removes_its_pods() {
    let mut cluster = Cluster::start().await;
    cluster.controllers(&["job"]).await;
    let jobs: Api<Job> = Api::namespaced(cluster.admin.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(cluster.admin.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job(
            "flaky",
            json!({"parallelism": 3, "completions": 3, "backoffLimit": 1}),
        ),
    )
    .await
    .unwrap();
    let created = eventually("three pods", 20, || async {
        let all = job_pods(&pods, "flaky").await;
        (active(&all).len() == 3).then_some(all)
    })
    .await;
    // Two failures exceed a limit of one; the third pod is still running.
    set_phase(&pods, &created[0].name_any(), "Failed").await;
    set_phase(&pods, &created[1].name_any(), "Failed").await;
    let failed = eventually("the job failed", 20, || async {
        let job = jobs.get("flaky").await.unwrap();
        condition(&job, "Failed").map(|reason| (job, reason))
    })
    .await;
    assert_eq!(failed.1, "BackoffLimitExceeded");
    assert_eq!(
        condition(&failed.0, "FailureTarget").as_deref(),
        Some("BackoffLimitExceeded")
    );
    let status = failed.0.status.unwrap();
    // The running pod was deleted and counted as failed too.
    assert_eq!(status.failed, Some(3));
    assert_eq!(status.active.unwrap_or(0), 0);
    eventually("the running pod gone", 20, || async {
        pods.get_opt(&created[2].name_any())
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    cluster.stop().await;
}

#[tokio::test]
async fn active_deadline_fails_the_job() {
    let mut cluster = Cluster::start().await;
    cluster.controllers(&["job"]).await;
    let jobs: Api<Job> = Api::namespaced(cluster.admin.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job("slow", json!({"activeDeadlineSeconds": 2})),
    )
    .await
    .unwrap();
    let reason = eventually("the job past its deadline", 20, || async {
        condition(&jobs.get("slow").await.unwrap(), "Failed")
    })
    .await;
    assert_eq!(reason, "DeadlineExceeded");
    cluster.stop().await;
}

#[tokio::test]
async fn finished_job_is_deleted_after_its_ttl() {
    let mut cluster = Cluster::start().await;
    cluster
        .controllers(&["job", "ttl-after-finished", "garbagecollector"])
        .await;
    let jobs: Api<Job> = Api::namespaced(cluster.admin.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(cluster.admin.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job("brief", json!({"ttlSecondsAfterFinished": 1})),
    )
    .await
    .unwrap();
    let pod = eventually("its pod", 20, || async {
        job_pods(&pods, "brief").await.into_iter().next()
    })
    .await;
    set_phase(&pods, &pod.name_any(), "Succeeded").await;
    // The TTL controller deletes only finished Jobs, so a Job already gone (the one-second TTL
    // can pass between two polls on a loaded machine) has completed too.
    eventually("the job complete", 20, || async {
        match jobs.get_opt("brief").await.unwrap() {
            Some(job) => condition(&job, "Complete").map(|_| ()),
            None => Some(()),
        }
    })
    .await;
    // Foreground deletion: the garbage collector removes the pod, then the job.
    eventually("the job and its pod deleted", 30, || async {
        let job_gone = jobs.get_opt("brief").await.unwrap().is_none();
        let pod_gone = pods.get_opt(&pod.name_any()).await.unwrap().is_none();
        (job_gone && pod_gone).then_some(())
    })
    .await;
    cluster.stop().await;
}

/// Plays the kubelet for a failed pod: phase Failed, the `work` container terminated with
/// `exit_code`, and `conditions`.
async fn fail_with(pods: &Api<Pod>, name: &str, exit_code: i32, conditions: serde_json::Value) {
    let status = json!({"status": {"phase": "Failed", "conditions": conditions,
        "containerStatuses": [{"name": "work", "image": "busybox", "imageID": "", "ready": false,
                               "restartCount": 0, "state": {"terminated": {"exitCode": exit_code}}}]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
}

fn condition_message(job: &Job, type_: &str) -> Option<String> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .map(|c| c.message.clone().unwrap_or_default())
}

fn index_of(pod: &Pod) -> String {
    pod.annotations()["batch.kubernetes.io/job-completion-index"].clone()
}

#[tokio::test]
async fn pod_failure_policy_ignores_disruptions_and_fails_the_job_on_an_exit_code() {
    let mut cluster = Cluster::start().await;
    cluster.controllers(&["job"]).await;
    let jobs: Api<Job> = Api::namespaced(cluster.admin.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(cluster.admin.clone(), "default");
    let spec = json!({"parallelism": 2, "completions": 2, "podFailurePolicy": {"rules": [
        {"action": "FailJob", "onExitCodes": {"containerName": "work", "operator": "In", "values": [42]}},
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
    ]}});
    jobs.create(&PostParams::default(), &job("policy", spec))
        .await
        .unwrap();
    let first = eventually("two pods", 20, || async {
        let all = job_pods(&pods, "policy").await;
        (active(&all).len() == 2).then_some(all)
    })
    .await;
    // A disrupted pod is ignored: not counted, replaced at once (no backoff).
    let disrupted = first[0].name_any();
    let disruption =
        json!([{"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager"}]);
    fail_with(&pods, &disrupted, 137, disruption).await;
    let replacement = eventually("a replacement for the ignored pod", 8, || async {
        let all = job_pods(&pods, "policy").await;
        let active = active(&all);
        (active.len() == 2 && active.iter().all(|p| p.name_any() != disrupted))
            .then(|| {
                active
                    .iter()
                    .map(|p| p.name_any())
                    .find(|n| *n != first[1].name_any())
            })
            .flatten()
    })
    .await;
    let status = jobs.get("policy").await.unwrap().status.unwrap();
    assert_eq!(status.failed.unwrap_or(0), 0, "{status:?}");
    // Exit code 42 fails the whole Job with upstream's reason and message; the other
    // running pod is stopped.
    fail_with(&pods, &replacement, 42, json!([])).await;
    let failed = eventually("the job failed", 20, || async {
        let job = jobs.get("policy").await.unwrap();
        condition(&job, "Failed").map(|_| job)
    })
    .await;
    let message = format!(
        "Container work for pod default/{replacement} failed with exit code 42 matching FailJob rule at index 0"
    );
    for type_ in ["FailureTarget", "Failed"] {
        assert_eq!(
            condition(&failed, type_).as_deref(),
            Some("PodFailurePolicy")
        );
        assert_eq!(condition_message(&failed, type_), Some(message.clone()));
    }
    let status = failed.status.unwrap();
    assert_eq!(status.active.unwrap_or(0), 0);
    // The pod stopped for the failure counts; the ignored one does not.
    assert_eq!(status.failed, Some(2));
    cluster.stop().await;
}

#[tokio::test]
async fn backoff_limit_per_index_fails_indexes_not_the_whole_job_at_once() {
    let mut cluster = Cluster::start().await;
    cluster.controllers(&["job"]).await;
    let jobs: Api<Job> = Api::namespaced(cluster.admin.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(cluster.admin.clone(), "default");
    let spec = json!({"parallelism": 3, "completions": 3, "completionMode": "Indexed",
        "backoffLimitPerIndex": 1, "maxFailedIndexes": 2,
        "podFailurePolicy": {"rules": [
            {"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [3]}}]}});
    jobs.create(&PostParams::default(), &job("perindex", spec))
        .await
        .unwrap();
    let first = eventually("three indexed pods", 20, || async {
        let all = job_pods(&pods, "perindex").await;
        (active(&all).len() == 3).then_some(all)
    })
    .await;
    let by_index = |i: &str| first.iter().find(|p| index_of(p) == i).unwrap().clone();
    assert_eq!(
        by_index("0").annotations()["batch.kubernetes.io/job-index-failure-count"],
        "0"
    );
    // FailIndex: index 0 fails at once and is not retried.
    fail_with(&pods, &by_index("0").name_any(), 3, json!([])).await;
    eventually("index 0 failed", 20, || async {
        let job = jobs.get("perindex").await.unwrap();
        (job.status?.failed_indexes.as_deref() == Some("0")).then_some(())
    })
    .await;
    // Index 1 fails once: retried (after the backoff) with its failure count.
    fail_with(&pods, &by_index("1").name_any(), 1, json!([])).await;
    let retry = eventually("a retry of index 1", 30, || async {
        let all = job_pods(&pods, "perindex").await;
        active(&all)
            .into_iter()
            .find(|p| index_of(p) == "1")
            .cloned()
    })
    .await;
    assert_eq!(
        retry.annotations()["batch.kubernetes.io/job-index-failure-count"],
        "1"
    );
    let all = job_pods(&pods, "perindex").await;
    assert!(
        !active(&all).iter().any(|p| index_of(p) == "0"),
        "index 0 must not be retried"
    );
    // Its second failure exhausts backoffLimitPerIndex; index 2 succeeds; every index is
    // finished and some failed: the Job fails with FailedIndexes.
    fail_with(&pods, &retry.name_any(), 1, json!([])).await;
    set_phase(&pods, &by_index("2").name_any(), "Succeeded").await;
    let failed = eventually("the job failed", 20, || async {
        let job = jobs.get("perindex").await.unwrap();
        condition(&job, "Failed").map(|_| job)
    })
    .await;
    assert_eq!(
        condition(&failed, "Failed").as_deref(),
        Some("FailedIndexes")
    );
    assert_eq!(
        condition_message(&failed, "Failed").as_deref(),
        Some("Job has failed indexes")
    );
    let status = failed.status.unwrap();
    assert_eq!(status.failed_indexes.as_deref(), Some("0,1"));
    assert_eq!(status.completed_indexes.as_deref(), Some("2"));
    assert_eq!((status.succeeded, status.failed), (Some(1), Some(3)));
    cluster.stop().await;
}

#[tokio::test]
async fn max_failed_indexes_fails_the_job_early() {
    let mut cluster = Cluster::start().await;
    cluster.controllers(&["job"]).await;
    let jobs: Api<Job> = Api::namespaced(cluster.admin.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(cluster.admin.clone(), "default");
    let spec = json!({"parallelism": 3, "completions": 3, "completionMode": "Indexed",
        "backoffLimitPerIndex": 0, "maxFailedIndexes": 0});
    jobs.create(&PostParams::default(), &job("strict", spec))
        .await
        .unwrap();
    let first = eventually("three indexed pods", 20, || async {
        let all = job_pods(&pods, "strict").await;
        (active(&all).len() == 3).then_some(all)
    })
    .await;
    fail_with(&pods, &first[0].name_any(), 1, json!([])).await;
    let failed = eventually("the job failed", 20, || async {
        let job = jobs.get("strict").await.unwrap();
        condition(&job, "Failed").map(|_| job)
    })
    .await;
    assert_eq!(
        condition(&failed, "Failed").as_deref(),
        Some("MaxFailedIndexesExceeded")
    );
    assert_eq!(
        condition_message(&failed, "Failed").as_deref(),
        Some("Job has exceeded the specified maximal number of failed indexes")
    );
    assert_eq!(failed.status.unwrap().active.unwrap_or(0), 0);
    cluster.stop().await;
}

#[tokio::test]
async fn success_policy_completes_an_indexed_job_early() {
    let mut cluster = Cluster::start().await;
    cluster.controllers(&["job"]).await;
    let jobs: Api<Job> = Api::namespaced(cluster.admin.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(cluster.admin.clone(), "default");
    let spec = json!({"parallelism": 4, "completions": 4, "completionMode": "Indexed",
        "successPolicy": {"rules": [{"succeededIndexes": "0-1", "succeededCount": 2}]}});
    jobs.create(&PostParams::default(), &job("leader", spec))
        .await
        .unwrap();
    let first = eventually("four indexed pods", 20, || async {
        let all = job_pods(&pods, "leader").await;
        (active(&all).len() == 4).then_some(all)
    })
    .await;
    for pod in first
        .iter()
        .filter(|p| ["0", "1"].contains(&index_of(p).as_str()))
    {
        set_phase(&pods, &pod.name_any(), "Succeeded").await;
    }
    let done = eventually("the job complete", 20, || async {
        let job = jobs.get("leader").await.unwrap();
        condition(&job, "Complete").map(|_| job)
    })
    .await;
    for type_ in ["SuccessCriteriaMet", "Complete"] {
        assert_eq!(condition(&done, type_).as_deref(), Some("SuccessPolicy"));
        assert_eq!(
            condition_message(&done, type_).as_deref(),
            Some("Matched rules at index 0")
        );
    }
    let status = done.status.unwrap();
    assert_eq!(status.completed_indexes.as_deref(), Some("0,1"));
    // The pods stopped because the policy was met are no failures.
    assert_eq!((status.succeeded, status.failed.unwrap_or(0)), (Some(2), 0));
    assert_eq!(status.active.unwrap_or(0), 0);
    cluster.stop().await;
}
