//! `/pods`: the pods bound to this node, as a v1 PodList (upstream serves its pod manager's
//! view; ours is the API server's, read with the kubelet's own client).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{header, StatusCode};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

use super::routes::Shared;

pub async fn list(State(shared): State<Shared>) -> Response {
    let ctx = &shared.ctx;
    let params = ListParams::default().fields(&format!("spec.nodeName={}", ctx.node_name));
    match Api::<Pod>::all(ctx.client.clone()).list(&params).await {
        Ok(list) => {
            let body = serde_json::json!({
                "kind": "PodList",
                "apiVersion": "v1",
                "metadata": {},
                "items": list.items,
            });
            (
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "kubelet API: listing the node's pods");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("failed to list pods: {e}"),
            )
                .into_response()
        }
    }
}
