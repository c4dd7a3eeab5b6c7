//! Pod volumes: emptyDir, configMap, secret, projected, downwardAPI, hostPath and
//! persistentVolumeClaim, set up under [`Layout::volume_dir`](crate::layout::Layout::volume_dir)
//! and mounted into containers.
//!
//! Contract for the pod workers:
//! `Volumes::new(Arc<NodeContext>)`, `Volumes::setup(&self, &Pod) -> Result<PodVolumes, VolumeError>`
//! (idempotent, called on every sync: refreshes configMap/secret/projected contents in place),
//! `PodVolumes::mounts(&self, &Container) -> Result<Vec<cri::api::Mount>, VolumeError>` and
//! `Volumes::teardown(&self, pod_uid: &str)`.
//!
//! API-backed volumes (configMap, secret, downwardAPI, projected) are written with upstream's
//! atomic writer ([`atomic_writer`]): a timestamped directory, the `..data` symlink pointing at
//! it and one symlink per top-level name through `..data`, so a running container sees a new
//! version all at once, in place. Secrets and projected volumes live on a tmpfs, as upstream's,
//! so their contents never reach the disk. hostPath and PVC volumes are mounted from their own
//! path; a PVC resolves to its bound PersistentVolume (hostPath or local).

mod atomic_writer;
mod downward;
mod host_path;
mod mounts;
mod sources;
mod tmpfs;
mod token;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    EmptyDirVolumeSource, PersistentVolume, PersistentVolumeClaim, Pod, Volume,
};
use kube::api::Api;

use crate::context::NodeContext;

pub use mounts::PodVolumes;

/// Upstream's plugin directory names (`kubernetes.io/<plugin>` escaped with `~`).
pub const EMPTY_DIR: &str = "kubernetes.io~empty-dir";
pub const CONFIG_MAP: &str = "kubernetes.io~configmap";
pub const SECRET: &str = "kubernetes.io~secret";
pub const PROJECTED: &str = "kubernetes.io~projected";
pub const DOWNWARD_API: &str = "kubernetes.io~downward-api";

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// A volume could not be set up; the pod shows it as a `FailedMount` event and its
    /// containers wait (ContainerCreating) until a later sync succeeds.
    #[error("MountVolume.SetUp failed for volume \"{volume}\" : {reason}")]
    SetUp { volume: String, reason: String },
    /// A container's volumeMounts cannot be made (`CreateContainerConfigError` upstream).
    #[error("{0}")]
    Mount(String),
    #[error("cannot tear down the volumes of pod {pod_uid}: {reason}")]
    Teardown { pod_uid: String, reason: String },
}

impl VolumeError {
    /// The event or waiting reason upstream shows for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            VolumeError::SetUp { .. } => "FailedMount",
            VolumeError::Mount(_) => "CreateContainerConfigError",
            VolumeError::Teardown { .. } => "FailedUnMount",
        }
    }
}

/// Why one volume failed, before it is tagged with the volume's name.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SetUpError {
    #[error("{0}")]
    Message(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Api(String),
}

impl SetUpError {
    pub(crate) fn io(context: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> SetUpError {
        let context = context.to_string();
        move |source| SetUpError::Io { context, source }
    }
}

impl From<kube::Error> for SetUpError {
    fn from(e: kube::Error) -> Self {
        match e {
            kube::Error::Api(status) => SetUpError::Api(status.message),
            other => SetUpError::Api(other.to_string()),
        }
    }
}

/// A set-up volume: where it is on the host and whether every mount of it is read-only.
#[derive(Debug, Clone)]
pub(crate) struct Mounted {
    pub(crate) host_path: PathBuf,
    pub(crate) read_only: bool,
}

/// The node's volume manager: stateless but for the service-account tokens it keeps until they
/// need rotating.
pub struct Volumes {
    ctx: Arc<NodeContext>,
    tokens: token::Tokens,
}

impl Volumes {
    pub fn new(ctx: Arc<NodeContext>) -> Volumes {
        Volumes {
            ctx,
            tokens: token::Tokens::default(),
        }
    }

