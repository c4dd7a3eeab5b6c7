//! Request checks that etcd performs in its gRPC layer (`etcdserver/api/v3rpc/key.go`) before a
//! request reaches the store, with etcd's error messages. Public so that in-process callers and
//! backends can apply the same limits as the endpoint.

use prost::Message;

use crate::proto::etcdserverpb::request_op::Request;
use crate::proto::etcdserverpb::{
    DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, WatchCreateRequest,
};
use crate::StoreError;

/// etcd's default `--max-request-bytes` (1.5 MiB): larger writes are refused.
pub const MAX_REQUEST_BYTES: usize = 1536 * 1024;
/// etcd's default `--max-txn-ops`: the most compares or operations in one branch of a txn.
pub const MAX_TXN_OPS: usize = 128;

const EMPTY_KEY: &str = "etcdserver: key is not provided";
const KEY_NOT_FOUND: &str = "etcdserver: key not found";
const VALUE_PROVIDED: &str = "etcdserver: value is provided";
const LEASE_PROVIDED: &str = "etcdserver: lease is provided";
const TOO_MANY_OPS: &str = "etcdserver: too many operations in txn request";
const DUPLICATE_KEY: &str = "etcdserver: duplicate key given in txn request";
const TOO_LARGE: &str = "etcdserver: request is too large";

fn invalid(msg: &str) -> StoreError {
    StoreError::InvalidArgument(msg.to_string())
}

fn check_size(req: &impl Message) -> Result<(), StoreError> {
    if req.encoded_len() > MAX_REQUEST_BYTES {
        return Err(invalid(TOO_LARGE));
    }
    Ok(())
}

pub fn check_range(req: &RangeRequest) -> Result<(), StoreError> {
    if req.key.is_empty() {
        return Err(invalid(EMPTY_KEY));
    }
    Ok(())
}

pub fn check_put(req: &PutRequest) -> Result<(), StoreError> {
    check_put_fields(req)?;
    check_size(req)
}

fn check_put_fields(req: &PutRequest) -> Result<(), StoreError> {
    if req.key.is_empty() {
        return Err(invalid(EMPTY_KEY));
    }
    if req.ignore_value && !req.value.is_empty() {
        return Err(invalid(VALUE_PROVIDED));
    }
    if req.ignore_lease && req.lease != 0 {
        return Err(invalid(LEASE_PROVIDED));
    }
    Ok(())
}

pub fn check_delete(req: &DeleteRangeRequest) -> Result<(), StoreError> {
    if req.key.is_empty() {
        return Err(invalid(EMPTY_KEY));
    }
    check_size(req)
}

/// A watch over an empty range is refused (etcd: `mvcc: watcher range is empty`); a range end of
/// `"\0"` means every key from `key` on.
pub fn check_watch(req: &WatchCreateRequest) -> Result<(), StoreError> {
    let end = req.range_end.as_slice();
    if !end.is_empty() && end != [0] && req.key.as_slice() >= end {
        return Err(invalid("mvcc: watcher range is empty"));
    }
    Ok(())
}

/// Op count, empty keys, nested txns, then the put/delete overlap rule, as etcd orders them.
pub fn check_txn(req: &TxnRequest) -> Result<(), StoreError> {
    check_txn_ops(req, MAX_TXN_OPS)?;
    check_intervals(&req.success)?;
    check_intervals(&req.failure)?;
    check_size(req)
}

fn check_txn_ops(req: &TxnRequest, max_ops: usize) -> Result<(), StoreError> {
    let opc = req
        .compare
        .len()
        .max(req.success.len())
        .max(req.failure.len());
    if opc > max_ops {
        return Err(invalid(TOO_MANY_OPS));
    }
    if req.compare.iter().any(|c| c.key.is_empty()) {
        return Err(invalid(EMPTY_KEY));
    }
    for op in req.success.iter().chain(&req.failure) {
        check_op(op, max_ops - opc)?;
    }
    Ok(())
}

