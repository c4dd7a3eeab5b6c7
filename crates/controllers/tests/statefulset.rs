//! The StatefulSet controller end to end; the test plays the kubelet by marking pods Running
//! and Ready.

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use support::{eventually, Cluster};

fn statefulset(name: &str, spec: serde_json::Value) -> StatefulSet {
    let mut set = json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": 3,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "web", "image": "web:v1"}]}
            }
        }
    });
    support::merge(&mut set, json!({ "spec": spec }));
    serde_json::from_value(set).unwrap()
}

/// Plays the kubelet: the pod runs and is ready.
async fn make_ready(pods: &Api<Pod>, name: &str) {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let status = json!({"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": now}
    ]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
}

async fn exists(pods: &Api<Pod>, name: &str) -> bool {
    pods.get_opt(name)
        .await
        .unwrap()
        .is_some_and(|p| p.metadata.deletion_timestamp.is_none())
}

fn image(pod: &Pod) -> String {
    pod.spec.as_ref().unwrap().containers[0]
        .image
        .clone()
        .unwrap_or_default()
}

/// Waits for `name`, checks that the next ordinal does not come before it is ready, makes it
/// ready.
async fn next_in_order(pods: &Api<Pod>, name: &str, next: Option<&str>) -> Pod {
    let pod = eventually(name, 20, || async { pods.get_opt(name).await.unwrap() }).await;
    if let Some(next) = next {
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(
            !exists(pods, next).await,
            "{next} came before {name} was ready"
        );
    }
    make_ready(pods, name).await;
    pod
}

#[tokio::test]
async fn statefulset_creates_pods_in_order_with_claims_and_scales_down_in_reverse() {
    let mut cluster = Cluster::start().await;
    cluster.controllers(&["statefulset"]).await;
    let sets: Api<StatefulSet> = Api::namespaced(cluster.admin.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(cluster.admin.clone(), "default");
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(cluster.admin.clone(), "default");
    let spec = json!({"volumeClaimTemplates": [{
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    }]});
    sets.create(&PostParams::default(), &statefulset("web", spec))
        .await
        .unwrap();
    let web0 = next_in_order(&pods, "web-0", Some("web-1")).await;
    next_in_order(&pods, "web-1", Some("web-2")).await;
    next_in_order(&pods, "web-2", None).await;
    // Stable identity.
    assert_eq!(web0.labels()["statefulset.kubernetes.io/pod-name"], "web-0");
    assert_eq!(web0.labels()["apps.kubernetes.io/pod-index"], "0");
    assert!(web0.labels().contains_key("controller-revision-hash"));
    let spec = web0.spec.as_ref().unwrap();
    assert_eq!(spec.hostname.as_deref(), Some("web-0"));
    assert_eq!(spec.subdomain.as_deref(), Some("web"));
    let volume = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "data")
        .unwrap();
    assert_eq!(
        volume.persistent_volume_claim.as_ref().unwrap().claim_name,
        "data-web-0"
    );
    for i in 0..3 {
        let claim = claims.get(&format!("data-web-{i}")).await.unwrap();
        assert_eq!(claim.labels()["app"], "web");
    }
    let status = eventually("three ready replicas", 20, || async {
        let s = sets.get("web").await.unwrap().status?;
        (s.ready_replicas == Some(3) && s.replicas == 3).then_some(s)
    })
    .await;
    assert_eq!(status.current_revision, status.update_revision);
    assert_eq!(status.updated_replicas, Some(3));
    let out = cluster
        .kubectl(&[
            "get", "pods", "-n", "default", "-l", "app=web", "-o", "name",
        ])
        .await;
    assert_eq!(out.trim(), "pod/web-0\npod/web-1\npod/web-2", "{out}");

    // Scale down to one: web-2 goes first, then web-1; the claims stay (Retain).
    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    eventually("web-2 deleted first", 20, || async {
        let two = exists(&pods, "web-2").await;
        let one = exists(&pods, "web-1").await;
        assert!(one || !two, "web-1 deleted before web-2");
        (!two).then_some(())
    })
    .await;
    eventually("web-1 deleted", 20, || async {
        (!exists(&pods, "web-1").await).then_some(())
    })
    .await;
    assert!(exists(&pods, "web-0").await);
    for i in 0..3 {
        claims.get(&format!("data-web-{i}")).await.unwrap();
    }
    cluster.stop().await;
}

