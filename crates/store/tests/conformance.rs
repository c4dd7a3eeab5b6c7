//! One conformance suite, several backends: every scenario runs against a real etcd 3.4 (through
//! `EtcdBackend`), the krust gRPC endpoint in front of etcd, and the embedded engine (in memory,
//! on disk, and behind the endpoint). Each scenario records its observations in a normalized,
//! comparable form (revisions relative to the scenario's start, lease IDs by order of appearance,
//! watch events flattened across responses) and the suite fails on any difference from etcd.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use std::panic::AssertUnwindSafe;

use futures::{FutureExt, StreamExt};
use store::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use store::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use store::proto::etcdserverpb::request_op::Request;
use store::proto::etcdserverpb::response_op::Response;
use store::proto::etcdserverpb::watch_create_request::FilterType;
use store::proto::etcdserverpb::*;
use store::proto::mvccpb::{event::EventType, Event, KeyValue};
use store::{Store, StoreError, WatchStream};
use support::{EtcdProcess, Pki};

/// Observations of one scenario on one backend.
struct Run<'a> {
    s: &'a dyn Store,
    prefix: String,
    base: i64,
    leases: Vec<i64>,
    log: Vec<String>,
}

impl<'a> Run<'a> {
    async fn new(s: &'a dyn Store, prefix: &str) -> Run<'a> {
        let base = s
            .status()
            .await
            .ok()
            .and_then(|r| r.header)
            .map_or(-1, |h| h.revision);
        Run {
            s,
            prefix: format!("{prefix}/"),
            base,
            leases: Vec::new(),
            log: Vec::new(),
        }
    }

    fn k(&self, name: &str) -> Vec<u8> {
        format!("{}{name}", self.prefix).into_bytes()
    }

    fn end(&self, name: &str) -> Vec<u8> {
        let mut e = self.k(name);
        *e.last_mut().unwrap() += 1;
        e
    }

    fn rel(&self, r: i64) -> String {
        if r <= 0 {
            r.to_string()
        } else {
            format!("+{}", r - self.base)
        }
    }

    fn abs(&self, rel: i64) -> i64 {
        self.base + rel
    }

    fn lease(&mut self, id: i64) -> String {
        if id == 0 {
            return "-".into();
        }
        let n = self
            .leases
            .iter()
            .position(|l| *l == id)
            .unwrap_or_else(|| {
                self.leases.push(id);
                self.leases.len() - 1
            });
        format!("L{n}")
    }

    fn key(&self, k: &[u8]) -> String {
        let k = String::from_utf8_lossy(k);
        k.strip_prefix(&self.prefix).unwrap_or(&k).to_string()
    }

    fn kv(&mut self, kv: &KeyValue) -> String {
        let val = if kv.value.len() > 32 {
            format!("<{} bytes>", kv.value.len())
        } else {
            String::from_utf8_lossy(&kv.value).to_string()
        };
        format!(
            "{}={} c{} m{} v{} {}",
            self.key(&kv.key),
            val,
            self.rel(kv.create_revision),
            self.rel(kv.mod_revision),
            kv.version,
            self.lease(kv.lease)
        )
    }

    fn header(&self, h: &Option<ResponseHeader>) -> String {
        format!("rev{}", self.rel(h.map_or(0, |h| h.revision)))
    }

    fn err(&self, e: &StoreError) -> String {
        match e {
            StoreError::Compacted { compact_revision } => {
                format!("ERR Compacted at {}", self.rel(*compact_revision))
            }
            StoreError::InvalidArgument(m) => format!("ERR InvalidArgument {m:?}"),
            StoreError::Storage(_) | StoreError::Unavailable(_) => format!("ERR {e}"),
            e => format!("ERR {e:?}"),
        }
    }

    fn rec(&mut self, what: &str, out: String) {
        self.log.push(format!("{what}: {out}"));
    }

    fn range_out(&mut self, r: &RangeResponse) -> String {
        let kvs: Vec<String> = r.kvs.iter().map(|kv| self.kv(kv)).collect();
        format!(
            "{} count={} more={} [{}]",
            self.header(&r.header),
            r.count,
            r.more,
            kvs.join("; ")
        )
    }

    async fn range(&mut self, what: &str, req: RangeRequest) {
        let out = match self.s.range(req).await {
            Ok(r) => self.range_out(&r),
            Err(e) => self.err(&e),
        };
        self.rec(what, out);
    }

    async fn get(&mut self, what: &str, name: &str) {
        let key = self.k(name);
        self.range(
            what,
            RangeRequest {
                key,
                ..Default::default()
            },
        )
        .await;
    }

    async fn put_req(&mut self, what: &str, req: PutRequest) {
        let out = match self.s.put(req).await {
            Ok(r) => {
                let prev = r.prev_kv.as_ref().map(|kv| self.kv(kv));
                format!("{} prev={prev:?}", self.header(&r.header))
            }
            Err(e) => self.err(&e),
        };
        self.rec(what, out);
    }

    async fn put(&mut self, name: &str, value: &str) {
        let req = PutRequest {
            key: self.k(name),
            value: value.into(),
            ..Default::default()
        };
        let shown = if value.len() > 32 { "<big>" } else { value };
        self.put_req(&format!("put {name}={shown}"), req).await;
    }

    async fn delete(&mut self, what: &str, req: DeleteRangeRequest) {
        let out = match self.s.delete_range(req).await {
            Ok(r) => {
                let prev: Vec<String> = r.prev_kvs.iter().map(|kv| self.kv(kv)).collect();
                format!(
                    "{} deleted={} prev={prev:?}",
                    self.header(&r.header),
                    r.deleted
                )
            }
            Err(e) => self.err(&e),
        };
        self.rec(what, out);
    }

    fn op_out(&mut self, op: &ResponseOp) -> String {
        match &op.response {
            Some(Response::ResponseRange(r)) => format!("range {}", self.range_out(r)),
            Some(Response::ResponsePut(r)) => {
                let prev = r.prev_kv.as_ref().map(|kv| self.kv(kv));
                format!("put {} prev={prev:?}", self.header(&r.header))
            }
            Some(Response::ResponseDeleteRange(r)) => {
                format!("delete {} deleted={}", self.header(&r.header), r.deleted)
            }
            Some(Response::ResponseTxn(t)) => self.txn_out(t),
            None => "none".into(),
        }
    }

    fn txn_out(&mut self, t: &TxnResponse) -> String {
        let ops: Vec<String> = t.responses.iter().map(|op| self.op_out(op)).collect();
        format!(
            "txn {} succeeded={} {{{}}}",
            self.header(&t.header),
            t.succeeded,
            ops.join(" | ")
        )
    }

    async fn txn(&mut self, what: &str, req: TxnRequest) {
        let out = match self.s.txn(req).await {
            Ok(t) => self.txn_out(&t),
            Err(e) => self.err(&e),
        };
        self.rec(what, out);
    }

    async fn compact(&mut self, what: &str, rel: i64) {
        let req = CompactionRequest {
            revision: self.abs(rel),
            physical: true,
        };
        let out = match self.s.compact(req).await {
            Ok(r) => self.header(&r.header),
            Err(e) => self.err(&e),
        };
        self.rec(what, out);
    }

    async fn watch(&mut self, what: &str, req: WatchCreateRequest) -> Option<WatchStream> {
        match self.s.watch(req).await {
            Ok(w) => Some(w),
            Err(e) => {
                let out = self.err(&e);
                self.rec(what, out);
                None
            }
        }
    }

    fn event(&mut self, e: &Event) -> String {
        let ty = match EventType::try_from(e.r#type) {
            Ok(EventType::Put) => "PUT",
            Ok(EventType::Delete) => "DELETE",
            Err(_) => "?",
        };
        let kv = e.kv.as_ref().map(|kv| self.kv(kv)).unwrap_or_default();
        let prev = e.prev_kv.as_ref().map(|kv| self.kv(kv));
        format!("{ty} {kv} prev={prev:?}")
    }

    /// Flattens responses into events (batching differs legitimately between servers) until
    /// `n` events, a cancellation, or a quiet period.
    async fn collect(&mut self, what: &str, w: Option<WatchStream>, n: usize) {
        let Some(mut w) = w else { return };
        let mut out = Vec::new();
        let mut events = 0;
        while events < n {
            let next = tokio::time::timeout(Duration::from_secs(8), w.next()).await;
            let resp = match next {
                Ok(Some(Ok(resp))) => resp,
                Ok(Some(Err(e))) => {
                    out.push(self.err(&e));
                    break;
                }
                Ok(None) => {
                    out.push("stream ended".into());
                    break;
                }
                Err(_) => {
                    out.push("timed out".into());
                    break;
                }
            };
            for e in &resp.events {
                let s = self.event(e);
                out.push(s);
            }
            events += resp.events.len();
            if resp.canceled {
                let c = format!(
                    "canceled compact_revision={}",
                    self.rel(resp.compact_revision)
                );
                out.push(c);
                break;
            }
        }
        self.rec(what, out.join("\n    "));
    }

    /// Every event until the stream has been quiet for a while: for histories whose response
    /// batching may differ while the events may not.
    async fn collect_all(&mut self, what: &str, w: Option<WatchStream>) {
        let Some(mut w) = w else { return };
        let mut out = Vec::new();
        while let Ok(Some(item)) = tokio::time::timeout(Duration::from_millis(1500), w.next()).await
        {
            match item {
                Ok(resp) => {
                    for e in &resp.events {
                        let s = self.event(e);
                        out.push(s);
                    }
                    if resp.canceled {
                        out.push(format!("canceled {}", self.rel(resp.compact_revision)));
                        break;
                    }
                }
                Err(e) => {
                    out.push(self.err(&e));
                    break;
                }
            }
        }
        self.rec(what, out.join("\n    "));
    }

    async fn grant(&mut self, what: &str, ttl: i64, id: i64) -> i64 {
        match self.s.lease_grant(LeaseGrantRequest { ttl, id }).await {
            Ok(r) => {
                let out = format!("{} ttl={} error={:?}", self.lease(r.id), r.ttl, r.error);
                self.rec(what, out);
                r.id
            }
            Err(e) => {
                let out = self.err(&e);
                self.rec(what, out);
                0
            }
        }
    }

    async fn time_to_live(&mut self, what: &str, id: i64, keys: bool) {
        let req = LeaseTimeToLiveRequest { id, keys };
        let out = match self.s.lease_time_to_live(req).await {
            Ok(r) => {
                let mut ks: Vec<String> = r.keys.iter().map(|k| self.key(k)).collect();
                ks.sort();
                // The remaining TTL depends on timing; only its range is a semantic fact.
                let ttl = match r.ttl {
                    t if t > 0 && t <= r.granted_ttl => "0<ttl<=granted".to_string(),
                    t => t.to_string(),
                };
                format!(
                    "{} ttl={ttl} granted={} keys={ks:?}",
                    self.lease(r.id),
                    r.granted_ttl
                )
            }
            Err(e) => self.err(&e),
        };
        self.rec(what, out);
    }
}

fn put_op(key: Vec<u8>, value: &str, lease: i64) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestPut(PutRequest {
            key,
            value: value.into(),
            lease,
            prev_kv: true,
            ..Default::default()
        })),
    }
}

