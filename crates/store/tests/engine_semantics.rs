//! etcd v3 semantics of the embedded engine, in memory and on disk: revisions, ranges, txns,
//! watches, leases, compaction, limits, and recovery after a restart.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use store::engine::{Engine, EngineOptions};
use store::proto::etcdserverpb::{
    compare::{CompareResult, CompareTarget, TargetUnion},
    range_request::{SortOrder, SortTarget},
    request_op::Request,
    response_op::Response,
    watch_create_request::FilterType,
    CompactionRequest, Compare, DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest,
    LeaseTimeToLiveRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, WatchCreateRequest,
};
use store::proto::mvccpb::event::EventType;
use store::{Store, StoreError};

fn put_req(k: &str, v: &str) -> PutRequest {
    PutRequest {
        key: k.into(),
        value: v.into(),
        ..Default::default()
    }
}

async fn put(s: &dyn Store, k: &str, v: &str) -> i64 {
    s.put(put_req(k, v)).await.unwrap().header.unwrap().revision
}

async fn get(s: &dyn Store, r: RangeRequest) -> store::proto::etcdserverpb::RangeResponse {
    s.range(r).await.unwrap()
}

fn key(k: &str) -> RangeRequest {
    RangeRequest {
        key: k.into(),
        ..Default::default()
    }
}

fn prefix(p: &str) -> RangeRequest {
    let mut end = p.as_bytes().to_vec();
    *end.last_mut().unwrap() += 1;
    RangeRequest {
        key: p.into(),
        range_end: end,
        ..Default::default()
    }
}

fn cmp(k: &str, target: CompareTarget, result: CompareResult, tu: TargetUnion) -> Compare {
    Compare {
        key: k.into(),
        target: target as i32,
        result: result as i32,
        target_union: Some(tu),
        ..Default::default()
    }
}

fn op_put(k: &str, v: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestPut(put_req(k, v))),
    }
}

/// Runs a scenario against an in-memory and a durable engine.
async fn both<F, Fut>(f: F)
where
    F: Fn(Arc<Engine>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    f(Engine::in_memory()).await;
    let dir = tempfile::tempdir().unwrap();
    f(Engine::open(dir.path(), EngineOptions::default())
        .await
        .unwrap())
    .await;
}

#[tokio::test]
async fn revisions_versions_and_ranges() {
    both(|s| async move {
        assert_eq!(get(&*s, key("a")).await.header.unwrap().revision, 1);
        assert_eq!(put(&*s, "a", "1").await, 2);
        assert_eq!(put(&*s, "b", "2").await, 3);
        assert_eq!(put(&*s, "a", "3").await, 4);
        let r = get(&*s, key("a")).await;
        let kv = &r.kvs[0];
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 4, 2));
        assert_eq!(kv.value, b"3");
        // Historical read.
        let old = get(
            &*s,
            RangeRequest {
                revision: 2,
                ..key("a")
            },
        )
        .await;
        assert_eq!(old.kvs[0].value, b"1");
        assert_eq!(old.header.unwrap().revision, 4);
        assert!(matches!(
            s.range(RangeRequest {
                revision: 9,
                ..key("a")
            })
            .await,
            Err(StoreError::FutureRevision)
        ));
        // Delete resets the version; a missing key does not bump the revision.
        let d = s
            .delete_range(DeleteRangeRequest {
                key: "a".into(),
                prev_kv: true,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            (d.deleted, d.header.unwrap().revision, d.prev_kvs.len()),
            (1, 5, 1)
        );
        let d = s
            .delete_range(DeleteRangeRequest {
                key: "zz".into(),
                ..Default::default()
            })
            .await;
        assert_eq!(d.unwrap().header.unwrap().revision, 5);
        put(&*s, "a", "again").await;
        let kv = &get(&*s, key("a")).await.kvs[0];
        assert_eq!((kv.create_revision, kv.version), (6, 1));
        // Prefix, all-keys, limit, count, keys_only, sort.
        for k in ["p/1", "p/2", "p/3"] {
            put(&*s, k, k).await;
        }
        let r = get(
            &*s,
            RangeRequest {
                limit: 2,
                ..prefix("p/")
            },
        )
        .await;
        assert_eq!((r.kvs.len(), r.more, r.count), (2, true, 3));
        let r = get(
            &*s,
            RangeRequest {
                count_only: true,
                ..prefix("p/")
            },
        )
        .await;
        assert_eq!((r.kvs.len(), r.count), (0, 3));
        let r = get(
            &*s,
            RangeRequest {
                keys_only: true,
                ..prefix("p/")
            },
        )
        .await;
        assert!(r.kvs.iter().all(|kv| kv.value.is_empty()));
        let all = get(
            &*s,
            RangeRequest {
                key: vec![0],
                range_end: vec![0],
                ..Default::default()
            },
        );
        assert_eq!(all.await.count, 5);
        let r = get(
            &*s,
            RangeRequest {
                sort_order: SortOrder::Descend as i32,
                sort_target: SortTarget::Key as i32,
                ..prefix("p/")
            },
        )
        .await;
        assert_eq!(r.kvs[0].key, b"p/3");
        let r = get(
            &*s,
            RangeRequest {
                sort_target: SortTarget::Mod as i32,
                limit: 1,
                ..prefix("p/")
            },
        )
        .await;
        assert_eq!((r.kvs[0].key.as_slice(), r.more), (b"p/1".as_slice(), true));
        let r = get(
            &*s,
            RangeRequest {
                min_mod_revision: 9,
                ..prefix("p/")
            },
        )
        .await;
        assert_eq!((r.kvs.len(), r.count), (1, 3));
    })
    .await;
}

