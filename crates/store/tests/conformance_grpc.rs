//! Wire-level conformance: the same raw gRPC conversations with a real etcd and with krust's
//! endpoint (over the embedded engine) must produce the same normalized responses. Covers what
//! the `Store`-level suite cannot see: watch stream multiplexing (watch IDs, created/canceled
//! responses, cancel, progress requests, duplicate IDs, compacted starts), the lease keep-alive
//! stream, and endpoint failover in the real-etcd backend.

mod support;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use store::proto::etcdserverpb::kv_client::KvClient;
use store::proto::etcdserverpb::lease_client::LeaseClient;
use store::proto::etcdserverpb::watch_client::WatchClient;
use store::proto::etcdserverpb::watch_request::RequestUnion;
use store::proto::etcdserverpb::*;
use store::Store;
use support::{Endpoint, EtcdProcess, Pki};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// One conversation's normalized record; revisions relative to the first response.
struct Conv {
    base: i64,
    log: Vec<String>,
}

impl Conv {
    fn rel(&self, r: i64) -> String {
        if r <= 0 {
            r.to_string()
        } else {
            format!("+{}", r - self.base)
        }
    }

    fn watch(&mut self, what: &str, r: &WatchResponse) {
        let events: Vec<String> = r
            .events
            .iter()
            .map(|e| {
                let kv = e.kv.clone().unwrap_or_default();
                format!(
                    "{} {}@{}",
                    e.r#type,
                    String::from_utf8_lossy(&kv.key),
                    self.rel(kv.mod_revision)
                )
            })
            .collect();
        let line = format!(
            "id={} created={} canceled={} compact={} rev={} events={events:?} reason={}",
            r.watch_id,
            r.created,
            r.canceled,
            self.rel(r.compact_revision),
            self.rel(r.header.map_or(0, |h| h.revision)),
            !r.cancel_reason.is_empty(),
        );
        self.log.push(format!("{what}: {line}"));
    }
}

fn create(key: &str, start_revision: i64, watch_id: i64) -> WatchRequest {
    WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: key.into(),
            start_revision,
            watch_id,
            ..Default::default()
        })),
    }
}

async fn put(kv: &mut KvClient<Channel>, key: &str) -> i64 {
    let resp = kv
        .put(PutRequest {
            key: key.into(),
            value: b"v".to_vec(),
            ..Default::default()
        })
        .await
        .expect("put")
        .into_inner();
    resp.header.map_or(0, |h| h.revision)
}

async fn next(stream: &mut tonic::Streaming<WatchResponse>) -> WatchResponse {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("watch response in time")
        .expect("watch stream ok")
        .expect("watch stream open")
}

