//! Prometheus metrics named as upstream's (`scheduler_schedule_attempts_total`,
//! `scheduler_pending_pods`, `scheduler_scheduling_attempt_duration_seconds`).
//!
//! [`Metrics`] is cheap to clone; register it once in the registry the `/metrics` endpoint
//! serves and hand a clone to [`crate::Config`].

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::queue::Lengths;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `scheduled`, `unschedulable` or `error`.
    pub result: String,
    pub profile: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// `active`, `backoff` or `unschedulable`.
    pub queue: String,
}

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

#[derive(Clone)]
pub struct Metrics {
    attempts: Family<ResultLabels, Counter>,
    durations: Family<ResultLabels, Histogram, fn() -> Histogram>,
    pending: Family<QueueLabels, Gauge>,
    leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            attempts: Family::default(),
            durations: Family::new_with_constructor(duration_histogram),
            pending: Family::default(),
            leader: Gauge::default(),
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("scheduler");
        r.register(
            "schedule_attempts",
            "Number of attempts to schedule pods, by the result.",
            self.attempts.clone(),
        );
        r.register(
            "scheduling_attempt_duration_seconds",
            "Scheduling attempt latency in seconds (scheduling algorithm + binding).",
            self.durations.clone(),
        );
        r.register(
            "pending_pods",
            "Number of pending pods, by the queue type.",
            self.pending.clone(),
        );
        r.register(
            "leader",
            "1 while this scheduler holds the leader lease (or runs without election).",
            self.leader.clone(),
        );
    }

    pub fn attempt(&self, result: &str, profile: &str, seconds: f64) {
        let labels = ResultLabels {
            result: result.into(),
            profile: profile.into(),
        };
        self.attempts.get_or_create(&labels).inc();
        self.durations.get_or_create(&labels).observe(seconds);
    }

    pub fn queue(&self, l: Lengths) {
        for (queue, n) in [
            ("active", l.active),
            ("backoff", l.backoff),
            ("unschedulable", l.unschedulable),
        ] {
            self.pending
                .get_or_create(&QueueLabels {
                    queue: queue.into(),
                })
                .set(n as i64);
        }
    }

    pub fn leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Attempts so far with this result (for tests and benchmarks).
    pub fn attempts(&self, result: &str, profile: &str) -> u64 {
        self.attempts
            .get_or_create(&ResultLabels {
                result: result.into(),
                profile: profile.into(),
            })
            .get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_names_as_upstream() {
        let m = Metrics::default();
        let mut reg = Registry::default();
        m.register(&mut reg);
        m.attempt("scheduled", "default-scheduler", 0.01);
        m.queue(Lengths::default());
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &reg).unwrap();
        assert!(out.contains("scheduler_schedule_attempts_total{result=\"scheduled\",profile=\"default-scheduler\"} 1"), "{out}");
        assert!(out.contains("scheduler_pending_pods"));
        assert_eq!(m.attempts("scheduled", "default-scheduler"), 1);
    }
}
