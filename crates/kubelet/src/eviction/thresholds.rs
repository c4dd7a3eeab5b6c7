//! Eviction signals and thresholds as upstream's kubelet takes them (`--eviction-hard`,
//! `--eviction-soft`, `--eviction-soft-grace-period`): `SIGNAL<QUANTITY` or `SIGNAL<PERCENT%`,
//! a soft threshold met only after its grace period.

use std::collections::BTreeMap;
use std::time::Duration;

/// What the eviction manager watches (upstream's `evictionapi.Signal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Signal {
    MemoryAvailable,
    NodeFsAvailable,
    NodeFsInodesFree,
    ImageFsAvailable,
    ImageFsInodesFree,
    PidAvailable,
}

/// The node condition a met threshold of a signal sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    MemoryPressure,
    DiskPressure,
    PidPressure,
}

impl Signal {
    pub const ALL: [Signal; 6] = [
        Signal::MemoryAvailable,
        Signal::NodeFsAvailable,
        Signal::NodeFsInodesFree,
        Signal::ImageFsAvailable,
        Signal::ImageFsInodesFree,
        Signal::PidAvailable,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory.available",
            Signal::NodeFsAvailable => "nodefs.available",
            Signal::NodeFsInodesFree => "nodefs.inodesFree",
            Signal::ImageFsAvailable => "imagefs.available",
            Signal::ImageFsInodesFree => "imagefs.inodesFree",
            Signal::PidAvailable => "pid.available",
        }
    }

    fn parse(name: &str) -> Option<Signal> {
        Signal::ALL.into_iter().find(|s| s.name() == name)
    }

    pub fn condition(self) -> Condition {
        match self {
            Signal::MemoryAvailable => Condition::MemoryPressure,
            Signal::PidAvailable => Condition::PidPressure,
            _ => Condition::DiskPressure,
        }
    }

    /// The resource named in eviction messages (upstream's `signalToResource`).
    pub fn resource(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory",
            Signal::NodeFsAvailable | Signal::ImageFsAvailable => "ephemeral-storage",
            Signal::NodeFsInodesFree | Signal::ImageFsInodesFree => "inodes",
            Signal::PidAvailable => "pids",
        }
    }

    /// Whether the signal counts bytes (printed as quantities) rather than things.
    pub fn is_bytes(self) -> bool {
        matches!(
            self,
            Signal::MemoryAvailable | Signal::NodeFsAvailable | Signal::ImageFsAvailable
        )
    }
}

/// A threshold's value: an amount, or a share of the signal's capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Quantity(u64),
    Percent(f64),
}

impl Value {
    /// The amount for a resource of `capacity`.
    pub fn amount(self, capacity: u64) -> u64 {
        match self {
            Value::Quantity(q) => q,
            Value::Percent(p) => (capacity as f64 * p / 100.0) as u64,
        }
    }
}

/// One threshold: the signal is met while what is available is below the value; a soft
/// threshold (with a grace period) must stay met that long first.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    pub signal: Signal,
    pub value: Value,
    pub grace_period: Option<Duration>,
}

