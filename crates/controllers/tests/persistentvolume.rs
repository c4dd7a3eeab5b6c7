//! The persistent-volume binder and the local-path provisioner against a real API server (with
//! the DefaultStorageClass admission plugin): a claim of the default class gets a volume under
//! the storage directory and both are Bound; a claim without a class gets the default one; a
//! deleted claim's volume is deleted with its directory (Delete) or kept Released (Retain);
//! a manually created volume is bound by size, class and selector.

mod support;

use std::path::Path;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, PostParams};
use kube::ResourceExt;
use serde_json::json;
use support::{eventually, Cluster, Running};

const DEFAULT_CLASS: &str = "local-path";

async fn start(storage: &Path) -> (Cluster, Running) {
    let cluster = Cluster::start().await;
    let mut config = controllers::Config {
        controllers: vec![
            "persistentvolume-binder".into(),
            "local-path-provisioner".into(),
        ],
        leader_election: false,
        ..Default::default()
    };
    config.local_path.storage_dir = Some(storage.to_path_buf());
    let manager = cluster.manager(config).await;
    // The provisioner makes the default class at start.
    let classes: Api<StorageClass> = Api::all(cluster.admin.clone());
    eventually("the default StorageClass", 30, || {
        let classes = classes.clone();
        async move { classes.get_opt(DEFAULT_CLASS).await.ok().flatten() }
    })
    .await;
    (cluster, manager)
}

async fn create_claim(
    cluster: &Cluster,
    name: &str,
    spec: serde_json::Value,
) -> PersistentVolumeClaim {
    let mut spec = spec;
    spec["accessModes"] = json!(["ReadWriteOnce"]);
    spec["resources"] = json!({"requests": {"storage": "1Gi"}});
    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec
    }))
    .unwrap();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(cluster.admin.clone(), "default");
    api.create(&PostParams::default(), &claim)
        .await
        .expect("create claim")
}

/// Waits until the claim is Bound and returns it with its volume.
async fn bound(cluster: &Cluster, name: &str) -> (PersistentVolumeClaim, PersistentVolume) {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(cluster.admin.clone(), "default");
    let volumes: Api<PersistentVolume> = Api::all(cluster.admin.clone());
    eventually(&format!("claim {name} and its volume Bound"), 30, || {
        let (claims, volumes) = (claims.clone(), volumes.clone());
        async move {
            let claim = claims.get(name).await.ok()?;
            if claim.status.as_ref()?.phase.as_deref() != Some("Bound") {
                return None;
            }
            let pv = volumes
                .get(claim.spec.as_ref()?.volume_name.as_ref()?)
                .await
                .ok()?;
            (pv.status.as_ref()?.phase.as_deref() == Some("Bound")).then_some((claim, pv))
        }
    })
    .await
}

