//! The audit log (`--audit-log PATH`): one `audit.k8s.io/v1` Event per request, at upstream's
//! `Metadata` level, as a JSON line. Who asked, what for, and the response code: never request
//! or response bodies, and never credentials (the Authorization header is not read here).
//!
//! Requests never wait for the disk: events go through a bounded channel to one writer task; when
//! the disk falls that far behind, events are dropped and counted rather than slowing the API.

use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::authn::UserInfo;
use crate::request::RequestInfo;

/// Events waiting for the writer before new ones are dropped.
const BACKLOG: usize = 10_000;

#[derive(Debug, Error)]
#[error("opening the audit log {path}: {source}")]
pub struct AuditError {
    path: String,
    source: std::io::Error,
}

/// The sending end; cheap to use from every request.
pub struct AuditLog {
    tx: mpsc::Sender<Vec<u8>>,
    dropped: AtomicU64,
}

/// What the dispatcher knows about a request once it has been answered.
pub struct Record<'a> {
    pub received: time::OffsetDateTime,
    pub uri: &'a str,
    pub method: &'a str,
    /// The resource request, when the path named one.
    pub info: Option<&'a RequestInfo>,
    /// None when credentials were presented and rejected.
    pub user: Option<&'a UserInfo>,
    pub source_ip: Option<IpAddr>,
    pub user_agent: Option<&'a str>,
    pub code: u16,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    kind: &'static str,
    api_version: &'static str,
    level: &'static str,
    #[serde(rename = "auditID")]
    audit_id: String,
    stage: &'static str,
    #[serde(rename = "requestURI")]
    request_uri: &'a str,
    verb: String,
    user: User<'a>,
    #[serde(rename = "sourceIPs", skip_serializing_if = "Vec::is_empty")]
    source_ips: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    object_ref: Option<ObjectRef<'a>>,
    response_status: ResponseStatus,
    request_received_timestamp: String,
    stage_timestamp: String,
}

#[derive(Serialize, Default)]
struct User<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    groups: Option<&'a [String]>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ObjectRef<'a> {
    resource: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "str::is_empty")]
    api_group: &'static str,
    api_version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    subresource: Option<&'a str>,
}

#[derive(Serialize)]
struct ResponseStatus {
    code: u16,
}

impl AuditLog {
    /// Opens (appending, owner-only: it names users) and starts the writer, which ends when the
    /// log is dropped.
    pub async fn open(path: &Path) -> Result<AuditLog, AuditError> {
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .await
            .map_err(|source| AuditError {
                path: path.display().to_string(),
                source,
            })?;
        let (tx, rx) = mpsc::channel(BACKLOG);
        tokio::spawn(write_events(file, rx, path.display().to_string()));
        Ok(AuditLog {
            tx,
            dropped: AtomicU64::new(0),
        })
    }

    /// Queues the request's event; never waits.
    pub fn record(&self, record: &Record<'_>) {
        let mut line = match serde_json::to_vec(&event(record)) {
            Ok(line) => line,
            Err(e) => {
                tracing::warn!(error = %e, "audit event not serialisable");
                return;
            }
        };
        line.push(b'\n');
        if self.tx.try_send(line).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(dropped, "audit log writer is behind; events dropped");
            }
        }
    }
}

fn event<'a>(r: &'a Record<'a>) -> Event<'a> {
    let verb = match r.info {
        Some(info) => info.verb.as_str().to_string(),
        None => r.method.to_ascii_lowercase(),
    };
    // A watch is answered when it starts and streams on; upstream logs that as ResponseStarted.
    let stage = match r.info.map(|i| i.verb) {
        Some(crate::request::Verb::Watch) => "ResponseStarted",
        _ => "ResponseComplete",
    };
    Event {
        kind: "Event",
        api_version: "audit.k8s.io/v1",
        level: "Metadata",
        audit_id: crate::metadata::new_uid(),
        stage,
        request_uri: r.uri,
        verb,
        user: r.user.map(user).unwrap_or_default(),
        source_ips: r.source_ip.map(|ip| ip.to_string()).into_iter().collect(),
        user_agent: r.user_agent,
        object_ref: r.info.map(object_ref),
        response_status: ResponseStatus { code: r.code },
        request_received_timestamp: micro_time(r.received),
        stage_timestamp: micro_time(time::OffsetDateTime::now_utc()),
    }
}

fn user(u: &UserInfo) -> User<'_> {
    User {
        username: Some(&u.name),
        uid: (!u.uid.is_empty()).then_some(u.uid.as_str()),
        groups: Some(&u.groups),
    }
}

fn object_ref(info: &RequestInfo) -> ObjectRef<'_> {
    ObjectRef {
        resource: info.res.plural,
        namespace: info.namespace.as_deref(),
        name: info.name.as_deref(),
        api_group: info.res.group,
        api_version: info.res.version,
        subresource: info.subresource.as_deref(),
    }
}

/// metav1.MicroTime: RFC 3339 with microseconds, UTC.
fn micro_time(t: time::OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    t.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_default()
}

/// Appends queued events, flushing whenever the queue is empty.
async fn write_events(mut file: tokio::fs::File, mut rx: mpsc::Receiver<Vec<u8>>, path: String) {
    while let Some(line) = rx.recv().await {
        let mut result = file.write_all(&line).await;
        while let (Ok(()), Ok(next)) = (&result, rx.try_recv()) {
            result = file.write_all(&next).await;
        }
        if let Err(e) = result.and(file.flush().await) {
            tracing::warn!(path = %path, error = %e, "writing the audit log");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_shape() {
        let user = UserInfo {
            name: "admin".into(),
            uid: String::new(),
            groups: vec!["system:masters".into()],
            extra: Default::default(),
        };
        let info = crate::request::resolve(
            &http::Method::GET,
            "",
            "v1",
            &["namespaces"],
            &Default::default(),
            &Default::default(),
        )
        .unwrap();
        let record = Record {
            received: time::OffsetDateTime::now_utc(),
            uri: "/api/v1/namespaces?limit=500",
            method: "GET",
            info: Some(&info),
            user: Some(&user),
            source_ip: Some("127.0.0.1".parse().unwrap()),
            user_agent: Some("kubectl"),
            code: 200,
        };
        let v = serde_json::to_value(event(&record)).unwrap();
        assert_eq!(v["kind"], "Event");
        assert_eq!(v["apiVersion"], "audit.k8s.io/v1");
        assert_eq!(v["verb"], "list");
        assert_eq!(v["user"]["username"], "admin");
        assert_eq!(v["objectRef"]["resource"], "namespaces");
        assert_eq!(v["objectRef"]["apiVersion"], "v1");
        assert_eq!(v["responseStatus"]["code"], 200);
        assert_eq!(v["sourceIPs"][0], "127.0.0.1");
        assert_eq!(v["requestReceivedTimestamp"].as_str().unwrap().len(), 27);
    }
}