fn range_op(key: Vec<u8>, range_end: Vec<u8>) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestRange(RangeRequest {
            key,
            range_end,
            ..Default::default()
        })),
    }
}

fn del_op(key: Vec<u8>, range_end: Vec<u8>) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
            key,
            range_end,
            prev_kv: true,
        })),
    }
}

fn cmp(key: Vec<u8>, result: CompareResult, target: TargetUnion) -> Compare {
    let t = match target {
        TargetUnion::Version(_) => CompareTarget::Version,
        TargetUnion::CreateRevision(_) => CompareTarget::Create,
        TargetUnion::ModRevision(_) => CompareTarget::Mod,
        TargetUnion::Value(_) => CompareTarget::Value,
        TargetUnion::Lease(_) => CompareTarget::Lease,
    };
    Compare {
        result: result as i32,
        target: t as i32,
        key,
        target_union: Some(target),
        range_end: Vec::new(),
    }
}

async fn basics(r: &mut Run<'_>) {
    r.put("a", "1").await;
    r.put("b", "1").await;
    let req = PutRequest {
        key: r.k("a"),
        value: b"2".to_vec(),
        prev_kv: true,
        ..Default::default()
    };
    r.put_req("put a=2 prev_kv", req).await;
    r.put("c", "3").await;
    r.put("c", "3").await;
    r.get("get a", "a").await;
    r.get("get missing", "zz").await;
    let (key, range_end) = (r.k(""), r.end(""));
    let all = RangeRequest {
        key,
        range_end,
        ..Default::default()
    };
    r.range("prefix", all.clone()).await;
    r.range(
        "limit 2",
        RangeRequest {
            limit: 2,
            ..all.clone()
        },
    )
    .await;
    r.range(
        "count_only",
        RangeRequest {
            count_only: true,
            ..all.clone()
        },
    )
    .await;
    r.range(
        "keys_only",
        RangeRequest {
            keys_only: true,
            ..all.clone()
        },
    )
    .await;
    let at = r.abs(2);
    r.range(
        "at +2",
        RangeRequest {
            revision: at,
            ..all.clone()
        },
    )
    .await;
    let at = r.abs(1);
    r.range(
        "at +1 limit 1",
        RangeRequest {
            revision: at,
            limit: 1,
            ..all.clone()
        },
    )
    .await;
    let future = r.abs(100);
    r.range(
        "future rev",
        RangeRequest {
            revision: future,
            ..all.clone()
        },
    )
    .await;
    let desc = RangeRequest {
        sort_order: SortOrder::Descend as i32,
        sort_target: SortTarget::Key as i32,
        ..all.clone()
    };
    r.range("sort key desc", desc.clone()).await;
    r.range("sort key desc limit 1", RangeRequest { limit: 1, ..desc })
        .await;
    for (name, target) in [
        ("mod", SortTarget::Mod),
        ("create", SortTarget::Create),
        ("version", SortTarget::Version),
        ("value", SortTarget::Value),
    ] {
        let req = RangeRequest {
            sort_order: SortOrder::Ascend as i32,
            sort_target: target as i32,
            ..all.clone()
        };
        r.range(&format!("sort {name} asc"), req).await;
    }
    let (min_mod, max_create) = (r.abs(3), r.abs(2));
    r.range(
        "min_mod_revision",
        RangeRequest {
            min_mod_revision: min_mod,
            ..all.clone()
        },
    )
    .await;
    let req = RangeRequest {
        max_create_revision: max_create,
        ..all.clone()
    };
    r.range("max_create_revision", req).await;
    let (key, range_end) = (r.k("b"), r.k("a"));
    r.range(
        "end before key",
        RangeRequest {
            key,
            range_end,
            ..Default::default()
        },
    )
    .await;
    let key = r.k("b");
    r.range(
        "from b to \\0",
        RangeRequest {
            key,
            range_end: vec![0],
            count_only: true,
            ..Default::default()
        },
    )
    .await;
    let big = "x".repeat(1024 * 1024);
    r.put("big", &big).await;
    r.get("get big", "big").await;
}

