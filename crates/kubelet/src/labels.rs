//! The labels and annotations the kubelet puts on CRI sandboxes and containers, upstream's keys
//! (pkg/kubelet/types/labels.go, kuberuntime/labels.go), so that `crictl` output, the kubelet API
//! (which finds a pod's containers by them) and adoption after a restart all read the same.

/// On sandboxes and containers.
pub const POD_NAME: &str = "io.kubernetes.pod.name";
pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const POD_UID: &str = "io.kubernetes.pod.uid";
/// On containers: the container's name in the pod spec.
pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// Container annotations.
pub const RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
pub const TERMINATION_MESSAGE_PATH: &str = "io.kubernetes.container.terminationMessagePath";
pub const TERMINATION_GRACE_PERIOD: &str = "io.kubernetes.pod.terminationGracePeriod";
/// Sandbox annotation: the pod's spec hash, so a restarted kubelet can tell its pods.
pub const POD_SPEC_HASH: &str = "krust.io/pod-spec-hash";
