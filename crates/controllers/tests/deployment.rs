//! The Deployment controller end to end, with the ReplicaSet controller, the real kubectl, and
//! the test playing the kubelet (pods turn Running and Ready shortly after they appear).

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;
use support::{eventually, Cluster};

const NS: &str = "default";

/// Plays the kubelet: every pod of the namespace that is not yet Ready becomes Running and
/// Ready.
struct Kubelet {
    task: tokio::task::JoinHandle<()>,
}

impl Kubelet {
    fn start(client: Client) -> Kubelet {
        Kubelet::start_except(client, None)
    }

    /// A kubelet that never gets pods of `image` ready (as if the image could not be pulled).
    fn start_except(client: Client, image: Option<&str>) -> Kubelet {
        let broken = image.map(str::to_string);
        let task = tokio::spawn(async move {
            let pods: Api<Pod> = Api::namespaced(client, NS);
            loop {
                for pod in pods
                    .list(&ListParams::default())
                    .await
                    .map(|l| l.items)
                    .unwrap_or_default()
                {
                    let image = pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.containers[0].image.clone());
                    if !is_ready(&pod)
                        && pod.metadata.deletion_timestamp.is_none()
                        && image != broken
                    {
                        let _ = make_ready(&pods, &pod.name_any()).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        });
        Kubelet { task }
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn make_ready(pods: &Api<Pod>, name: &str) -> kube::Result<Pod> {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let status = json!({"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": now}
    ]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
}

fn deployment(
    name: &str,
    replicas: i32,
    image: &str,
    strategy: serde_json::Value,
) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": strategy,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "web", "image": image}]}
            }
        }
    })
}

async fn create(cluster: &Cluster, d: serde_json::Value) -> Deployment {
    let api: Api<Deployment> = Api::namespaced(cluster.admin.clone(), NS);
    api.create(&Default::default(), &serde_json::from_value(d).unwrap())
        .await
        .expect("create deployment")
}

/// kubectl of `version` that must succeed; returns stdout.
async fn kubectl_ok(cluster: &Cluster, version: Option<&str>, args: &[&str]) -> String {
    let out = cluster.kubectl_v(version, args).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

async fn start() -> Cluster {
    let mut cluster = Cluster::start().await;
    cluster.controllers(&["deployment", "replicaset"]).await;
    cluster
}

/// Active pods of the deployment `app`, with their images.
async fn pod_images(cluster: &Cluster, app: &str) -> Vec<String> {
    let pods: Api<Pod> = Api::namespaced(cluster.admin.clone(), NS);
    let list = pods
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .unwrap();
    list.items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| {
            p.spec.as_ref().unwrap().containers[0]
                .image
                .clone()
                .unwrap_or_default()
        })
        .collect()
}

async fn wait_pods(cluster: &Cluster, app: &str, count: usize, image: &str) {
    eventually(
        &format!("{count} pods of {app} with {image}"),
        60,
        || async {
            let images = pod_images(cluster, app).await;
            (images.len() == count && images.iter().all(|i| i == image)).then_some(())
        },
    )
    .await;
}

async fn replica_sets(cluster: &Cluster, app: &str) -> Vec<ReplicaSet> {
    let api: Api<ReplicaSet> = Api::namespaced(cluster.admin.clone(), NS);
    api.list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .unwrap()
        .items
}

fn annotation(rs: &ReplicaSet, key: &str) -> Option<String> {
    rs.metadata.annotations.as_ref()?.get(key).cloned()
}