async fn deletes(r: &mut Run<'_>) {
    for k in ["a", "b", "c", "d"] {
        r.put(k, k).await;
    }
    let key = r.k("a");
    let req = DeleteRangeRequest {
        key,
        prev_kv: true,
        ..Default::default()
    };
    r.delete("delete a prev_kv", req).await;
    let key = r.k("zz");
    r.delete(
        "delete missing",
        DeleteRangeRequest {
            key,
            ..Default::default()
        },
    )
    .await;
    let (key, range_end) = (r.k("b"), r.k("d"));
    r.delete(
        "delete [b,d)",
        DeleteRangeRequest {
            key,
            range_end,
            ..Default::default()
        },
    )
    .await;
    r.get("get a after delete", "a").await;
    r.put("a", "again").await;
    r.get("get a recreated", "a").await;
    let (key, range_end) = (r.k(""), r.end(""));
    r.delete(
        "delete prefix",
        DeleteRangeRequest {
            key,
            range_end,
            prev_kv: true,
        },
    )
    .await;
    let (key, range_end) = (r.k(""), r.end(""));
    r.range(
        "after all deleted",
        RangeRequest {
            key,
            range_end,
            ..Default::default()
        },
    )
    .await;
}

async fn transactions(r: &mut Run<'_>) {
    r.put("a", "1").await;
    r.put("b", "2").await;
    let (a, b, m) = (r.k("a"), r.k("b"), r.k("missing"));
    let cases: Vec<(&str, Vec<Compare>)> = vec![
        (
            "value equal",
            vec![cmp(
                a.clone(),
                CompareResult::Equal,
                TargetUnion::Value(b"1".to_vec()),
            )],
        ),
        (
            "value greater",
            vec![cmp(
                a.clone(),
                CompareResult::Greater,
                TargetUnion::Value(b"0".to_vec()),
            )],
        ),
        (
            "value less false",
            vec![cmp(
                a.clone(),
                CompareResult::Less,
                TargetUnion::Value(b"0".to_vec()),
            )],
        ),
        (
            "value not_equal",
            vec![cmp(
                a.clone(),
                CompareResult::NotEqual,
                TargetUnion::Value(b"1".to_vec()),
            )],
        ),
        (
            "version",
            vec![cmp(
                a.clone(),
                CompareResult::Equal,
                TargetUnion::Version(1),
            )],
        ),
        (
            "create",
            vec![cmp(
                b.clone(),
                CompareResult::Equal,
                TargetUnion::CreateRevision(r.abs(2)),
            )],
        ),
        (
            "mod less",
            vec![cmp(
                b.clone(),
                CompareResult::Less,
                TargetUnion::ModRevision(r.abs(2)),
            )],
        ),
        (
            "lease none",
            vec![cmp(a.clone(), CompareResult::Equal, TargetUnion::Lease(0))],
        ),
        (
            "missing version 0",
            vec![cmp(
                m.clone(),
                CompareResult::Equal,
                TargetUnion::Version(0),
            )],
        ),
        (
            "missing create 0",
            vec![cmp(
                m.clone(),
                CompareResult::Equal,
                TargetUnion::CreateRevision(0),
            )],
        ),
        (
            "missing value",
            vec![cmp(
                m.clone(),
                CompareResult::Equal,
                TargetUnion::Value(Vec::new()),
            )],
        ),
        (
            "two compares",
            vec![
                cmp(a.clone(), CompareResult::Equal, TargetUnion::Version(1)),
                cmp(b.clone(), CompareResult::Equal, TargetUnion::Version(2)),
            ],
        ),
    ];
    for (name, compare) in cases {
        let req = TxnRequest {
            compare,
            success: vec![range_op(a.clone(), Vec::new())],
            failure: vec![range_op(b.clone(), Vec::new())],
        };
        r.txn(&format!("read-only txn {name}"), req).await;
    }
    let mut ranged = cmp(r.k(""), CompareResult::Greater, TargetUnion::Version(0));
    ranged.range_end = r.end("");
    let req = TxnRequest {
        compare: vec![ranged],
        success: vec![
            put_op(a.clone(), "3", 0),
            put_op(r.k("c"), "3", 0),
            range_op(r.k(""), r.end("")),
        ],
        failure: vec![],
    };
    r.txn("ranged compare, multi put", req).await;
    let req = TxnRequest {
        compare: vec![cmp(
            a.clone(),
            CompareResult::Equal,
            TargetUnion::Value(b"nope".to_vec()),
        )],
        success: vec![put_op(a.clone(), "x", 0)],
        failure: vec![del_op(b.clone(), Vec::new()), range_op(r.k(""), r.end(""))],
    };
    r.txn("failure branch delete", req).await;
    let nested = TxnRequest {
        compare: vec![cmp(
            m.clone(),
            CompareResult::Equal,
            TargetUnion::Version(0),
        )],
        success: vec![put_op(m.clone(), "new", 0)],
        failure: vec![],
    };
    let req = TxnRequest {
        compare: vec![],
        success: vec![
            RequestOp {
                request: Some(Request::RequestTxn(nested)),
            },
            put_op(r.k("d"), "d", 0),
        ],
        failure: vec![],
    };
    r.txn("nested txn", req).await;
    r.txn("empty txn", TxnRequest::default()).await;
    let req = TxnRequest {
        success: vec![put_op(a.clone(), "1", 0), put_op(a.clone(), "2", 0)],
        ..Default::default()
    };
    r.txn("duplicate put", req).await;
    let req = TxnRequest {
        success: vec![del_op(r.k(""), r.end("")), put_op(a.clone(), "2", 0)],
        ..Default::default()
    };
    r.txn("put under delete", req).await;
    let req = TxnRequest {
        success: (0..129)
            .map(|i| put_op(r.k(&format!("k{i}")), "v", 0))
            .collect(),
        ..Default::default()
    };
    r.txn("129 ops", req).await;
    let req = TxnRequest {
        success: (0..100)
            .map(|i| put_op(r.k(&format!("k{i:03}")), "v", 0))
            .collect(),
        ..Default::default()
    };
    r.txn("100 puts", req).await;
    let (key, range_end) = (r.k("k"), r.end("k"));
    r.range(
        "after 100 puts",
        RangeRequest {
            key,
            range_end,
            count_only: true,
            ..Default::default()
        },
    )
    .await;
}

