//! The client side of SPDY/3.1 as Kubernetes streams use it (moby/spdystream): enough to open
//! streams on the runtime's streaming server, send and half-close them, and read what comes
//! back. The runtime's server is a Go `spdystream` without flow control, so neither
//! WINDOW_UPDATE nor SETTINGS is sent, and those received are ignored.
//!
//! Header blocks are zlib streams shared by the whole connection. Ours are compressed without
//! SPDY's preset dictionary: a zlib stream that does not announce one (no FDICT bit) is valid,
//! and Go's reader only checks the dictionary when the stream names it. The runtime's header
//! blocks (SYN_REPLY) carry nothing we need and are skipped unread, so no inflater is kept.

use std::io;

use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress, Status};
use http::{header, HeaderValue, StatusCode};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const VERSION: u16 = 3;
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
/// FIN on both control and data frames.
const FLAG_FIN: u8 = 0x01;
/// RST_STREAM status CANCEL.
pub const CANCEL: u32 = 5;
/// The largest frame we accept (the length field has 24 bits); a runtime sends 32 KiB.
const MAX_FRAME: usize = 0xff_ffff;

#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("bad streaming URL {0:?}")]
    Url(String),
    #[error("connecting to the runtime's streaming server: {0}")]
    Connect(io::Error),
    #[error("talking to the runtime's streaming server: {0}")]
    Http(#[from] hyper::Error),
    /// The runtime answered without switching protocols (its status and text).
    #[error("{1}")]
    Refused(StatusCode, String),
}

/// A connection the runtime upgraded.
pub type Io = TokioIo<Upgraded>;

/// An upgraded SPDY connection and the subprotocol the runtime picked.
pub struct Dialed {
    pub io: Io,
    pub protocol: String,
}

/// Upgrades a connection to the runtime's streaming server at `url` to SPDY/3.1, offering
/// `protocols` in `X-Stream-Protocol-Version` (most preferred first), as kubectl's SPDY
/// round tripper does.
pub async fn dial(url: &str, protocols: &[&str]) -> Result<Dialed, DialError> {
    let target: http::Uri = url.parse().map_err(|_| DialError::Url(url.into()))?;
    let authority = target
        .authority()
        .cloned()
        .ok_or_else(|| DialError::Url(url.into()))?;
    let tcp = tokio::net::TcpStream::connect(authority.as_str())
        .await
        .map_err(DialError::Connect)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "kubelet API: SPDY connection ended");
        }
    });
    let path = target.path_and_query().map_or("/", |p| p.as_str());
    let mut req = http::Request::post(path)
        .header(header::HOST, authority.as_str())
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "SPDY/3.1");
    for p in protocols {
        req = req.header("X-Stream-Protocol-Version", *p);
    }
    let req = req
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|_| DialError::Url(url.into()))?;
    let mut resp = sender.send_request(req).await?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = resp.status();
        let body = http_body_util::BodyExt::collect(http_body_util::Limited::new(
            resp.into_body(),
            64 << 10,
        ))
        .await
        .map(|c| String::from_utf8_lossy(&c.to_bytes()).trim().to_string())
        .unwrap_or_default();
        return Err(DialError::Refused(status, body));
    }
    let protocol = resp
        .headers()
        .get("X-Stream-Protocol-Version")
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let io = TokioIo::new(hyper::upgrade::on(&mut resp).await?);
    Ok(Dialed { io, protocol })
}

/// A frame from the runtime, as far as a client needs it.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A stream the runtime accepted; `fin`: it will send nothing on it.
    Reply {
        stream: u32,
        fin: bool,
    },
    Data {
        stream: u32,
        data: Bytes,
        fin: bool,
    },
    Reset {
        stream: u32,
        status: u32,
    },
    Ping {
        id: u32,
    },
    GoAway,
    /// A stream the runtime opened (clients of the streaming protocols never get one).
    Opened {
        stream: u32,
    },
    /// SETTINGS, WINDOW_UPDATE, HEADERS and anything newer: nothing to do.
    Ignored,
}

