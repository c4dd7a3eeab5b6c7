//! The node's own figures from /proc and statvfs, as upstream's kubelet gets them from its root
//! cgroup through cAdvisor: CPU time of all cores, memory working set (usage less inactive file
//! pages), the host's network interfaces, the filesystems of the kubelet's directory and of the
//! runtime's images, and the process limit.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use super::types::*;

/// The last CPU sample, so usageNanoCores is a rate over the time since the last scrape.
static LAST_CPU: Mutex<Option<(Instant, u64)>> = Mutex::new(None);

/// CPU time of all cores in nanoseconds: every /proc/stat column but idle and iowait.
pub fn cpu_usage_nanos() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is inside user already)
    let busy: u64 = fields
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum();
    Some(busy.saturating_mul(1_000_000_000) / clock_ticks())
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}

pub fn cpu() -> Option<CpuStats> {
    let now = Instant::now();
    let total = cpu_usage_nanos()?;
    let mut last = LAST_CPU.lock().unwrap_or_else(|e| e.into_inner());
    let rate = last.and_then(|(at, before)| {
        let elapsed = now.duration_since(at).as_nanos();
        (elapsed > 0 && total >= before)
            .then(|| ((total - before) as u128 * 1_000_000_000 / elapsed) as u64)
    });
    *last = Some((now, total));
    Some(CpuStats {
        time: Time::now(),
        usage_nano_cores: rate,
        usage_core_nano_seconds: Some(total),
    })
}

fn key_values(path: &str) -> HashMap<String, u64> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let key = parts.next()?.trim_end_matches(':').to_string();
            let value: u64 = parts.next()?.parse().ok()?;
            let unit = parts.next();
            Some((
                key,
                if unit == Some("kB") {
                    value * 1024
                } else {
                    value
                },
            ))
        })
        .collect()
}

pub fn memory() -> Option<MemoryStats> {
    let info = key_values("/proc/meminfo");
    let total = *info.get("MemTotal")?;
    let usage = total.saturating_sub(*info.get("MemFree")?);
    let inactive_file = info.get("Inactive(file)").copied().unwrap_or(0);
    let working_set = usage.saturating_sub(inactive_file);
    let vmstat = key_values("/proc/vmstat");
    Some(MemoryStats {
        time: Time::now(),
        available_bytes: Some(total.saturating_sub(working_set)),
        usage_bytes: Some(usage),
        working_set_bytes: Some(working_set),
        rss_bytes: info.get("AnonPages").copied(),
        page_faults: vmstat.get("pgfault").copied(),
        major_page_faults: vmstat.get("pgmajfault").copied(),
    })
}

/// Interfaces in a `/proc/<pid>/net/dev`, without loopback and the pods' veth ends.
pub fn interfaces(net_dev: &Path) -> Vec<InterfaceStats> {
    let text = std::fs::read_to_string(net_dev).unwrap_or_default();
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, counters) = line.split_once(':')?;
            let name = name.trim();
            if name == "lo" || name.starts_with("veth") {
                return None;
            }
            let c: Vec<u64> = counters
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            (c.len() >= 11).then(|| InterfaceStats {
                name: name.to_string(),
                rx_bytes: Some(c[0]),
                rx_errors: Some(c[2]),
                tx_bytes: Some(c[8]),
                tx_errors: Some(c[10]),
            })
        })
        .collect()
}

/// Network figures with `default` (if present, else the first interface) inline.
pub fn network(interfaces: Vec<InterfaceStats>, default: Option<&str>) -> Option<NetworkStats> {
    let first = default
        .and_then(|d| interfaces.iter().find(|i| i.name == d))
        .or(interfaces.first())?
        .clone();
    Some(NetworkStats {
        time: Time::now(),
        default: first,
        interfaces,
    })
}

/// The interface of the default route, from /proc/net/route.
pub fn default_interface() -> Option<String> {
    let routes = std::fs::read_to_string("/proc/net/route").ok()?;
    routes.lines().skip(1).find_map(|l| {
        let mut f = l.split_whitespace();
        let name = f.next()?;
        (f.next()? == "00000000").then(|| name.to_string())
    })
}

/// Capacity, free space and inodes of the filesystem holding `path` (or its nearest existing
/// ancestor).
pub fn filesystem(path: &Path) -> Option<FsStats> {
    let existing = path.ancestors().find(|p| p.exists())?;
    let c_path = std::ffi::CString::new(existing.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct we own; the path is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let frsize = st.f_frsize as u64;
    let inodes = st.f_files as u64;
    let inodes_free = st.f_ffree as u64;
    Some(FsStats {
        time: Time::now(),
        available_bytes: Some(st.f_bavail as u64 * frsize),
        capacity_bytes: Some(st.f_blocks as u64 * frsize),
        used_bytes: Some((st.f_blocks as u64).saturating_sub(st.f_bfree as u64) * frsize),
        inodes_free: Some(inodes_free),
        inodes: Some(inodes),
        inodes_used: Some(inodes.saturating_sub(inodes_free)),
    })
}

pub fn rlimit() -> RlimitStats {
    let maxpid = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok());
    // SAFETY: sysinfo fills the zeroed struct we own.
    let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
    let curproc = (unsafe { libc::sysinfo(&mut info) } == 0).then_some(i64::from(info.procs));
    RlimitStats {
        time: Time::now(),
        maxpid,
        curproc,
    }
}

/// When the machine booted (/proc/stat's btime).
pub fn boot_time() -> Time {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    stat.lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<i64>().ok())
        .map(|s| Time::from_nanos(s.saturating_mul(1_000_000_000)))
        .unwrap_or_default()
}

/// The agent's own process as upstream's "kubelet" system container.
pub fn kubelet_container() -> Option<ContainerStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command's closing parenthesis: utime is the 14th field overall.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let start_ticks: u64 = f.get(19)?.parse().ok()?;
    let status = key_values("/proc/self/status");
    let rss = status.get("VmRSS").copied();
    let boot = boot_time();
    let start_nanos =
        boot.0.as_nanosecond() + i128::from(start_ticks * 1_000_000_000 / clock_ticks());
    Some(ContainerStats {
        name: "kubelet".into(),
        start_time: Time::from_nanos(start_nanos as i64),
        cpu: Some(CpuStats {
            time: Time::now(),
            usage_nano_cores: None,
            usage_core_nano_seconds: Some(ticks * 1_000_000_000 / clock_ticks()),
        }),
        memory: Some(MemoryStats {
            time: Time::now(),
            usage_bytes: rss,
            working_set_bytes: rss,
            rss_bytes: rss,
            ..Default::default()
        }),
        rootfs: None,
        logs: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine() {
        let first = cpu().unwrap();
        assert!(first.usage_core_nano_seconds.unwrap() > 0);
        assert!(
            cpu().unwrap().usage_nano_cores.is_some(),
            "rate from the second sample"
        );
        let mem = memory().unwrap();
        assert!(mem.working_set_bytes.unwrap() > 0);
        let fs = filesystem(Path::new("/tmp/surely/not/here")).unwrap();
        assert!(fs.capacity_bytes.unwrap() > 0);
        assert!(rlimit().maxpid.unwrap() > 0);
        assert!(boot_time() > Time::default());
        let me = kubelet_container().unwrap();
        assert!(me.memory.unwrap().working_set_bytes.unwrap() > 0);
        assert!(me.start_time > boot_time());
    }
}