#[tokio::test]
async fn put_options() {
    both(|s| async move {
        put(&*s, "k", "v1").await;
        let r = s
            .put(PutRequest {
                prev_kv: true,
                ..put_req("k", "v2")
            })
            .await
            .unwrap();
        assert_eq!(r.prev_kv.unwrap().value, b"v1");
        let r = s
            .put(PutRequest {
                ignore_value: true,
                ..put_req("k", "")
            })
            .await
            .unwrap();
        assert_eq!(r.header.unwrap().revision, 4);
        assert_eq!(get(&*s, key("k")).await.kvs[0].value, b"v2");
        let e = s
            .put(PutRequest {
                ignore_value: true,
                ..put_req("missing", "")
            })
            .await;
        assert!(
            matches!(e, Err(StoreError::InvalidArgument(m)) if m == "etcdserver: key not found")
        );
        let e = s
            .put(PutRequest {
                lease: 42,
                ..put_req("k", "x")
            })
            .await;
        assert!(matches!(e, Err(StoreError::LeaseNotFound)));
        assert_eq!(s.revision(), 4, "failed puts change nothing");
    })
    .await;
}

#[tokio::test]
async fn txn_compares_branches_and_atomicity() {
    both(|s| async move {
        put(&*s, "k", "v").await; // rev 2
        let txn = TxnRequest {
            compare: vec![
                cmp(
                    "k",
                    CompareTarget::Value,
                    CompareResult::Equal,
                    TargetUnion::Value("v".into()),
                ),
                cmp(
                    "k",
                    CompareTarget::Version,
                    CompareResult::Equal,
                    TargetUnion::Version(1),
                ),
                cmp(
                    "k",
                    CompareTarget::Mod,
                    CompareResult::Less,
                    TargetUnion::ModRevision(3),
                ),
                cmp(
                    "k",
                    CompareTarget::Create,
                    CompareResult::Equal,
                    TargetUnion::CreateRevision(2),
                ),
                cmp(
                    "k",
                    CompareTarget::Lease,
                    CompareResult::Equal,
                    TargetUnion::Lease(0),
                ),
            ],
            success: vec![
                op_put("a", "1"),
                op_put("b", "2"),
                op_put("k", "v"),
                RequestOp {
                    request: Some(Request::RequestRange(key("a"))),
                },
            ],
            failure: vec![op_put("c", "3")],
        };
        let r = s.txn(txn.clone()).await.unwrap();
        assert!(r.succeeded);
        assert_eq!(
            r.header.unwrap().revision,
            3,
            "one revision for the whole txn"
        );
        let Some(Response::ResponseRange(rr)) = &r.responses[3].response else {
            panic!()
        };
        assert_eq!(rr.kvs[0].value, b"1", "a txn reads its own writes");
        assert_eq!(get(&*s, key("b")).await.kvs[0].mod_revision, 3);
        // Now the version compare fails: failure branch.
        let r = s.txn(txn).await.unwrap();
        assert!(!r.succeeded);
        assert_eq!(get(&*s, key("c")).await.kvs[0].mod_revision, 4);
        // A value compare on a missing key fails; version compare on it sees 0.
        let miss = |t, tu| TxnRequest {
            compare: vec![cmp("nope", t, CompareResult::Equal, tu)],
            ..Default::default()
        };
        let r = s
            .txn(miss(CompareTarget::Value, TargetUnion::Value(vec![])))
            .await
            .unwrap();
        assert!(!r.succeeded);
        let r = s
            .txn(miss(CompareTarget::Version, TargetUnion::Version(0)))
            .await
            .unwrap();
        assert!(r.succeeded);
        // Duplicate key writes are rejected; nothing is applied.
        let dup = TxnRequest {
            success: vec![op_put("x", "1"), op_put("x", "2")],
            ..Default::default()
        };
        let e = s.txn(dup).await;
        assert!(matches!(e, Err(StoreError::InvalidArgument(m)) if m.contains("duplicate key")));
        // An error in the chosen branch (missing lease) leaves no partial write.
        let bad = TxnRequest {
            success: vec![
                op_put("y", "1"),
                RequestOp {
                    request: Some(Request::RequestPut(PutRequest {
                        lease: 77,
                        ..put_req("z", "1")
                    })),
                },
            ],
            ..Default::default()
        };
        assert!(matches!(s.txn(bad).await, Err(StoreError::LeaseNotFound)));
        assert_eq!(get(&*s, key("y")).await.count, 0);
        // Nested txn.
        let nested = TxnRequest {
            success: vec![RequestOp {
                request: Some(Request::RequestTxn(TxnRequest {
                    compare: vec![cmp(
                        "a",
                        CompareTarget::Value,
                        CompareResult::Equal,
                        TargetUnion::Value("1".into()),
                    )],
                    success: vec![op_put("n", "yes")],
                    failure: vec![op_put("n", "no")],
                })),
            }],
            ..Default::default()
        };
        let r = s.txn(nested).await.unwrap();
        assert!(r.succeeded);
        assert_eq!(get(&*s, key("n")).await.kvs[0].value, b"yes");
    })
    .await;
}

