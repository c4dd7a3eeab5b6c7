//! `/containerLogs/{namespace}/{pod}/{container}`: a container's log as upstream's kubelet
//! serves it, read from the CRI log file the runtime writes (`<timestamp> <stream> <P|F>
//! <content>` per line, P for a partial line), with kubectl's options: `follow` (until the
//! container exits), `tailLines`, `sinceSeconds`/`sinceTime`, `timestamps`, `limitBytes` and
//! `previous` (the instance before the newest).

use std::io::SeekFrom;
use std::path::PathBuf;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{header, StatusCode};
use k8s_openapi::jiff::Timestamp;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

use super::lookup::{self, PodRef};
use super::query::Params;
use super::routes::Shared;
use crate::cri::{api, Cri};

/// How often a followed log whose end was reached looks for more and for the container's exit.
const FOLLOW_POLL: Duration = Duration::from_millis(250);

/// kubectl's PodLogOptions as query parameters.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<usize>,
    pub limit_bytes: Option<usize>,
    pub since: Option<Timestamp>,
}

impl LogOptions {
    fn parse(params: &Params, now: Timestamp) -> Result<LogOptions, String> {
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
        let non_negative = |v: Option<i64>, key: &str| -> Result<Option<usize>, String> {
            match v {
                Some(n) if n < 0 => Err(format!("{key}: Invalid value: must be non-negative")),
                other => Ok(other.map(|n| n as usize)),
            }
        };
        Ok(LogOptions {
            follow: params.flag("follow"),
            previous: params.flag("previous"),
            timestamps: params.flag("timestamps"),
            tail_lines: non_negative(number("tailLines")?, "tailLines")?,
            limit_bytes: non_negative(number("limitBytes")?, "limitBytes")?,
            since,
        })
    }
}

pub async fn container_logs(
    State(shared): State<Shared>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
) -> Response {
    let options = match LogOptions::parse(&Params::parse(raw.as_deref()), Timestamp::now()) {
        Ok(o) => o,
        Err(msg) => return (StatusCode::BAD_REQUEST, msg).into_response(),
    };
    let cri = &shared.ctx.cri;
    let pod_ref = PodRef {
        namespace: &namespace,
        name: &pod,
        uid: None,
    };
    let found = match lookup::containers(cri, &pod_ref, &container).await {
        Ok(found) => found,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let chosen = if options.previous {
        found.get(1)
    } else {
        found.first()
    };
    let Some(chosen) = chosen else {
        let msg = if options.previous {
            format!("previous terminated container {container:?} in pod {pod:?} not found")
        } else {
            format!("container {container:?} in pod {pod:?} is waiting to start: ContainerCreating")
        };
        return (StatusCode::BAD_REQUEST, msg).into_response();
    };
    let status = match cri.container_status(&chosen.id).await {
        Ok(s) => s,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    if status.log_path.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            format!("container {container:?} has no log"),
        )
            .into_response();
    }
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let reader = Reader {
        path: PathBuf::from(status.log_path),
        options,
        cri: cri.clone(),
        container_id: chosen.id.clone(),
        tx,
    };
    tokio::spawn(reader.run());
    (
        [(header::CONTENT_TYPE, "text/plain")],
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
        .into_response()
}

/// Streams one log file to a response body; ends when the client goes away.
struct Reader {
    path: PathBuf,
    options: LogOptions,
    cri: Cri,
    container_id: String,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
}

impl Reader {
    async fn run(self) {
        if let Err(e) = self.copy().await {
            let _ = self.tx.send(Err(e)).await;
        }
    }

    async fn copy(&self) -> std::io::Result<()> {
        let mut file = tokio::fs::File::open(&self.path).await?;
        let mut budget = self.options.limit_bytes.unwrap_or(usize::MAX);
        let mut content = Vec::new();
        file.read_to_end(&mut content).await?;
        // Only whole lines now; a line still being written is read when followed.
        let whole = content
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        let mut lines: Vec<&[u8]> = content[..whole].split_inclusive(|b| *b == b'\n').collect();
        if let Some(n) = self.options.tail_lines {
            lines.drain(..lines.len().saturating_sub(n));
        }
        if !self.send_lines(&lines, &mut budget).await {
            return Ok(());
        }
        if !self.options.follow {
            return Ok(());
        }
        let mut offset = whole as u64;
        let mut pending = Vec::new();
        loop {
            file.seek(SeekFrom::Start(offset)).await?;
            let mut fresh = Vec::new();
            file.read_to_end(&mut fresh).await?;
            offset += fresh.len() as u64;
            pending.extend_from_slice(&fresh);
            if let Some(end) = pending.iter().rposition(|b| *b == b'\n') {
                let rest = pending.split_off(end + 1);
                let lines: Vec<&[u8]> = pending.split_inclusive(|b| *b == b'\n').collect();
                if !self.send_lines(&lines, &mut budget).await {
                    return Ok(());
                }
                pending = rest;
            }
            if fresh.is_empty() {
                if !self.running().await {
                    return Ok(());
                }
                tokio::time::sleep(FOLLOW_POLL).await;
            }
        }
    }

    async fn running(&self) -> bool {
        self.cri
            .container_status(&self.container_id)
            .await
            .is_ok_and(|s| s.state == api::ContainerState::ContainerRunning as i32)
    }

    /// Sends the lines the options keep; false once the client is gone or the budget is spent.
    async fn send_lines(&self, lines: &[&[u8]], budget: &mut usize) -> bool {
        let mut out = Vec::new();
        for line in lines {
            let Some(entry) = parse_line(line) else {
                continue;
            };
            if self.options.since.is_some_and(|since| entry.time < since) {
                continue;
            }
            entry.write(&mut out, self.options.timestamps);
        }
        if out.is_empty() {
            return *budget > 0;
        }
        if out.len() > *budget {
            out.truncate(*budget);
        }
        *budget -= out.len();
        self.tx.send(Ok(Bytes::from(out))).await.is_ok() && *budget > 0
    }
}

/// One line of a CRI log file.
#[derive(Debug, PartialEq)]
struct Entry<'a> {
    time: Timestamp,
    raw_time: &'a [u8],
    partial: bool,
    content: &'a [u8],
}

