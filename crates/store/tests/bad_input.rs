//! Bad input over the wire: oversized keys and values, huge transactions, malformed requests and
//! unknown leases get a clear gRPC error with etcd's code and message, and the endpoint keeps
//! serving the same connection and new ones afterwards.

mod support;

use std::sync::Arc;

use bytes::{Buf, BufMut};
use store::proto::etcdserverpb::kv_client::KvClient;
use store::proto::etcdserverpb::lease_client::LeaseClient;
use store::proto::etcdserverpb::request_op::Request;
use store::proto::etcdserverpb::*;
use store::Store;
use support::{Endpoint, Pki};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Code, Status};

async fn setup() -> (Pki, Endpoint, Channel) {
    let pki = Pki::generate();
    let engine: Arc<dyn Store> = store::engine::Engine::in_memory();
    let endpoint = Endpoint::start(engine, &pki).await;
    let channel = support::grpc_channel(&endpoint.endpoint(), &pki, true)
        .await
        .expect("connect");
    (pki, endpoint, channel)
}

fn put(key: Vec<u8>, value: Vec<u8>) -> PutRequest {
    PutRequest {
        key,
        value,
        ..Default::default()
    }
}

fn put_op(i: usize) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestPut(put(
            format!("txn/{i:04}").into_bytes(),
            b"v".to_vec(),
        ))),
    }
}

async fn expect_err<T: std::fmt::Debug>(
    res: Result<tonic::Response<T>, tonic::Status>,
    code: Code,
    text: &str,
) {
    let status = res.expect_err("request should fail");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(status.message().contains(text), "{status:?}");
}

/// Proves the endpoint still works, on the old connection and on a new one.
async fn still_serving(kv: &mut KvClient<Channel>, endpoint: &Endpoint, pki: &Pki) {
    kv.put(put(b"alive".to_vec(), b"yes".to_vec()))
        .await
        .expect("put after bad input");
    let fresh = support::grpc_channel(&endpoint.endpoint(), pki, true)
        .await
        .expect("new connection");
    let got = KvClient::new(fresh)
        .range(RangeRequest {
            key: b"alive".to_vec(),
            ..Default::default()
        })
        .await
        .expect("range on a new connection")
        .into_inner();
    assert_eq!(got.kvs[0].value, b"yes");
}

#[tokio::test]
async fn oversized_requests_are_refused_clearly() {
    let (pki, endpoint, channel) = setup().await;
    let mut kv = KvClient::new(channel);
    // Over etcd's --max-request-bytes (1.5 MiB) but within the transport limit.
    let res = kv.put(put(b"big".to_vec(), vec![b'x'; 1600 * 1024])).await;
    expect_err(
        res,
        Code::InvalidArgument,
        "etcdserver: request is too large",
    )
    .await;
    // Over the transport limit: refused before decoding.
    let res = kv.put(put(b"big".to_vec(), vec![b'x'; 8 << 20])).await;
    let status = res.expect_err("8 MiB value refused");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(status.message().contains("too large"), "{status:?}");
    let res = kv.put(put(vec![b'k'; 3 << 20], b"v".to_vec())).await;
    assert!(res.is_err(), "3 MiB key accepted");
    let res = kv
        .range(RangeRequest {
            key: vec![b'k'; 3 << 20],
            ..Default::default()
        })
        .await;
    assert!(res.is_err(), "3 MiB range key accepted");
    // Just under the limit is fine.
    kv.put(put(b"big".to_vec(), vec![b'x'; 1024 * 1024]))
        .await
        .expect("1 MiB value");
    still_serving(&mut kv, &endpoint, &pki).await;
}