impl Threshold {
    pub fn is_hard(&self) -> bool {
        self.grace_period.is_none()
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ThresholdError {
    #[error("{0:?} is not SIGNAL<VALUE")]
    Statement(String),
    #[error("unsupported eviction signal {0:?}")]
    Signal(String),
    #[error("{0:?} is neither a quantity nor a percentage")]
    Value(String),
    #[error("invalid grace period {0:?}")]
    GracePeriod(String),
    #[error("grace period must be specified for the soft eviction threshold {0}")]
    MissingGracePeriod(&'static str),
}

/// `--eviction-hard`, `--eviction-soft` and `--eviction-soft-grace-period` as one list.
pub fn parse(hard: &str, soft: &str, soft_grace: &str) -> Result<Vec<Threshold>, ThresholdError> {
    let mut out = statements(hard)?;
    let graces = grace_periods(soft_grace)?;
    for mut t in statements(soft)? {
        let grace = graces
            .get(&t.signal)
            .ok_or(ThresholdError::MissingGracePeriod(t.signal.name()))?;
        t.grace_period = Some(*grace);
        out.push(t);
    }
    Ok(out)
}

/// `SIGNAL<VALUE,...` (an empty string is no threshold).
pub fn statements(s: &str) -> Result<Vec<Threshold>, ThresholdError> {
    let mut out: Vec<Threshold> = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (signal, value) = item
            .split_once('<')
            .ok_or_else(|| ThresholdError::Statement(item.into()))?;
        let signal =
            Signal::parse(signal.trim()).ok_or_else(|| ThresholdError::Signal(signal.into()))?;
        let value = parse_value(value.trim()).ok_or_else(|| ThresholdError::Value(value.into()))?;
        out.retain(|t| t.signal != signal);
        out.push(Threshold {
            signal,
            value,
            grace_period: None,
        });
    }
    Ok(out)
}

/// `SIGNAL=DURATION,...` (`1m30s`, `90s`, `500ms`).
fn grace_periods(s: &str) -> Result<BTreeMap<Signal, Duration>, ThresholdError> {
    let mut out = BTreeMap::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (signal, value) = item
            .split_once('=')
            .ok_or_else(|| ThresholdError::GracePeriod(item.into()))?;
        let signal =
            Signal::parse(signal.trim()).ok_or_else(|| ThresholdError::Signal(signal.into()))?;
        let d =
            go_duration(value.trim()).ok_or_else(|| ThresholdError::GracePeriod(item.into()))?;
        out.insert(signal, d);
    }
    Ok(out)
}

/// A Go duration string of h/m/s/ms parts.
pub fn go_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .filter(|i| *i > 0)?;
        let n: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return None,
        };
        total += Duration::from_secs_f64(n * secs);
        rest = &rest[unit_len..];
    }
    Some(total)
}

fn parse_value(value: &str) -> Option<Value> {
    if let Some(p) = value.strip_suffix('%') {
        let p: f64 = p.parse().ok()?;
        return (0.0..=100.0).contains(&p).then_some(Value::Percent(p));
    }
    let units = [
        ("Ki", 1u64 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    for (suffix, factor) in units {
        if let Some(n) = value.strip_suffix(suffix) {
            return n.parse::<u64>().ok().map(|n| Value::Quantity(n * factor));
        }
    }
    value.parse().ok().map(Value::Quantity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hard_and_soft_thresholds() {
        let t = parse(
            "memory.available<100Mi,nodefs.available<5%,pid.available<1k",
            "memory.available<300Mi",
            "memory.available=1m30s",
        )
        .unwrap();
        assert_eq!(t.len(), 4);
        assert_eq!(t[0].value, Value::Quantity(100 << 20));
        assert_eq!(t[1].value, Value::Percent(5.0));
        assert_eq!(t[2].value, Value::Quantity(1000));
        assert_eq!(t[3].grace_period, Some(Duration::from_secs(90)));
        assert!(t[0].is_hard() && !t[3].is_hard());
    }

    #[test]
    fn refuses_what_upstream_refuses() {
        assert_eq!(
            parse("", "memory.available<1Gi", ""),
            Err(ThresholdError::MissingGracePeriod("memory.available"))
        );
        assert!(matches!(
            statements("cpu.available<1"),
            Err(ThresholdError::Signal(_))
        ));
        assert!(matches!(
            statements("memory.available<lots"),
            Err(ThresholdError::Value(_))
        ));
        assert!(matches!(
            statements("memory.available>1"),
            Err(ThresholdError::Statement(_))
        ));
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(go_duration("1h2m3s"), Some(Duration::from_secs(3723)));
        assert_eq!(go_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(go_duration("5x"), None);
    }
}
