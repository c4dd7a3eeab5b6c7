//! The state machine: executes etcd's KV, txn, lease and compaction requests against the in-memory
//! state. Writes run only on the commit path (one at a time, see `commit`); reads run anywhere at
//! a fixed revision, so they never see writes that are not yet durable.
//!
//! Every write request is fully checked before its first change is made, so a request either
//! applies completely or not at all.

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::lease::{effective_ttl, Leases};
use super::log::{ChangeRecord, Entry};
use super::mvcc::{KeyRange, Mvcc, RevChanges};
use crate::proto::etcdserverpb::{
    compare::{CompareResult, CompareTarget, TargetUnion},
    range_request::{SortOrder, SortTarget},
    request_op::Request,
    response_op::Response,
    Compare, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest,
    RangeResponse, RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use crate::proto::mvccpb::KeyValue;
use crate::StoreError;

/// Everything the engine knows.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub mvcc: Mvcc,
    pub leases: Leases,
    /// The newest revision that is on disk; plain reads and watches see exactly this far.
    pub durable: i64,
    /// Revisions of history to keep; older ones are compacted as writes go.
    pub retain_revisions: Option<i64>,
}

/// A request that changes state; it goes through the commit path.
#[derive(Debug)]
pub(crate) enum WriteOp {
    Put(PutRequest),
    Delete(DeleteRangeRequest),
    Txn(TxnRequest),
    Compact(i64),
    LeaseGrant { id: i64, ttl: i64 },
    LeaseRevoke(i64),
}

#[derive(Debug)]
pub(crate) enum WriteResult {
    Put(PutResponse),
    Delete(DeleteRangeResponse),
    Txn(TxnResponse),
    /// Compaction, lease grant (id, ttl) and revoke: the header revision (and lease fields).
    Done {
        revision: i64,
        id: i64,
        ttl: i64,
    },
}

pub(crate) fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

impl State {
    /// Applies one write request; on success appends what must be logged to `log`.
    pub fn apply(&mut self, op: WriteOp, log: &mut Vec<Entry>) -> Result<WriteResult, StoreError> {
        let result = match op {
            WriteOp::Put(r) => {
                self.check_put(&r)?;
                let resp = self.put(r);
                WriteResult::Put(resp)
            }
            WriteOp::Delete(r) => WriteResult::Delete(self.delete(&r)),
            WriteOp::Txn(r) => {
                let path = txn_path(&self.mvcc, &r, self.mvcc.current);
                self.check_txn(&r, &path)?;
                WriteResult::Txn(self.txn(r, &path))
            }
            WriteOp::Compact(rev) => return self.compact(rev, log),
            WriteOp::LeaseGrant { id, ttl } => return self.lease_grant(id, ttl, log),
            WriteOp::LeaseRevoke(id) => return self.lease_revoke(id, log),
        };
        if let Some(changes) = self.mvcc.commit() {
            log.push(Entry::commit(&changes));
        }
        Ok(result)
    }

    /// Compacts history beyond `retain_revisions`. Done on the commit path after every batch,
    /// so the retained window never overshoots, however fast writes come.
    pub fn enforce_retention(&mut self, log: &mut Vec<Entry>) {
        let Some(n) = self.retain_revisions else {
            return;
        };
        let target = self.mvcc.current - n.max(1);
        if target > self.mvcc.compacted {
            self.mvcc.compact(target);
            log.push(Entry {
                compact: target,
                ..Default::default()
            });
        }
    }

    /// Replays one logged entry during recovery.
    pub fn replay(&mut self, e: Entry) -> Result<(), StoreError> {
        for g in &e.grants {
            // A grant replayed twice (snapshot + log overlap) is harmless.
            let _ = self.leases.grant(g.id, g.ttl);
        }
        if !e.changes.is_empty() {
            if e.rev <= self.mvcc.current {
                return Ok(()); // already contained in the snapshot
            }
            if e.rev != self.mvcc.next_rev() {
                return Err(StoreError::Storage(format!(
                    "log gap: revision {} follows {}",
                    e.rev, self.mvcc.current
                )));
            }
            for c in e.changes {
                let kv = c.kv.unwrap_or_default();
                if c.deleted {
                    self.delete_key(&kv.key);
                } else {
                    self.put_kv(kv);
                }
            }
            self.mvcc.commit();
        }
        for id in e.revokes {
            self.leases.remove(id);
        }
        if e.compact > self.mvcc.compacted {
            self.mvcc.compact(e.compact);
        }
        Ok(())
    }

