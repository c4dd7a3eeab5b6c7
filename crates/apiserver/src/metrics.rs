//! `/metrics`: request counts and latencies by verb, resource and code, under upstream's metric
//! names so existing dashboards and alerts apply.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    verb: String,
    group: String,
    resource: String,
    subresource: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyLabels {
    verb: String,
    group: String,
    resource: String,
    subresource: String,
}

/// The labels one request is counted under.
#[derive(Debug, Clone, Default)]
pub struct RequestKind {
    /// Upstream's metric verbs: GET, LIST, WATCH, POST, PUT, PATCH, DELETE, or the method for
    /// non-resource paths.
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<LatencyLabels, Histogram, fn() -> Histogram>,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<LatencyLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        registry.register("apiserver_request", "Counter of apiserver requests broken out by verb, group, resource and HTTP response code", requests.clone());
        registry.register(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds for each verb, group and resource",
            latency.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
        }
    }

    pub fn observe(&self, kind: &RequestKind, code: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                verb: kind.verb.clone(),
                group: kind.group.clone(),
                resource: kind.resource.clone(),
                subresource: kind.subresource.clone(),
                code: code.to_string(),
            })
            .inc();
        // Watches last for minutes; upstream leaves them out of the latency histogram too.
        if kind.verb != "WATCH" {
            self.latency
                .get_or_create(&LatencyLabels {
                    verb: kind.verb.clone(),
                    group: kind.group.clone(),
                    resource: kind.resource.clone(),
                    subresource: kind.subresource.clone(),
                })
                .observe(seconds);
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding metrics");
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
