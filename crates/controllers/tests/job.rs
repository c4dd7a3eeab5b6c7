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
