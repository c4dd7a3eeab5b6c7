//! Pod volumes (owner: volumes work in progress): emptyDir, configMap, secret, projected,
//! downwardAPI, hostPath and persistentVolumeClaim, set up under
//! [`Layout::volume_dir`](crate::layout::Layout::volume_dir) and mounted into containers.
//!
//! Contract for the pod workers:
//! `Volumes::new(Arc<NodeContext>)`, `Volumes::setup(&self, &Pod) -> Result<PodVolumes, VolumeError>`
//! (idempotent, called on every sync: refreshes configMap/secret/projected contents in place),
//! `PodVolumes::mounts(&self, &Container) -> Result<Vec<cri::api::Mount>, VolumeError>` and
//! `Volumes::teardown(&self, pod_uid: &str)`.
