//! Which paths each port serves. The secure port serves everything behind [`auth::guard`];
//! the read-only port only what upstream's does (`/pods`, `/healthz`, `/metrics`,
//! `/metrics/resource`, `/stats/summary`); the healthz
//! port only `/healthz`.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use component_base::delegated::Delegated;
use http::{header, StatusCode};

use super::auth::{self, Auth};
use super::metrics::{self, Metrics};
use super::{logs, pods, streaming};
use crate::context::NodeContext;

/// What every handler shares.
#[derive(Clone)]
pub struct Shared {
    pub ctx: Arc<NodeContext>,
    pub metrics: Arc<Metrics>,
    auth: Arc<Auth>,
}

impl Shared {
    pub fn new(ctx: Arc<NodeContext>) -> Shared {
        let auth = Arc::new(Auth {
            delegated: Delegated::new(ctx.client.clone()),
            node_name: ctx.node_name.clone(),
        });
        Shared {
            metrics: Arc::new(Metrics::new(&ctx.node_name)),
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
        .route("/stats/summary", get(stats_summary))
        .route("/stats/summary/", get(stats_summary))
}

pub fn secure(shared: Shared) -> Router {
    let counted = (shared.metrics.clone(), "readwrite");
    common()
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
