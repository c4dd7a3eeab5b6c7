//! `/exec`, `/attach`, `/portForward` and `/run`. The first three ask CRI for a URL on the
//! runtime's streaming server and proxy the caller's request there, upgraded connection and all
//! (SPDY/3.1 with `X-Stream-Protocol-Version`, or WebSocket up to remote command v4): the
//! runtime speaks those protocols, the kubelet only checks who may and relays bytes, as
//! upstream's kubelet does with redirects disabled. What containerd does not speak, WebSocket
//! remote command v5 and port-forward tunnelled over WebSocket (what kubectl ≥ 1.30/1.31 asks
//! for first), is translated to its SPDY ([`translate`], over [`spdy`], a SPDY/3.1 client, and
//! [`websocket`]). `/run` is ExecSync: the command's output as the response.

mod spdy;
mod translate;
mod websocket;

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use hyper_util::rt::TokioIo;

use super::lookup::{self, PodRef};
use super::query::Params;
use super::routes::Shared;
use crate::cri::api;
use translate::Channels;

type Triple = (String, String, String);
type Quad = (String, String, String, String);

pub async fn exec(
    State(s): State<Shared>,
    Path((ns, pod, c)): Path<Triple>,
    req: Request,
) -> Response {
    exec_in(
        &s,
        PodRef {
            namespace: &ns,
            name: &pod,
            uid: None,
        },
        &c,
        req,
    )
    .await
}

pub async fn exec_uid(
    State(s): State<Shared>,
    Path((ns, pod, uid, c)): Path<Quad>,
    req: Request,
) -> Response {
    exec_in(
        &s,
        PodRef {
            namespace: &ns,
            name: &pod,
            uid: Some(&uid),
        },
        &c,
        req,
    )
    .await
}

pub async fn attach(
    State(s): State<Shared>,
    Path((ns, pod, c)): Path<Triple>,
    req: Request,
) -> Response {
    attach_to(
        &s,
        PodRef {
            namespace: &ns,
            name: &pod,
            uid: None,
        },
        &c,
        req,
    )
    .await
}

pub async fn attach_uid(
    State(s): State<Shared>,
    Path((ns, pod, uid, c)): Path<Quad>,
    req: Request,
) -> Response {
    attach_to(
        &s,
        PodRef {
            namespace: &ns,
            name: &pod,
            uid: Some(&uid),
        },
        &c,
        req,
    )
    .await
}

pub async fn port_forward(
    State(s): State<Shared>,
    Path((ns, pod)): Path<(String, String)>,
    req: Request,
) -> Response {
    forward(
        &s,
        PodRef {
            namespace: &ns,
            name: &pod,
            uid: None,
        },
        req,
    )
    .await
}

pub async fn port_forward_uid(
    State(s): State<Shared>,
    Path((ns, pod, uid)): Path<Triple>,
    req: Request,
) -> Response {
    forward(
        &s,
        PodRef {
            namespace: &ns,
            name: &pod,
            uid: Some(&uid),
        },
        req,
    )
    .await
}

pub async fn run(
    State(s): State<Shared>,
    Path((ns, pod, c)): Path<Triple>,
    RawQuery(q): RawQuery,
) -> Response {
    run_in(
        &s,
        PodRef {
            namespace: &ns,
            name: &pod,
            uid: None,
        },
        &c,
        q,
    )
    .await
}

pub async fn run_uid(
    State(s): State<Shared>,
    Path((ns, pod, uid, c)): Path<Quad>,
    RawQuery(q): RawQuery,
) -> Response {
    run_in(
        &s,
        PodRef {
            namespace: &ns,
            name: &pod,
            uid: Some(&uid),
        },
        &c,
        q,
    )
    .await
}

fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, msg.into()).into_response()
}

/// A request refused before anything reached the runtime.
struct Refusal(StatusCode, String);

impl From<Refusal> for Response {
    fn from(r: Refusal) -> Response {
        error(r.0, r.1)
    }
}

/// Which streams a remote command wants; upstream refuses one with none.
struct Streams {
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

impl Streams {
    fn of(params: &Params) -> Result<Streams, Refusal> {
        let s = Streams {
            stdin: params.flag("stdin"),
            stdout: params.flag("stdout"),
            stderr: params.flag("stderr"),
            tty: params.flag("tty"),
        };
        if !(s.stdin || s.stdout || s.stderr) {
            return Err(Refusal(
                StatusCode::BAD_REQUEST,
                "you must specify at least 1 of stdin, stdout, stderr".into(),
            ));
        }
        Ok(s)
    }

