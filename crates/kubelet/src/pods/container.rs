//! A container's CRI config, as upstream's `generateContainerConfig`: command and args expanded
//! against the environment, working dir, the security context merged from pod and container,
//! resources as cgroup limits, log path, termination message file, labels and annotations.

use std::collections::HashMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{Container, Pod, PodSecurityContext, SecurityContext};

use super::env::Env;
use super::sandbox::{ids, namespace_options, pod_labels};
use super::status::QosClass;
use crate::cri::{api, image_spec};
use crate::labels;
use crate::layout::Layout;

/// Upstream's annotation with a hash of the container's spec: a changed spec (a new image)
/// restarts the container.
pub const CONTAINER_HASH: &str = "io.kubernetes.container.hash";
pub const TERMINATION_MESSAGE_POLICY: &str = "io.kubernetes.container.terminationMessagePolicy";

/// Upstream's default masked and read-only paths (`securitycontext.DefaultMaskedPaths`).
const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

pub const CPU_PERIOD: i64 = 100_000;

/// The file a container writes its termination message to, on the host.
pub fn termination_message_file(
    layout: &Layout,
    pod_uid: &str,
    name: &str,
    restart: u32,
) -> PathBuf {
    layout
        .pod_dir(pod_uid)
        .join("containers")
        .join(name)
        .join(format!("termination-{restart}"))
}

/// A stable hash of the container's spec.
pub fn spec_hash(container: &Container) -> String {
    use sha2::Digest;
    let json = serde_json::to_vec(container).unwrap_or_default();
    hex::encode(&sha2::Sha256::digest(&json)[..8])
}

pub struct Inputs<'a> {
    pub pod: &'a Pod,
    pub container: &'a Container,
    pub env: &'a Env,
    pub restart_count: u32,
    pub mounts: Vec<api::Mount>,
    pub layout: &'a Layout,
    pub qos: QosClass,
}

