//! The health paths, answered as upstream's healthz handlers do: `ok` with 200 when healthy,
//! 500 otherwise.

use std::sync::Arc;

/// Whether the component is healthy, asked on every health request.
pub type Health = Arc<dyn Fn() -> bool + Send + Sync>;

/// The paths anyone may read, on both ports.
pub const PATHS: [&str; 3] = ["/healthz", "/livez", "/readyz"];

pub fn is_health_path(path: &str) -> bool {
    PATHS.contains(&path)
}

/// Status and body of a health request.
pub fn answer(health: &Health) -> (http::StatusCode, String) {
    if health() {
        (http::StatusCode::OK, "ok".into())
    } else {
        (
            http::StatusCode::INTERNAL_SERVER_ERROR,
            "healthz check failed\n".into(),
        )
    }
}
