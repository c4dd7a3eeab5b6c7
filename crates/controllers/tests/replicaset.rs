//! The ReplicaSet controller end to end: pods created from the template with upstream's
//! events, surplus pods deleted in upstream's order, orphans adopted, relabelled pods released,
//! status counted, `kubectl scale rs`, and a failed create reported.

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;
use support::{eventually, Cluster};

const NS: &str = "default";

fn replica_set(name: &str, replicas: i32) -> ReplicaSet {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, "tier": "front"}},
                "spec": {"containers": [{"name": "web", "image": "nginx"}]}
            }
        }
    }))
    .unwrap()
}

async fn start() -> Cluster {
    let mut cluster = Cluster::start().await;
    cluster.controllers(&["replicaset"]).await;
    cluster
}

/// Active pods labelled `app=<app>`.
async fn pods_of(cluster: &Cluster, app: &str) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(cluster.admin.clone(), NS);
    api.list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

async fn wait_count(cluster: &Cluster, app: &str, count: usize) -> Vec<Pod> {
    eventually(&format!("{count} pods of {app}"), 30, || async {
        let pods = pods_of(cluster, app).await;
        (pods.len() == count).then_some(pods)
    })
    .await
}

/// Plays the kubelet for one pod: bound to `node`, Running and Ready.
async fn run_ready(cluster: &Cluster, name: &str) {
    let api: Api<Pod> = Api::namespaced(cluster.admin.clone(), NS);
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let status = json!({"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": now}
    ]}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .expect("mark ready");
}

fn owner_uid(pod: &Pod) -> Option<String> {
    pod.owner_references()
        .iter()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.clone())
}

#[tokio::test]
async fn a_replicaset_creates_its_pods_and_deletes_the_least_useful_first() {
    let cluster = start().await;
    let sets: Api<ReplicaSet> = Api::namespaced(cluster.admin.clone(), NS);
    let rs = sets
        .create(&Default::default(), &replica_set("web", 3))
        .await
        .unwrap();
    let pods = wait_count(&cluster, "web", 3).await;
    for pod in &pods {
        assert_eq!(owner_uid(pod), rs.uid());
        assert!(pod.name_any().starts_with("web-"));
        assert_eq!(pod.labels()["tier"], "front");
    }
    // One event per pod, as upstream words it.
    let events: Api<Event> = Api::namespaced(cluster.admin.clone(), NS);
    eventually("SuccessfulCreate events", 20, || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        let notes: Vec<String> = list
            .items
            .iter()
            .filter(|e| e.reason.as_deref() == Some("SuccessfulCreate"))
            .filter_map(|e| e.message.clone())
            .collect();
        pods.iter()
            .all(|p| notes.contains(&format!("Created pod: {}", p.name_any())))
            .then_some(())
    })
    .await;

    // The one running and ready pod is the one kept when scaling down to 1.
    let keeper = pods[1].name_any();
    run_ready(&cluster, &keeper).await;
    let status = eventually("status of 3 replicas, 1 ready", 20, || async {
        let s = sets.get("web").await.ok()?.status?;
        (s.replicas == 3 && s.ready_replicas == Some(1)).then_some(s)
    })
    .await;
    assert_eq!(status.available_replicas, Some(1));
    assert_eq!(status.fully_labeled_replicas, Some(3));
    assert_eq!(status.observed_generation, Some(1));

    cluster
        .kubectl(&["scale", "rs", "web", "--replicas=1"])
        .await;
    let left = wait_count(&cluster, "web", 1).await;
    assert_eq!(left[0].name_any(), keeper);
    eventually("status of 1 replica", 20, || async {
        let rs = sets.get("web").await.ok()?;
        let s = rs.status?;
        (s.replicas == 1 && s.observed_generation == rs.metadata.generation).then_some(())
    })
    .await;
    // No second wave: the count stays right once the cache catches up.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(pods_of(&cluster, "web").await.len(), 1);
    cluster.stop().await;
}

#[tokio::test]
async fn a_replicaset_adopts_an_orphan_and_releases_a_relabelled_pod() {
    let cluster = start().await;
    let pods: Api<Pod> = Api::namespaced(cluster.admin.clone(), NS);
    let orphan: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "orphan", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "nginx"}]}
    }))
    .unwrap();
    pods.create(&Default::default(), &orphan).await.unwrap();
    let sets: Api<ReplicaSet> = Api::namespaced(cluster.admin.clone(), NS);
    let rs = sets
        .create(&Default::default(), &replica_set("web", 2))
        .await
        .unwrap();
    let owned = wait_count(&cluster, "web", 2).await;
    assert!(owned.iter().all(|p| owner_uid(p) == rs.uid()));
    assert!(
        owned.iter().any(|p| p.name_any() == "orphan"),
        "the orphan was adopted"
    );

    // Relabelled out of the selector: released, and replaced.
    let relabel = json!({"metadata": {"labels": {"app": "debug"}}});
    pods.patch("orphan", &PatchParams::default(), &Patch::Merge(relabel))
        .await
        .unwrap();
    let released = eventually("the relabelled pod released", 20, || async {
        let p = pods.get("orphan").await.ok()?;
        owner_uid(&p).is_none().then_some(p)
    })
    .await;
    assert_eq!(released.labels()["app"], "debug");
    let now = wait_count(&cluster, "web", 2).await;
    assert!(now
        .iter()
        .all(|p| p.name_any() != "orphan" && owner_uid(p) == rs.uid()));
    cluster.stop().await;
}

#[tokio::test]
async fn a_failed_create_is_reported_as_an_event_and_a_condition() {
    let cluster = start().await;
    let sets: Api<ReplicaSet> = Api::namespaced(cluster.admin.clone(), NS);
    // Template metadata is checked for labels and annotations only (as upstream), so this
    // template is accepted while every pod made from it is refused.
    let mut rs = replica_set("bad", 2);
    let template = rs.spec.as_mut().unwrap().template.as_mut().unwrap();
    template.metadata.as_mut().unwrap().finalizers =
        Some(vec!["orphan".into(), "foregroundDeletion".into()]);
    sets.create(&Default::default(), &rs).await.unwrap();
    let cond = eventually("the ReplicaFailure condition", 20, || async {
        let s = sets.get("bad").await.ok()?.status?;
        s.conditions?
            .into_iter()
            .find(|c| c.type_ == "ReplicaFailure")
    })
    .await;
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_deref()),
        ("True", Some("FailedCreate"))
    );
    assert!(cond
        .message
        .unwrap()
        .contains("finalizer orphan and foregroundDeletion cannot be both set"));
    let events: Api<Event> = Api::namespaced(cluster.admin.clone(), NS);
    let note = eventually("a FailedCreate event", 20, || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("FailedCreate"))?
            .message
    })
    .await;
    assert!(note.starts_with("Error creating: "), "{note}");
    // Nothing was made of the refused template.
    assert!(pods_of(&cluster, "bad").await.is_empty());
    // Fixed template: the condition goes away once pods can be made.
    let fix = json!({"spec": {"template": {"metadata": {"finalizers": null}}}});
    sets.patch("bad", &PatchParams::default(), &Patch::Merge(fix))
        .await
        .unwrap();
    wait_count(&cluster, "bad", 2).await;
    eventually("the condition cleared", 20, || async {
        let s = sets.get("bad").await.ok()?.status?;
        (!s.conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "ReplicaFailure"))
        .then_some(())
    })
    .await;
    cluster.stop().await;
}