#[tokio::test]
async fn a_deployment_scales_3_to_10_to_2_with_kubectl_scale() {
    let cluster = start().await;
    let _kubelet = Kubelet::start(cluster.admin.clone());
    create(&cluster, deployment("web", 3, "nginx:1", json!({}))).await;
    wait_pods(&cluster, "web", 3, "nginx:1").await;
    cluster
        .kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"])
        .await;

    cluster
        .kubectl(&["scale", "deployment/web", "--replicas=10"])
        .await;
    wait_pods(&cluster, "web", 10, "nginx:1").await;
    cluster
        .kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"])
        .await;

    cluster
        .kubectl(&["scale", "deployment/web", "--replicas=2"])
        .await;
    wait_pods(&cluster, "web", 2, "nginx:1").await;
    let out = cluster
        .kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"])
        .await;
    assert!(out.contains("successfully rolled out"), "{out}");

    // One ReplicaSet throughout, named after the template hash and sized for the last scale.
    let sets = replica_sets(&cluster, "web").await;
    assert_eq!(sets.len(), 1);
    let rs = &sets[0];
    let hash = rs.labels()["pod-template-hash"].clone();
    assert_eq!(rs.name_any(), format!("web-{hash}"));
    assert_eq!(
        annotation(rs, "deployment.kubernetes.io/revision").as_deref(),
        Some("1")
    );
    assert_eq!(
        annotation(rs, "deployment.kubernetes.io/desired-replicas").as_deref(),
        Some("2")
    );
    // maxSurge defaults to 25% of 2, rounded up.
    assert_eq!(
        annotation(rs, "deployment.kubernetes.io/max-replicas").as_deref(),
        Some("3")
    );
    let d: Api<Deployment> = Api::namespaced(cluster.admin.clone(), NS);
    let status = d.get("web").await.unwrap().status.unwrap();
    assert_eq!(
        (
            status.replicas,
            status.updated_replicas,
            status.available_replicas
        ),
        (Some(2), Some(2), Some(2))
    );
    let available = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Available")
        .unwrap();
    assert_eq!(
        (available.status.as_str(), available.reason.as_deref()),
        ("True", Some("MinimumReplicasAvailable"))
    );
    cluster.stop().await;
}

/// What the watcher saw at worst while a rollout went on.
#[derive(Default, Debug)]
struct Extremes {
    max_pods: usize,
    min_available: Option<usize>,
}

/// Watches the pods of `app` and records the most pods and the fewest available ones at any
/// moment after the first `floor_after` pods were ready.
fn watch_extremes(
    client: Client,
    app: &str,
) -> (Arc<Mutex<Extremes>>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Extremes::default()));
    let out = seen.clone();
    let api: Api<Pod> = Api::namespaced(client, NS);
    let config = watcher::Config::default().labels(&format!("app={app}"));
    let task = tokio::spawn(async move {
        let (store, writer) = kube::runtime::reflector::store();
        let mut events = kube::runtime::reflector(writer, watcher(api, config)).boxed();
        let mut listed = false;
        while let Some(event) = events.next().await {
            // The store shows the pods only once the initial list is complete.
            listed |= matches!(event, Ok(watcher::Event::InitDone));
            if !listed {
                continue;
            }
            let pods = store.state();
            let active: Vec<_> = pods
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            let available = active.iter().filter(|p| is_ready(p)).count();
            let mut seen = out.lock().unwrap();
            seen.max_pods = seen.max_pods.max(active.len());
            seen.min_available = Some(seen.min_available.map_or(available, |m| m.min(available)));
        }
    });
    (seen, task)
}

