//! `/healthz`, `/livez`, `/readyz` (with `?verbose` and per-check paths, in upstream's format) and
//! `/version`.

use axum::response::Response;
use bytes::Bytes;
use http::StatusCode;
use serde_json::json;

use crate::content;
use crate::storage::DynStore;

/// The Kubernetes version krust serves.
pub const KUBERNETES_VERSION: &str = "v1.33.0+krust";

/// Checks shared by every endpoint; `readyz` adds `shutdown` like upstream.
const CHECKS: &[&str] = &["ping", "log", "etcd"];

async fn check(name: &str, store: &DynStore) -> bool {
    match name {
        "etcd" => store.status().await.is_ok(),
        _ => true,
    }
}

/// Answers health paths; None for other paths.
pub async fn serve(path: &str, query: Option<&str>, store: &DynStore) -> Option<Response> {
    let mut parts = path.trim_matches('/').splitn(2, '/');
    let endpoint = parts.next()?;
    if !matches!(endpoint, "healthz" | "livez" | "readyz") {
        return None;
    }
    let mut checks: Vec<&str> = CHECKS.to_vec();
    if endpoint == "readyz" {
        checks.push("shutdown");
    }
    if let Some(single) = parts.next() {
        if !checks.contains(&single) {
            return Some(text(StatusCode::NOT_FOUND, "404 page not found\n".into()));
        }
        return Some(match check(single, store).await {
            true => text(StatusCode::OK, "ok".into()),
            false => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("internal server error: {single} check failed\n"),
            ),
        });
    }
    let verbose = query.is_some_and(|q| {
        q.split('&')
            .any(|kv| kv == "verbose" || kv.starts_with("verbose="))
    });
    let mut lines = String::new();
    let mut ok = true;
    for name in checks {
        if check(name, store).await {
            lines.push_str(&format!("[+]{name} ok\n"));
        } else {
            ok = false;
            lines.push_str(&format!("[-]{name} failed: reason withheld\n"));
        }
    }
    let verdict = if ok { "passed" } else { "failed" };
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    Some(match (verbose || !ok, ok) {
        (false, true) => text(code, "ok".into()),
        _ => text(code, format!("{lines}{endpoint} check {verdict}\n")),
    })
}

fn text(code: StatusCode, body: String) -> Response {
    content::raw(code, Bytes::from(body), "text/plain; charset=utf-8")
}

pub fn version() -> Response {
    let v = json!({
        "major": "1", "minor": "33",
        "emulationMajor": "1", "emulationMinor": "33",
        "minCompatibilityMajor": "1", "minCompatibilityMinor": "32",
        "gitVersion": KUBERNETES_VERSION,
        "gitCommit": env!("CARGO_PKG_VERSION"),
        "gitTreeState": "clean",
        "buildDate": "2025-04-23T00:00:00Z",
        "goVersion": "rustc",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
    });
    content::respond(StatusCode::OK, &v, content::Output::Json)
}

/// Go's GOARCH names, which clients print.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}