    /// Restores a snapshot's base version (no history, no event).
    pub fn restore_base(&mut self, kv: KeyValue) {
        if kv.lease != 0 {
            self.leases.attach(kv.lease, &kv.key);
        }
        self.mvcc.restore_base(kv);
    }

    fn put_kv(&mut self, kv: KeyValue) {
        let prev_lease = self
            .mvcc
            .get(&kv.key, self.mvcc.next_rev())
            .map(|p| p.lease);
        if let Some(pl) = prev_lease.filter(|pl| *pl != 0 && *pl != kv.lease) {
            self.leases.detach(pl, &kv.key);
        }
        if kv.lease != 0 {
            self.leases.attach(kv.lease, &kv.key);
        }
        self.mvcc.put(kv);
    }

    fn delete_key(&mut self, key: &[u8]) -> Option<Arc<KeyValue>> {
        let prev = self.mvcc.delete(key)?;
        if prev.lease != 0 {
            self.leases.detach(prev.lease, key);
        }
        Some(prev)
    }

    fn check_put(&self, r: &PutRequest) -> Result<(), StoreError> {
        if (r.ignore_value || r.ignore_lease)
            && self.mvcc.get(&r.key, self.mvcc.txn_read_rev()).is_none()
        {
            return Err(StoreError::InvalidArgument(
                "etcdserver: key not found".into(),
            ));
        }
        if r.lease != 0 && !self.leases.contains(r.lease) {
            return Err(StoreError::LeaseNotFound);
        }
        Ok(())
    }

    fn put(&mut self, r: PutRequest) -> PutResponse {
        let rev = self.mvcc.next_rev();
        let prev = self.mvcc.get(&r.key, self.mvcc.txn_read_rev()).cloned();
        let value = match (&prev, r.ignore_value) {
            (Some(p), true) => p.value.clone(),
            _ => r.value,
        };
        let lease = match (&prev, r.ignore_lease) {
            (Some(p), true) => p.lease,
            _ => r.lease,
        };
        let (create_revision, version) = prev
            .as_ref()
            .map_or((rev, 1), |p| (p.create_revision, p.version + 1));
        self.put_kv(KeyValue {
            key: r.key,
            create_revision,
            mod_revision: rev,
            version,
            value,
            lease,
        });
        PutResponse {
            header: header(rev),
            prev_kv: if r.prev_kv {
                prev.map(|p| (*p).clone())
            } else {
                None
            },
        }
    }

    fn delete(&mut self, r: &DeleteRangeRequest) -> DeleteRangeResponse {
        let range = KeyRange::new(&r.key, &r.range_end);
        let mut keys = Vec::new();
        self.mvcc.scan(&range, self.mvcc.txn_read_rev(), |kv| {
            keys.push(kv.key.clone());
            true
        });
        let mut prev_kvs = Vec::new();
        for k in &keys {
            if let Some(prev) = self.delete_key(k) {
                if r.prev_kv {
                    prev_kvs.push((*prev).clone());
                }
            }
        }
        DeleteRangeResponse {
            header: header(self.mvcc.txn_read_rev()),
            deleted: keys.len() as i64,
            prev_kvs,
        }
    }

    /// Checks the ops of the branches the txn will take, before anything is written.
    fn check_txn(&self, r: &TxnRequest, path: &[bool]) -> Result<(), StoreError> {
        let mut path = path.iter();
        self.check_branch(r, &mut path)
    }

