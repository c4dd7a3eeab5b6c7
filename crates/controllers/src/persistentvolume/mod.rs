//! Persistent volumes: upstream's `persistentvolume-binder` controller ([`binder`]) and krust's
//! local-path provisioner ([`local_path`]), which follow upstream's external-provisioner
//! protocol between them.
//!
//! The binder binds each pending claim to the best Available volume ([`matching`]), setting
//! the volume's `claimRef` and both sides' phase as upstream does; a claim no volume fits whose
//! class names a provisioner is annotated `volume.kubernetes.io/storage-provisioner` for it,
//! and the provisioner creates a volume pre-bound to the claim, which the binder then binds.
//! When a claim goes, its volume is Released and reclaimed by its policy: Retain keeps it,
//! Delete removes it (a provisioned one is the provisioner's to delete, with its directory).

pub mod binder;
pub mod local_path;
pub mod matching;

/// Upstream's annotations (pkg/controller/volume/persistentvolume/util).
pub const ANN_BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
pub const ANN_BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
pub const ANN_STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
pub const ANN_BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
pub const ANN_PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// StorageClass annotation marking the default class.
pub const ANN_DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";

pub use binder::run as run_binder;
pub use local_path::run as run_local_path;
