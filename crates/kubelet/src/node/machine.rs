//! What the node is made of, read from the kernel as cAdvisor reads it for upstream's kubelet:
//! CPUs, memory, the data dir's filesystem, the kernel and OS, and the machine's identities.

use std::path::Path;

/// The machine's fixed facts (read once at start).
#[derive(Debug, Clone, Default)]
pub struct Machine {
    pub cpus: u64,
    /// MemTotal, bytes.
    pub memory: u64,
    /// Size of the filesystem holding the data dir, bytes.
    pub filesystem: u64,
    pub kernel_version: String,
    pub os_image: String,
    pub machine_id: String,
    pub system_uuid: String,
    pub boot_id: String,
}

impl Machine {
    pub fn read(data_dir: &Path) -> Machine {
        Machine {
            cpus: cpus(),
            memory: meminfo("MemTotal").unwrap_or(0),
            filesystem: filesystem(data_dir).map(|f| f.capacity).unwrap_or(0),
            kernel_version: kernel_release(),
            os_image: os_image(),
            machine_id: read_trimmed("/etc/machine-id"),
            system_uuid: read_trimmed("/sys/class/dmi/id/product_uuid"),
            boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
        }
    }
}

/// Online CPUs.
fn cpus() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 {
        n as u64
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get() as u64)
    }
}

/// A `/proc/meminfo` field, bytes.
pub fn meminfo(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb * 1024)
    })
}

/// A filesystem's size and what is free for unprivileged use, bytes.
#[derive(Debug, Clone, Copy)]
pub struct Filesystem {
    pub capacity: u64,
    pub available: u64,
}

/// The filesystem holding `path` (or its nearest existing ancestor).
pub fn filesystem(path: &Path) -> Option<Filesystem> {
    let existing = path.ancestors().find(|p| p.exists())?;
    let c_path = std::ffi::CString::new(existing.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct we own; the path is NUL-terminated.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) };
    if rc != 0 {
        return None;
    }
    let frsize = stat.f_frsize as u64;
    Some(Filesystem {
        capacity: stat.f_blocks as u64 * frsize,
        available: stat.f_bavail as u64 * frsize,
    })
}

fn kernel_release() -> String {
    read_trimmed("/proc/sys/kernel/osrelease")
}

/// `PRETTY_NAME` of os-release, as upstream's node info shows it.
fn os_image() -> String {
    let text = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".to_string())
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The architecture as Go names it (`GOARCH`), which is what the `kubernetes.io/arch` label
/// and images' platforms use.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// A byte count as upstream's kubelet writes it (a binary-SI quantity: `Ki` when it divides).
pub fn bytes_quantity(bytes: u64) -> String {
    if bytes > 0 && bytes.is_multiple_of(1024) {
        format!("{}Ki", bytes / 1024)
    } else {
        bytes.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_machine() {
        let m = Machine::read(Path::new("/tmp/does/not/exist"));
        assert!(m.cpus >= 1);
        assert!(m.memory > 0);
        assert!(m.filesystem > 0);
        assert!(!m.kernel_version.is_empty());
        assert!(meminfo("MemAvailable").is_some());
        assert_eq!(bytes_quantity(2048), "2Ki");
        assert_eq!(bytes_quantity(1000), "1000");
    }
}