#[tokio::test]
async fn limits_reject_bad_input_and_keep_serving() {
    both(|s| async move {
        let huge = "x".repeat(2 << 20);
        let e = s.put(put_req("k", &huge)).await;
        assert!(matches!(e, Err(StoreError::InvalidArgument(m)) if m == "etcdserver: request is too large"));
        let ops = (0..200).map(|i| op_put(&format!("k{i}"), "v")).collect();
        let e = s.txn(TxnRequest { success: ops, ..Default::default() }).await;
        assert!(
            matches!(e, Err(StoreError::InvalidArgument(m)) if m == "etcdserver: too many operations in txn request")
        );
        let e = s.put(put_req("", "v")).await;
        assert!(matches!(e, Err(StoreError::InvalidArgument(m)) if m == "etcdserver: key is not provided"));
        assert_eq!(put(&*s, "ok", "v").await, 2);
    })
    .await;
}

#[tokio::test]
async fn compaction_errors_and_history() {
    both(|s| async move {
        for i in 0..5 {
            put(&*s, "k", &i.to_string()).await; // revs 2..=6
        }
        s.compact(CompactionRequest {
            revision: 4,
            physical: true,
        })
        .await
        .unwrap();
        let e = s
            .range(RangeRequest {
                revision: 3,
                ..key("k")
            })
            .await;
        assert!(matches!(
            e,
            Err(StoreError::Compacted {
                compact_revision: 4
            })
        ));
        let r = get(
            &*s,
            RangeRequest {
                revision: 4,
                ..key("k")
            },
        )
        .await;
        assert_eq!(r.kvs[0].value, b"2");
        let e = s
            .compact(CompactionRequest {
                revision: 4,
                physical: false,
            })
            .await;
        assert!(matches!(e, Err(StoreError::Compacted { .. })));
        let e = s
            .compact(CompactionRequest {
                revision: 100,
                physical: false,
            })
            .await;
        assert!(matches!(e, Err(StoreError::FutureRevision)));
        let mut w = s
            .watch(WatchCreateRequest {
                key: "k".into(),
                start_revision: 2,
                ..Default::default()
            })
            .await
            .unwrap();
        let resp = w.next().await.unwrap().unwrap();
        assert!(resp.canceled);
        assert_eq!(resp.compact_revision, 4);
        assert!(w.next().await.is_none());
    })
    .await;
}

