//! Request checks etcd makes before a request reaches its state machine: size and txn-op limits,
//! missing keys, contradictory flags, and the "one write per key per txn" rule. Error texts are
//! etcd's, so clients see the same message from either backend.

use prost::Message;

use super::mvcc::KeyRange;
use crate::proto::etcdserverpb::{
    request_op::Request, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use crate::StoreError;

/// etcd's default `--max-request-bytes`.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1536 * 1024;
/// etcd's default `--max-txn-ops`.
pub const DEFAULT_MAX_TXN_OPS: usize = 128;

fn invalid(msg: &str) -> StoreError {
    StoreError::InvalidArgument(msg.to_string())
}

/// Limits the engine enforces on every request.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_txn_ops: DEFAULT_MAX_TXN_OPS,
        }
    }
}

impl Limits {
    pub fn size(&self, req: &impl Message) -> Result<(), StoreError> {
        if req.encoded_len() > self.max_request_bytes {
            return Err(invalid("etcdserver: request is too large"));
        }
        Ok(())
    }

    pub fn range(&self, r: &RangeRequest) -> Result<(), StoreError> {
        self.size(r)?;
        check_range(r)
    }

    pub fn put(&self, r: &PutRequest) -> Result<(), StoreError> {
        self.size(r)?;
        check_put(r)
    }

    pub fn delete(&self, r: &DeleteRangeRequest) -> Result<(), StoreError> {
        self.size(r)?;
        check_delete(r)
    }

    pub fn txn(&self, r: &TxnRequest) -> Result<(), StoreError> {
        self.size(r)?;
        self.check_txn(r)?;
        write_set(&r.success)?;
        write_set(&r.failure)?;
        Ok(())
    }

    fn check_txn(&self, r: &TxnRequest) -> Result<(), StoreError> {
        let max = self.max_txn_ops;
        if r.compare.len() > max || r.success.len() > max || r.failure.len() > max {
            return Err(invalid("etcdserver: too many operations in txn request"));
        }
        for c in &r.compare {
            if c.key.is_empty() {
                return Err(invalid("etcdserver: key is not provided"));
            }
        }
        for op in r.success.iter().chain(&r.failure) {
            match &op.request {
                Some(Request::RequestRange(r)) => check_range(r)?,
                Some(Request::RequestPut(r)) => check_put(r)?,
                Some(Request::RequestDeleteRange(r)) => check_delete(r)?,
                Some(Request::RequestTxn(r)) => self.check_txn(r)?,
                None => return Err(invalid("etcdserver: request is empty")),
            }
        }
        Ok(())
    }
}

fn check_range(r: &RangeRequest) -> Result<(), StoreError> {
    if r.key.is_empty() {
        return Err(invalid("etcdserver: key is not provided"));
    }
    Ok(())
}

fn check_put(r: &PutRequest) -> Result<(), StoreError> {
    if r.key.is_empty() {
        return Err(invalid("etcdserver: key is not provided"));
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(invalid("etcdserver: value is provided"));
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(invalid("etcdserver: lease is provided"));
    }
    Ok(())
}

fn check_delete(r: &DeleteRangeRequest) -> Result<(), StoreError> {
    if r.key.is_empty() {
        return Err(invalid("etcdserver: key is not provided"));
    }
    Ok(())
}

/// Keys a list of ops writes: put keys and deleted ranges, checked as etcd's `checkIntervals`
/// does: this level's deletes first; then each nested txn's puts (from both branches, which may
/// share keys since only one runs) against the puts and deletes gathered so far, after which its
/// deletes join in; finally this level's puts. A put of a key already put, or inside a deleted
/// range, is a duplicate; deletes may overlap each other.
fn write_set(ops: &[RequestOp]) -> Result<(Vec<Vec<u8>>, Vec<KeyRange>), StoreError> {
    let dup = || invalid("etcdserver: duplicate key given in txn request");
    let mut dels: Vec<KeyRange> = ops
        .iter()
        .filter_map(|op| match &op.request {
            Some(Request::RequestDeleteRange(d)) => Some(KeyRange::new(&d.key, &d.range_end)),
            _ => None,
        })
        .collect();
    let mut puts: Vec<Vec<u8>> = Vec::new();
    let deleted = |dels: &[KeyRange], k: &[u8]| dels.iter().any(|d| d.contains(k));
    for op in ops {
        let Some(Request::RequestTxn(t)) = &op.request else {
            continue;
        };
        let (then_puts, then_dels) = write_set(&t.success)?;
        let (else_puts, else_dels) = write_set(&t.failure)?;
        for k in &then_puts {
            if puts.contains(k) || deleted(&dels, k) {
                return Err(dup());
            }
            puts.push(k.clone());
        }
        for k in else_puts {
            if (puts.contains(&k) && !then_puts.contains(&k)) || deleted(&dels, &k) {
                return Err(dup());
            }
            puts.push(k);
        }
        dels.extend(then_dels.into_iter().chain(else_dels));
    }
    for op in ops {
        let Some(Request::RequestPut(p)) = &op.request else {
            continue;
        };
        if puts.contains(&p.key) || deleted(&dels, &p.key) {
            return Err(dup());
        }
        puts.push(p.key.clone());
    }
    Ok((puts, dels))
}

/// Whether no branch of the txn, at any depth, writes.
pub(crate) fn is_read_only(r: &TxnRequest) -> bool {
    r.success
        .iter()
        .chain(&r.failure)
        .all(|op| match &op.request {
            Some(Request::RequestRange(_)) | None => true,
            Some(Request::RequestTxn(t)) => is_read_only(t),
            _ => false,
        })
}