    fn check_branch<'a>(
        &self,
        r: &TxnRequest,
        path: &mut impl Iterator<Item = &'a bool>,
    ) -> Result<(), StoreError> {
        let ops = if *path.next().unwrap_or(&false) {
            &r.success
        } else {
            &r.failure
        };
        for op in ops {
            match &op.request {
                Some(Request::RequestPut(p)) => self.check_put(p)?,
                Some(Request::RequestRange(q)) => {
                    check_range_rev(&self.mvcc, q, self.mvcc.current)?;
                }
                Some(Request::RequestTxn(t)) => self.check_branch(t, path)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn txn(&mut self, r: TxnRequest, path: &[bool]) -> TxnResponse {
        let mut path = path.iter().copied();
        let mut resp = self.txn_at(r, &mut path);
        resp.header = header(self.mvcc.txn_read_rev());
        resp
    }

    fn txn_at(&mut self, r: TxnRequest, path: &mut impl Iterator<Item = bool>) -> TxnResponse {
        let succeeded = path.next().unwrap_or(false);
        let ops = if succeeded { r.success } else { r.failure };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            let response = match op.request {
                Some(Request::RequestRange(q)) => {
                    let view = self.mvcc.txn_read_rev();
                    Response::ResponseRange(range(&self.mvcc, &q, view).unwrap_or_default())
                }
                Some(Request::RequestPut(p)) => Response::ResponsePut(self.put(p)),
                Some(Request::RequestDeleteRange(d)) => {
                    Response::ResponseDeleteRange(self.delete(&d))
                }
                Some(Request::RequestTxn(t)) => Response::ResponseTxn(self.txn_at(t, path)),
                None => continue,
            };
            responses.push(ResponseOp {
                response: Some(response),
            });
        }
        // etcd leaves the header of nested txn responses empty; the caller fills the outer one.
        TxnResponse {
            header: None,
            succeeded,
            responses,
        }
    }

    fn compact(&mut self, rev: i64, log: &mut Vec<Entry>) -> Result<WriteResult, StoreError> {
        if rev <= self.mvcc.compacted {
            return Err(StoreError::Compacted {
                compact_revision: self.mvcc.compacted,
            });
        }
        if rev > self.mvcc.current {
            return Err(StoreError::FutureRevision);
        }
        self.mvcc.compact(rev);
        log.push(Entry {
            compact: rev,
            ..Default::default()
        });
        Ok(WriteResult::Done {
            revision: self.mvcc.current,
            id: 0,
            ttl: 0,
        })
    }

    fn lease_grant(
        &mut self,
        id: i64,
        ttl: i64,
        log: &mut Vec<Entry>,
    ) -> Result<WriteResult, StoreError> {
        let ttl = effective_ttl(ttl)?;
        let id = if id == 0 { self.leases.new_id() } else { id };
        self.leases.grant(id, ttl)?;
        log.push(Entry::grant(id, ttl));
        Ok(WriteResult::Done {
            revision: self.mvcc.current,
            id,
            ttl,
        })
    }

    /// Revokes a lease and deletes its keys in one revision.
    fn lease_revoke(&mut self, id: i64, log: &mut Vec<Entry>) -> Result<WriteResult, StoreError> {
        let lease = self.leases.remove(id).ok_or(StoreError::LeaseNotFound)?;
        for key in &lease.keys {
            self.delete_key(key);
        }
        let mut entry = self
            .mvcc
            .commit()
            .map(|c| Entry::commit(&c))
            .unwrap_or_default();
        entry.revokes.push(id);
        log.push(entry);
        Ok(WriteResult::Done {
            revision: self.mvcc.current,
            id,
            ttl: 0,
        })
    }

    /// Leases whose deadline has passed.
    pub fn expired_leases(&self, now: Instant) -> Vec<i64> {
        self.leases.expired(now)
    }
}

/// Evaluates, before anything is written, which branch every txn on the executed path takes
/// (pre-order), as etcd does: nested compares see the state at the start of the outer txn.
pub(crate) fn txn_path(mvcc: &Mvcc, r: &TxnRequest, view: i64) -> Vec<bool> {
    let mut path = Vec::new();
    push_path(mvcc, r, view, &mut path);
    path
}

fn push_path(mvcc: &Mvcc, r: &TxnRequest, view: i64, path: &mut Vec<bool>) {
    let ok = r.compare.iter().all(|c| compare(mvcc, c, view));
    path.push(ok);
    for op in if ok { &r.success } else { &r.failure } {
        if let Some(Request::RequestTxn(t)) = &op.request {
            push_path(mvcc, t, view, path);
        }
    }
}

fn compare(mvcc: &Mvcc, c: &Compare, view: i64) -> bool {
    let range = KeyRange::new(&c.key, &c.range_end);
    let mut kvs = Vec::new();
    mvcc.scan(&range, view, |kv| {
        kvs.push(kv.clone());
        true
    });
    if kvs.is_empty() {
        // A missing key has no value to compare: etcd fails every value compare on it.
        return c.target != CompareTarget::Value as i32 && compare_kv(c, &KeyValue::default());
    }
    kvs.iter().all(|kv| compare_kv(c, kv))
}

fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    let target = CompareTarget::try_from(c.target).unwrap_or(CompareTarget::Version);
    let tu = c.target_union.as_ref();
    let ord = match target {
        CompareTarget::Value => {
            let want = match tu {
                Some(TargetUnion::Value(v)) => v.as_slice(),
                _ => &[],
            };
            kv.value.as_slice().cmp(want)
        }
        CompareTarget::Version => kv.version.cmp(&union_int(tu, target)),
        CompareTarget::Create => kv.create_revision.cmp(&union_int(tu, target)),
        CompareTarget::Mod => kv.mod_revision.cmp(&union_int(tu, target)),
        CompareTarget::Lease => kv.lease.cmp(&union_int(tu, target)),
    };
    match CompareResult::try_from(c.result).unwrap_or(CompareResult::Equal) {
        CompareResult::Equal => ord == Ordering::Equal,
        CompareResult::NotEqual => ord != Ordering::Equal,
        CompareResult::Greater => ord == Ordering::Greater,
        CompareResult::Less => ord == Ordering::Less,
    }
}