    /// Creates or refreshes every volume of `pod`; returns the first volume's error after trying
    /// them all, so one missing configMap does not hold the others back.
    pub async fn setup(&self, pod: &Pod) -> Result<PodVolumes, VolumeError> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if uid.is_empty() {
            return Err(VolumeError::SetUp {
                volume: String::new(),
                reason: "the pod has no uid".into(),
            });
        }
        let volumes = pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.clone())
            .unwrap_or_default();
        let mut mounted = BTreeMap::new();
        let mut first_error = None;
        for volume in &volumes {
            match self.setup_one(pod, &uid, volume).await {
                Ok(m) => {
                    mounted.insert(volume.name.clone(), m);
                }
                Err(e) => {
                    tracing::debug!(pod = %uid, volume = %volume.name, error = %e, "volume setup failed");
                    first_error.get_or_insert(VolumeError::SetUp {
                        volume: volume.name.clone(),
                        reason: e.to_string(),
                    });
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(PodVolumes::new(pod.clone(), mounted)),
        }
    }

    async fn setup_one(&self, pod: &Pod, uid: &str, v: &Volume) -> Result<Mounted, SetUpError> {
        let dir = |plugin: &str| self.ctx.layout.volume_dir(uid, plugin, &v.name);
        let api_data = |host_path: PathBuf| Mounted {
            host_path,
            read_only: true,
        };
        if let Some(e) = &v.empty_dir {
            let path = dir(EMPTY_DIR);
            match e.medium.as_deref().unwrap_or("") {
                "" => create_volume_dir(&path)?,
                "Memory" => {
                    // The size only matters when mounting: no Node read on later syncs.
                    let size = match tmpfs::is_mountpoint(&path).unwrap_or(false) {
                        true => None,
                        false => self.memory_volume_size(pod, e).await,
                    };
                    tmpfs::ensure(&path, size)?
                }
                other => {
                    return Err(SetUpError::Message(format!(
                        "unknown storage medium \"{other}\""
                    )))
                }
            }
            if let Some(gid) = fs_group(pod) {
                share_with_group(&path, gid)?;
            }
            return Ok(Mounted {
                host_path: path,
                read_only: false,
            });
        }
        if let Some(src) = &v.config_map {
            let payload = sources::config_map_volume(&self.ctx.client, pod, src).await?;
            let path = dir(CONFIG_MAP);
            create_volume_dir(&path)?;
            atomic_writer::write(&path, &payload, fs_group(pod))?;
            return Ok(api_data(path));
        }
        if let Some(src) = &v.secret {
            let payload = sources::secret_volume(&self.ctx.client, pod, src).await?;
            let path = dir(SECRET);
            tmpfs::ensure(&path, None)?;
            atomic_writer::write(&path, &payload, fs_group(pod))?;
            return Ok(api_data(path));
        }
        if let Some(src) = &v.downward_api {
            let payload = downward::volume(&self.ctx, pod, src).await?;
            let path = dir(DOWNWARD_API);
            create_volume_dir(&path)?;
            atomic_writer::write(&path, &payload, fs_group(pod))?;
            return Ok(api_data(path));
        }
        if let Some(src) = &v.projected {
            let payload = sources::projected(&self.ctx, &self.tokens, pod, src).await?;
            let path = dir(PROJECTED);
            tmpfs::ensure(&path, None)?;
            atomic_writer::write(&path, &payload, fs_group(pod))?;
            return Ok(api_data(path));
        }
        if let Some(src) = &v.host_path {
            host_path::check_type(Path::new(&src.path), src.type_.as_deref())?;
            return Ok(Mounted {
                host_path: PathBuf::from(&src.path),
                read_only: false,
            });
        }
        if let Some(src) = &v.persistent_volume_claim {
            let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
            let mut m = self.claim(namespace, &src.claim_name).await?;
            m.read_only |= src.read_only.unwrap_or(false);
            return Ok(m);
        }
        Err(SetUpError::Message(
            "this volume type is not supported by krust's kubelet".into(),
        ))
    }

    /// The path of the PersistentVolume bound to `claim` (hostPath or local).
    async fn claim(&self, namespace: &str, claim: &str) -> Result<Mounted, SetUpError> {
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(self.ctx.client.clone(), namespace);
        let pvc = pvcs.get(claim).await?;
        let phase = pvc.status.as_ref().and_then(|s| s.phase.clone());
        let volume_name = pvc.spec.as_ref().and_then(|s| s.volume_name.clone());
        let (Some("Bound"), Some(volume_name)) = (phase.as_deref(), volume_name) else {
            return Err(SetUpError::Message(format!(
                "PVC {namespace}/{claim} has non-bound phase ({:?}) or empty pvc.Spec.VolumeName ({:?})",
                phase.unwrap_or_default(),
                pvc.spec.as_ref().and_then(|s| s.volume_name.clone()).unwrap_or_default()
            )));
        };
        let pvs: Api<PersistentVolume> = Api::all(self.ctx.client.clone());
        let pv = pvs.get(&volume_name).await?;
        let spec = pv.spec.unwrap_or_default();
        let claim_ref_uid = spec.claim_ref.as_ref().and_then(|r| r.uid.clone());
        if claim_ref_uid.is_some() && claim_ref_uid != pvc.metadata.uid {
            return Err(SetUpError::Message(format!(
                "the PersistentVolume {volume_name} is bound to another claim"
            )));
        }
        let read_only_pv = false;
        if let Some(h) = &spec.host_path {
            host_path::check_type(Path::new(&h.path), h.type_.as_deref())?;
            return Ok(Mounted {
                host_path: PathBuf::from(&h.path),
                read_only: read_only_pv,
            });
        }
        if let Some(l) = &spec.local {
            host_path::check_type(Path::new(&l.path), None)?;
            if !Path::new(&l.path).exists() {
                return Err(SetUpError::Message(format!(
                    "path \"{}\" does not exist",
                    l.path
                )));
            }
            return Ok(Mounted {
                host_path: PathBuf::from(&l.path),
                read_only: read_only_pv,
            });
        }
        Err(SetUpError::Message(format!(
            "the PersistentVolume {volume_name} is neither hostPath nor local, which krust's kubelet cannot mount"
        )))
    }

    async fn memory_volume_size(&self, pod: &Pod, source: &EmptyDirVolumeSource) -> Option<i64> {
        let allocatable = downward::node_allocatable(&self.ctx).await;
        let memory = allocatable
            .get("memory")
            .map(component_base::quantity::value);
        memory_size(memory, pod, source)
    }

    /// Unmounts the pod's tmpfs volumes and removes its volume directories. Safe to call again.
    pub async fn teardown(&self, pod_uid: &str) -> Result<(), VolumeError> {
        self.tokens.forget_pod(pod_uid);
        let root = self.ctx.layout.pod_dir(pod_uid).join("volumes");
        teardown_dir(&root).map_err(|reason| VolumeError::Teardown {
            pod_uid: pod_uid.to_string(),
            reason,
        })
    }

    /// Tests only: pretends `by` has passed for token rotation.
    #[doc(hidden)]
    pub fn advance_token_clock(&self, by: Duration) {
        self.tokens.advance(by);
    }
}

/// The pod's `securityContext.fsGroup`: volumes it writes are owned by that group, as upstream's
/// `SetVolumeOwnership`.
fn fs_group(pod: &Pod) -> Option<u32> {
    let gid = pod.spec.as_ref()?.security_context.as_ref()?.fs_group?;
    u32::try_from(gid).ok()
}

/// An emptyDir root for an fsGroup: owned by the group, setgid so what containers create there
/// inherits it (upstream's mode |= rwx for the group and setgid on directories).
fn share_with_group(path: &Path, gid: u32) -> Result<(), SetUpError> {
    use std::os::unix::fs::PermissionsExt;
    let fail = SetUpError::io(format!("set the fsGroup of {}", path.display()));
    let mode =
        std::fs::metadata(path).map_err(SetUpError::io(format!("stat {}", path.display())))?;
    std::os::unix::fs::chown(path, None, Some(gid)).map_err(fail)?;
    let wanted = mode.permissions().mode() & 0o7777 | 0o2070;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(wanted))
        .map_err(SetUpError::io(format!("chmod {}", path.display())))
}