async fn rollout_history_undo(version: Option<&str>) {
    let cluster = start().await;
    let _kubelet = Kubelet::start(cluster.admin.clone());
    let strategy =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}});
    create(&cluster, deployment("web", 4, "nginx:1", strategy)).await;
    wait_pods(&cluster, "web", 4, "nginx:1").await;
    kubectl_ok(
        &cluster,
        version,
        &["rollout", "status", "deployment/web", "--timeout=60s"],
    )
    .await;

    let (extremes, watch) = watch_extremes(cluster.admin.clone(), "web");
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster
        .kubectl(&["set", "image", "deployment/web", "web=nginx:2"])
        .await;
    let stdout = kubectl_ok(
        &cluster,
        version,
        &["rollout", "status", "deployment/web", "--timeout=60s"],
    )
    .await;
    assert!(stdout.contains("successfully rolled out"), "{stdout}");
    // rollout status returns exactly when the rollout is done: all pods are the new ones.
    assert_eq!(pod_images(&cluster, "web").await, vec!["nginx:2"; 4]);
    watch.abort();
    let seen = extremes.lock().unwrap().min_available;
    let max_pods = extremes.lock().unwrap().max_pods;
    assert!(
        max_pods <= 4 + 1,
        "{max_pods} pods at once; maxSurge 1 allows 5"
    );
    assert!(
        seen.unwrap() >= 4 - 1,
        "{seen:?} available at worst; maxUnavailable 1 allows 3"
    );

    let history = kubectl_ok(&cluster, version, &["rollout", "history", "deployment/web"]).await;
    let revisions: Vec<&str> = history
        .lines()
        .skip_while(|l| !l.starts_with("REVISION"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revisions, vec!["1", "2"], "{history}");

    let before = replica_sets(&cluster, "web").await;
    let first = before
        .iter()
        .find(|rs| annotation(rs, "deployment.kubernetes.io/revision").as_deref() == Some("1"))
        .expect("revision 1")
        .name_any();
    kubectl_ok(&cluster, version, &["rollout", "undo", "deployment/web"]).await;
    kubectl_ok(
        &cluster,
        version,
        &["rollout", "status", "deployment/web", "--timeout=60s"],
    )
    .await;
    assert_eq!(pod_images(&cluster, "web").await, vec!["nginx:1"; 4]);
    // The first ReplicaSet is reused, not a new one made: it is now revision 3 and remembers 1.
    let after = replica_sets(&cluster, "web").await;
    assert_eq!(after.len(), 2);
    let reused = after
        .iter()
        .find(|rs| rs.name_any() == first)
        .expect("first ReplicaSet");
    assert_eq!(
        annotation(reused, "deployment.kubernetes.io/revision").as_deref(),
        Some("3")
    );
    assert_eq!(
        annotation(reused, "deployment.kubernetes.io/revision-history").as_deref(),
        Some("1")
    );
    let d: Api<Deployment> = Api::namespaced(cluster.admin.clone(), NS);
    let d = d.get("web").await.unwrap();
    assert_eq!(
        d.annotations()
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str),
        Some("3")
    );
    let progressing = d
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Progressing")
        .unwrap();
    assert_eq!(
        progressing.reason.as_deref(),
        Some("NewReplicaSetAvailable")
    );
    assert_eq!(
        progressing.message,
        Some(format!("ReplicaSet {first:?} has successfully progressed."))
    );
    cluster.stop().await;
}

#[tokio::test]
async fn a_rolling_update_keeps_surge_and_availability_with_history_and_undo_kubectl_1_33() {
    rollout_history_undo(None).await;
}

#[tokio::test]
async fn a_rolling_update_keeps_surge_and_availability_with_history_and_undo_kubectl_1_27() {
    rollout_history_undo(Some("1.27")).await;
}

async fn pause_resume(version: Option<&str>) {
    let cluster = start().await;
    let _kubelet = Kubelet::start(cluster.admin.clone());
    create(&cluster, deployment("web", 2, "nginx:1", json!({}))).await;
    wait_pods(&cluster, "web", 2, "nginx:1").await;
    kubectl_ok(&cluster, version, &["rollout", "pause", "deployment/web"]).await;
    cluster
        .kubectl(&["set", "image", "deployment/web", "web=nginx:2"])
        .await;
    let d: Api<Deployment> = Api::namespaced(cluster.admin.clone(), NS);
    eventually("the paused condition", 20, || async {
        let d = d.get("web").await.ok()?;
        let cond = d
            .status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "Progressing")?;
        (cond.reason.as_deref() == Some("DeploymentPaused") && cond.status == "Unknown")
            .then_some(())
    })
    .await;
    // Paused: the new template makes no ReplicaSet and changes no pod.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(replica_sets(&cluster, "web").await.len(), 1);
    assert_eq!(pod_images(&cluster, "web").await, vec!["nginx:1"; 2]);
    // Scaling still works while paused.
    cluster
        .kubectl(&["scale", "deployment/web", "--replicas=3"])
        .await;
    wait_pods(&cluster, "web", 3, "nginx:1").await;

    kubectl_ok(&cluster, version, &["rollout", "resume", "deployment/web"]).await;
    kubectl_ok(
        &cluster,
        version,
        &["rollout", "status", "deployment/web", "--timeout=60s"],
    )
    .await;
    wait_pods(&cluster, "web", 3, "nginx:2").await;
    cluster.stop().await;
}

