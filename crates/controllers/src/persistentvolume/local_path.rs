//! krust's local-path provisioner (`krust.io/local-path`), an external provisioner in
//! upstream's sense run inside the controller manager: at start it creates the default
//! StorageClass if it is missing; each claim the binder hands to it (annotated
//! `volume.kubernetes.io/storage-provisioner: krust.io/local-path`) gets a hostPath volume
//! `pvc-<claim uid>` under `<data-dir>/storage`, pre-bound to the claim (the binder completes
//! the binding); a volume it made that is Released with the Delete policy is removed, its
//! directory first.
//!
//! The directory is made here (0777, so any container user may write) and again by the kubelet
//! (hostPath `DirectoryOrCreate`) if missing; both run on the same machine in `krust server`.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::{stream, StreamExt};
use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, ObjectReference, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeSpec,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::events::Recorder;
use kube::{Client, Resource, ResourceExt};

use super::*;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::events::{self, Normal, Warning};
use crate::informer;

/// The provisioner's name, as StorageClasses name it.
pub const PROVISIONER: &str = "krust.io/local-path";
const ACCOUNT: &str = "local-path-provisioner";
const RESYNC: Duration = Duration::from_secs(15);

/// Where volumes go and what the default class is called.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `<data-dir>/storage`; `None` leaves the provisioner idle (no class, no volumes).
    pub storage_dir: Option<PathBuf>,
    /// The default StorageClass (`local-path`; MicroK8s calls its `microk8s-hostpath`).
    pub class_name: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            storage_dir: None,
            class_name: "local-path".into(),
        }
    }
}

pub async fn run(ctx: Context) -> Result<()> {
    let settings = ctx.settings.local_path.clone();
    let Some(storage) = settings.storage_dir.clone() else {
        tracing::info!("local-path provisioner idle: no storage directory configured");
        return std::future::pending().await;
    };
    let client = ctx.client_for(ACCOUNT).await?;
    ensure_default_class(&client, &settings.class_name).await?;
    let shared = ctx.client.clone();
    let (_, claim_changes) = informer::start(
        Api::<PersistentVolumeClaim>::all(shared.clone()),
        Default::default(),
    );
    let (volumes, volume_changes) =
        informer::start(Api::<PersistentVolume>::all(shared), Default::default());
    let provisioner = Provisioner {
        recorder: ctx.recorder(client.clone(), PROVISIONER),
        client,
        storage,
    };
    enum Change {
        Claim(Box<PersistentVolumeClaim>),
        Volume(Box<PersistentVolume>),
        Resync,
    }
    let ticks = stream::unfold(tokio::time::interval(RESYNC), |mut every| async {
        every.tick().await;
        Some(((), every))
    });
    let mut changes = stream::select_all([
        claim_changes.map(|c| Change::Claim(Box::new(c))).boxed(),
        volume_changes.map(|v| Change::Volume(Box::new(v))).boxed(),
        ticks.map(|_| Change::Resync).boxed(),
    ]);
    while let Some(change) = changes.next().await {
        let result = match change {
            Change::Claim(c) => provisioner.claim_changed(&c).await,
            Change::Volume(v) => provisioner.volume_changed(&v).await,
            // A failed delete is tried again (claims come back through the binder's resync).
            Change::Resync => {
                for v in volumes.state() {
                    if let Err(e) = provisioner.volume_changed(&v).await {
                        tracing::debug!(error = %e, "local-path volume sync failed");
                    }
                }
                Ok(())
            }
        };
        if let Err(e) = result {
            ctx.metrics.sync_failed("local-path-provisioner");
            tracing::warn!(error = %e, "local-path provisioner sync failed");
        }
    }
    Ok(())
}