impl Entry<'_> {
    fn write(&self, out: &mut Vec<u8>, timestamps: bool) {
        if timestamps {
            out.extend_from_slice(self.raw_time);
            out.push(b' ');
        }
        out.extend_from_slice(self.content);
        if !self.partial {
            out.push(b'\n');
        }
    }
}

/// `<RFC3339Nano> <stdout|stderr> <P|F> <content>\n`.
fn parse_line(line: &[u8]) -> Option<Entry<'_>> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let mut parts = line.splitn(4, |b| *b == b' ');
    let raw_time = parts.next()?;
    let _stream = parts.next()?;
    let tag = parts.next()?;
    let content = parts.next().unwrap_or_default();
    let time = std::str::from_utf8(raw_time).ok()?.parse().ok()?;
    Some(Entry {
        time,
        raw_time,
        partial: tag.split(|b| *b == b':').next() == Some(b"P"),
        content,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_lines() {
        let e = parse_line(b"2024-01-02T03:04:05.123456789Z stdout F hello world\n").unwrap();
        assert_eq!(e.content, b"hello world");
        assert!(!e.partial);
        let p = parse_line(b"2024-01-02T03:04:05Z stderr P part").unwrap();
        assert!(p.partial);
        let mut out = Vec::new();
        p.write(&mut out, false);
        e.write(&mut out, true);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "part2024-01-02T03:04:05.123456789Z hello world\n"
        );
        assert!(parse_line(b"garbage").is_none());
    }

    #[test]
    fn options_from_the_query() {
        let now: Timestamp = "2024-01-02T03:04:05Z".parse().unwrap();
        let p = Params::parse(Some(
            "follow=true&tailLines=3&sinceSeconds=10&timestamps=true",
        ));
        let o = LogOptions::parse(&p, now).unwrap();
        assert!(o.follow && o.timestamps && !o.previous);
        assert_eq!(o.tail_lines, Some(3));
        assert_eq!(o.since, Some("2024-01-02T03:03:55Z".parse().unwrap()));
        assert!(LogOptions::parse(&Params::parse(Some("tailLines=x")), now).is_err());
        assert!(LogOptions::parse(&Params::parse(Some("limitBytes=-1")), now).is_err());
    }
}