pub fn config(inputs: Inputs<'_>) -> api::ContainerConfig {
    let Inputs {
        pod,
        container,
        env,
        restart_count,
        mut mounts,
        layout,
        qos,
    } = inputs;
    let (_, _, uid) = ids(pod);
    let mut labels = pod_labels(pod);
    labels.insert(labels::CONTAINER_NAME.into(), container.name.clone());
    let message_path = container
        .termination_message_path
        .clone()
        .unwrap_or_else(|| "/dev/termination-log".into());
    let grace = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30);
    let annotations = HashMap::from([
        (labels::RESTART_COUNT.into(), restart_count.to_string()),
        (
            labels::TERMINATION_MESSAGE_PATH.into(),
            message_path.clone(),
        ),
        (labels::TERMINATION_GRACE_PERIOD.into(), grace.to_string()),
        (CONTAINER_HASH.into(), spec_hash(container)),
        (
            TERMINATION_MESSAGE_POLICY.into(),
            container
                .termination_message_policy
                .clone()
                .unwrap_or_else(|| "File".into()),
        ),
    ]);
    let host_file = termination_message_file(layout, uid, &container.name, restart_count);
    if !message_path.is_empty() {
        mounts.push(api::Mount {
            container_path: message_path,
            host_path: host_file.to_string_lossy().into(),
            ..Default::default()
        });
    }
    api::ContainerConfig {
        metadata: Some(api::ContainerMetadata {
            name: container.name.clone(),
            attempt: restart_count,
        }),
        image: Some(image_spec(container.image.as_deref().unwrap_or(""))),
        command: container
            .command
            .iter()
            .flatten()
            .map(|s| env.expand(s))
            .collect(),
        args: container
            .args
            .iter()
            .flatten()
            .map(|s| env.expand(s))
            .collect(),
        working_dir: container.working_dir.clone().unwrap_or_default(),
        envs: env
            .vars()
            .iter()
            .map(|(key, value)| api::KeyValue {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
        mounts,
        labels,
        annotations,
        log_path: Layout::container_log(&container.name, restart_count)
            .to_string_lossy()
            .into(),
        stdin: container.stdin.unwrap_or(false),
        stdin_once: container.stdin_once.unwrap_or(false),
        tty: container.tty.unwrap_or(false),
        linux: Some(api::LinuxContainerConfig {
            resources: Some(resources(container, qos)),
            security_context: Some(security_context(pod, container)),
        }),
        ..Default::default()
    }
}

/// Requests and limits as cgroup settings (upstream's `calculateLinuxResources`).
pub fn resources(container: &Container, qos: QosClass) -> api::LinuxContainerResources {
    use component_base::quantity::{milli_value, value};
    let res = container.resources.as_ref();
    let get = |limits: bool, name: &str| {
        let map = if limits {
            res.and_then(|r| r.limits.as_ref())
        } else {
            res.and_then(|r| r.requests.as_ref())
        };
        map.and_then(|m| m.get(name)).cloned()
    };
    let cpu_request = get(false, "cpu").or_else(|| get(true, "cpu"));
    let cpu_limit = get(true, "cpu");
    let memory_limit = get(true, "memory");
    let shares = match cpu_request {
        Some(q) => (milli_value(&q) * 1024 / 1000).max(2),
        None => 2,
    };
    let (period, quota) = match cpu_limit {
        Some(q) => (CPU_PERIOD, (milli_value(&q) * CPU_PERIOD / 1000).max(1000)),
        None => (0, 0),
    };
    let memory = memory_limit.map(|q| value(&q)).unwrap_or(0);
    let oom_score_adj = match qos {
        QosClass::Guaranteed => -997,
        QosClass::BestEffort => 1000,
        QosClass::Burstable => {
            // 1000 - 1000 * request / capacity, kept within [2, 999] as upstream.
            let request = get(false, "memory").map(|q| value(&q)).unwrap_or(0);
            let capacity = node_memory().max(1);
            (1000 - (1000 * request as i128 / capacity as i128) as i64).clamp(2, 999)
        }
    };
    api::LinuxContainerResources {
        cpu_period: period,
        cpu_quota: quota,
        cpu_shares: shares,
        memory_limit_in_bytes: memory,
        oom_score_adj,
        ..Default::default()
    }
}

/// The machine's memory in bytes (for the Burstable OOM score).
pub fn node_memory() -> i64 {
    // SAFETY: sysconf has no preconditions.
    let pages = unsafe { libc::sysconf(libc::_SC_PHYS_PAGES) };
    // SAFETY: as above.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    (pages as i64).saturating_mul(size as i64)
}

/// The container's security context over the pod's (the container's fields win).
pub fn security_context(pod: &Pod, container: &Container) -> api::LinuxContainerSecurityContext {
    let pod_sc: Option<&PodSecurityContext> =
        pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let sc: Option<&SecurityContext> = container.security_context.as_ref();
    let privileged = sc.and_then(|s| s.privileged).unwrap_or(false);
    let run_as_user = sc
        .and_then(|s| s.run_as_user)
        .or(pod_sc.and_then(|s| s.run_as_user));
    let run_as_group = sc
        .and_then(|s| s.run_as_group)
        .or(pod_sc.and_then(|s| s.run_as_group));
    let caps = sc.and_then(|s| s.capabilities.as_ref());
    let unmasked = sc.and_then(|s| s.proc_mount.as_deref()) == Some("Unmasked");
    let (masked, readonly) = if privileged || unmasked {
        (Vec::new(), Vec::new())
    } else {
        (
            MASKED_PATHS.iter().map(|s| s.to_string()).collect(),
            READONLY_PATHS.iter().map(|s| s.to_string()).collect(),
        )
    };
    api::LinuxContainerSecurityContext {
        capabilities: caps.map(|c| api::Capability {
            add_capabilities: c.add.clone().unwrap_or_default(),
            drop_capabilities: c.drop.clone().unwrap_or_default(),
            ..Default::default()
        }),
        privileged,
        namespace_options: Some(namespace_options(pod)),
        run_as_user: run_as_user.map(|value| api::Int64Value { value }),
        run_as_group: run_as_group.map(|value| api::Int64Value { value }),
        readonly_rootfs: sc
            .and_then(|s| s.read_only_root_filesystem)
            .unwrap_or(false),
        supplemental_groups: pod_sc
            .and_then(|s| s.supplemental_groups.clone())
            .unwrap_or_default(),
        no_new_privs: sc.and_then(|s| s.allow_privilege_escalation) == Some(false),
        masked_paths: masked,
        readonly_paths: readonly,
        ..Default::default()
    }
}
