//! Memory and CPU time of the node's processes from /proc: the krust server, the containerd it
//! runs as its child, and the containerd shims of the pods (upstream counts the shims under the
//! runtime). CPU time includes waited-for children: the CNI plugins and the iptables they run
//! count under containerd, runc under the shims.

use std::path::Path;

/// Resident and proportional set sizes in KiB (PSS splits pages shared between processes, such
/// as the shims' common binary, among them: a sum of RSS counts those pages once per process).
#[derive(Debug, Clone, Copy, Default)]
pub struct Mem {
    pub rss_kib: u64,
    pub pss_kib: u64,
    pub processes: usize,
    /// User and system CPU seconds, the process's and its waited-for children's.
    pub cpu_secs: f64,
}

impl Mem {
    fn add(&mut self, other: Mem) {
        self.rss_kib += other.rss_kib;
        self.pss_kib += other.pss_kib;
        self.processes += other.processes;
        self.cpu_secs += other.cpu_secs;
    }
}

/// One sample of the node's memory.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub server: Mem,
    pub containerd: Mem,
    pub shims: Mem,
}

pub fn of_pid(pid: u32) -> Mem {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let rss_kib = field(&status, "VmRSS:");
    if rss_kib == 0 {
        return Mem::default();
    }
    Mem {
        rss_kib,
        pss_kib: field(&rollup, "Pss:"),
        processes: 1,
        cpu_secs: cpu_secs(pid),
    }
}

/// utime + stime + cutime + cstime from /proc/PID/stat, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some(close) = stat.rfind(')') else {
        return 0.0;
    };
    // Fields after comm start at field 3 (state); utime..cstime are fields 14..17.
    let ticks: u64 = stat[close + 1..]
        .split_whitespace()
        .skip(11)
        .take(4)
        .filter_map(|t| t.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    ticks as f64 / hz as f64
}

fn field(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The server, its containerd and every shim whose command line names the data dir.
pub fn sample(server_pid: u32, data_dir: &Path) -> Sample {
    let dir = data_dir.to_string_lossy();
    let mut out = Sample {
        server: of_pid(server_pid),
        ..Default::default()
    };
    for pid in pids() {
        let (comm, ppid) = comm_and_ppid(pid);
        if comm == "containerd" && ppid == server_pid {
            out.containerd.add(of_pid(pid));
        } else if comm.starts_with("containerd-shim") && cmdline(pid).contains(dir.as_ref()) {
            out.shims.add(of_pid(pid));
        }
    }
    out
}

/// Processes whose command line mentions `needle` (containerd and the shims of a data dir), and
/// the direct children of those shims (the containers' first processes, which a killed shim
/// would leave running), children first.
pub fn pids_mentioning(needle: &str) -> Vec<u32> {
    let all = pids();
    let mentioning: Vec<u32> = all
        .iter()
        .copied()
        .filter(|p| *p != std::process::id() && cmdline(*p).contains(needle))
        .collect();
    let mut out: Vec<u32> = all
        .iter()
        .copied()
        .filter(|p| mentioning.contains(&comm_and_ppid(*p).1))
        .filter(|p| !mentioning.contains(p))
        .collect();
    out.extend(mentioning);
    out
}

fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// `comm` and the parent PID from /proc/PID/stat (comm is in parentheses and may hold spaces).
fn comm_and_ppid(pid: u32) -> (String, u32) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
        return (String::new(), 0);
    };
    let comm = stat[open + 1..close].to_string();
    let ppid = stat[close + 1..]
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    (comm, ppid)
}

/// Mebibytes, the unit upstream's node limits (200 MiB, 300 MiB) are given in.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