#[tokio::test]
async fn pause_and_resume_kubectl_1_33() {
    pause_resume(None).await;
}

#[tokio::test]
async fn pause_and_resume_kubectl_1_27() {
    pause_resume(Some("1.27")).await;
}

#[tokio::test]
async fn a_recreate_rollout_removes_every_old_pod_before_the_first_new_one() {
    let cluster = start().await;
    let _kubelet = Kubelet::start(cluster.admin.clone());
    create(
        &cluster,
        deployment("db", 3, "postgres:15", json!({"type": "Recreate"})),
    )
    .await;
    wait_pods(&cluster, "db", 3, "postgres:15").await;
    cluster
        .kubectl(&["rollout", "status", "deployment/db", "--timeout=60s"])
        .await;

    let mixed = Arc::new(AtomicBool::new(false));
    let flag = mixed.clone();
    let api: Api<Pod> = Api::namespaced(cluster.admin.clone(), NS);
    let watch = tokio::spawn(async move {
        let (store, writer) = kube::runtime::reflector::store();
        let config = watcher::Config::default().labels("app=db");
        let mut events = kube::runtime::reflector(writer, watcher(api, config)).boxed();
        while events.next().await.is_some() {
            let images: Vec<String> = store
                .state()
                .iter()
                .map(|p| {
                    p.spec.as_ref().unwrap().containers[0]
                        .image
                        .clone()
                        .unwrap_or_default()
                })
                .collect();
            if images.iter().any(|i| i == "postgres:15")
                && images.iter().any(|i| i == "postgres:16")
            {
                flag.store(true, Ordering::SeqCst);
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster
        .kubectl(&["set", "image", "deployment/db", "web=postgres:16"])
        .await;
    let out = cluster
        .kubectl(&["rollout", "status", "deployment/db", "--timeout=60s"])
        .await;
    assert!(out.contains("successfully rolled out"), "{out}");
    assert_eq!(pod_images(&cluster, "db").await, vec!["postgres:16"; 3]);
    watch.abort();
    assert!(
        !mixed.load(Ordering::SeqCst),
        "old and new pods existed at the same time"
    );
    cluster.stop().await;
}

#[tokio::test]
async fn a_stuck_rollout_exceeds_its_progress_deadline() {
    let cluster = start().await;
    let mut d = deployment("stuck", 2, "nginx:1", json!({}));
    d["spec"]["progressDeadlineSeconds"] = json!(3);
    create(&cluster, d).await;
    // No kubelet: the pods never become ready.
    let api: Api<Deployment> = Api::namespaced(cluster.admin.clone(), NS);
    let cond = eventually("ProgressDeadlineExceeded", 30, || async {
        let d = api.get("stuck").await.ok()?;
        let cond = d
            .status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "Progressing")?;
        (cond.reason.as_deref() == Some("ProgressDeadlineExceeded")).then_some(cond)
    })
    .await;
    assert_eq!(cond.status, "False");
    assert!(cond
        .message
        .unwrap()
        .ends_with("has timed out progressing."));
    let out = cluster
        .kubectl_v(
            None,
            &["rollout", "status", "deployment/stuck", "--timeout=20s"],
        )
        .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("exceeded its progress deadline"),
        "{stderr}"
    );
    cluster.stop().await;
}

#[tokio::test]
async fn old_replica_sets_beyond_the_history_limit_are_deleted() {
    let cluster = start().await;
    let _kubelet = Kubelet::start(cluster.admin.clone());
    let mut d = deployment("web", 1, "nginx:1", json!({}));
    d["spec"]["revisionHistoryLimit"] = json!(1);
    create(&cluster, d).await;
    for image in ["nginx:2", "nginx:3"] {
        cluster
            .kubectl(&["set", "image", "deployment/web", &format!("web={image}")])
            .await;
        cluster
            .kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"])
            .await;
    }
    eventually("one old ReplicaSet kept", 30, || async {
        let sets = replica_sets(&cluster, "web").await;
        let revisions: Vec<_> = sets
            .iter()
            .filter_map(|rs| annotation(rs, "deployment.kubernetes.io/revision"))
            .collect();
        (sets.len() == 2
            && revisions.contains(&"2".to_string())
            && revisions.contains(&"3".to_string()))
        .then_some(())
    })
    .await;
    cluster.stop().await;
}

/// Upstream's e2e "deployment should support proportional scaling": a rollout stuck on a bad
/// image is scaled from 10 to 30, and each ReplicaSet takes its share.
#[tokio::test]
async fn scaling_during_a_stuck_rollout_is_proportional() {
    let cluster = start().await;
    let _kubelet = Kubelet::start_except(cluster.admin.clone(), Some("nginx:404"));
    let strategy =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 3, "maxUnavailable": 2}});
    create(&cluster, deployment("web", 10, "nginx:1", strategy)).await;
    wait_pods(&cluster, "web", 10, "nginx:1").await;
    cluster
        .kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"])
        .await;
    cluster
        .kubectl(&["set", "image", "deployment/web", "web=nginx:404"])
        .await;
    let sizes = || async {
        let mut sets = replica_sets(&cluster, "web").await;
        sets.sort_by_key(|rs| annotation(rs, "deployment.kubernetes.io/revision"));
        sets.iter()
            .map(|rs| rs.spec.as_ref().unwrap().replicas.unwrap())
            .collect::<Vec<_>>()
    };
    eventually("old 8, new 5", 30, || async {
        (sizes().await == vec![8, 5]).then_some(())
    })
    .await;
    cluster
        .kubectl(&["scale", "deployment/web", "--replicas=30"])
        .await;
    eventually("old 20, new 13", 30, || async {
        (sizes().await == vec![20, 13]).then_some(())
    })
    .await;
    cluster.stop().await;
}

