//! What the runtime's streaming server does not speak, translated here, as upstream's API
//! server does (k8s.io/apiserver/pkg/util/proxy: StreamTranslatorProxy, TunnelingHandler):
//!
//! - remote command v5 over WebSocket (`kubectl exec`/`attach`/`cp` ≥ 1.30): binary messages
//!   whose first byte is the channel (0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize) and
//!   `[255, channel]` to close one, turned into the SPDY streams of remote command v4 (one per
//!   channel, stdin half-closed with FIN). The runtime's error stream (a `Status`, with
//!   `NonZeroExitCode` and the exit code as its cause) goes out on channel 3, then a normal close.
//! - port-forward tunnelled over WebSocket (`SPDY/3.1+portforward.k8s.io`, kubectl ≥ 1.31): the
//!   client speaks SPDY inside binary messages; the bytes are piped to the runtime's SPDY
//!   port-forward as they are.
//!
//! The runtime is asked first; only when it switched protocols is the client's upgrade
//! accepted, so a runtime's refusal reaches the client as an HTTP error (kubectl then falls
//! back to SPDY).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use http::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use super::spdy::{self, Frame};
use super::websocket::{self, Socket};

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
/// v5's close signal: `[CLOSE, channel]`.
const CLOSE: u8 = 255;
const REMOTE_COMMAND_V4: &str = "v4.channel.k8s.io";
const PORT_FORWARD: &str = "portforward.k8s.io";
/// How long the other side gets to finish the closing handshake once one side is done.
const LINGER: Duration = Duration::from_secs(5);

/// The channels a remote command has, as the request asked for them (CRI's ExecRequest or
/// AttachRequest: with a TTY there is no stderr, and a resize channel instead).
#[derive(Clone, Copy)]
pub struct Channels {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// The runtime's SPDY stream ids for each channel.
#[derive(Default, Clone, Copy)]
struct Streams {
    error: u32,
    stdin: Option<u32>,
    stdout: Option<u32>,
    stderr: Option<u32>,
    resize: Option<u32>,
}

type SpdyWriter = Arc<Mutex<spdy::Writer<WriteHalf<spdy::Io>>>>;

fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, msg.into()).into_response()
}

fn dial_failed(e: spdy::DialError) -> Response {
    match e {
        spdy::DialError::Refused(code, text) => error(code, text),
        e => error(StatusCode::BAD_GATEWAY, e.to_string()),
    }
}

/// Serves a v5 WebSocket exec or attach against the runtime's streaming `url`.
pub async fn remote_command(url: &str, channels: Channels, mut req: Request) -> Response {
    // A bad handshake is refused before the runtime starts anything.
    let (response, upgrade) = match websocket::accept(&mut req, websocket::REMOTE_COMMAND_V5) {
        Ok(a) => a,
        Err(refusal) => return refusal.into_response(),
    };
    let dialed = match spdy::dial(url, &[REMOTE_COMMAND_V4]).await {
        Ok(d) => d,
        Err(e) => return dial_failed(e),
    };
    if dialed.protocol != REMOTE_COMMAND_V4 {
        return error(
            StatusCode::BAD_GATEWAY,
            format!(
                "the runtime chose remote command protocol {:?}, not {REMOTE_COMMAND_V4}",
                dialed.protocol
            ),
        );
    }
    let (reader, writer) = tokio::io::split(dialed.io);
    let mut writer = spdy::Writer::new(writer);
    let streams = match open_streams(&mut writer, channels).await {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_GATEWAY, format!("opening streams: {e}")),
    };
    tokio::spawn(async move {
        match websocket::socket(upgrade).await {
            Ok(ws) => relay(ws, reader, Arc::new(Mutex::new(writer)), streams, channels).await,
            Err(e) => tracing::debug!(error = %e, "kubelet API: WebSocket upgrade failed"),
        }
    });
    response
}

