//! `/containerLogs/{namespace}/{pod}/{container}`: a container's log as upstream's kubelet
//! serves it, with kubectl's options as query parameters (`follow` until the container exits,
//! `tailLines`, `sinceSeconds`/`sinceTime`, `timestamps`, `limitBytes`, `previous`), read by
//! [`crate::logs`] from the CRI log file of the container found by its labels.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::{header, StatusCode};
use k8s_openapi::jiff::Timestamp;

use super::query::Params;
use super::routes::Shared;
use crate::logs::{self, LogError};

/// The query's options: what to read, and whether the previous instance.
#[derive(Debug, Clone)]
struct LogRequest {
    options: logs::LogOptions,
    previous: bool,
}

impl LogRequest {
    fn parse(params: &Params, now: Timestamp) -> Result<LogRequest, String> {
        let number = |key: &str| -> Result<Option<i64>, String> {
            params
                .get(key)
                .map(|v| {
                    v.parse::<i64>()
                        .map_err(|_| format!("invalid value {v:?} for {key}"))
                })
                .transpose()
        };
        let mut since = None;
        if let Some(secs) = number("sinceSeconds")? {
            if secs < 1 {
                return Err("sinceSeconds: Invalid value: must be greater than 0".into());
            }
            since = Some(now - std::time::Duration::from_secs(secs as u64));
        }
        if let Some(t) = params.get("sinceTime") {
            since = Some(
                t.parse::<Timestamp>()
                    .map_err(|e| format!("invalid sinceTime {t:?}: {e}"))?,
            );
        }
        let non_negative = |v: Option<i64>, key: &str| -> Result<Option<u64>, String> {
            match v {
                Some(n) if n < 0 => Err(format!("{key}: Invalid value: must be non-negative")),
                other => Ok(other.map(|n| n as u64)),
            }
        };
        Ok(LogRequest {
            options: logs::LogOptions {
                tail_lines: non_negative(number("tailLines")?, "tailLines")?,
                since,
                timestamps: params.flag("timestamps"),
                limit_bytes: non_negative(number("limitBytes")?, "limitBytes")?,
                follow: params.flag("follow"),
            },
            previous: params.flag("previous"),
        })
    }
}

pub async fn container_logs(
    State(shared): State<Shared>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
) -> Response {
    let request = match LogRequest::parse(&Params::parse(raw.as_deref()), Timestamp::now()) {
        Ok(r) => r,
        Err(msg) => return (StatusCode::BAD_REQUEST, msg).into_response(),
    };
    let ctx = &shared.ctx;
    let found = logs::find(
        &ctx.cri,
        &ctx.layout,
        &namespace,
        &pod,
        &container,
        request.previous,
    )
    .await;
    let file = match found {
        Ok(file) => file,
        // Upstream's kubelet answers a container without a log with 400 and the reason.
        Err(e @ LogError::NotFound(_)) => {
            return (StatusCode::BAD_REQUEST, e.to_string()).into_response()
        }
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let stream = logs::read_container(&ctx.cri, &file, request.options);
    (
        [(header::CONTENT_TYPE, "text/plain")],
        Body::from_stream(stream),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_from_the_query() {
        let now: Timestamp = "2024-01-02T03:04:05Z".parse().unwrap();
        let p = Params::parse(Some(
            "follow=true&tailLines=3&sinceSeconds=10&timestamps=true&previous=1",
        ));
        let r = LogRequest::parse(&p, now).unwrap();
        assert!(r.options.follow && r.options.timestamps && r.previous);
        assert_eq!(r.options.tail_lines, Some(3));
        assert_eq!(
            r.options.since,
            Some("2024-01-02T03:03:55Z".parse().unwrap())
        );
        assert!(LogRequest::parse(&Params::parse(Some("tailLines=x")), now).is_err());
        assert!(LogRequest::parse(&Params::parse(Some("limitBytes=-1")), now).is_err());
        assert!(LogRequest::parse(&Params::parse(Some("sinceSeconds=0")), now).is_err());
    }
}