/// Reads the next frame; `None` when the connection ended between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Option<Frame>> {
    let mut head = [0u8; 8];
    match r.read_exact(&mut head[..1]).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    r.read_exact(&mut head[1..]).await?;
    let word = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let flags = head[4];
    let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
    if len > MAX_FRAME {
        return Err(invalid("frame too long"));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    let fin = flags & FLAG_FIN != 0;
    if word & 0x8000_0000 == 0 {
        return Ok(Some(Frame::Data {
            stream: word & 0x7fff_ffff,
            data: Bytes::from(payload),
            fin,
        }));
    }
    let first = |p: &[u8]| -> io::Result<u32> {
        p.get(..4)
            .map(|b| u32::from_be_bytes([b[0] & 0x7f, b[1], b[2], b[3]]))
            .ok_or_else(|| invalid("control frame too short"))
    };
    let frame = match (word & 0xffff) as u16 {
        SYN_REPLY => Frame::Reply {
            stream: first(&payload)?,
            fin,
        },
        SYN_STREAM => Frame::Opened {
            stream: first(&payload)?,
        },
        RST_STREAM => Frame::Reset {
            stream: first(&payload)?,
            status: first(payload.get(4..).unwrap_or_default())?,
        },
        PING => Frame::Ping {
            id: u32::from_be_bytes(
                payload
                    .get(..4)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| invalid("short PING"))?,
            ),
        },
        GOAWAY => Frame::GoAway,
        _ => Frame::Ignored,
    };
    Ok(Some(frame))
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("SPDY: {what}"))
}

/// Writes frames on the client side: stream ids are odd and increasing, header blocks share
/// one zlib stream.
pub struct Writer<W> {
    io: W,
    zlib: Compress,
    next_stream: u32,
}

impl<W: AsyncWrite + Unpin> Writer<W> {
    pub fn new(io: W) -> Writer<W> {
        Writer {
            io,
            zlib: Compress::new(Compression::default(), true),
            next_stream: 1,
        }
    }

    /// Opens a stream with `headers` (names lower case, as SPDY wants) and returns its id.
    pub async fn open(&mut self, headers: &[(&str, &str)]) -> io::Result<u32> {
        let stream = self.next_stream;
        self.next_stream += 2;
        let block = self.compress(&header_block(headers))?;
        let mut payload = Vec::with_capacity(10 + block.len());
        payload.extend_from_slice(&stream.to_be_bytes());
        payload.extend_from_slice(&0u32.to_be_bytes()); // associated-to stream
        payload.extend_from_slice(&[0, 0]); // priority 0, slot 0
        payload.extend_from_slice(&block);
        self.control(SYN_STREAM, 0, &payload).await?;
        Ok(stream)
    }

    /// Sends `data` on `stream`; `fin` half-closes it (our side is done sending).
    pub async fn data(&mut self, stream: u32, data: &[u8], fin: bool) -> io::Result<()> {
        let mut chunks = data.chunks(MAX_FRAME).peekable();
        if chunks.peek().is_none() {
            return self.data_frame(stream, &[], fin).await;
        }
        while let Some(chunk) = chunks.next() {
            let last = chunks.peek().is_none();
            self.data_frame(stream, chunk, fin && last).await?;
        }
        Ok(())
    }

    async fn data_frame(&mut self, stream: u32, data: &[u8], fin: bool) -> io::Result<()> {
        let mut frame = Vec::with_capacity(8 + data.len());
        frame.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
        frame.push(if fin { FLAG_FIN } else { 0 });
        frame.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
        frame.extend_from_slice(data);
        self.io.write_all(&frame).await?;
        self.io.flush().await
    }

    pub async fn reset(&mut self, stream: u32, status: u32) -> io::Result<()> {
        let mut payload = stream.to_be_bytes().to_vec();
        payload.extend_from_slice(&status.to_be_bytes());
        self.control(RST_STREAM, 0, &payload).await
    }

    /// Answers the runtime's PING with the same id.
    pub async fn pong(&mut self, id: u32) -> io::Result<()> {
        self.control(PING, 0, &id.to_be_bytes()).await
    }

    /// Says we are done (last stream the runtime opened: none; status OK) and shuts our side.
    pub async fn go_away(&mut self) -> io::Result<()> {
        self.control(GOAWAY, 0, &[0; 8]).await?;
        self.io.shutdown().await
    }