fn phase(pv: &PersistentVolume) -> Option<&str> {
    pv.status.as_ref()?.phase.as_deref()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_of_the_default_class_gets_a_volume_and_both_are_bound() {
    let storage = tempfile::tempdir().unwrap();
    let (cluster, manager) = start(storage.path()).await;
    let class: StorageClass = Api::all(cluster.admin.clone())
        .get(DEFAULT_CLASS)
        .await
        .unwrap();
    assert_eq!(class.provisioner, "krust.io/local-path");
    assert_eq!(class.reclaim_policy.as_deref(), Some("Delete"));
    assert_eq!(class.volume_binding_mode.as_deref(), Some("Immediate"));
    assert_eq!(
        class
            .annotations()
            .get("storageclass.kubernetes.io/is-default-class")
            .map(String::as_str),
        Some("true")
    );

    // No class given: the DefaultStorageClass admission plugin sets the default one.
    let claim = create_claim(&cluster, "data", json!({})).await;
    assert_eq!(
        claim.spec.as_ref().unwrap().storage_class_name.as_deref(),
        Some(DEFAULT_CLASS)
    );
    let (claim, pv) = bound(&cluster, "data").await;
    let uid = claim.uid().unwrap();
    assert_eq!(pv.name_any(), format!("pvc-{uid}"));
    let spec = pv.spec.as_ref().unwrap();
    let dir = storage.path().join(format!("pvc-{uid}"));
    let host_path = spec.host_path.as_ref().unwrap();
    assert_eq!(host_path.path, dir.to_str().unwrap());
    assert_eq!(host_path.type_.as_deref(), Some("DirectoryOrCreate"));
    assert!(dir.is_dir());
    assert_eq!(spec.storage_class_name.as_deref(), Some(DEFAULT_CLASS));
    assert_eq!(
        spec.persistent_volume_reclaim_policy.as_deref(),
        Some("Delete")
    );
    assert_eq!(
        spec.claim_ref.as_ref().unwrap().uid.as_deref(),
        Some(uid.as_str())
    );
    assert_eq!(
        pv.annotations()
            .get("pv.kubernetes.io/provisioned-by")
            .map(String::as_str),
        Some("krust.io/local-path")
    );
    let status = claim.status.as_ref().unwrap();
    assert_eq!(status.capacity.as_ref().unwrap()["storage"].0, "1Gi");
    assert_eq!(
        status.access_modes.as_deref(),
        Some(&["ReadWriteOnce".to_string()][..])
    );
    let annotations = claim.annotations();
    assert_eq!(annotations["pv.kubernetes.io/bind-completed"], "yes");
    assert_eq!(
        annotations["volume.kubernetes.io/storage-provisioner"],
        "krust.io/local-path"
    );

    // Deleting the claim (Delete policy) deletes the volume and its directory.
    std::fs::write(dir.join("file"), "data").unwrap();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(cluster.admin.clone(), "default");
    claims
        .delete("data", &DeleteParams::default())
        .await
        .unwrap();
    let volumes: Api<PersistentVolume> = Api::all(cluster.admin.clone());
    let name = pv.name_any();
    eventually("the volume deleted", 30, || {
        let volumes = volumes.clone();
        let name = name.clone();
        async move { volumes.get_opt(&name).await.ok()?.is_none().then_some(()) }
    })
    .await;
    assert!(!dir.exists(), "the volume's directory is removed");
    manager.stop().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retain_keeps_a_released_volume_and_an_empty_class_asks_for_none() {
    let storage = tempfile::tempdir().unwrap();
    let (cluster, manager) = start(storage.path()).await;
    let classes: Api<StorageClass> = Api::all(cluster.admin.clone());
    let keep: StorageClass = serde_json::from_value(json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "keep"}, "provisioner": "krust.io/local-path",
        "reclaimPolicy": "Retain", "volumeBindingMode": "Immediate"
    }))
    .unwrap();
    classes.create(&PostParams::default(), &keep).await.unwrap();

    create_claim(&cluster, "kept", json!({"storageClassName": "keep"})).await;
    let (claim, pv) = bound(&cluster, "kept").await;
    let dir = storage.path().join(format!("pvc-{}", claim.uid().unwrap()));
    assert!(dir.is_dir());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(cluster.admin.clone(), "default");
    claims
        .delete("kept", &DeleteParams::default())
        .await
        .unwrap();
    let volumes: Api<PersistentVolume> = Api::all(cluster.admin.clone());
    let name = pv.name_any();
    let released = eventually("the volume Released", 30, || {
        let volumes = volumes.clone();
        let name = name.clone();
        async move {
            let pv = volumes.get(&name).await.ok()?;
            (phase(&pv) == Some("Released")).then_some(pv)
        }
    })
    .await;
    assert_eq!(
        released
            .spec
            .as_ref()
            .unwrap()
            .claim_ref
            .as_ref()
            .unwrap()
            .name
            .as_deref(),
        Some("kept")
    );
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert!(
        volumes.get_opt(&name).await.unwrap().is_some(),
        "Retain keeps it"
    );
    assert!(dir.is_dir(), "and its data");

    // storageClassName "" means no class: not provisioned, Pending until a class-less volume.
    let claim = create_claim(&cluster, "classless", json!({"storageClassName": ""})).await;
    assert_eq!(
        claim.spec.as_ref().unwrap().storage_class_name.as_deref(),
        Some("")
    );
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let claim = claims.get("classless").await.unwrap();
    assert_eq!(
        claim.status.as_ref().unwrap().phase.as_deref(),
        Some("Pending")
    );
    assert!(claim.spec.as_ref().unwrap().volume_name.is_none());
    manager.stop().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_volumes_bind_by_size_selector_and_pre_binding() {
    let storage = tempfile::tempdir().unwrap();
    let (cluster, manager) = start(storage.path()).await;
    let volumes: Api<PersistentVolume> = Api::all(cluster.admin.clone());
    for (name, size, tier, claim_ref) in [
        ("small", "1Gi", "gold", None),
        ("large", "5Gi", "gold", None),
        ("silver", "1Gi", "silver", None),
        ("reserved", "2Gi", "none", Some("wants-reserved")),
    ] {
        let mut pv = json!({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": name, "labels": {"tier": tier}},
            "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                     "storageClassName": "manual", "persistentVolumeReclaimPolicy": "Retain",
                     "hostPath": {"path": format!("/tmp/krust-pv-{name}")}}
        });
        if let Some(claim) = claim_ref {
            pv["spec"]["claimRef"] = json!({"namespace": "default", "name": claim});
        }
        volumes
            .create(&PostParams::default(), &serde_json::from_value(pv).unwrap())
            .await
            .unwrap();
    }
    create_claim(
        &cluster,
        "gold",
        json!({"storageClassName": "manual", "selector": {"matchLabels": {"tier": "gold"}}}),
    )
    .await;
    create_claim(
        &cluster,
        "wants-reserved",
        json!({"storageClassName": "manual"}),
    )
    .await;
    let (_, gold) = bound(&cluster, "gold").await;
    assert_eq!(
        gold.name_any(),
        "small",
        "the smallest matching gold volume"
    );
    assert_eq!(
        gold.annotations()
            .get("pv.kubernetes.io/bound-by-controller")
            .map(String::as_str),
        Some("yes")
    );
    let (claim, reserved) = bound(&cluster, "wants-reserved").await;
    assert_eq!(reserved.name_any(), "reserved");
    assert_eq!(
        reserved
            .spec
            .as_ref()
            .unwrap()
            .claim_ref
            .as_ref()
            .unwrap()
            .uid,
        claim.uid()
    );
    // Nothing else was provisioned for these claims.
    let all = volumes.list(&Default::default()).await.unwrap();
    assert_eq!(all.items.len(), 4);
    // Retain on a manual volume: Released, kept.
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(cluster.admin.clone(), "default");
    claims
        .delete("gold", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the gold volume Released", 30, || {
        let volumes = volumes.clone();
        async move { (phase(&volumes.get("small").await.ok()?) == Some("Released")).then_some(()) }
    })
    .await;
    manager.stop().await;
    cluster.stop().await;
}