async fn invalid_requests(r: &mut Run<'_>) {
    r.put_req("put empty key", PutRequest::default()).await;
    r.range("range empty key", RangeRequest::default()).await;
    let req = PutRequest {
        key: r.k("x"),
        value: vec![b'v'; 2 * 1024 * 1024 - 1024],
        ..Default::default()
    };
    r.put_req("put too large", req).await;
    let req = PutRequest {
        key: r.k("x"),
        lease: 0x7777,
        ..Default::default()
    };
    r.put_req("put unknown lease", req).await;
    r.put("x", "1").await;
    let req = PutRequest {
        key: r.k("x"),
        ignore_value: true,
        ..Default::default()
    };
    r.put_req("put ignore_value", req).await;
    let req = PutRequest {
        key: r.k("missing"),
        ignore_value: true,
        ..Default::default()
    };
    r.put_req("put ignore_value missing key", req).await;
    r.get("x after", "x").await;
}

async fn watches(r: &mut Run<'_>) {
    r.put("a", "1").await;
    r.put("b", "1").await;
    let (key, range_end) = (r.k(""), r.end(""));
    let from_start = WatchCreateRequest {
        key: key.clone(),
        range_end: range_end.clone(),
        start_revision: r.abs(1),
        prev_kv: true,
        ..Default::default()
    };
    let history = r.watch("history watch", from_start.clone()).await;
    let live = WatchCreateRequest {
        key: r.k("a"),
        prev_kv: false,
        ..Default::default()
    };
    let live = r.watch("live watch a", live).await;
    let noput = WatchCreateRequest {
        key: key.clone(),
        range_end: range_end.clone(),
        filters: vec![FilterType::Noput as i32],
        ..Default::default()
    };
    let noput = r.watch("noput watch", noput).await;
    r.put("a", "2").await;
    let req = TxnRequest {
        success: vec![
            put_op(r.k("a"), "3", 0),
            del_op(r.k("b"), Vec::new()),
            put_op(r.k("c"), "1", 0),
        ],
        ..Default::default()
    };
    r.txn("txn 3 events", req).await;
    let req = DeleteRangeRequest {
        key: r.k("a"),
        ..Default::default()
    };
    r.delete("delete a", req).await;
    r.collect("history+live events", history, 7).await;
    r.collect("live a events", live, 3).await;
    r.collect("noput events", noput, 2).await;
    let mid = WatchCreateRequest {
        start_revision: r.abs(3),
        ..from_start
    };
    let mid = r.watch("watch from +3", mid).await;
    r.collect("events from +3", mid, 5).await;
    let bad = WatchCreateRequest {
        key: r.k("b"),
        range_end: r.k("a"),
        ..Default::default()
    };
    let bad = r.watch("watch end before key", bad).await;
    r.collect("events end before key", bad, 1).await;
}

