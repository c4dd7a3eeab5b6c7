//! Pod networking on one node: the CNI network configuration containerd's CRI plugin hands to
//! Debian's standard plugins (`containernetworking-plugins` in `/usr/lib/cni`), written from the
//! node's pod CIDR (`spec.podCIDR`, given by the `nodeipam` controller).
//!
//! The network is upstream's single-node reference setup (what kubenet and k3s's flannel-less
//! mode do):
//!
//! - `bridge` on a Linux bridge named [`BRIDGE`] (`krust0`): a veth per pod, the bridge holds the
//!   CIDR's first address and is every pod's gateway (`isGateway`), traffic leaving the pod CIDR
//!   is masqueraded (`ipMasq`), and a pod reaches itself through its own Service (`hairpinMode`);
//! - `host-local` IPAM hands out the CIDR's addresses, with a default route through the bridge;
//!   its reservations live under `<data-dir>/cni/networks/` (not `/var/lib/cni`), so they belong
//!   to this data dir and go with it;
//! - `portmap` makes `hostPort`s work (`portMappings` capability, filled by containerd from the
//!   sandbox's port mappings), with SNAT so that the host itself can use `127.0.0.1:hostPort`.
//!
//! The pod's `lo` is brought up by containerd itself with the `loopback` plugin (go-cni's
//! loopback network, always run first), so it is no part of the list.
//!
//! containerd watches its CNI conf dir (`<data-dir>/cni/net.d/`) and loads the first list there:
//! until the node has a pod CIDR no file exists and sandboxes fail with "cni config
//! uninitialized", as upstream's kubelet reports NetworkReady=false. The file is replaced
//! atomically (write and rename), so containerd never reads half a file.

use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde_json::{json, Value};

/// The Linux bridge the pods' veths are attached to.
pub const BRIDGE: &str = "krust0";

/// The CNI network's name (what containerd reports and host-local's reservation dir is named).
pub const NETWORK_NAME: &str = "krust";

/// The conflist's file name: `10-` so it sorts before anything a user drops in with a higher
/// number, as containerd loads the first file by name.
pub const CONFLIST_FILE: &str = "10-krust.conflist";

/// The CNI spec version written (libcni in containerd 1.6 and the plugins of Debian 12 speak it).
pub const CNI_VERSION: &str = "1.0.0";

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("invalid pod CIDR {cidr:?}: {reason}")]
    InvalidCidr { cidr: String, reason: String },
    #[error("cannot write the CNI configuration {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where the node's CNI configuration goes and what it is built from.
#[derive(Debug, Clone)]
pub struct PodNetwork {
    /// containerd's CNI conf dir (`<data-dir>/cni/net.d`).
    pub conf_dir: PathBuf,
    /// host-local's reservations (`<data-dir>/cni/networks`).
    pub ipam_data_dir: PathBuf,
    /// The bridge's name ([`BRIDGE`] unless a test or a second agent on the host wants another).
    pub bridge: String,
}

impl PodNetwork {
    /// The defaults under one data dir: containerd's conf dir as [`crate::containerd::Paths`]
    /// gives it, the [`BRIDGE`].
    pub fn new(data_dir: &Path) -> PodNetwork {
        PodNetwork {
            conf_dir: crate::containerd::Paths::new(data_dir).cni_conf_dir,
            ipam_data_dir: data_dir.join("cni").join("networks"),
            bridge: BRIDGE.to_string(),
        }
    }

    /// The conflist file's path.
    pub fn conflist_path(&self) -> PathBuf {
        self.conf_dir.join(CONFLIST_FILE)
    }