#[tokio::test]
async fn a_deployment_adopts_a_matching_orphan_replica_set() {
    let cluster = start().await;
    let d = deployment("web", 2, "nginx:1", json!({}));
    let orphan: ReplicaSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web-by-hand", "namespace": NS, "labels": {"app": "web"}},
        "spec": {"replicas": 2, "selector": d["spec"]["selector"], "template": d["spec"]["template"]}
    }))
    .unwrap();
    let sets: Api<ReplicaSet> = Api::namespaced(cluster.admin.clone(), NS);
    sets.create(&Default::default(), &orphan).await.unwrap();
    let created = create(&cluster, d).await;
    let adopted = eventually(
        "the ReplicaSet adopted and given revision 1",
        30,
        || async {
            let rs = sets.get("web-by-hand").await.ok()?;
            let owner = rs.owner_references().first()?.clone();
            (owner.uid == created.uid().unwrap()
                && annotation(&rs, "deployment.kubernetes.io/revision").as_deref() == Some("1"))
            .then_some(rs)
        },
    )
    .await;
    assert_eq!(adopted.owner_references()[0].controller, Some(true));
    // Its template is the Deployment's, so it is the new ReplicaSet: no other is made.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(replica_sets(&cluster, "web").await.len(), 1);
    assert_eq!(pod_images(&cluster, "web").await.len(), 2);
    cluster.stop().await;
}

#[tokio::test]
async fn a_replica_set_that_cannot_create_pods_shows_on_the_deployment() {
    let cluster = start().await;
    let mut d = deployment("web", 2, "nginx:1", json!({}));
    // Accepted in a template, refused on a pod: every create of the new ReplicaSet fails.
    d["spec"]["template"]["metadata"]["finalizers"] = json!(["orphan", "foregroundDeletion"]);
    create(&cluster, d).await;
    let api: Api<Deployment> = Api::namespaced(cluster.admin.clone(), NS);
    let cond = eventually("ReplicaFailure on the Deployment", 30, || async {
        let d = api.get("web").await.ok()?;
        d.status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "ReplicaFailure")
    })
    .await;
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_deref()),
        ("True", Some("FailedCreate"))
    );
    cluster.stop().await;
}