/// The conversation: the same requests, in the same order, against any endpoint.
async fn conversation(channel: Channel) -> Vec<String> {
    let mut kv = KvClient::new(channel.clone());
    let base = put(&mut kv, "w/base").await;
    let mut c = Conv {
        base,
        log: Vec::new(),
    };
    let (tx, rx) = mpsc::channel(16);
    // etcd (grpc-go) sends response headers only with its first message, so the first request
    // must be queued before the call is awaited.
    tx.send(create("w/a", 0, 0)).await.unwrap();
    let mut stream = WatchClient::new(channel.clone())
        .watch(ReceiverStream::new(rx))
        .await
        .expect("watch")
        .into_inner();
    let r = next(&mut stream).await;
    c.watch("create a", &r);
    tx.send(create("w/b", 0, 0)).await.unwrap();
    let r = next(&mut stream).await;
    c.watch("create b", &r);
    put(&mut kv, "w/a").await;
    let r = next(&mut stream).await;
    c.watch("event a", &r);
    put(&mut kv, "w/b").await;
    let r = next(&mut stream).await;
    c.watch("event b", &r);
    tx.send(WatchRequest {
        request_union: Some(RequestUnion::CancelRequest(WatchCancelRequest {
            watch_id: 0,
        })),
    })
    .await
    .unwrap();
    let r = next(&mut stream).await;
    c.watch("cancel a", &r);
    put(&mut kv, "w/a").await;
    tx.send(WatchRequest {
        request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})),
    })
    .await
    .unwrap();
    let r = next(&mut stream).await;
    c.watch("progress", &r);
    tx.send(create("w/c", 0, 7)).await.unwrap();
    let r = next(&mut stream).await;
    c.watch("create id 7", &r);
    tx.send(create("w/c", 0, 7)).await.unwrap();
    let r = next(&mut stream).await;
    c.watch("duplicate id 7", &r);
    tx.send(create("w/a", base + 1, 0)).await.unwrap();
    let r = next(&mut stream).await;
    c.watch("create a from +1", &r);
    let r = next(&mut stream).await;
    c.watch("history a", &r);

    tx.send(WatchRequest {
        request_union: Some(RequestUnion::CancelRequest(WatchCancelRequest {
            watch_id: 2,
        })),
    })
    .await
    .unwrap();
    let r = next(&mut stream).await;
    c.watch("cancel 2", &r);

    let compact_at = put(&mut kv, "w/a").await;
    kv.compact(CompactionRequest {
        revision: compact_at,
        physical: true,
    })
    .await
    .expect("compact");
    tx.send(create("w/a", base, 0)).await.unwrap();
    let r = next(&mut stream).await;
    c.watch("create compacted", &r);
    let r = next(&mut stream).await;
    c.watch("compacted", &r);
    drop(tx);

    let mut lease = LeaseClient::new(channel);
    let id = lease
        .lease_grant(LeaseGrantRequest { ttl: 30, id: 0 })
        .await
        .expect("grant")
        .into_inner()
        .id;
    let reqs = tokio_stream::iter([
        LeaseKeepAliveRequest { id },
        LeaseKeepAliveRequest { id: id + 1 },
    ]);
    let mut ka = lease
        .lease_keep_alive(reqs)
        .await
        .expect("keep-alive")
        .into_inner();
    for what in ["keep-alive", "keep-alive unknown"] {
        let r = ka.message().await.expect("ka").expect("ka response");
        c.log
            .push(format!("{what}: ttl={} same_id={}", r.ttl, r.id == id));
    }
    let ttl = lease
        .lease_time_to_live(LeaseTimeToLiveRequest {
            id: id + 1,
            keys: false,
        })
        .await
        .expect("time to live of unknown lease")
        .into_inner();
    c.log.push(format!("ttl unknown: ttl={}", ttl.ttl));
    c.log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_and_lease_streams_match_etcd() {
    let pki = Pki::generate();
    let etcd = EtcdProcess::start(&pki);
    let _ready = etcd.backend(&pki).await;
    let etcd_channel = support::grpc_channel(&etcd.endpoint, &pki, true)
        .await
        .expect("connect etcd");
    let want = conversation(etcd_channel).await;
    println!("etcd:\n{}", want.join("\n"));

    let engine: Arc<dyn Store> = store::engine::Engine::in_memory();
    let endpoint = Endpoint::start(engine, &pki).await;
    let channel = support::grpc_channel(&endpoint.endpoint(), &pki, true)
        .await
        .expect("connect krust");
    let got = conversation(channel).await;
    let diffs: Vec<String> = (0..want.len().max(got.len()))
        .filter(|&i| want.get(i) != got.get(i))
        .map(|i| format!("  etcd:  {:?}\n  krust: {:?}", want.get(i), got.get(i)))
        .collect();
    assert!(
        diffs.is_empty(),
        "krust differs from etcd:\n{}",
        diffs.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_backend_fails_over_to_the_next_endpoint() {
    let pki = Pki::generate();
    let etcd = EtcdProcess::start(&pki);
    let _ready = etcd.backend(&pki).await;
    let dead = format!("127.0.0.1:{}", support::free_port());
    let backend =
        store::etcd::EtcdBackend::new(vec![dead, etcd.endpoint.clone()], Some(pki.client_tls()))
            .expect("backend");
    let resp = backend
        .put(PutRequest {
            key: b"failover".to_vec(),
            value: b"ok".to_vec(),
            ..Default::default()
        })
        .await
        .expect("put through the second endpoint");
    assert!(resp.header.is_some());
    let mut watch = backend
        .watch(WatchCreateRequest {
            key: b"failover".to_vec(),
            start_revision: 1,
            ..Default::default()
        })
        .await
        .expect("watch through the second endpoint");
    let first = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("event in time")
        .expect("stream open")
        .expect("event");
    assert_eq!(
        first.events[0].kv.as_ref().map(|kv| kv.value.clone()),
        Some(b"ok".to_vec())
    );
    let all_dead = store::etcd::EtcdBackend::new(
        vec![format!("127.0.0.1:{}", support::free_port())],
        Some(pki.client_tls()),
    )
    .expect("backend");
    let err = all_dead.status().await.expect_err("nothing listens");
    assert!(matches!(err, store::StoreError::Unavailable(_)), "{err:?}");
}

/// After its current endpoint dies, the backend reconnects elsewhere. (Two independent etcds
/// stand in for two members: only the routing is under test here.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_backend_fails_over_when_its_endpoint_dies() {
    let pki = Pki::generate();
    let first = EtcdProcess::start(&pki);
    let second = EtcdProcess::start(&pki);
    let _ready = second.backend(&pki).await;
    let backend = store::etcd::EtcdBackend::new(
        vec![first.endpoint.clone(), second.endpoint.clone()],
        Some(pki.client_tls()),
    )
    .expect("backend");
    support::wait_ready(&backend).await;
    let put = |v: &str| PutRequest {
        key: b"k".to_vec(),
        value: v.into(),
        ..Default::default()
    };
    backend
        .put(put("on first"))
        .await
        .expect("put on the first endpoint");
    drop(first);
    let mut last = None;
    // The first request after the death may fail (it was on the dead connection); the next
    // ones must reach the second endpoint.
    for _ in 0..3 {
        last = Some(backend.put(put("on second")).await);
        if matches!(last, Some(Ok(_))) {
            break;
        }
    }
    last.expect("tried").expect("put after failover");
    let got = backend
        .range(RangeRequest {
            key: b"k".to_vec(),
            ..Default::default()
        })
        .await
        .expect("range after failover");
    assert_eq!(got.kvs[0].value, b"on second");
}