fn check_op(op: &RequestOp, max_ops: usize) -> Result<(), StoreError> {
    match &op.request {
        Some(Request::RequestRange(r)) => check_range(r),
        Some(Request::RequestPut(r)) => check_put_fields(r),
        Some(Request::RequestDeleteRange(r)) if r.key.is_empty() => Err(invalid(EMPTY_KEY)),
        Some(Request::RequestDeleteRange(_)) => Ok(()),
        Some(Request::RequestTxn(t)) => check_txn_ops(t, max_ops),
        None => Err(invalid(KEY_NOT_FOUND)),
    }
}

/// A deleted key or range, as etcd's interval tree holds it.
struct Deleted {
    key: Vec<u8>,
    range_end: Vec<u8>,
}

impl Deleted {
    fn covers(&self, k: &[u8]) -> bool {
        if self.range_end.is_empty() {
            return self.key == k;
        }
        self.key.as_slice() <= k && k < self.range_end.as_slice()
    }
}

type Puts = std::collections::HashSet<Vec<u8>>;

/// A txn branch may not put one key twice nor put a key it also deletes: the outcome would
/// depend on op order, so etcd refuses it.
fn check_intervals(ops: &[RequestOp]) -> Result<(Puts, Vec<Deleted>), StoreError> {
    let mut dels: Vec<Deleted> = ops
        .iter()
        .filter_map(|op| match &op.request {
            Some(Request::RequestDeleteRange(d)) => Some(Deleted {
                key: d.key.clone(),
                range_end: d.range_end.clone(),
            }),
            _ => None,
        })
        .collect();
    let mut puts = Puts::new();
    for op in ops {
        let Some(Request::RequestTxn(t)) = &op.request else {
            continue;
        };
        let (puts_then, dels_then) = check_intervals(&t.success)?;
        let (puts_else, dels_else) = check_intervals(&t.failure)?;
        for k in &puts_then {
            claim_put(&mut puts, &dels, k, None)?;
        }
        for k in &puts_else {
            // then and else are exclusive, so a key put by both branches is not a conflict.
            claim_put(&mut puts, &dels, k, Some(&puts_then))?;
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for op in ops {
        if let Some(Request::RequestPut(p)) = &op.request {
            claim_put(&mut puts, &dels, &p.key, None)?;
        }
    }
    Ok((puts, dels))
}

fn claim_put(
    puts: &mut Puts,
    dels: &[Deleted],
    key: &[u8],
    exclusive: Option<&Puts>,
) -> Result<(), StoreError> {
    let safe = exclusive.is_some_and(|other| other.contains(key));
    if (puts.contains(key) && !safe) || dels.iter().any(|d| d.covers(key)) {
        return Err(invalid(DUPLICATE_KEY));
    }
    puts.insert(key.to_vec());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestPut(PutRequest {
                key: k.into(),
                ..Default::default()
            })),
        }
    }

    fn del(k: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                key: k.into(),
                range_end: end.into(),
                ..Default::default()
            })),
        }
    }

    fn txn(success: Vec<RequestOp>) -> TxnRequest {
        TxnRequest {
            success,
            ..Default::default()
        }
    }

    #[test]
    fn refuses_duplicate_puts_and_put_under_delete() {
        assert!(check_txn(&txn(vec![put("a"), put("b")])).is_ok());
        assert!(check_txn(&txn(vec![put("a"), put("a")])).is_err());
        assert!(check_txn(&txn(vec![del("a", "c"), put("b")])).is_err());
        assert!(check_txn(&txn(vec![del("a", "c"), put("c")])).is_ok());
    }

    #[test]
    fn refuses_too_many_ops_and_empty_ops() {
        let many = (0..=MAX_TXN_OPS).map(|i| put(&format!("k{i}"))).collect();
        assert!(check_txn(&txn(many)).is_err());
        assert!(check_txn(&txn(vec![RequestOp { request: None }])).is_err());
    }

    #[test]
    fn refuses_oversized_put() {
        let req = PutRequest {
            key: b"k".to_vec(),
            value: vec![0; MAX_REQUEST_BYTES],
            ..Default::default()
        };
        assert!(check_put(&req).is_err());
    }
}
