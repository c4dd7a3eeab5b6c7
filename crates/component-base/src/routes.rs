//! The responses both ports share: health, metrics, not found, and plain-text errors.

use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body_util::Full;
use prometheus_client::registry::Registry;

use crate::health::{self, Health};

pub type Body = Full<Bytes>;

/// Serves the health paths and `/metrics`; anything else is 404. Callers check access first.
pub fn serve(path: &str, registry: &Registry, health: &Health) -> Response<Body> {
    if health::is_health_path(path) {
        let (status, body) = health::answer(health);
        return text(status, body);
    }
    if path == "/metrics" {
        return metrics(registry);
    }
    text(StatusCode::NOT_FOUND, "404 page not found\n".into())
}

fn metrics(registry: &Registry) -> Response<Body> {
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, registry) {
        tracing::warn!(error = %e, "cannot encode metrics");
        return text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"));
    }
    response(
        StatusCode::OK,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        out,
    )
}

/// A plain-text response, as upstream's component servers write their errors.
pub fn text(status: StatusCode, body: String) -> Response<Body> {
    response(status, "text/plain; charset=utf-8", body)
}

fn response(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    res.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    res
}
