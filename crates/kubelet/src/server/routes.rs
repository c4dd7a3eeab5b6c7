//! Which paths each port serves. The secure port serves everything behind [`auth::guard`];
//! the read-only port only what upstream's does (`/pods`, `/healthz`, `/metrics`,
//! `/metrics/resource`, `/metrics/cadvisor`, `/stats/summary`, `/spec`); the healthz
//! port only `/healthz`. `/configz` and `/logs/` are the secure port's alone.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use component_base::delegated::Delegated;
use http::{header, StatusCode};

use super::auth::{self, Auth};
use super::metrics::{self, Metrics};
use super::{configz, logs, node_logs, pods, spec, streaming, Config};
use crate::context::NodeContext;

/// What every handler shares.
#[derive(Clone)]
pub struct Shared {
    pub ctx: Arc<NodeContext>,
    pub metrics: Arc<Metrics>,
    auth: Arc<Auth>,
    /// `/configz`'s document, fixed at start.
    configz: Arc<serde_json::Value>,
}

impl Shared {
    pub fn new(ctx: Arc<NodeContext>, config: &Config) -> Shared {
        let auth = Arc::new(Auth {
            delegated: Delegated::new(ctx.client.clone()),
            node_name: ctx.node_name.clone(),
        });
        Shared {
            metrics: Arc::new(Metrics::new(&ctx.node_name)),
            configz: Arc::new(configz::document(&ctx, config)),
            ctx,
            auth,
        }
    }
}

async fn healthz() -> &'static str {
    "ok"
}

async fn prometheus(State(shared): State<Shared>) -> Response {
    shared.metrics.encode()
}

/// `/metrics/resource`: what metrics-server scrapes (node, pod and container CPU and memory).
async fn resource_metrics(State(shared): State<Shared>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::stats::resource_metrics(&shared.ctx).await,
    )
        .into_response()
}

const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `/metrics/cadvisor`: the containers' CPU, memory and filesystem usage with cAdvisor's names.
async fn cadvisor_metrics(State(shared): State<Shared>) -> Response {
    (
        [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
        crate::stats::cadvisor_metrics(&shared.ctx).await,
    )
        .into_response()
}

/// `/configz`: the effective KubeletConfiguration.
async fn configz(State(shared): State<Shared>) -> Response {
    axum::Json(shared.configz.as_ref().clone()).into_response()
}

/// `/spec/`: cAdvisor's MachineInfo.
async fn spec(State(shared): State<Shared>) -> Response {
    let root = shared.ctx.layout.root();
    let data_dir = root.parent().unwrap_or(&root).to_path_buf();
    let info = tokio::task::spawn_blocking(move || spec::machine_info(&data_dir)).await;
    match info {
        Ok(info) => axum::Json(info).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// `/logs/PATH`: the node's log files.
async fn node_log(axum::extract::OriginalUri(uri): axum::extract::OriginalUri) -> Response {
    let rest = uri.path().strip_prefix("/logs").unwrap_or("");
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    if uri.path() == "/logs" {
        return (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, "logs/")]).into_response();
    }
    node_logs::serve(std::path::Path::new(node_logs::LOG_DIR), rest).await
}

/// `/stats/summary`: the node's and its pods' usage in upstream's Summary shape
/// (`?only_cpu_and_memory=true`: the cheaper subset metrics-server asks for).
async fn stats_summary(State(shared): State<Shared>, RawQuery(raw): RawQuery) -> Response {
    let only_cpu_and_memory =
        super::query::Params::parse(raw.as_deref()).flag("only_cpu_and_memory");
    match crate::stats::summary(&shared.ctx).await {
        Ok(summary) if only_cpu_and_memory => {
            axum::Json(summary.only_cpu_and_memory()).into_response()
        }
        Ok(summary) => axum::Json(summary).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Internal Error: failed to get node info: {e}"),
        )
            .into_response(),
    }
}

/// What both the secure and the read-only port serve.
fn common() -> Router<Shared> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/pods", get(pods::list))
        .route("/pods/", get(pods::list))
        .route("/metrics", get(prometheus))
        .route("/metrics/resource", get(resource_metrics))
        .route("/metrics/cadvisor", get(cadvisor_metrics))
        .route("/stats/summary", get(stats_summary))
        .route("/stats/summary/", get(stats_summary))
        .route("/spec", get(spec))
        .route("/spec/", get(spec))
}

pub fn secure(shared: Shared) -> Router {
    let counted = (shared.metrics.clone(), "readwrite");
    common()
        .route("/configz", get(configz))
        .route("/logs", get(node_log))
        .route("/logs/", get(node_log))
        .route("/logs/{*path}", get(node_log))
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(logs::container_logs),
        )
        .route("/exec/{namespace}/{pod}/{container}", any(streaming::exec))
        .route(
            "/exec/{namespace}/{pod}/{uid}/{container}",
            any(streaming::exec_uid),
        )
        .route(
            "/attach/{namespace}/{pod}/{container}",
            any(streaming::attach),
        )
        .route(
            "/attach/{namespace}/{pod}/{uid}/{container}",
            any(streaming::attach_uid),
        )
        .route(
            "/portForward/{namespace}/{pod}",
            any(streaming::port_forward),
        )
        .route(
            "/portForward/{namespace}/{pod}/{uid}",
            any(streaming::port_forward_uid),
        )
        .route("/run/{namespace}/{pod}/{container}", post(streaming::run))
        .route(
            "/run/{namespace}/{pod}/{uid}/{container}",
            post(streaming::run_uid),
        )
        .layer(axum::middleware::from_fn_with_state(
            shared.auth.clone(),
            auth::guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            counted,
            metrics::count,
        ))
        .with_state(shared)
}

pub fn read_only(shared: Shared) -> Router {
    let counted = (shared.metrics.clone(), "readonly");
    common()
        .layer(axum::middleware::from_fn_with_state(
            counted,
            metrics::count,
        ))
        .with_state(shared)
}

pub fn healthz_only() -> Router {
    Router::new().route("/healthz", get(healthz))
}