async fn compaction(r: &mut Run<'_>) {
    for v in ["1", "2", "3", "4"] {
        r.put("k", v).await;
    }
    r.compact("compact +2", 2).await;
    let key = r.k("k");
    let at = |rev| RangeRequest {
        key: key.clone(),
        revision: rev,
        ..Default::default()
    };
    r.range("range at +1", at(r.abs(1))).await;
    r.range("range at +2", at(r.abs(2))).await;
    r.range("range at +3", at(r.abs(3))).await;
    r.compact("compact +2 again", 2).await;
    r.compact("compact +1", 1).await;
    r.compact("compact future", 50).await;
    let watch_at = |rev| WatchCreateRequest {
        key: key.clone(),
        start_revision: rev,
        prev_kv: true,
        ..Default::default()
    };
    let w = r.watch("watch from +1", watch_at(r.abs(1))).await;
    r.collect("watch from +1", w, 4).await;
    let w = r.watch("watch from +2", watch_at(r.abs(2))).await;
    r.collect("watch from +2", w, 3).await;
    let req = TxnRequest {
        success: vec![RequestOp {
            request: Some(Request::RequestRange(at(r.abs(1)))),
        }],
        ..Default::default()
    };
    r.txn("txn range at compacted", req).await;
    r.compact("compact current", 4).await;
    r.get("get after compacting all history", "k").await;
}

async fn leases(r: &mut Run<'_>) {
    let l1 = r.grant("grant 60 auto id", 60, 0).await;
    let l2 = r.grant("grant 60 id", 60, 0x1234_5678 + r.base).await;
    r.grant("grant duplicate id", 60, l2).await;
    r.grant("grant ttl 1 (etcd min ttl)", 1, 0).await;
    for (k, l) in [("a", l1), ("b", l1), ("c", l2)] {
        let req = PutRequest {
            key: r.k(k),
            value: b"v".to_vec(),
            lease: l,
            ..Default::default()
        };
        r.put_req(&format!("put {k} with lease"), req).await;
    }
    r.get("get a", "a").await;
    r.time_to_live("ttl l1 keys", l1, true).await;
    r.time_to_live("ttl l2", l2, false).await;
    let out = match r.s.lease_keep_alive(l1).await {
        Ok(k) => format!("{} ttl={}", r.lease(k.id), k.ttl),
        Err(e) => r.err(&e),
    };
    r.rec("keep-alive l1", out);
    let out = match r.s.lease_keep_alive(0x7777).await {
        Ok(k) => format!("ttl={}", k.ttl),
        Err(e) => r.err(&e),
    };
    r.rec("keep-alive unknown", out);
    let out = match r.s.lease_leases().await {
        Ok(ls) => {
            let mut ids: Vec<String> = ls
                .leases
                .iter()
                .filter(|l| r.leases.contains(&l.id))
                .map(|l| l.id)
                .collect::<Vec<_>>()
                .into_iter()
                .map(|id| r.lease(id))
                .collect();
            ids.sort();
            format!("{ids:?}")
        }
        Err(e) => r.err(&e),
    };
    r.rec("leases", out);
    let (key, range_end) = (r.k(""), r.end(""));
    let w = r
        .watch(
            "watch prefix",
            WatchCreateRequest {
                key: key.clone(),
                range_end: range_end.clone(),
                prev_kv: true,
                ..Default::default()
            },
        )
        .await;
    let out = match r.s.lease_revoke(LeaseRevokeRequest { id: l1 }).await {
        Ok(resp) => r.header(&resp.header),
        Err(e) => r.err(&e),
    };
    r.rec("revoke l1", out);
    r.collect("revoke events", w, 2).await;
    r.range(
        "after revoke",
        RangeRequest {
            key,
            range_end,
            ..Default::default()
        },
    )
    .await;
    let out = match r.s.lease_revoke(LeaseRevokeRequest { id: l1 }).await {
        Ok(resp) => r.header(&resp.header),
        Err(e) => r.err(&e),
    };
    r.rec("revoke l1 again", out);
    r.time_to_live("ttl revoked l1", l1, true).await;
    let req = PutRequest {
        key: r.k("d"),
        lease: l1,
        ..Default::default()
    };
    r.put_req("put with revoked lease", req).await;
    let req = TxnRequest {
        compare: vec![cmp(r.k("c"), CompareResult::Equal, TargetUnion::Lease(l2))],
        success: vec![range_op(r.k("c"), Vec::new())],
        failure: vec![],
    };
    r.txn("txn compare lease", req).await;
    let _ = r.s.lease_revoke(LeaseRevokeRequest { id: l2 }).await;
}

