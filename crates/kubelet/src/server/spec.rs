//! `/spec/`: the machine as cAdvisor's `MachineInfo` describes it (what upstream's kubelet
//! serves there): cores, sockets, frequency, memory and swap, the machine's identities, the
//! filesystem of the data dir and the network devices.

use std::path::Path;

use serde_json::{json, Value};

use crate::node::machine::{self, Machine};

/// The machine info document, read now.
pub fn machine_info(data_dir: &Path) -> Value {
    let m = Machine::read(data_dir);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let (physical_cores, sockets) = topology(&cpuinfo);
    let filesystems: Vec<Value> = machine::filesystem(data_dir)
        .map(|fs| {
            json!({
                "device": device_of(data_dir).unwrap_or_default(),
                "capacity": fs.capacity,
                "type": "vfs",
                "inodes": inodes(data_dir).unwrap_or(0),
                "has_inodes": true
            })
        })
        .into_iter()
        .collect();
    json!({
        "timestamp": k8s_openapi::jiff::Timestamp::now().to_string(),
        "num_cores": m.cpus,
        "num_physical_cores": physical_cores.max(1),
        "num_sockets": sockets.max(1),
        "cpu_frequency_khz": frequency_khz(&cpuinfo),
        "memory_capacity": m.memory,
        "swap_capacity": machine::meminfo("SwapTotal").unwrap_or(0),
        "memory_by_type": {},
        "hugepages": [],
        "machine_id": m.machine_id,
        "system_uuid": m.system_uuid,
        "boot_id": m.boot_id,
        "filesystems": filesystems,
        "disk_map": {},
        "network_devices": network_devices(Path::new("/sys/class/net")),
        "topology": [],
        "cloud_provider": "Unknown",
        "instance_type": "Unknown",
        "instance_id": "None"
    })
}

/// (distinct cores, distinct sockets) from /proc/cpuinfo's `physical id` and `core id`.
fn topology(cpuinfo: &str) -> (usize, usize) {
    let mut cores = std::collections::BTreeSet::new();
    let mut sockets = std::collections::BTreeSet::new();
    for block in cpuinfo.split("\n\n") {
        let field = |name: &str| {
            block.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == name).then(|| v.trim().to_string())
            })
        };
        if let (Some(socket), Some(core)) = (field("physical id"), field("core id")) {
            sockets.insert(socket.clone());
            cores.insert((socket, core));
        }
    }
    (cores.len(), sockets.len())
}

/// The maximum frequency (cpufreq), else the first `cpu MHz` of /proc/cpuinfo.
fn frequency_khz(cpuinfo: &str) -> u64 {
    if let Some(khz) =
        std::fs::read_to_string("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
            .ok()
            .and_then(|s| s.trim().parse().ok())
    {
        return khz;
    }
    cpuinfo
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "cpu MHz").then(|| v.trim().parse::<f64>().ok())?
        })
        .map_or(0, |mhz| (mhz * 1000.0) as u64)
}

/// The device the filesystem holding `path` is mounted from (/proc/self/mounts, longest
/// mount point that is a prefix).
fn device_of(path: &Path) -> Option<String> {
    let path = path.canonicalize().ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.to_string(), f.next()?.to_string()))
        })
        .filter(|(_, point)| path.starts_with(point))
        .max_by_key(|(_, point)| point.len())
        .map(|(device, _)| device)
}

fn inodes(path: &Path) -> Option<u64> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct we pass; the path is NUL-terminated.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        (libc::statvfs(c.as_ptr(), &mut st) == 0).then_some(st.f_files)
    }
}

/// Network devices as cAdvisor lists them (not loopback, not virtual bridges' veth ends).
fn network_devices(sys_net: &Path) -> Vec<Value> {
    let Ok(entries) = std::fs::read_dir(sys_net) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "lo" && !n.starts_with("veth"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let read = |f: &str| {
                std::fs::read_to_string(sys_net.join(&name).join(f))
                    .map(|s| s.trim().to_string())
                    .unwrap_or_default()
            };
            let speed: i64 = read("speed").parse().unwrap_or(0);
            let mtu: i64 = read("mtu").parse().unwrap_or(0);
            json!({"name": name, "mac_address": read("address"), "speed": speed.max(0), "mtu": mtu})
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn cores_and_sockets_from_cpuinfo() {
        let info = "processor\t: 0\nphysical id\t: 0\ncore id\t: 0\ncpu MHz\t: 2400.5\n\n\
                    processor\t: 1\nphysical id\t: 0\ncore id\t: 0\n\n\
                    processor\t: 2\nphysical id\t: 0\ncore id\t: 1\n";
        assert_eq!(super::topology(info), (2, 1));
    }
}