/// Opens the v4 streams in kubectl's order: error first, then the ones asked for.
async fn open_streams<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut spdy::Writer<W>,
    c: Channels,
) -> std::io::Result<Streams> {
    let mut s = Streams {
        error: w.open(&[("streamtype", "error")]).await?,
        ..Streams::default()
    };
    if c.stdin {
        s.stdin = Some(w.open(&[("streamtype", "stdin")]).await?);
    }
    if c.stdout {
        s.stdout = Some(w.open(&[("streamtype", "stdout")]).await?);
    }
    if c.stderr && !c.tty {
        s.stderr = Some(w.open(&[("streamtype", "stderr")]).await?);
    }
    if c.tty {
        s.resize = Some(w.open(&[("streamtype", "resize")]).await?);
    }
    Ok(s)
}

/// Runs both directions until the runtime is done (then the status and a normal close go
/// to the client) or the client leaves (then the runtime's connection is closed).
async fn relay(
    ws: Socket,
    reader: ReadHalf<spdy::Io>,
    writer: SpdyWriter,
    streams: Streams,
    channels: Channels,
) {
    let (mut tx, rx) = ws.split();
    // Upstream's first message: empty, on the lowest channel the client reads, so that it
    // knows the streams are up.
    let first = if channels.stdout {
        STDOUT
    } else if channels.stderr && !channels.tty {
        STDERR
    } else {
        ERROR
    };
    if tx.send(binary(first, &[])).await.is_err() {
        return;
    }
    let mut down: JoinHandle<()> = tokio::spawn(client_to_runtime(rx, writer.clone(), streams));
    let mut up = tokio::spawn(runtime_to_client(reader, tx, writer.clone(), streams));
    tokio::select! {
        _ = &mut up => {
            let _ = tokio::time::timeout(LINGER, &mut down).await;
            down.abort();
        }
        _ = &mut down => {
            let _ = writer.lock().await.go_away().await;
            let _ = tokio::time::timeout(LINGER, &mut up).await;
            up.abort();
        }
    }
}

fn binary(channel: u8, data: &[u8]) -> Message {
    let mut m = Vec::with_capacity(1 + data.len());
    m.push(channel);
    m.extend_from_slice(data);
    Message::Binary(Bytes::from(m))
}

fn normal_close() -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
}

/// Stdin, resize and close signals from the client, until it closes the WebSocket.
async fn client_to_runtime(mut rx: SplitStream<Socket>, writer: SpdyWriter, s: Streams) {
    while let Some(msg) = rx.next().await {
        let data = match msg {
            Ok(Message::Binary(data)) => data,
            Ok(Message::Close(_)) | Err(_) => return,
            Ok(_) => continue,
        };
        let sent = match data.as_ref() {
            [] => Ok(()),
            [CLOSE, STDIN] => match s.stdin {
                Some(id) => writer.lock().await.data(id, &[], true).await,
                None => Ok(()),
            },
            [CLOSE, ..] => Ok(()),
            [STDIN, rest @ ..] => match s.stdin {
                Some(id) => writer.lock().await.data(id, rest, false).await,
                None => Ok(()),
            },
            [RESIZE, rest @ ..] => match s.resize {
                Some(id) => writer.lock().await.data(id, rest, false).await,
                None => Ok(()),
            },
            [channel, ..] => {
                tracing::debug!(
                    channel,
                    "kubelet API: data on a channel the client cannot write"
                );
                Ok(())
            }
        };
        if let Err(e) = sent {
            tracing::debug!(error = %e, "kubelet API: writing to the runtime failed");
            return;
        }
    }
}

