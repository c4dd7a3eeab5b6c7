//! The server side of a WebSocket upgrade (RFC 6455) for the streaming endpoints: which
//! subprotocols the client offers, and the 101 answer with the one chosen. Framing after the
//! upgrade is tokio-tungstenite's.

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

/// Remote command (exec, attach) v5: v4's channels plus the close signal (KEP 4006).
pub const REMOTE_COMMAND_V5: &str = "v5.channel.k8s.io";
/// Port-forward's SPDY/3.1 byte stream carried in binary messages (kubectl ≥ 1.31).
pub const PORT_FORWARD_TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";

pub type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// Whether `req` asks to upgrade to WebSocket.
pub fn is_upgrade(req: &Request) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// The subprotocols the client offers, in its order of preference.
pub fn offered(req: &Request) -> Vec<String> {
    req.headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Whether `req` is a WebSocket upgrade offering `protocol`.
pub fn offers(req: &Request, protocol: &str) -> bool {
    is_upgrade(req) && offered(req).iter().any(|p| p == protocol)
}

/// The WebSocket, framed, once hyper hands over the connection `accept` agreed to.
pub async fn socket(upgrade: OnUpgrade) -> Result<Socket, hyper::Error> {
    let io = upgrade.await?;
    // Streams carry whatever the container writes; bound one message so that a client cannot
    // make us buffer without limit.
    let config = WebSocketConfig::default().max_message_size(Some(16 << 20));
    Ok(WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, Some(config)).await)
}

/// Why a handshake is refused (with 400, as upstream's wsstream).
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("unable to upgrade: a WebSocket handshake needs Sec-WebSocket-Key and version 13")]
    Malformed,
    #[error("unable to upgrade: the connection cannot be upgraded")]
    NotUpgradable,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (
            StatusCode::BAD_REQUEST,
            [(header::SEC_WEBSOCKET_VERSION, "13")],
            self.to_string(),
        )
            .into_response()
    }
}

/// Answers the handshake choosing `protocol`: the 101 to send and the connection to come.
pub fn accept(req: &mut Request, protocol: &str) -> Result<(Response, OnUpgrade), Refused> {
    let version_ok = req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v == "13");
    let key = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned();
    let (Some(key), true) = (key, version_ok) else {
        return Err(Refused::Malformed);
    };
    let upgrade = req
        .extensions_mut()
        .remove::<OnUpgrade>()
        .ok_or(Refused::NotUpgradable)?;
    let accept = derive_accept_key(key.as_bytes());
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Ok(v) = HeaderValue::from_str(protocol) {
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
    }
    Ok((response, upgrade))
}