/// Creates the class unless one of that name exists (an administrator's edits are kept); it
/// is made the default only when no other class is.
async fn ensure_default_class(client: &Client, name: &str) -> Result<()> {
    let api: Api<StorageClass> = Api::all(client.clone());
    if api.get_opt(name).await?.is_some() {
        return Ok(());
    }
    let others_default = api
        .list(&Default::default())
        .await?
        .items
        .iter()
        .any(|c| c.annotations().get(ANN_DEFAULT_CLASS).map(String::as_str) == Some("true"));
    let class = StorageClass {
        metadata: ObjectMeta {
            name: Some(name.into()),
            annotations: Some(BTreeMap::from([(
                ANN_DEFAULT_CLASS.to_string(),
                (!others_default).to_string(),
            )])),
            ..Default::default()
        },
        provisioner: PROVISIONER.into(),
        reclaim_policy: Some("Delete".into()),
        volume_binding_mode: Some("Immediate".into()),
        ..Default::default()
    };
    match api.create(&PostParams::default(), &class).await {
        Ok(_) => {
            tracing::info!(class = name, "created the default StorageClass");
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

struct Provisioner {
    client: Client,
    recorder: Recorder,
    storage: PathBuf,
}

fn ours(annotations: &BTreeMap<String, String>, key: &str) -> bool {
    annotations.get(key).map(String::as_str) == Some(PROVISIONER)
}

impl Provisioner {
    async fn claim_changed(&self, claim: &PersistentVolumeClaim) -> Result<()> {
        let a = claim.annotations();
        let asked = ours(a, ANN_STORAGE_PROVISIONER) || ours(a, ANN_BETA_STORAGE_PROVISIONER);
        let unbound = claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .unwrap_or("")
            .is_empty();
        if !asked || !unbound || claim.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let class_name = matching::claim_class(claim);
        let classes: Api<StorageClass> = Api::all(self.client.clone());
        let Some(class) = classes.get_opt(&class_name).await? else {
            return Ok(());
        };
        if class.provisioner != PROVISIONER {
            return Ok(());
        }
        self.provision(claim, &class).await
    }

    async fn provision(&self, claim: &PersistentVolumeClaim, class: &StorageClass) -> Result<()> {
        let uid = claim.uid().unwrap_or_default();
        let name = format!("pvc-{uid}");
        let volumes: Api<PersistentVolume> = Api::all(self.client.clone());
        if volumes.get_opt(&name).await?.is_some() {
            return Ok(());
        }
        let path = self.storage.join(&name);
        let reference = claim.object_ref(&());
        let note = format!(
            "External provisioner is provisioning volume for claim \"{}/{}\"",
            claim.namespace().unwrap_or_default(),
            claim.name_any()
        );
        events::record(&self.recorder, &reference, Normal, "Provisioning", &note).await;
        if let Err(e) = make_dir(&path) {
            let note = format!(
                "failed to provision volume with StorageClass \"{}\": cannot create {}: {e}",
                class.name_any(),
                path.display()
            );
            events::record(
                &self.recorder,
                &reference,
                Warning,
                "ProvisioningFailed",
                &note,
            )
            .await;
            return Err(Error::Invalid(note));
        }
        match volumes
            .create(
                &PostParams::default(),
                &volume_for(claim, class, &name, &path),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        tracing::info!(volume = %name, path = %path.display(), "provisioned a local-path volume");
        let note = format!("Successfully provisioned volume {name}");
        events::record(
            &self.recorder,
            &reference,
            Normal,
            "ProvisioningSucceeded",
            &note,
        )
        .await;
        Ok(())
    }

    /// Deletes a volume of ours that is Released under the Delete policy, storage first.
    async fn volume_changed(&self, pv: &PersistentVolume) -> Result<()> {
        let spec = pv.spec.clone().unwrap_or_default();
        let released = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
        if !ours(pv.annotations(), ANN_PROVISIONED_BY)
            || !released
            || spec.persistent_volume_reclaim_policy.as_deref() != Some("Delete")
            || pv.metadata.deletion_timestamp.is_some()
        {
            return Ok(());
        }
        if let Some(host_path) = &spec.host_path {
            let path = Path::new(&host_path.path);
            // Only ever a directory of our own making.
            if path.parent() == Some(self.storage.as_path())
                && path.file_name().is_some_and(|n| *n == *pv.name_any())
            {
                match std::fs::remove_dir_all(path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        let note = format!("cannot remove {}: {e}", path.display());
                        events::record(
                            &self.recorder,
                            &pv.object_ref(&()),
                            Warning,
                            "VolumeFailedDelete",
                            &note,
                        )
                        .await;
                        return Err(Error::Invalid(note));
                    }
                }
            }
        }
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: pv.uid(),
                resource_version: None,
            }),
            ..Default::default()
        };
        let volumes: Api<PersistentVolume> = Api::all(self.client.clone());
        match volumes.delete(&pv.name_any(), &params).await {
            Ok(_) => {
                tracing::info!(volume = %pv.name_any(), "deleted a released local-path volume");
                Ok(())
            }
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

fn make_dir(path: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777))
}

/// The volume for `claim`: its size and access modes, the class's reclaim policy, pre-bound
/// to the claim.
fn volume_for(
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    name: &str,
    path: &Path,
) -> PersistentVolume {
    let spec = claim.spec.clone().unwrap_or_default();
    let request = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .cloned();
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name.into()),
            annotations: Some(BTreeMap::from([(
                ANN_PROVISIONED_BY.to_string(),
                PROVISIONER.to_string(),
            )])),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: request.map(|q| BTreeMap::from([("storage".to_string(), q)])),
            access_modes: spec.access_modes.clone(),
            volume_mode: spec.volume_mode.clone(),
            storage_class_name: Some(class.name_any()),
            persistent_volume_reclaim_policy: Some(
                class
                    .reclaim_policy
                    .clone()
                    .unwrap_or_else(|| "Delete".into()),
            ),
            host_path: Some(HostPathVolumeSource {
                path: path.to_string_lossy().into_owned(),
                type_: Some("DirectoryOrCreate".into()),
            }),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: claim.namespace(),
                name: Some(claim.name_any()),
                uid: claim.uid(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}
