//! The garbage collector against a real API server: foreground deletion deletes the blocking
//! dependents first and the owner after; background deletion deletes the dependents after the
//! owner; orphaning leaves the dependents without the owner's reference. Owners are ConfigMaps
//! and a ReplicaSet with pods made by the test (no ReplicaSet controller runs).

mod support;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;
use support::{eventually, Cluster};

async fn configmap(
    api: &Api<ConfigMap>,
    name: &str,
    owner: Option<&ConfigMap>,
    finalizers: &[&str],
) -> ConfigMap {
    let refs = owner.map(|o| {
        json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": o.metadata.name, "uid": o.metadata.uid,
                "blockOwnerDeletion": true}])
    });
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "ownerReferences": refs, "finalizers": finalizers}});
    api.create(&PostParams::default(), &serde_json::from_value(cm).unwrap())
        .await
        .expect("create configmap")
}

async fn gone<K>(api: &Api<K>, name: &str) -> bool
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name).await.unwrap().is_none()
}

async fn cluster() -> (Cluster, Client) {
    let mut cluster = Cluster::start().await;
    cluster.controllers(&["garbagecollector"]).await;
    let client = cluster.admin.clone();
    (cluster, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreground_deletes_dependents_first_then_the_owner() {
    let (cluster, client) = cluster().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let owner = configmap(&cms, "owner", None, &[]).await;
    // One dependent held by a finalizer of its own: the owner must wait for it.
    configmap(&cms, "held", Some(&owner), &["example.com/hold"]).await;
    configmap(&cms, "free", Some(&owner), &[]).await;
    cms.delete("owner", &DeleteParams::foreground())
        .await
        .unwrap();
    let marked = cms.get("owner").await.unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert_eq!(
        marked.metadata.finalizers,
        Some(vec!["foregroundDeletion".to_string()])
    );
    eventually("the free dependent deleted", 30, || async {
        gone(&cms, "free").await.then_some(())
    })
    .await;
    eventually("the held dependent marked for deletion", 30, || async {
        cms.get("held")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .map(|_| ())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert!(
        !gone(&cms, "owner").await,
        "the owner went before its blocking dependent"
    );
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    eventually("the owner deleted after its dependents", 30, || async {
        gone(&cms, "owner").await.then_some(())
    })
    .await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_deletes_the_replicaset_then_its_pods() {
    let (cluster, client) = cluster().await;
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web"},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}});
    let rs = sets
        .create(&PostParams::default(), &serde_json::from_value(rs).unwrap())
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "default");
    for name in ["web-1", "web-2"] {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "web"}, "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": rs.metadata.uid,
                 "controller": true, "blockOwnerDeletion": true}]},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
        pods.create(
            &PostParams::default(),
            &serde_json::from_value(pod).unwrap(),
        )
        .await
        .unwrap();
    }
    sets.delete("web", &DeleteParams::background())
        .await
        .unwrap();
    assert!(
        gone(&sets, "web").await,
        "background deletion removes the owner at once"
    );
    eventually("the pods collected", 30, || async {
        (gone(&pods, "web-1").await && gone(&pods, "web-2").await).then_some(())
    })
    .await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_leaves_dependents_without_the_reference() {
    let (cluster, client) = cluster().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let owner = configmap(&cms, "owner", None, &[]).await;
    configmap(&cms, "child", Some(&owner), &[]).await;
    // No policy asked: the server's default, Background.
    let params = DeleteParams {
        propagation_policy: None,
        ..DeleteParams::default()
    };
    cms.delete("owner", &DeleteParams::orphan()).await.unwrap();
    eventually("the owner deleted", 30, || async {
        gone(&cms, "owner").await.then_some(())
    })
    .await;
    let child = cms.get("child").await.expect("the dependent stays");
    assert!(child
        .metadata
        .owner_references
        .unwrap_or_default()
        .is_empty());
    // A dependent whose owner goes in the background afterwards is collected.
    let owner2 = configmap(&cms, "owner2", None, &[]).await;
    configmap(&cms, "child2", Some(&owner2), &[]).await;
    cms.delete("owner2", &params).await.unwrap();
    eventually("the second dependent collected", 30, || async {
        gone(&cms, "child2").await.then_some(())
    })
    .await;
    assert!(!gone(&cms, "child").await, "the orphan stays");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_cascade_orphan_and_legacy_orphan_dependents() {
    let (cluster, client) = cluster().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let owner = configmap(&cms, "owner", None, &[]).await;
    configmap(&cms, "child", Some(&owner), &[]).await;
    cluster
        .kubectl(&["delete", "configmap", "owner", "--cascade=orphan"])
        .await;
    eventually("the owner deleted", 30, || async {
        gone(&cms, "owner").await.then_some(())
    })
    .await;
    let child = cms.get("child").await.unwrap();
    assert!(child
        .metadata
        .owner_references
        .unwrap_or_default()
        .is_empty());
    // orphanDependents=true (the pre-1.7 form) is still understood.
    let owner = configmap(&cms, "owner3", None, &[]).await;
    configmap(&cms, "child3", Some(&owner), &[]).await;
    let url = "/api/v1/namespaces/default/configmaps/owner3?orphanDependents=true";
    let out = cluster.kubectl(&["delete", "--raw", url]).await;
    assert!(out.contains("orphan") || out.contains("owner3"), "{out}");
    eventually("the owner deleted", 30, || async {
        gone(&cms, "owner3").await.then_some(())
    })
    .await;
    assert!(cms
        .get("child3")
        .await
        .unwrap()
        .metadata
        .owner_references
        .unwrap_or_default()
        .is_empty());
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_resources_added_later_are_collected() {
    let (cluster, client) = cluster().await;
    let crd = r#"{"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
      "metadata": {"name": "widgets.example.com"},
      "spec": {"group": "example.com", "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [{"name": "v1", "served": true, "storage": true,
          "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}}"#;
    let file = cluster.dir.path().join("crd.json");
    std::fs::write(&file, crd).unwrap();
    cluster
        .kubectl(&["create", "-f", file.to_str().unwrap()])
        .await;
    cluster
        .kubectl(&[
            "wait",
            "--for=condition=Established",
            "crd/widgets.example.com",
            "--timeout=30s",
        ])
        .await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let owner = configmap(&cms, "owner", None, &[]).await;
    let widget = format!(
        r#"{{"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {{"name": "w",
          "ownerReferences": [{{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": "{}"}}]}}}}"#,
        owner.metadata.uid.unwrap()
    );
    let file = cluster.dir.path().join("widget.json");
    std::fs::write(&file, widget).unwrap();
    cluster
        .kubectl(&["create", "-f", file.to_str().unwrap()])
        .await;
    cms.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    // Found at the next rediscovery (every 30 s), then collected.
    eventually("the widget collected", 75, || async {
        let out = cluster.kubectl_v(None, &["get", "widgets", "w"]).await;
        String::from_utf8_lossy(&out.stderr)
            .contains("not found")
            .then_some(())
    })
    .await;
    cluster.stop().await;
}