    async fn control(&mut self, kind: u16, flags: u8, payload: &[u8]) -> io::Result<()> {
        let mut frame = Vec::with_capacity(8 + payload.len());
        frame.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
        frame.extend_from_slice(&kind.to_be_bytes());
        frame.push(flags);
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
        frame.extend_from_slice(payload);
        self.io.write_all(&frame).await?;
        self.io.flush().await
    }

    /// The next piece of the connection's zlib stream, ending in a sync flush so that the
    /// reader can decode this block without waiting for more.
    fn compress(&mut self, input: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(input.len() + 64);
        let mut consumed = 0;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(256);
            }
            let before = self.zlib.total_in();
            let status = self
                .zlib
                .compress_vec(&input[consumed..], &mut out, FlushCompress::Sync)
                .map_err(|e| io::Error::other(format!("SPDY header compression: {e}")))?;
            consumed += (self.zlib.total_in() - before) as usize;
            // Done once everything went in and the flush left room to spare (a full
            // buffer may hold back part of the flush).
            if consumed == input.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            if status == Status::StreamEnd {
                return Err(io::Error::other("SPDY header compression ended"));
            }
        }
    }
}

/// SPDY/3's header block before compression: a count, then length-prefixed names and values.
fn header_block(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut block = (headers.len() as u32).to_be_bytes().to_vec();
    for (name, value) in headers {
        for s in [name.to_ascii_lowercase().as_bytes(), value.as_bytes()] {
            block.extend_from_slice(&(s.len() as u32).to_be_bytes());
            block.extend_from_slice(s);
        }
    }
    block
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress};

    /// What a peer reads back from our header blocks: the shared zlib stream decodes block by
    /// block (each ends in a sync flush) to SPDY's header layout.
    #[tokio::test]
    async fn header_blocks_decode_one_by_one() {
        let mut w = Writer::new(Vec::new());
        assert_eq!(w.open(&[("streamType", "error")]).await.unwrap(), 1);
        assert_eq!(w.open(&[("streamtype", "stdout")]).await.unwrap(), 3);
        let bytes = w.io.clone();
        let mut inflate = Decompress::new(true);
        let mut rest = &bytes[..];
        for (id, kind) in [(1u32, "error"), (3, "stdout")] {
            let mut r = rest;
            let frame = read_frame(&mut r).await.unwrap().unwrap();
            assert_eq!(frame, Frame::Opened { stream: id });
            let len = u32::from_be_bytes([0, rest[5], rest[6], rest[7]]) as usize;
            let block = &rest[8 + 10..8 + len];
            let mut out = Vec::with_capacity(256);
            inflate
                .decompress_vec(block, &mut out, FlushDecompress::Sync)
                .unwrap();
            assert_eq!(out, header_block(&[("streamtype", kind)]));
            rest = &rest[8 + len..];
        }
    }

    #[tokio::test]
    async fn data_frames_round_trip() {
        let mut w = Writer::new(Vec::new());
        w.data(5, b"hello", false).await.unwrap();
        w.data(5, b"", true).await.unwrap();
        w.reset(7, CANCEL).await.unwrap();
        w.pong(2).await.unwrap();
        let bytes = w.io.clone();
        let mut r = &bytes[..];
        let mut got = Vec::new();
        while let Some(f) = read_frame(&mut r).await.unwrap() {
            got.push(f);
        }
        assert_eq!(
            got,
            [
                Frame::Data {
                    stream: 5,
                    data: Bytes::from_static(b"hello"),
                    fin: false
                },
                Frame::Data {
                    stream: 5,
                    data: Bytes::new(),
                    fin: true
                },
                Frame::Reset {
                    stream: 7,
                    status: CANCEL
                },
                Frame::Ping { id: 2 },
            ]
        );
    }

    #[tokio::test]
    async fn a_truncated_frame_is_an_error_not_a_panic() {
        let mut r: &[u8] = &[0x80, 0x03, 0x00, 0x02, 0x00, 0x00, 0x00, 0x08, 0x00];
        assert!(read_frame(&mut r).await.is_err());
        let mut r: &[u8] = &[0x80, 0x03, 0x00, 0x03, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01];
        assert!(read_frame(&mut r).await.is_err());
    }
}