/// The integer a compare names; a union of the wrong kind counts as 0, as in etcd.
fn union_int(tu: Option<&TargetUnion>, target: CompareTarget) -> i64 {
    match (target, tu) {
        (CompareTarget::Version, Some(TargetUnion::Version(v)))
        | (CompareTarget::Create, Some(TargetUnion::CreateRevision(v)))
        | (CompareTarget::Mod, Some(TargetUnion::ModRevision(v)))
        | (CompareTarget::Lease, Some(TargetUnion::Lease(v))) => *v,
        _ => 0,
    }
}

/// Checks the revision a range asks for against the compaction point and `view`.
pub(crate) fn check_range_rev(mvcc: &Mvcc, r: &RangeRequest, view: i64) -> Result<i64, StoreError> {
    let rev = if r.revision <= 0 { view } else { r.revision };
    if rev > view {
        return Err(StoreError::FutureRevision);
    }
    if rev < mvcc.compacted {
        return Err(StoreError::Compacted {
            compact_revision: mvcc.compacted,
        });
    }
    Ok(rev)
}

/// etcd's Range: `view` is the newest revision the caller may see (and the header's revision).
pub(crate) fn range(mvcc: &Mvcc, r: &RangeRequest, view: i64) -> Result<RangeResponse, StoreError> {
    Ok(select(mvcc, r, view)?.into_response(r))
}

/// A range's result as shared references: cheap to take under the state lock; the copying into
/// the response happens after the lock is released (see [`Selection::into_response`]).
pub(crate) struct Selection {
    view: i64,
    kvs: Vec<Arc<KeyValue>>,
    more: bool,
    count: i64,
}

impl Selection {
    pub fn into_response(self, r: &RangeRequest) -> RangeResponse {
        let kvs = self
            .kvs
            .into_iter()
            .map(|kv| {
                if r.keys_only {
                    KeyValue {
                        value: Vec::new(),
                        key: kv.key.clone(),
                        ..*kv
                    }
                } else {
                    (*kv).clone()
                }
            })
            .collect();
        RangeResponse {
            header: header(self.view),
            kvs,
            more: self.more,
            count: self.count,
        }
    }
}