#[tokio::test]
async fn huge_transactions_are_refused_and_large_ones_work() {
    let (pki, endpoint, channel) = setup().await;
    let mut kv = KvClient::new(channel);
    let huge = TxnRequest {
        success: (0..500).map(put_op).collect(),
        ..Default::default()
    };
    let res = kv.txn(huge).await;
    expect_err(
        res,
        Code::InvalidArgument,
        "too many operations in txn request",
    )
    .await;
    let compares = TxnRequest {
        compare: (0..300)
            .map(|i| Compare {
                key: format!("c{i}").into_bytes(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let res = kv.txn(compares).await;
    expect_err(
        res,
        Code::InvalidArgument,
        "too many operations in txn request",
    )
    .await;
    let max = TxnRequest {
        success: (0..128).map(put_op).collect(),
        ..Default::default()
    };
    let resp = kv.txn(max).await.expect("128 ops").into_inner();
    assert!(resp.succeeded);
    assert_eq!(resp.responses.len(), 128);
    still_serving(&mut kv, &endpoint, &pki).await;
}

#[tokio::test]
async fn malformed_requests_get_etcd_errors() {
    let (pki, endpoint, channel) = setup().await;
    let mut kv = KvClient::new(channel.clone());
    let mut lease = LeaseClient::new(channel);
    let res = kv.put(put(Vec::new(), b"v".to_vec())).await;
    expect_err(
        res,
        Code::InvalidArgument,
        "etcdserver: key is not provided",
    )
    .await;
    let res = kv.range(RangeRequest::default()).await;
    expect_err(
        res,
        Code::InvalidArgument,
        "etcdserver: key is not provided",
    )
    .await;
    let empty_op = TxnRequest {
        success: vec![RequestOp { request: None }],
        ..Default::default()
    };
    let res = kv.txn(empty_op).await;
    expect_err(res, Code::InvalidArgument, "etcdserver: key not found").await;
    let dup = TxnRequest {
        success: vec![put_op(1), put_op(1)],
        ..Default::default()
    };
    let res = kv.txn(dup).await;
    expect_err(
        res,
        Code::InvalidArgument,
        "duplicate key given in txn request",
    )
    .await;
    // A range whose end sorts before its key is empty, not an error, in etcd.
    let backwards = RangeRequest {
        key: b"b".to_vec(),
        range_end: b"a".to_vec(),
        ..Default::default()
    };
    let resp = kv
        .range(backwards)
        .await
        .expect("backwards range")
        .into_inner();
    assert_eq!(resp.count, 0);
    let res = kv
        .range(RangeRequest {
            key: b"a".to_vec(),
            revision: 1 << 40,
            ..Default::default()
        })
        .await;
    expect_err(
        res,
        Code::OutOfRange,
        "required revision is a future revision",
    )
    .await;
    let leased = PutRequest {
        lease: 12345,
        ..put(b"k".to_vec(), b"v".to_vec())
    };
    let res = kv.put(leased).await;
    expect_err(res, Code::NotFound, "etcdserver: requested lease not found").await;
    let res = lease.lease_revoke(LeaseRevokeRequest { id: 12345 }).await;
    expect_err(res, Code::NotFound, "etcdserver: requested lease not found").await;
    let res = lease
        .lease_grant(LeaseGrantRequest {
            ttl: i64::MAX,
            id: 0,
        })
        .await;
    expect_err(res, Code::OutOfRange, "too large lease TTL").await;
    still_serving(&mut kv, &endpoint, &pki).await;
}

/// Sends raw bytes as a gRPC message, so the test can send what no generated client would.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        Ok(Some(bytes.to_vec()))
    }
}

#[tokio::test]
async fn undecodable_messages_are_refused() {
    let (pki, endpoint, channel) = setup().await;
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    for (path, body) in [
        ("/etcdserverpb.KV/Range", vec![0xff, 0xff, 0xff, 0xff]),
        ("/etcdserverpb.KV/Put", vec![0x0a, 0x7f, 0x01]),
        ("/etcdserverpb.KV/Txn", vec![0x12; 64]),
        ("/etcdserverpb.Lease/LeaseGrant", vec![0x08]),
    ] {
        grpc.ready().await.expect("channel ready");
        let res = grpc
            .unary(
                tonic::Request::new(body),
                PathAndQuery::from_static(path),
                RawCodec,
            )
            .await;
        let status = res.expect_err("garbage accepted");
        assert!(
            matches!(status.code(), Code::Internal | Code::InvalidArgument),
            "{path}: {status:?}"
        );
        assert!(status.message().contains("decode"), "{path}: {status:?}");
    }
    grpc.ready().await.expect("channel ready");
    let res = grpc
        .unary(
            tonic::Request::new(Vec::new()),
            PathAndQuery::from_static("/etcdserverpb.Auth/AuthEnable"),
            RawCodec,
        )
        .await;
    assert_eq!(
        res.expect_err("no cluster service").code(),
        Code::Unimplemented
    );
    still_serving(&mut KvClient::new(channel), &endpoint, &pki).await;
}