    /// The network configuration list for `pod_cidr` (a node's `spec.podCIDR`).
    pub fn conflist(&self, pod_cidr: &str) -> Result<Value, NetworkError> {
        let cidr = parse_cidr(pod_cidr)?;
        let default_route = match cidr {
            IpNet::V4(_) => "0.0.0.0/0",
            IpNet::V6(_) => "::/0",
        };
        Ok(json!({
            "cniVersion": CNI_VERSION,
            "name": NETWORK_NAME,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": true,
                    "ipMasq": true,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{ "subnet": cidr.to_string() }]],
                        "routes": [{ "dst": default_route }],
                        "dataDir": self.ipam_data_dir,
                    },
                },
                {
                    "type": "portmap",
                    "capabilities": { "portMappings": true },
                    "snat": true,
                },
            ],
        }))
    }

    /// Writes the configuration for `pod_cidr` unless the same is already there; returns
    /// whether the file changed.
    pub fn write(&self, pod_cidr: &str) -> Result<bool, NetworkError> {
        let conflist = self.conflist(pod_cidr)?;
        let mut text = serde_json::to_string_pretty(&conflist).unwrap_or_default();
        text.push('\n');
        let path = self.conflist_path();
        if std::fs::read_to_string(&path).is_ok_and(|old| old == text) {
            return Ok(false);
        }
        let write_err = |source| NetworkError::Write {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&self.conf_dir).map_err(write_err)?;
        // libcni reads only *.conf, *.conflist and *.json: the temporary name is invisible to it.
        let tmp = self.conf_dir.join(format!(".{CONFLIST_FILE}.tmp"));
        std::fs::write(&tmp, text).map_err(write_err)?;
        std::fs::rename(&tmp, &path).map_err(write_err)?;
        tracing::info!(pod_cidr, path = %path.display(), "wrote the CNI configuration");
        Ok(true)
    }
}

/// A pod CIDR as the API stores it: a network address with its prefix (`10.244.3.0/24`), not a
/// host address inside one, with room for at least the gateway and one pod.
pub fn parse_cidr(cidr: &str) -> Result<IpNet, NetworkError> {
    let invalid = |reason: &str| NetworkError::InvalidCidr {
        cidr: cidr.to_string(),
        reason: reason.to_string(),
    };
    let net: IpNet = cidr
        .parse()
        .map_err(|_| invalid("not an address with a prefix length"))?;
    if net.trunc() != net {
        return Err(invalid("host bits are set"));
    }
    if net.max_prefix_len() - net.prefix_len() < 2 {
        return Err(invalid("too small for a gateway and a pod"));
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflist_for_a_pod_cidr() {
        let net = PodNetwork::new(Path::new("/d"));
        let list = net.conflist("10.244.3.0/24").unwrap();
        assert_eq!(list["name"], NETWORK_NAME);
        let bridge = &list["plugins"][0];
        assert_eq!(bridge["type"], "bridge");
        assert_eq!(bridge["bridge"], BRIDGE);
        assert_eq!(bridge["isGateway"], true);
        assert_eq!(bridge["ipMasq"], true);
        assert_eq!(bridge["hairpinMode"], true);
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.244.3.0/24");
        assert_eq!(bridge["ipam"]["routes"][0]["dst"], "0.0.0.0/0");
        assert_eq!(bridge["ipam"]["dataDir"], "/d/cni/networks");
        assert_eq!(list["plugins"][1]["type"], "portmap");
        assert_eq!(list["plugins"][1]["capabilities"]["portMappings"], true);
        assert_eq!(
            net.conflist_path(),
            Path::new("/d/cni/net.d/10-krust.conflist")
        );
        let v6 = net.conflist("fd00:10:244:1::/64").unwrap();
        assert_eq!(v6["plugins"][0]["ipam"]["routes"][0]["dst"], "::/0");
    }

    #[test]
    fn bad_cidrs_are_refused() {
        for bad in [
            "",
            "10.244.3.0",
            "10.244.3.1/24",
            "10.0.0.0/31",
            "nonsense/8",
        ] {
            assert!(parse_cidr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn written_once_and_replaced_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let net = PodNetwork::new(dir.path());
        assert!(net.write("10.244.0.0/24").unwrap());
        assert!(!net.write("10.244.0.0/24").unwrap());
        assert!(net.write("10.244.1.0/24").unwrap());
        let text = std::fs::read_to_string(net.conflist_path()).unwrap();
        assert!(text.contains("10.244.1.0/24"));
        let names: Vec<_> = std::fs::read_dir(&net.conf_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [CONFLIST_FILE]);
    }
}
