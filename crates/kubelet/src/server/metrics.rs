//! `/metrics`: the kubelet's own Prometheus metrics, named as upstream's
//! (`kubelet_node_name`, `kubelet_http_requests_total`).

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{header, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    /// The first path segment, as upstream (`pods`, `containerLogs`, `exec`, ...).
    path: String,
    server_type: String,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
}

impl Metrics {
    pub fn new(node_name: &str) -> Metrics {
        let mut registry = Registry::default();
        let node = Family::<NodeLabels, Gauge>::default();
        node.get_or_create(&NodeLabels {
            node: node_name.to_string(),
        })
        .set(1);
        registry.register(
            "kubelet_node_name",
            "The node's name. The count is always 1.",
            node,
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "kubelet_http_requests",
            "Number of the http requests received since the server started",
            requests.clone(),
        );
        Metrics { registry, requests }
    }

    pub fn encode(&self) -> Response {
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::warn!(error = %e, "kubelet API: encoding metrics");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response()
    }

    fn count(&self, method: &str, path: &str, server_type: &str) {
        let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_string(),
                path: first.to_string(),
                server_type: server_type.to_string(),
            })
            .inc();
    }
}

/// Counts every request of a port (`readwrite` for 10250, `readonly` for 10255).
pub async fn count(
    State((metrics, server_type)): State<(Arc<Metrics>, &'static str)>,
    req: Request,
    next: Next,
) -> Response {
    metrics.count(req.method().as_str(), req.uri().path(), server_type);
    next.run(req).await
}
