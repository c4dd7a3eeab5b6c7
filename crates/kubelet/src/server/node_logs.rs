//! `/logs/`: the node's log files under `/var/log`, as upstream's kubelet serves them (Go's
//! `http.FileServer` on that directory, authorized as `nodes/log`): a directory is listed as
//! Go lists one (`<pre>` of links, directories with a trailing `/`), a file is sent whole. A
//! path with a `..` element is refused with 400 `invalid URL path` as Go refuses it, and so is
//! anything that resolves (through symlinks) outside the log directory, so nothing else of the
//! host can be read through this endpoint.

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{header, StatusCode};

/// Where the node's logs are.
pub const LOG_DIR: &str = "/var/log";

/// Serves `rest` (what follows `/logs/`, still percent-encoded) from `root`.
pub async fn serve(root: &Path, rest: &str) -> Response {
    let Some(relative) = decode(rest) else {
        return invalid();
    };
    if relative.split('/').any(|part| part == "..") || relative.contains('\0') {
        return invalid();
    }
    let path = root.join(relative.trim_start_matches('/'));
    let Some(real) = inside(root, &path) else {
        return not_found();
    };
    let Ok(meta) = tokio::fs::metadata(&real).await else {
        return not_found();
    };
    let wants_dir = relative.is_empty() || relative.ends_with('/');
    let base = relative
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("")
        .to_string();
    match (meta.is_dir(), wants_dir) {
        (true, true) => listing(&real).await,
        // Go redirects a directory without its slash, and a file with one, relatively.
        (true, false) => redirect(&format!("{base}/")),
        (false, true) => redirect(&format!("../{base}")),
        (false, false) => file(&real).await,
    }
}

/// `path` resolved, when it stays under `root` (resolved too).
fn inside(root: &Path, path: &Path) -> Option<PathBuf> {
    let root = root.canonicalize().ok()?;
    let real = path.canonicalize().ok()?;
    real.starts_with(&root).then_some(real)
}

async fn listing(dir: &Path) -> Response {
    let Ok(mut entries) = tokio::fs::read_dir(dir).await else {
        return not_found();
    };
    let mut names = Vec::new();
    while let Ok(Some(e)) = entries.next_entry().await {
        let mut name = e.file_name().to_string_lossy().into_owned();
        if e.file_type().await.is_ok_and(|t| t.is_dir()) {
            name.push('/');
        }
        names.push(name);
    }
    names.sort();
    let mut body = String::from(
        "<!doctype html>\n<meta name=\"viewport\" content=\"width=device-width\">\n<pre>\n",
    );
    for name in names {
        body.push_str(&format!(
            "<a href=\"{}\">{}</a>\n",
            href(&name),
            html_escape(&name)
        ));
    }
    body.push_str("</pre>\n");
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

async fn file(path: &Path) -> Response {
    match tokio::fs::read(path).await {
        Ok(bytes) => {
            let kind = match path.extension().and_then(|e| e.to_str()) {
                Some("gz") => "application/gzip",
                _ if std::str::from_utf8(&bytes[..bytes.len().min(512)]).is_ok() => {
                    "text/plain; charset=utf-8"
                }
                _ => "application/octet-stream",
            };
            ([(header::CONTENT_TYPE, kind)], Body::from(bytes)).into_response()
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            (StatusCode::FORBIDDEN, "403 Forbidden\n").into_response()
        }
        Err(_) => not_found(),
    }
}

fn redirect(location: &str) -> Response {
    (
        StatusCode::MOVED_PERMANENTLY,
        [(header::LOCATION, location.to_string())],
    )
        .into_response()
}

fn invalid() -> Response {
    (StatusCode::BAD_REQUEST, "invalid URL path\n").into_response()
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "404 page not found\n").into_response()
}

/// Percent-decoding of a URL path; `None` when it is not UTF-8 or malformed.
fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn href(name: &str) -> String {
    let mut out = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(r: Response) -> (u16, String) {
        let status = r.status().as_u16();
        let bytes = http_body_util::BodyExt::collect(r.into_body())
            .await
            .unwrap()
            .to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn files_listings_and_traversal() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("log");
        std::fs::create_dir_all(root.join("apt")).unwrap();
        std::fs::write(root.join("syslog"), "hello\n").unwrap();
        std::fs::write(dir.path().join("secret"), "no").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("escape")).unwrap();
        let (code, text) = body(serve(&root, "").await).await;
        assert_eq!(code, 200);
        assert!(text.contains("<a href=\"apt/\">apt/</a>\n"), "{text}");
        assert!(text.contains("<a href=\"syslog\">syslog</a>\n"), "{text}");
        assert_eq!(
            body(serve(&root, "syslog").await).await,
            (200, "hello\n".into())
        );
        assert_eq!(serve(&root, "apt").await.status(), 301);
        assert_eq!(serve(&root, "../secret").await.status(), 400);
        assert_eq!(serve(&root, "%2e%2e/secret").await.status(), 400);
        assert_eq!(serve(&root, "apt/../../secret").await.status(), 400);
        assert_eq!(serve(&root, "escape").await.status(), 404);
        assert_eq!(serve(&root, "missing").await.status(), 404);
    }
}
