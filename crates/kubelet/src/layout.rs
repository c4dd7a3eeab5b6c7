//! Where the node agent keeps things under the data dir, in upstream's shapes so that people
//! and tools who know `/var/lib/kubelet` and `/var/log/pods` find their way:
//!
//! ```text
//! <data-dir>/kubelet/pods/<uid>/volumes/<plugin>/<name>   volumes (plugin as upstream: kubernetes.io~configmap)
//! <data-dir>/kubelet/pods/<uid>/etc-hosts                  the pod's /etc/hosts
//! <data-dir>/kubelet/manifests/                            static pods
//! <data-dir>/logs/pods/<ns>_<name>_<uid>/<container>/<restart>.log   container logs (CRI format)
//! ```

use std::path::{Path, PathBuf};

/// The node agent's directories under one data dir.
#[derive(Debug, Clone)]
pub struct Layout {
    data_dir: PathBuf,
}

impl Layout {
    pub fn new(data_dir: &Path) -> Layout {
        Layout {
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// `<data-dir>/kubelet`.
    pub fn root(&self) -> PathBuf {
        self.data_dir.join("kubelet")
    }

    pub fn pod_dir(&self, pod_uid: &str) -> PathBuf {
        self.root().join("pods").join(pod_uid)
    }

    /// The pod's managed `/etc/hosts`.
    pub fn etc_hosts(&self, pod_uid: &str) -> PathBuf {
        self.pod_dir(pod_uid).join("etc-hosts")
    }

    /// The directory of one volume; `plugin` is upstream's escaped name (`kubernetes.io~secret`).
    pub fn volume_dir(&self, pod_uid: &str, plugin: &str, volume: &str) -> PathBuf {
        self.pod_dir(pod_uid)
            .join("volumes")
            .join(plugin)
            .join(volume)
    }

    /// Static pod manifests.
    pub fn manifests_dir(&self) -> PathBuf {
        self.root().join("manifests")
    }

    /// The pod's log directory, the sandbox's `log_directory` in CRI.
    pub fn pod_log_dir(&self, namespace: &str, name: &str, pod_uid: &str) -> PathBuf {
        self.data_dir
            .join("logs")
            .join("pods")
            .join(format!("{namespace}_{name}_{pod_uid}"))
    }

    /// A container's log, relative to the pod's log directory as CRI's `log_path` wants it.
    pub fn container_log(container: &str, restart_count: u32) -> PathBuf {
        Path::new(container).join(format!("{restart_count}.log"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_shapes() {
        let l = Layout::new(Path::new("/d"));
        assert_eq!(
            l.volume_dir("u", "kubernetes.io~secret", "s"),
            Path::new("/d/kubelet/pods/u/volumes/kubernetes.io~secret/s")
        );
        assert_eq!(
            l.pod_log_dir("ns", "p", "u")
                .join(Layout::container_log("c", 2)),
            Path::new("/d/logs/pods/ns_p_u/c/2.log")
        );
    }
}
