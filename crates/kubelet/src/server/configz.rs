//! `/configz`: the kubelet's effective configuration as upstream's kubelet serves it,
//! `{"kubeletconfig": KubeletConfiguration}` (kubelet.config.k8s.io/v1beta1 field names, no
//! kind/apiVersion, durations in Go's format). Only what the kubelet API knows for certain is
//! listed: the listeners and certificates it was started with, its directories, and the fixed
//! policies of its modules (sync periods, authentication and authorization). The agent's
//! tunables (log rotation, eviction thresholds, maxPods) are not handed to the server, so they
//! are left out rather than shown as defaults that may not be in force.

use serde_json::{json, Value};

use super::Config;
use crate::context::NodeContext;

/// How long the delegated authenticator and authorizer cache a review (`component_base::delegated`).
const REVIEW_CACHE: &str = "10s";

/// The configuration document, built once at start.
pub fn document(ctx: &NodeContext, config: &Config) -> Value {
    let (address, port) = config
        .secure
        .map(|a| (a.ip().to_string(), a.port()))
        .unwrap_or_else(|| ("0.0.0.0".into(), 0));
    let (healthz_address, healthz_port) = config
        .healthz
        .map(|a| (a.ip().to_string(), a.port()))
        .unwrap_or_else(|| ("127.0.0.1".into(), 0));
    json!({"kubeletconfig": {
        "enableServer": config.secure.is_some(),
        "staticPodPath": ctx.layout.manifests_dir(),
        "podLogsDir": ctx.layout.pod_log_dir("", "", "").parent(),
        // Every pod worker resyncs this often; the runtime is relisted every second (PLEG).
        "syncFrequency": "10s",
        "address": address,
        "port": port,
        "readOnlyPort": config.read_only.map_or(0, |a| a.port()),
        "tlsCertFile": config.cert,
        "tlsPrivateKeyFile": config.key,
        "authentication": {
            "x509": {"clientCAFile": config.client_ca},
            "webhook": {"enabled": true, "cacheTTL": REVIEW_CACHE},
            "anonymous": {"enabled": false}
        },
        "authorization": {
            "mode": "Webhook",
            "webhook": {"cacheAuthorizedTTL": REVIEW_CACHE, "cacheUnauthorizedTTL": REVIEW_CACHE}
        },
        "healthzPort": healthz_port,
        "healthzBindAddress": healthz_address,
        "clusterDomain": "cluster.local",
        "cgroupDriver": "cgroupfs",
        "containerRuntimeEndpoint": format!("unix://{}", ctx.cri.socket().display()),
        "nodeStatusUpdateFrequency": "10s",
        "registerNode": true
    }})
}