async fn lease_expiry(r: &mut Run<'_>) {
    let l = r.grant("grant 2", 2, 0).await;
    for k in ["a", "b"] {
        let req = PutRequest {
            key: r.k(k),
            value: b"v".to_vec(),
            lease: l,
            ..Default::default()
        };
        r.put_req(&format!("put {k}"), req).await;
    }
    r.put("keep", "v").await;
    let (key, range_end) = (r.k(""), r.end(""));
    let w = r
        .watch(
            "watch",
            WatchCreateRequest {
                key: key.clone(),
                range_end: range_end.clone(),
                ..Default::default()
            },
        )
        .await;
    r.collect("expiry events", w, 2).await;
    r.range(
        "after expiry",
        RangeRequest {
            key,
            range_end,
            ..Default::default()
        },
    )
    .await;
    r.time_to_live("ttl expired", l, false).await;
}

/// etcd's range quirks: sorting or filtering fetches everything before the limit is applied,
/// `count` ignores the mod/create filters, and a sort target without an order sorts ascending.
async fn range_edges(r: &mut Run<'_>) {
    for (k, v) in [("a", "3"), ("b", "1"), ("c", "2"), ("d", "1"), ("b", "4")] {
        r.put(k, v).await;
    }
    let (key, range_end) = (r.k(""), r.end(""));
    let all = RangeRequest {
        key,
        range_end,
        ..Default::default()
    };
    let by_value = |order: SortOrder, limit| RangeRequest {
        sort_order: order as i32,
        sort_target: SortTarget::Value as i32,
        limit,
        ..all.clone()
    };
    r.range("value desc limit 2", by_value(SortOrder::Descend, 2))
        .await;
    r.range("value none limit 2", by_value(SortOrder::None, 2))
        .await;
    r.range("value asc limit 0", by_value(SortOrder::Ascend, 0))
        .await;
    let mod_desc = RangeRequest {
        sort_order: SortOrder::Descend as i32,
        sort_target: SortTarget::Mod as i32,
        limit: 1,
        ..all.clone()
    };
    r.range("mod desc limit 1", mod_desc).await;
    let filtered = RangeRequest {
        min_mod_revision: r.abs(3),
        limit: 1,
        ..all.clone()
    };
    r.range("min_mod +3 limit 1", filtered).await;
    let filtered = RangeRequest {
        max_mod_revision: r.abs(4),
        min_create_revision: r.abs(2),
        ..all.clone()
    };
    r.range("max_mod +4 min_create +2", filtered).await;
    let counted = RangeRequest {
        count_only: true,
        limit: 1,
        ..all.clone()
    };
    r.range("count_only limit 1", counted).await;
    let at = r.abs(2);
    let old = RangeRequest {
        revision: at,
        limit: 1,
        sort_order: SortOrder::Descend as i32,
        ..all.clone()
    };
    r.range("at +2 desc limit 1", old).await;
    let serializable = RangeRequest {
        serializable: true,
        keys_only: true,
        ..all.clone()
    };
    r.range("serializable keys_only", serializable).await;
    let key = r.k("c");
    r.range(
        "c to \\0",
        RangeRequest {
            key,
            range_end: vec![0],
            ..Default::default()
        },
    )
    .await;
    let req = PutRequest {
        key: r.k("a"),
        value: b"5".to_vec(),
        ignore_lease: true,
        prev_kv: true,
        ..Default::default()
    };
    r.put_req("put ignore_lease", req).await;
    let mut ranged = cmp(
        r.k(""),
        CompareResult::Less,
        TargetUnion::ModRevision(r.abs(5)),
    );
    ranged.range_end = r.end("");
    let req = TxnRequest {
        compare: vec![ranged],
        success: vec![range_op(r.k("a"), Vec::new())],
        failure: vec![range_op(r.k("b"), Vec::new())],
    };
    r.txn("ranged compare fails on one key", req).await;
}

