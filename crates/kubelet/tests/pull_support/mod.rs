//! A registry for the pull tests: enough of the OCI distribution API (`/v2/`, manifests and blobs
//! by tag or digest, GET and HEAD) to serve one image read from an OCI image-layout tarball, every
//! request behind HTTP basic auth. It is the test's fixture (the thing containerd pulls from), not
//! a stand-in for anything krust ships. It answers 401 with `WWW-Authenticate: Basic` as a real
//! registry does, which is what makes containerd send the credentials it was given.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use base64::Engine;
use http::{header, Method, StatusCode};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// What the registry serves and counts.
struct Content {
    /// Repository name (`krust/busybox`) and tag.
    repository: String,
    tag: String,
    manifest_digest: String,
    manifest_type: String,
    blobs: HashMap<String, Vec<u8>>,
    /// `Basic <base64(user:password)>`.
    expected: String,
    /// Requests that carried the right credentials.
    authorized: AtomicUsize,
    /// Requests that carried some Authorization header that was wrong.
    wrong: AtomicUsize,
}

pub struct Registry {
    pub addr: SocketAddr,
    content: Arc<Content>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Registry {
    /// Serves the first image of the OCI layout tarball `oci` as `repository:tag` on 127.0.0.1,
    /// for `user`/`password` only.
    pub async fn start(
        oci: &Path,
        repository: &str,
        tag: &str,
        user: &str,
        password: &str,
    ) -> Registry {
        let blobs = read_blobs(oci);
        let index: serde_json::Value =
            serde_json::from_slice(blobs.get("index.json").expect("index.json")).unwrap();
        let first = &index["manifests"][0];
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let content = Arc::new(Content {
            repository: repository.into(),
            tag: tag.into(),
            manifest_digest: first["digest"].as_str().unwrap().into(),
            manifest_type: first["mediaType"].as_str().unwrap().into(),
            blobs,
            expected: format!("Basic {token}"),
            authorized: AtomicUsize::new(0),
            wrong: AtomicUsize::new(0),
        });
        let app = axum::Router::new()
            .fallback(serve)
            .with_state(content.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Registry {
            addr,
            content,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// `127.0.0.1:PORT`, the registry part of image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.addr.port())
    }

    pub fn image(&self) -> String {
        format!(
            "{}/{}:{}",
            self.host(),
            self.content.repository,
            self.content.tag
        )
    }

    pub fn authorized_requests(&self) -> usize {
        self.content.authorized.load(Ordering::SeqCst)
    }

    pub fn wrong_credentials(&self) -> usize {
        self.content.wrong.load(Ordering::SeqCst)
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }
}

/// Every file of the tarball: `index.json` by name, blobs by `sha256:<hex>`.
fn read_blobs(oci: &Path) -> HashMap<String, Vec<u8>> {
    let mut archive = tar::Archive::new(std::fs::File::open(oci).expect("open the OCI tarball"));
    let mut out = HashMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        let key = match path.strip_prefix("blobs/sha256/") {
            Some(hex) => format!("sha256:{hex}"),
            None => path,
        };
        out.insert(key, bytes);
    }
    out
}

async fn serve(State(content): State<Arc<Content>>, req: Request) -> Response {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match auth {
        Some(a) if a == content.expected => {
            content.authorized.fetch_add(1, Ordering::SeqCst);
        }
        other => {
            if other.is_some() {
                content.wrong.fetch_add(1, Ordering::SeqCst);
            }
            return error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "authentication required",
            );
        }
    }
    let path = req.uri().path().to_string();
    let head = req.method() == Method::HEAD;
    if path == "/v2/" || path == "/v2" {
        return blob_response("application/json", None, b"{}".to_vec(), head);
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "not found");
    };
    if let Some((name, reference)) = rest.rsplit_once("/manifests/") {
        let digest = if name != content.repository {
            None
        } else if reference == content.tag || reference == content.manifest_digest {
            Some(content.manifest_digest.clone())
        } else {
            None
        };
        let Some(bytes) = digest.as_ref().and_then(|d| content.blobs.get(d)) else {
            return error(
                StatusCode::NOT_FOUND,
                "MANIFEST_UNKNOWN",
                "manifest unknown",
            );
        };
        return blob_response(&content.manifest_type, digest.clone(), bytes.clone(), head);
    }
    if let Some((name, digest)) = rest.rsplit_once("/blobs/") {
        if let Some(bytes) = content
            .blobs
            .get(digest)
            .filter(|_| name == content.repository)
        {
            return blob_response(
                "application/octet-stream",
                Some(digest.to_string()),
                bytes.clone(),
                head,
            );
        }
        return error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", "blob unknown");
    }
    error(StatusCode::NOT_FOUND, "NOT_FOUND", "not found")
}

fn blob_response(kind: &str, digest: Option<String>, bytes: Vec<u8>, head: bool) -> Response {
    let mut b = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, kind)
        .header(header::CONTENT_LENGTH, bytes.len());
    if let Some(d) = digest {
        b = b.header("Docker-Content-Digest", d);
    }
    let body = if head {
        Body::empty()
    } else {
        Body::from(bytes)
    };
    b.body(body).unwrap()
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"errors": [{"code": code, "message": message}]}).to_string();
    let mut b = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json");
    if status == StatusCode::UNAUTHORIZED {
        b = b.header(header::WWW_AUTHENTICATE, "Basic realm=\"krust-test\"");
    }
    b.body(Body::from(body)).unwrap()
}