    /// The channels the runtime was asked for (with a TTY, stderr is folded into stdout).
    fn channels(&self) -> Channels {
        Channels {
            stdin: self.stdin,
            stdout: self.stdout,
            stderr: self.stderr && !self.tty,
            tty: self.tty,
        }
    }
}

async fn running(s: &Shared, pod: &PodRef<'_>, container: &str) -> Result<String, Refusal> {
    match lookup::running_container(&s.ctx.cri, pod, container).await {
        Ok(Some(c)) => Ok(c.id),
        Ok(None) => Err(Refusal(
            StatusCode::NOT_FOUND,
            format!("container not found ({container:?})"),
        )),
        Err(e) => Err(Refusal(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

async fn exec_in(s: &Shared, pod: PodRef<'_>, container: &str, req: Request) -> Response {
    let params = Params::parse(req.uri().query());
    let streams = match Streams::of(&params) {
        Ok(st) => st,
        Err(r) => return r.into(),
    };
    let cmd = params.all("command");
    if cmd.is_empty() {
        return error(StatusCode::BAD_REQUEST, "you must specify a command");
    }
    let id = match running(s, &pod, container).await {
        Ok(id) => id,
        Err(r) => return r.into(),
    };
    let ask = api::ExecRequest {
        container_id: id,
        cmd,
        tty: streams.tty,
        stdin: streams.stdin,
        stdout: streams.stdout,
        // With a TTY stderr is folded into stdout (CRI refuses both).
        stderr: streams.stderr && !streams.tty,
    };
    let channels = streams.channels();
    match s.ctx.cri.runtime().exec(ask).await {
        Ok(r) => remote_command(&r.into_inner().url, channels, req).await,
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.message().to_string()),
    }
}

async fn attach_to(s: &Shared, pod: PodRef<'_>, container: &str, req: Request) -> Response {
    let params = Params::parse(req.uri().query());
    let streams = match Streams::of(&params) {
        Ok(st) => st,
        Err(r) => return r.into(),
    };
    let id = match running(s, &pod, container).await {
        Ok(id) => id,
        Err(r) => return r.into(),
    };
    let ask = api::AttachRequest {
        container_id: id,
        stdin: streams.stdin,
        tty: streams.tty,
        stdout: streams.stdout,
        stderr: streams.stderr && !streams.tty,
    };
    let channels = streams.channels();
    match s.ctx.cri.runtime().attach(ask).await {
        Ok(r) => remote_command(&r.into_inner().url, channels, req).await,
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.message().to_string()),
    }
}

async fn forward(s: &Shared, pod: PodRef<'_>, req: Request) -> Response {
    let params = Params::parse(req.uri().query());
    let mut ports = Vec::new();
    for p in params.all("port") {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => ports.push(i32::from(n)),
            _ => return error(StatusCode::BAD_REQUEST, format!("invalid port {p:?}")),
        }
    }
    let sandbox = match lookup::ready_sandbox(&s.ctx.cri, &pod).await {
        Ok(Some(sb)) => sb,
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("pod not found ({:?})", pod.name),
            )
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let ask = api::PortForwardRequest {
        pod_sandbox_id: sandbox.id,
        port: ports,
    };
    let tunnelled = websocket::offers(&req, websocket::PORT_FORWARD_TUNNEL);
    match s.ctx.cri.runtime().port_forward(ask).await {
        Ok(r) if tunnelled => translate::tunnel(&r.into_inner().url, req).await,
        Ok(r) => proxy(&r.into_inner().url, req).await,
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.message().to_string()),
    }
}

/// A remote command the runtime speaks is relayed; WebSocket v5 is translated.
async fn remote_command(url: &str, channels: Channels, req: Request) -> Response {
    if websocket::offers(&req, websocket::REMOTE_COMMAND_V5) {
        translate::remote_command(url, channels, req).await
    } else {
        proxy(url, req).await
    }
}

async fn run_in(s: &Shared, pod: PodRef<'_>, container: &str, query: Option<String>) -> Response {
    let params = Params::parse(query.as_deref());
    // Upstream: `cmd`, split on spaces (for legacy reasons /run differs from /exec).
    let cmd: Vec<&str> = params
        .get("cmd")
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
        .collect();
    if cmd.is_empty() {
        return error(StatusCode::BAD_REQUEST, "you must specify a command");
    }
    let id = match running(s, &pod, container).await {
        Ok(id) => id,
        Err(r) => return r.into(),
    };
    match s.ctx.cri.exec_sync(&id, &cmd, 0).await {
        Ok(out) => {
            let mut body = out.stdout;
            body.extend_from_slice(&out.stderr);
            ([(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Relays `req` to the runtime's streaming server at `url`. When the runtime switches
/// protocols, both upgraded connections are joined and bytes copied both ways until either
/// side closes; any other answer is passed back as it is.
async fn proxy(url: &str, mut req: Request) -> Response {
    let target: http::Uri = match url.parse() {
        Ok(u) => u,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("bad streaming URL {url:?}: {e}"),
            )
        }
    };
    let Some(authority) = target.authority().cloned() else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("bad streaming URL {url:?}"),
        );
    };
    let tcp = match tokio::net::TcpStream::connect(authority.as_str()).await {
        Ok(t) => t,
        Err(e) => {
            return error(
                StatusCode::BAD_GATEWAY,
                format!("connecting to the runtime's streaming server: {e}"),
            )
        }
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await {
        Ok(pair) => pair,
        Err(e) => return error(StatusCode::BAD_GATEWAY, e.to_string()),
    };
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "kubelet API: streaming connection ended");
        }
    });
    let client_upgrade = hyper::upgrade::on(&mut req);
    let (parts, body) = req.into_parts();
    let path = target.path_and_query().map_or("/", |p| p.as_str());
    let mut out = http::Request::builder()
        .method(parts.method.clone())
        .uri(path)
        .body(body)
        .expect("a request from valid parts");
    for (name, value) in &parts.headers {
        if name != header::HOST && name != header::AUTHORIZATION {
            out.headers_mut().append(name, value.clone());
        }
    }
    if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
        out.headers_mut().insert(header::HOST, host);
    }
    let mut resp = match sender.send_request(out).await {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_GATEWAY, e.to_string()),
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return resp.map(Body::new);
    }
    let runtime_upgrade = hyper::upgrade::on(&mut resp);
    tokio::spawn(async move {
        match tokio::try_join!(client_upgrade, runtime_upgrade) {
            Ok((client, runtime)) => {
                let (mut a, mut b) = (TokioIo::new(client), TokioIo::new(runtime));
                let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
            }
            Err(e) => tracing::debug!(error = %e, "kubelet API: upgrade failed"),
        }
    });
    let (parts, _) = resp.into_parts();
    Response::from_parts(parts, Body::empty())
}