/// The memory a pod may use at most (upstream's pod-level cgroup limit): the sum of its
/// containers' memory limits, or the largest init container's if larger; `None` when a
/// container has no limit.
fn pod_memory_limit(pod: &Pod) -> Option<i64> {
    let spec = pod.spec.as_ref()?;
    let limit = |c: &k8s_openapi::api::core::v1::Container| {
        c.resources
            .as_ref()?
            .limits
            .as_ref()?
            .get("memory")
            .map(component_base::quantity::value)
    };
    let mut sum = 0i64;
    for c in &spec.containers {
        sum = sum.saturating_add(limit(c)?);
    }
    let init = spec.init_containers.iter().flatten();
    let init_max = init
        .map(limit)
        .collect::<Option<Vec<_>>>()?
        .into_iter()
        .max();
    Some(sum.max(init_max.unwrap_or(0)))
}

/// Upstream's `calculateEmptyDirMemorySize`: the node's allocatable memory, lowered to the
/// pod's memory limit and then to the volume's sizeLimit when those are smaller.
fn memory_size(allocatable: Option<i64>, pod: &Pod, source: &EmptyDirVolumeSource) -> Option<i64> {
    let lower = |size: Option<i64>, to: Option<i64>| match to.filter(|t| *t > 0) {
        Some(t) if size.is_none_or(|s| t <= s) => Some(t),
        _ => size,
    };
    let size_limit = source
        .size_limit
        .as_ref()
        .map(component_base::quantity::value);
    lower(lower(allocatable, pod_memory_limit(pod)), size_limit)
}