/// Output and the final status from the runtime, then a normal close.
async fn runtime_to_client(
    mut reader: ReadHalf<spdy::Io>,
    mut tx: SplitSink<Socket, Message>,
    writer: SpdyWriter,
    s: Streams,
) {
    let mut status = Vec::new();
    // After GOAWAY the runtime may still finish its streams; it closes the connection soon.
    let mut gone_away: Option<tokio::time::Instant> = None;
    loop {
        let read = spdy::read_frame(&mut reader);
        let read = match gone_away {
            Some(deadline) => match tokio::time::timeout_at(deadline, read).await {
                Ok(r) => r,
                Err(_) => break,
            },
            None => read.await,
        };
        let frame = match read {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "kubelet API: reading from the runtime failed");
                break;
            }
        };
        let sent = match frame {
            Frame::Data { stream, data, .. } if stream == s.error => {
                status.extend_from_slice(&data);
                Ok(())
            }
            Frame::Data { stream, data, .. } if Some(stream) == s.stdout && !data.is_empty() => {
                tx.send(binary(STDOUT, &data)).await
            }
            Frame::Data { stream, data, .. } if Some(stream) == s.stderr && !data.is_empty() => {
                tx.send(binary(STDERR, &data)).await
            }
            Frame::Ping { id } => {
                let _ = writer.lock().await.pong(id).await;
                Ok(())
            }
            Frame::Opened { stream } => {
                let _ = writer.lock().await.reset(stream, spdy::CANCEL).await;
                Ok(())
            }
            Frame::GoAway => {
                gone_away.get_or_insert(tokio::time::Instant::now() + LINGER);
                Ok(())
            }
            _ => Ok(()),
        };
        if sent.is_err() {
            return;
        }
    }
    let _ = tx.send(binary(ERROR, &final_status(status))).await;
    let _ = tx.send(normal_close()).await;
}

/// The runtime's status as it wrote it (v4 writes one for success too); if the stream ended
/// without one, an internal error as upstream's translator reports a failed executor.
fn final_status(written: Vec<u8>) -> Vec<u8> {
    if !written.is_empty() {
        return written;
    }
    json!({
        "metadata": {}, "status": "Failure", "reason": "InternalError", "code": 500,
        "message": "Internal error occurred: the runtime's streams ended without a status",
    })
    .to_string()
    .into_bytes()
}

/// Serves a port-forward tunnelled over WebSocket against the runtime's streaming `url`.
pub async fn tunnel(url: &str, mut req: Request) -> Response {
    let (response, upgrade) = match websocket::accept(&mut req, websocket::PORT_FORWARD_TUNNEL) {
        Ok(a) => a,
        Err(refusal) => return refusal.into_response(),
    };
    let dialed = match spdy::dial(url, &[PORT_FORWARD]).await {
        Ok(d) => d,
        Err(e) => return dial_failed(e),
    };
    if dialed.protocol != PORT_FORWARD {
        return error(
            StatusCode::BAD_GATEWAY,
            format!(
                "the runtime chose port-forward protocol {:?}, not {PORT_FORWARD}",
                dialed.protocol
            ),
        );
    }
    let io = dialed.io;
    tokio::spawn(async move {
        match websocket::socket(upgrade).await {
            Ok(ws) => pipe(ws, io).await,
            Err(e) => tracing::debug!(error = %e, "kubelet API: WebSocket upgrade failed"),
        }
    });
    response
}

/// Copies the tunnel both ways: each binary message's payload to the runtime, each read from
/// the runtime as one binary message (upstream's TunnelingConnection).
async fn pipe(ws: Socket, io: spdy::Io) {
    let (mut tx, mut rx) = ws.split();
    let (mut from_runtime, mut to_runtime) = tokio::io::split(io);
    let mut down = tokio::spawn(async move {
        while let Some(Ok(msg)) = rx.next().await {
            let data = match msg {
                Message::Binary(data) => data,
                Message::Close(_) => break,
                _ => continue,
            };
            if to_runtime.write_all(&data).await.is_err() {
                break;
            }
        }
        let _ = to_runtime.shutdown().await;
    });
    let mut up = tokio::spawn(async move {
        let mut buf = vec![0u8; 32 << 10];
        loop {
            match from_runtime.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx
                        .send(Message::Binary(Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
        let _ = tx.send(normal_close()).await;
    });
    tokio::select! {
        _ = &mut up => {
            let _ = tokio::time::timeout(LINGER, &mut down).await;
            down.abort();
        }
        _ = &mut down => {
            let _ = tokio::time::timeout(LINGER, &mut up).await;
            up.abort();
        }
    }
}
