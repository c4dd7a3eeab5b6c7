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

/// Keys a list of ops writes: put keys and deleted ranges. Like etcd, two puts of one key, or a
/// put inside a deleted range, in the same branch are an error; deletes may overlap each other.
/// A nested txn contributes both of its branches (each checked on its own).
fn write_set(ops: &[RequestOp]) -> Result<(Vec<Vec<u8>>, Vec<KeyRange>), StoreError> {
    let mut puts: Vec<Vec<u8>> = Vec::new();
    let mut dels: Vec<KeyRange> = Vec::new();
    let dup = || invalid("etcdserver: duplicate key given in txn request");
    for op in ops {
        match &op.request {
            Some(Request::RequestPut(p)) => {
                if puts.contains(&p.key) {
                    return Err(dup());
                }
                puts.push(p.key.clone());
            }
            Some(Request::RequestDeleteRange(d)) => dels.push(KeyRange::new(&d.key, &d.range_end)),
            Some(Request::RequestTxn(t)) => {
                let (sp, sd) = write_set(&t.success)?;
                let (fp, fd) = write_set(&t.failure)?;
                // Only one branch runs, so the two may write the same key.
                let mut nested = sp;
                nested.extend(
                    fp.into_iter()
                        .filter(|k| !nested.contains(k))
                        .collect::<Vec<_>>(),
                );
                for k in nested {
                    if puts.contains(&k) {
                        return Err(dup());
                    }
                    puts.push(k);
                }
                dels.extend(sd.into_iter().chain(fd));
            }
            _ => {}
        }
    }
    for k in &puts {
        if dels.iter().any(|d| d.contains(k)) {
            return Err(dup());
        }
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