fn create_volume_dir(path: &Path) -> Result<(), SetUpError> {
    use std::os::unix::fs::PermissionsExt;
    if path.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(path).map_err(SetUpError::io(format!("mkdir {}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777))
        .map_err(SetUpError::io(format!("chmod {}", path.display())))
}

/// `<pod>/volumes/<plugin>/<name>`: every mounted volume is unmounted before anything is
/// removed, so a failed unmount never deletes through into a mounted filesystem.
fn teardown_dir(root: &Path) -> Result<(), String> {
    let Ok(plugins) = std::fs::read_dir(root) else {
        return Ok(());
    };
    for plugin in plugins.flatten() {
        let Ok(volumes) = std::fs::read_dir(plugin.path()) else {
            continue;
        };
        for volume in volumes.flatten() {
            tmpfs::unmount_if_mounted(&volume.path())
                .map_err(|e| format!("unmount {}: {e}", volume.path().display()))?;
        }
    }
    match std::fs::remove_dir_all(root) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("remove {}: {e}", root.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(limits: &[Option<&str>]) -> Pod {
        let containers: Vec<_> = limits
            .iter()
            .enumerate()
            .map(|(i, l)| match l {
                Some(l) => serde_json::json!({"name": format!("c{i}"), "resources": {"limits": {"memory": l}}}),
                None => serde_json::json!({"name": format!("c{i}")}),
            })
            .collect();
        serde_json::from_value(serde_json::json!({"spec": {"containers": containers}})).unwrap()
    }

    #[test]
    fn memory_volumes_are_sized_as_upstream() {
        let mi = 1 << 20;
        let no_limit: EmptyDirVolumeSource = Default::default();
        let limited: EmptyDirVolumeSource =
            serde_json::from_value(serde_json::json!({"medium": "Memory", "sizeLimit": "16Mi"}))
                .unwrap();
        let node = Some(1024 * mi);
        // The pod's limit (sum of its containers') when every container has one.
        assert_eq!(
            memory_size(node, &pod(&[Some("64Mi"), Some("32Mi")]), &no_limit),
            Some(96 * mi)
        );
        assert_eq!(
            memory_size(node, &pod(&[Some("64Mi"), None]), &no_limit),
            node
        );
        // sizeLimit when smaller; never more than the pod or the node allows.
        assert_eq!(
            memory_size(node, &pod(&[Some("64Mi")]), &limited),
            Some(16 * mi)
        );
        assert_eq!(
            memory_size(node, &pod(&[Some("8Mi")]), &limited),
            Some(8 * mi)
        );
        assert_eq!(memory_size(None, &pod(&[None]), &no_limit), None);
    }
}