/// A deterministic pseudo-random generator, so both backends see the same sequence.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// Random puts, deletes, transactions, historical ranges and compactions over a few keys, then
/// the whole event history through a watch: any divergence in revision bookkeeping shows up.
async fn random_ops(r: &mut Run<'_>, seed: u64) {
    let mut rng = Lcg(seed);
    let key = |rng: &mut Lcg| format!("k{}", rng.below(6));
    let mut compacted = 0;
    for step in 0..250 {
        let k = key(&mut rng);
        let now =
            r.s.status()
                .await
                .ok()
                .and_then(|s| s.header)
                .map_or(0, |h| h.revision);
        // A revision in the scenario's history (possibly compacted), now and then a future one.
        let span = (now - r.base).max(1) as u64;
        let rev = match rng.below(10) {
            0 => now + 1,
            _ => r.abs(1 + rng.below(span) as i64),
        };
        match rng.below(10) {
            0..=3 => {
                let req = PutRequest {
                    key: r.k(&k),
                    value: format!("v{step}").into_bytes(),
                    prev_kv: rng.below(2) == 0,
                    ..Default::default()
                };
                r.put_req(&format!("{step} put {k}"), req).await;
            }
            4 => {
                let end = if rng.below(2) == 0 {
                    Vec::new()
                } else {
                    r.k(&key(&mut rng))
                };
                let req = DeleteRangeRequest {
                    key: r.k(&k),
                    range_end: end,
                    prev_kv: true,
                };
                r.delete(&format!("{step} delete {k}"), req).await;
            }
            5..=7 => {
                let target = match rng.below(4) {
                    0 => TargetUnion::Version(rng.below(4) as i64),
                    1 => TargetUnion::ModRevision(rev),
                    2 => TargetUnion::CreateRevision(rev),
                    _ => TargetUnion::Value(format!("v{}", rng.below(step + 1)).into_bytes()),
                };
                let result = match rng.below(4) {
                    0 => CompareResult::Equal,
                    1 => CompareResult::Greater,
                    2 => CompareResult::Less,
                    _ => CompareResult::NotEqual,
                };
                let other = key(&mut rng);
                let req = TxnRequest {
                    compare: vec![cmp(r.k(&k), result, target)],
                    success: vec![
                        put_op(r.k(&k), &format!("t{step}"), 0),
                        range_op(r.k(""), r.end("")),
                    ],
                    failure: vec![
                        del_op(r.k(&other), Vec::new()),
                        range_op(r.k(&other), Vec::new()),
                    ],
                };
                r.txn(&format!("{step} txn on {k}"), req).await;
            }
            8 => {
                let req = RangeRequest {
                    key: r.k(""),
                    range_end: r.end(""),
                    revision: rev,
                    limit: rng.below(4) as i64,
                    ..Default::default()
                };
                r.range(&format!("{step} range at {}", r.rel(rev)), req)
                    .await;
            }
            _ if rng.below(4) == 0 && rev > compacted && rev <= now => {
                compacted = rev;
                r.compact(&format!("{step} compact {}", r.rel(rev)), rev - r.base)
                    .await;
            }
            _ => r.get(&format!("{step} get {k}"), &k).await,
        }
    }
    let (key, range_end) = (r.k(""), r.end(""));
    let from = compacted.max(r.abs(1));
    let req = WatchCreateRequest {
        key,
        range_end,
        start_revision: from,
        prev_kv: true,
        ..Default::default()
    };
    let w = r.watch("history watch", req).await;
    r.collect_all("history", w).await;
}

/// Random writes mixed with leases: grants, puts attached to them, keep-alives, revokes (whose
/// deletions land in one revision), nested and multi-op transactions, then the full history.
async fn random_leases(r: &mut Run<'_>) {
    let mut rng = Lcg(0x0065_7463_6421);
    let key = |rng: &mut Lcg| format!("k{}", rng.below(8));
    let mut leases: Vec<i64> = Vec::new();
    for step in 0..150 {
        let k = key(&mut rng);
        match rng.below(8) {
            0 if leases.len() < 4 => {
                let id = r.grant(&format!("{step} grant"), 60, 0).await;
                leases.push(id);
            }
            0 | 1 if !leases.is_empty() => {
                let l = leases[rng.below(leases.len() as u64) as usize];
                let req = PutRequest {
                    key: r.k(&k),
                    value: format!("l{step}").into_bytes(),
                    lease: l,
                    prev_kv: true,
                    ..Default::default()
                };
                r.put_req(&format!("{step} put {k} with lease"), req).await;
            }
            2 if !leases.is_empty() => {
                let l = leases.remove(rng.below(leases.len() as u64) as usize);
                let out = match r.s.lease_revoke(LeaseRevokeRequest { id: l }).await {
                    Ok(resp) => r.header(&resp.header),
                    Err(e) => r.err(&e),
                };
                r.rec(&format!("{step} revoke"), out);
            }
            3 => {
                let (a, b) = (key(&mut rng), key(&mut rng));
                let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
                let nested = TxnRequest {
                    compare: vec![cmp(
                        r.k(&k),
                        CompareResult::Greater,
                        TargetUnion::Version(0),
                    )],
                    success: vec![del_op(r.k(&lo), r.k(&hi))],
                    failure: vec![put_op(r.k(&k), &format!("n{step}"), 0)],
                };
                let req = TxnRequest {
                    compare: vec![cmp(
                        r.k(&lo),
                        CompareResult::NotEqual,
                        TargetUnion::Value(b"x".to_vec()),
                    )],
                    success: vec![
                        RequestOp {
                            request: Some(Request::RequestTxn(nested)),
                        },
                        range_op(r.k(""), r.end("")),
                    ],
                    failure: vec![range_op(r.k(&lo), r.k(&hi))],
                };
                r.txn(&format!("{step} nested txn {lo}..{hi}"), req).await;
            }
            4 => {
                let l = leases.first().copied().unwrap_or(0x0bad);
                r.time_to_live(&format!("{step} ttl"), l, true).await;
            }
            _ => {
                let req = PutRequest {
                    key: r.k(&k),
                    value: format!("v{step}").into_bytes(),
                    ignore_lease: rng.below(3) == 0,
                    ..Default::default()
                };
                r.put_req(&format!("{step} put {k}"), req).await;
            }
        }
    }
    for l in leases {
        let _ = r.s.lease_revoke(LeaseRevokeRequest { id: l }).await;
    }
    let req = WatchCreateRequest {
        key: r.k(""),
        range_end: r.end(""),
        start_revision: r.abs(1),
        prev_kv: true,
        ..Default::default()
    };
    let w = r.watch("history watch", req).await;
    r.collect_all("history", w).await;
    let (key, range_end) = (r.k(""), r.end(""));
    r.range(
        "final",
        RangeRequest {
            key,
            range_end,
            ..Default::default()
        },
    )
    .await;
}