#[tokio::test]
async fn partitioned_rolling_update_updates_only_ordinals_at_or_above_the_partition() {
    let mut cluster = Cluster::start().await;
    cluster.controllers(&["statefulset"]).await;
    let sets: Api<StatefulSet> = Api::namespaced(cluster.admin.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(cluster.admin.clone(), "default");
    let spec = json!({
        "podManagementPolicy": "Parallel",
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}
    });
    sets.create(&PostParams::default(), &statefulset("db", spec))
        .await
        .unwrap();
    // Parallel: all three at once, without waiting for readiness.
    eventually("three pods at once", 20, || async {
        let mut all = true;
        for i in 0..3 {
            all &= exists(&pods, &format!("db-{i}")).await;
        }
        all.then_some(())
    })
    .await;
    for i in 0..3 {
        make_ready(&pods, &format!("db-{i}")).await;
    }
    eventually("three ready", 20, || async {
        let s = sets.get("db").await.unwrap().status?;
        (s.ready_replicas == Some(3)).then_some(())
    })
    .await;
    let change = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "web:v2"}]}}}});
    sets.patch("db", &PatchParams::default(), &Patch::Strategic(change))
        .await
        .unwrap();
    eventually("db-2 and db-1 on v2", 40, || async {
        let mut updated = 0;
        for i in 0..3 {
            let name = format!("db-{i}");
            let Some(pod) = pods.get_opt(&name).await.unwrap() else {
                continue;
            };
            let ready = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready"));
            if !ready && pod.metadata.deletion_timestamp.is_none() {
                make_ready(&pods, &name).await;
            }
            if image(&pod) == "web:v2" && pod.metadata.deletion_timestamp.is_none() {
                assert!(i >= 1, "db-{i} is below the partition");
                updated += 1;
            }
        }
        (updated == 2).then_some(())
    })
    .await;
    let status = eventually("two updated replicas", 20, || async {
        let s = sets.get("db").await.unwrap().status?;
        (s.updated_replicas == Some(2) && s.ready_replicas == Some(3)).then_some(s)
    })
    .await;
    // Below the partition the old revision stays.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(image(&pods.get("db-0").await.unwrap()), "web:v1");
    assert_eq!(status.current_replicas, Some(1));
    assert_ne!(status.current_revision, status.update_revision);
    let history = cluster
        .kubectl(&["rollout", "history", "sts/db", "-n", "default"])
        .await;
    assert!(history.contains('1') && history.contains('2'), "{history}");
    cluster.stop().await;
}

#[tokio::test]
async fn max_unavailable_rolls_several_pods_at_once() {
    let mut cluster = Cluster::start().await;
    cluster.controllers(&["statefulset"]).await;
    let sets: Api<StatefulSet> = Api::namespaced(cluster.admin.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(cluster.admin.clone(), "default");
    let spec = json!({
        "replicas": 4,
        "podManagementPolicy": "Parallel",
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2}}
    });
    sets.create(&PostParams::default(), &statefulset("mu", spec))
        .await
        .unwrap();
    for i in 0..4 {
        let name = format!("mu-{i}");
        eventually(&name, 20, || async {
            exists(&pods, &name).await.then_some(())
        })
        .await;
        make_ready(&pods, &name).await;
    }
    eventually("four ready", 20, || async {
        let s = sets.get("mu").await.unwrap().status?;
        (s.ready_replicas == Some(4)).then_some(())
    })
    .await;
    let change = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "web:v2"}]}}}});
    sets.patch("mu", &PatchParams::default(), &Patch::Strategic(change))
        .await
        .unwrap();
    // The two highest ordinals are replaced together; the others wait while they are
    // unavailable.
    let on_v2 = || async {
        let mut v2 = Vec::new();
        for i in 0..4 {
            if let Some(p) = pods.get_opt(&format!("mu-{i}")).await.unwrap() {
                if image(&p) == "web:v2" && p.metadata.deletion_timestamp.is_none() {
                    v2.push(i);
                }
            }
        }
        v2
    };
    eventually("mu-3 and mu-2 on v2 together", 20, || async {
        (on_v2().await == vec![2, 3]).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        on_v2().await,
        vec![2, 3],
        "more than maxUnavailable pods down"
    );
    make_ready(&pods, "mu-2").await;
    make_ready(&pods, "mu-3").await;
    eventually("all on v2", 20, || async {
        (on_v2().await == vec![0, 1, 2, 3]).then_some(())
    })
    .await;
    cluster.stop().await;
}