#[tokio::test]
async fn watch_order_filters_and_prev_kv() {
    both(|s| async move {
        put(&*s, "w/a", "1").await; // 2
        let mut w = s
            .watch(WatchCreateRequest {
                key: "w/".into(),
                range_end: "w0".into(),
                start_revision: 2,
                prev_kv: true,
                ..Default::default()
            })
            .await
            .unwrap();
        let mut nodel = s
            .watch(WatchCreateRequest {
                key: "w/a".into(),
                filters: vec![FilterType::Nodelete as i32],
                ..Default::default()
            })
            .await
            .unwrap();
        put(&*s, "w/a", "2").await; // 3
        put(&*s, "other", "x").await; // 4
        s.delete_range(DeleteRangeRequest {
            key: "w/a".into(),
            ..Default::default()
        })
        .await
        .unwrap(); // 5
        put(&*s, "w/a", "3").await; // 6
        let mut events = Vec::new();
        while events.len() < 4 {
            let resp = tokio::time::timeout(Duration::from_secs(5), w.next())
                .await
                .unwrap();
            events.extend(resp.unwrap().unwrap().events);
        }
        let revs: Vec<i64> = events
            .iter()
            .map(|e| e.kv.as_ref().unwrap().mod_revision)
            .collect();
        assert_eq!(revs, vec![2, 3, 5, 6]);
        assert_eq!(events[2].r#type, EventType::Delete as i32);
        assert_eq!(events[1].prev_kv.as_ref().unwrap().value, b"1");
        assert_eq!(events[2].prev_kv.as_ref().unwrap().value, b"2");
        let mut seen = Vec::new();
        while seen.len() < 2 {
            let resp = tokio::time::timeout(Duration::from_secs(5), nodel.next())
                .await
                .unwrap();
            seen.extend(resp.unwrap().unwrap().events);
        }
        assert!(seen.iter().all(|e| e.r#type == EventType::Put as i32));
        assert_eq!(seen[1].kv.as_ref().unwrap().mod_revision, 6);
    })
    .await;
}

#[tokio::test]
async fn progress_notifications() {
    let s = Engine::in_memory_with(EngineOptions {
        progress_notify_interval: Duration::from_millis(100),
        ..Default::default()
    });
    put(&*s, "a", "1").await;
    let mut w = s
        .watch(WatchCreateRequest {
            key: "z".into(),
            progress_notify: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(resp.events.is_empty());
    assert_eq!(resp.header.unwrap().revision, 2);
}

#[tokio::test]
async fn slow_watcher_does_not_block_writers() {
    both(|s| async move {
        let w = s
            .watch(WatchCreateRequest {
                key: "k".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        for i in 0..3000 {
            put(&*s, "k", &i.to_string()).await;
        }
        let mut w = w;
        let mut n = 0;
        let mut last = 0;
        while n < 3000 {
            for e in w.next().await.unwrap().unwrap().events {
                let rev = e.kv.unwrap().mod_revision;
                assert_eq!(rev, last.max(1) + 1, "no gaps, no duplicates");
                last = rev;
                n += 1;
            }
        }
    })
    .await;
}

#[tokio::test]
async fn leases_attach_revoke_and_expire() {
    both(|s| async move {
        let g = s
            .lease_grant(LeaseGrantRequest { ttl: 1, id: 0 })
            .await
            .unwrap();
        assert!(g.id > 0);
        assert_eq!(g.ttl, 2, "etcd's minimum TTL");
        let e = s.lease_grant(LeaseGrantRequest { ttl: 5, id: g.id }).await;
        assert!(matches!(e, Err(StoreError::LeaseExists)));
        let l2 = s
            .lease_grant(LeaseGrantRequest { ttl: 60, id: 7 })
            .await
            .unwrap();
        assert_eq!(l2.id, 7);
        s.put(PutRequest {
            lease: g.id,
            ..put_req("exp/1", "v")
        })
        .await
        .unwrap();
        s.put(PutRequest {
            lease: 7,
            ..put_req("rev/1", "v")
        })
        .await
        .unwrap();
        s.put(PutRequest {
            lease: 7,
            ..put_req("rev/2", "v")
        })
        .await
        .unwrap();
        let ttl = s
            .lease_time_to_live(LeaseTimeToLiveRequest { id: 7, keys: true })
            .await
            .unwrap();
        assert_eq!((ttl.granted_ttl, ttl.keys.len()), (60, 2));
        assert_eq!(s.lease_keep_alive(7).await.unwrap().ttl, 60);
        let before = s.revision();
        s.lease_revoke(LeaseRevokeRequest { id: 7 }).await.unwrap();
        assert_eq!(
            s.revision(),
            before + 1,
            "revoke deletes all keys in one revision"
        );
        assert_eq!(get(&*s, prefix("rev/")).await.count, 0);
        assert!(matches!(
            s.lease_revoke(LeaseRevokeRequest { id: 7 }).await,
            Err(StoreError::LeaseNotFound)
        ));
        let ttl = s
            .lease_time_to_live(LeaseTimeToLiveRequest { id: 7, keys: false })
            .await
            .unwrap();
        assert_eq!(ttl.ttl, -1);
        // Expiry deletes the attached key.
        tokio::time::sleep(Duration::from_millis(3000)).await;
        assert_eq!(get(&*s, key("exp/1")).await.count, 0);
        assert!(s.lease_leases().await.unwrap().leases.is_empty());
    })
    .await;
}

#[tokio::test]
async fn restart_recovers_everything_including_leases() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EngineOptions {
        snapshot_min_log_bytes: 4096,
        ..Default::default()
    };
    let (rev, lease) = {
        let s = Engine::open(dir.path(), opts.clone()).await.unwrap();
        let lease = s
            .lease_grant(LeaseGrantRequest { ttl: 100, id: 0 })
            .await
            .unwrap()
            .id;
        s.put(PutRequest {
            lease,
            ..put_req("leased", "v")
        })
        .await
        .unwrap();
        for i in 0..500 {
            put(&*s, &format!("k{}", i % 50), &format!("value-{i}")).await;
        }
        s.delete_range(DeleteRangeRequest {
            key: "k1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
        s.compact(CompactionRequest {
            revision: 300,
            physical: true,
        })
        .await
        .unwrap();
        put(&*s, "last", "x").await;
        (s.revision(), lease)
    };
    let s = Engine::open(dir.path(), opts).await.unwrap();
    assert_eq!(s.revision(), rev);
    assert_eq!(get(&*s, key("k1")).await.count, 0);
    let kv = &get(&*s, key("k2")).await.kvs[0];
    assert_eq!(
        (kv.value.as_slice(), kv.version),
        (b"value-452".as_slice(), 10)
    );
    assert!(matches!(
        s.range(RangeRequest {
            revision: 299,
            ..key("k2")
        })
        .await,
        Err(StoreError::Compacted { .. })
    ));
    assert_eq!(
        get(
            &*s,
            RangeRequest {
                revision: 300,
                ..key("k2")
            }
        )
        .await
        .count,
        1
    );
    let ttl = s
        .lease_time_to_live(LeaseTimeToLiveRequest {
            id: lease,
            keys: true,
        })
        .await
        .unwrap();
    assert_eq!(ttl.keys, vec![b"leased".to_vec()]);
    assert!(ttl.ttl > 90, "a lease's TTL is refreshed on restart");
    assert_eq!(put(&*s, "after", "restart").await, rev + 1);
}

/// The newest log segment (the one a crash could have torn).
fn last_segment(dir: &std::path::Path) -> std::path::PathBuf {
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .filter(|p| std::fs::metadata(p).unwrap().len() > 0)
        .collect();
    logs.sort();
    logs.pop().unwrap()
}

#[tokio::test]
async fn torn_tail_is_truncated_and_corruption_refused() {
    let dir = tempfile::tempdir().unwrap();
    let plain = EngineOptions::default();
    {
        let s = Engine::open(dir.path(), plain.clone()).await.unwrap();
        for i in 0..10 {
            put(&*s, &format!("k{i}"), "v").await;
        }
    }
    // A torn write: half a frame at the end of the last segment.
    let seg = last_segment(dir.path());
    let mut data = std::fs::read(&seg).unwrap();
    let good = data.len();
    data.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3, 4, 5]);
    std::fs::write(&seg, &data).unwrap();
    {
        let s = Engine::open(dir.path(), plain.clone()).await.unwrap();
        assert_eq!(s.revision(), 11);
        assert_eq!(std::fs::metadata(&seg).unwrap().len() as usize, good);
        assert_eq!(put(&*s, "after", "v").await, 12);
    }
    // A flipped bit inside an older, non-final segment is corruption, not a torn tail.
    let mut data = std::fs::read(&seg).unwrap();
    data[20] ^= 0x40;
    std::fs::write(&seg, &data).unwrap();
    let e = Engine::open(dir.path(), plain).await;
    assert!(matches!(e, Err(StoreError::Storage(m)) if m.contains("corrupt")));
}

#[tokio::test]
async fn preallocated_segments_recover_and_torn_writes_in_them_are_cut() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EngineOptions {
        snapshot_min_log_bytes: 64 << 10,
        preallocate: true,
        ..Default::default()
    };
    {
        let s = Engine::open(dir.path(), opts.clone()).await.unwrap();
        // Enough writes to move into preallocated segments.
        for i in 0..300 {
            put(&*s, &format!("k{}", i % 30), &"v".repeat(200)).await;
            if i % 50 == 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let seg = last_segment(dir.path());
    let mut data = std::fs::read(&seg).unwrap();
    let end = data.iter().rposition(|b| *b != 0).unwrap();
    assert!(data.len() > end + 64, "the last segment is preallocated");
    // Garbage in the zeroed space after the last frame: a write that was torn.
    data[end + 40..end + 48].copy_from_slice(&[9; 8]);
    std::fs::write(&seg, &data).unwrap();
    let s = Engine::open(dir.path(), opts).await.unwrap();
    assert_eq!(s.revision(), 301);
    assert_eq!(get(&*s, key("k29")).await.kvs[0].version, 10);
}

#[tokio::test]
async fn watch_from_compaction_revision_is_the_same_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EngineOptions {
        snapshot_min_log_bytes: 1,
        snapshot_log_ratio: 1,
        ..Default::default()
    };
    let watch_from = |s: Arc<Engine>, rev: i64| async move {
        let req = WatchCreateRequest {
            key: "w".into(),
            range_end: "x".into(),
            start_revision: rev,
            ..Default::default()
        };
        let mut w = s.watch(req).await.unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(5), w.next()).await;
        let events = resp.unwrap().unwrap().unwrap().events;
        events
            .iter()
            .map(|e| (e.r#type, e.kv.as_ref().unwrap().mod_revision))
            .collect::<Vec<_>>()
    };
    let before = {
        let s = Engine::open(dir.path(), opts.clone()).await.unwrap();
        put(&*s, "w1", "a").await; // 2
        put(&*s, "w2", "b").await; // 3
        s.compact(CompactionRequest {
            revision: 3,
            physical: true,
        })
        .await
        .unwrap();
        put(&*s, "w1", "c").await; // 4: the writer snapshots after this batch
        tokio::time::sleep(Duration::from_millis(300)).await;
        watch_from(s, 3).await
    };
    assert_eq!(
        before,
        vec![(EventType::Put as i32, 3), (EventType::Put as i32, 4)]
    );
    let snaps = std::fs::read_dir(dir.path()).unwrap();
    assert!(snaps
        .map(|e| e.unwrap().file_name())
        .any(|n| n.to_string_lossy().ends_with(".snap")));
    let s = Engine::open(dir.path(), opts).await.unwrap();
    assert_eq!(watch_from(s, 3).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let s = Engine::open(dir.path(), EngineOptions::default())
        .await
        .unwrap();
    let (writers, each) = (64, 40);
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let s = s.clone();
            tokio::spawn(async move {
                for n in 0..each {
                    put(&*s, &format!("g/{w}/{n}"), "v").await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let (writes, appends) = (writers * each, s.log_appends());
    eprintln!("{writes} writes, {appends} log appends (fsyncs)");
    assert_eq!(s.revision(), 1 + writes as i64);
    assert!(
        appends * 4 <= writes,
        "{writes} acknowledged writes took {appends} fsyncs: no group commit"
    );
}