type Scenario = for<'a, 'b> fn(&'a mut Run<'b>) -> futures::future::BoxFuture<'a, ()>;

fn scenarios() -> Vec<(&'static str, Scenario)> {
    vec![
        ("s01-basics", |r| Box::pin(basics(r))),
        ("s02-deletes", |r| Box::pin(deletes(r))),
        ("s03-transactions", |r| Box::pin(transactions(r))),
        ("s04-invalid", |r| Box::pin(invalid_requests(r))),
        ("s05-watches", |r| Box::pin(watches(r))),
        ("s06-compaction", |r| Box::pin(compaction(r))),
        ("s07-leases", |r| Box::pin(leases(r))),
        ("s08-lease-expiry", |r| Box::pin(lease_expiry(r))),
        ("s09-range-edges", |r| Box::pin(range_edges(r))),
        ("s10-random", |r| Box::pin(random_ops(r, 0x006b_7275_7374))),
        ("s11-random-leases", |r| Box::pin(random_leases(r))),
        ("s12-random", |r| Box::pin(random_ops(r, 0x5eed_0002))),
        ("s13-random", |r| Box::pin(random_ops(r, 0x5eed_0003))),
    ]
}

/// Runs every scenario in order on one store and returns each one's observations.
async fn observe(store: &dyn Store) -> HashMap<&'static str, Vec<String>> {
    let mut out = HashMap::new();
    for (name, scenario) in scenarios() {
        let mut run = Run::new(store, name).await;
        // A backend that panics or hangs fails its scenario, not the whole suite.
        let guarded = AssertUnwindSafe(scenario(&mut run)).catch_unwind();
        let outcome = tokio::time::timeout(Duration::from_secs(60), guarded).await;
        match outcome {
            Err(_) => run.log.push("scenario timed out".into()),
            Ok(Err(_)) => run.log.push("scenario panicked".into()),
            Ok(Ok(())) => {}
        }
        out.insert(name, run.log);
    }
    out
}

/// Compares a backend's observations with etcd's; returns one report per differing scenario.
fn differences(
    backend: &str,
    etcd: &HashMap<&'static str, Vec<String>>,
    other: &HashMap<&'static str, Vec<String>>,
) -> Vec<String> {
    let mut diffs = Vec::new();
    for (name, _) in scenarios() {
        let (want, got) = (&etcd[name], &other[name]);
        if want == got {
            continue;
        }
        let mut report = format!("{backend} differs from etcd in {name}:\n");
        for i in 0..want.len().max(got.len()) {
            let (w, g) = (want.get(i), got.get(i));
            if w != g {
                report += &format!(
                    "  etcd:  {}\n  {backend}: {}\n",
                    w.map_or("<none>", |s| s),
                    g.map_or("<none>", |s| s)
                );
            }
        }
        diffs.push(report);
    }
    diffs
}

async fn etcd_observations(pki: &Pki) -> HashMap<&'static str, Vec<String>> {
    let etcd = EtcdProcess::start(pki);
    let backend = etcd.backend(pki).await;
    let obs = observe(backend.as_ref()).await;
    for (name, _) in scenarios() {
        println!("== {name} (etcd)\n{}", obs[name].join("\n"));
    }
    obs
}

/// The endpoint's own conformance: krust's gRPC facade in front of a real etcd must be invisible.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn facade_over_etcd_matches_etcd() {
    let pki = Pki::generate();
    let reference = etcd_observations(&pki).await;
    let etcd = EtcdProcess::start(&pki);
    let inner: Arc<dyn Store> = etcd.backend(&pki).await;
    let endpoint = support::Endpoint::start(inner, &pki).await;
    let client = store::etcd::EtcdBackend::new(vec![endpoint.endpoint()], Some(pki.client_tls()))
        .expect("client");
    support::wait_ready(&client).await;
    let obs = observe(&client).await;
    let diffs = differences("facade", &reference, &obs);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

async fn assert_matches_etcd(backend: &str, store: &dyn Store) {
    let pki = Pki::generate();
    let reference = etcd_observations(&pki).await;
    support::wait_ready(store).await;
    let obs = observe(store).await;
    let diffs = differences(backend, &reference, &obs);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn engine_in_memory_matches_etcd() {
    let engine = store::engine::Engine::in_memory();
    assert_matches_etcd("engine (memory)", engine.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn engine_on_disk_matches_etcd() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = store::engine::Engine::open(dir.path(), store::engine::EngineOptions::default())
        .await
        .expect("open engine");
    assert_matches_etcd("engine (disk)", engine.as_ref()).await;
}

/// What `etcdctl` and other gRPC clients see: the engine behind krust's endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn facade_over_engine_matches_etcd() {
    let pki = Pki::generate();
    let engine: Arc<dyn Store> = store::engine::Engine::in_memory();
    let endpoint = support::Endpoint::start(engine, &pki).await;
    let client = store::etcd::EtcdBackend::new(vec![endpoint.endpoint()], Some(pki.client_tls()))
        .expect("client");
    assert_matches_etcd("facade over engine", &client).await;
}