/// etcd's Range without the copying: `view` is the newest revision the caller may see.
pub(crate) fn select(mvcc: &Mvcc, r: &RangeRequest, view: i64) -> Result<Selection, StoreError> {
    let rev = check_range_rev(mvcc, r, view)?;
    let order = SortOrder::try_from(r.sort_order).unwrap_or(SortOrder::None);
    let target = SortTarget::try_from(r.sort_target).unwrap_or(SortTarget::Key);
    let filtered = r.min_mod_revision != 0
        || r.max_mod_revision != 0
        || r.min_create_revision != 0
        || r.max_create_revision != 0;
    // Without an explicit order or filters, etcd takes the first limit+1 keys (the +1 tells
    // `more`) and only then sorts them, even by a non-key target: so do we.
    let cap = if r.limit > 0 && order == SortOrder::None && !filtered {
        r.limit as usize + 1
    } else {
        usize::MAX
    };
    let mut count = 0i64;
    let mut kvs: Vec<Arc<KeyValue>> = Vec::new();
    mvcc.scan(&KeyRange::new(&r.key, &r.range_end), rev, |kv| {
        count += 1;
        if !r.count_only && kvs.len() < cap && passes_filters(r, kv) {
            kvs.push(kv.clone());
        }
        true
    });
    sort_kvs(&mut kvs, order, target);
    let mut more = false;
    if r.limit > 0 && kvs.len() > r.limit as usize {
        kvs.truncate(r.limit as usize);
        more = true;
    }
    Ok(Selection {
        view,
        kvs,
        more,
        count,
    })
}

fn passes_filters(r: &RangeRequest, kv: &KeyValue) -> bool {
    (r.min_mod_revision == 0 || kv.mod_revision >= r.min_mod_revision)
        && (r.max_mod_revision == 0 || kv.mod_revision <= r.max_mod_revision)
        && (r.min_create_revision == 0 || kv.create_revision >= r.min_create_revision)
        && (r.max_create_revision == 0 || kv.create_revision <= r.max_create_revision)
}

fn sort_kvs(kvs: &mut [Arc<KeyValue>], order: SortOrder, target: SortTarget) {
    // etcd: a non-key target without an order sorts ascending; key order is the scan's own.
    let order = match (order, target) {
        (SortOrder::None, SortTarget::Key) => return,
        (SortOrder::None, _) => SortOrder::Ascend,
        (o, _) => o,
    };
    let cmp = |a: &Arc<KeyValue>, b: &Arc<KeyValue>| match target {
        SortTarget::Key => a.key.cmp(&b.key),
        SortTarget::Version => a.version.cmp(&b.version),
        SortTarget::Create => a.create_revision.cmp(&b.create_revision),
        SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
        SortTarget::Value => a.value.cmp(&b.value),
    };
    if order == SortOrder::Descend {
        kvs.sort_by(|a, b| cmp(b, a));
    } else {
        kvs.sort_by(cmp);
    }
}

/// A txn that writes nothing, evaluated at `view` without going through the commit path.
pub(crate) fn read_only_txn(
    mvcc: &Mvcc,
    r: &TxnRequest,
    view: i64,
) -> Result<TxnResponse, StoreError> {
    let path = txn_path(mvcc, r, view);
    let mut path = path.into_iter();
    let mut resp = read_txn_at(mvcc, r, view, &mut path)?;
    resp.header = header(view);
    Ok(resp)
}

fn read_txn_at(
    mvcc: &Mvcc,
    r: &TxnRequest,
    view: i64,
    path: &mut impl Iterator<Item = bool>,
) -> Result<TxnResponse, StoreError> {
    let succeeded = path.next().unwrap_or(false);
    let ops: &[RequestOp] = if succeeded { &r.success } else { &r.failure };
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        let response = match &op.request {
            Some(Request::RequestRange(q)) => Response::ResponseRange(range(mvcc, q, view)?),
            Some(Request::RequestTxn(t)) => {
                Response::ResponseTxn(read_txn_at(mvcc, t, view, path)?)
            }
            _ => continue,
        };
        responses.push(ResponseOp {
            response: Some(response),
        });
    }
    Ok(TxnResponse {
        header: None,
        succeeded,
        responses,
    })
}

impl Entry {
    /// The log record of one committed revision.
    pub(crate) fn commit(c: &RevChanges) -> Entry {
        let changes = c
            .changes
            .iter()
            .map(|ch| ChangeRecord {
                kv: Some((*ch.kv).clone()),
                deleted: ch.deleted,
            })
            .collect();
        Entry {
            rev: c.rev,
            changes,
            ..Default::default()
        }
    }
}
