//! JSON objects over the etcd-style store: upstream's storage layout (`/registry/...` keys, one
//! object per key) and its concurrency rules (every write a transaction comparing mod_revision, so
//! a stale writer loses). The object's resourceVersion is the key's mod_revision; it is never stored
//! in the value, only set on the way out.

use std::sync::Arc;

use serde_json::Value;
use store::proto::etcdserverpb::{
    compare::{CompareResult, CompareTarget, TargetUnion},
    request_op::Request,
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use store::proto::mvccpb::KeyValue;
use store::{Store, StoreError};

use crate::status::ApiError;

pub type DynStore = Arc<dyn Store>;

/// A stored object with the revision it was last written at.
#[derive(Debug, Clone)]
pub struct Stored {
    pub key: String,
    pub obj: Value,
    pub mod_revision: i64,
}

/// Why a guarded write did not happen.
#[derive(Debug)]
pub enum WriteError {
    /// The key exists (create) or its mod_revision moved (update, delete).
    Precondition,
    Store(StoreError),
}

impl From<StoreError> for WriteError {
    fn from(e: StoreError) -> Self {
        WriteError::Store(e)
    }
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Precondition => {
                ApiError::Internal("unexpected precondition failure".into())
            }
            WriteError::Store(e) => e.into(),
        }
    }
}

/// Decodes a stored value and stamps its resourceVersion; None for values that are not objects
/// (never written by the API server), which are skipped rather than failing a whole list.
pub fn decode(kv: &KeyValue) -> Option<Stored> {
    let mut obj: Value = serde_json::from_slice(&kv.value).ok()?;
    if !obj.is_object() {
        return None;
    }
    crate::metadata::meta_mut(&mut obj)
        .insert("resourceVersion".into(), kv.mod_revision.to_string().into());
    Some(Stored {
        key: String::from_utf8_lossy(&kv.key).into_owned(),
        obj,
        mod_revision: kv.mod_revision,
    })
}

fn encode(obj: &Value) -> Vec<u8> {
    let mut obj = obj.clone();
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    serde_json::to_vec(&obj).unwrap_or_default()
}

/// The end of the range covering every key that starts with `prefix` (etcd's prefix range).
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

pub async fn get(store: &DynStore, key: &str) -> Result<Option<Stored>, StoreError> {
    let resp = store
        .range(RangeRequest {
            key: key.into(),
            ..Default::default()
        })
        .await?;
    Ok(resp.kvs.first().and_then(decode))
}

/// One page of a prefix: objects from `start` (inclusive) on, at `revision` (0 = latest). The
/// values stay as stored bytes; callers `decode` them one at a time so a large page is never
/// held as bytes and as parsed objects at once.
pub struct Page {
    pub kvs: Vec<KeyValue>,
    pub revision: i64,
    pub more: bool,
}

pub async fn list(
    store: &DynStore,
    prefix: &str,
    start: Option<&str>,
    revision: i64,
    limit: i64,
) -> Result<Page, StoreError> {
    let req = RangeRequest {
        key: start.unwrap_or(prefix).into(),
        range_end: prefix_end(prefix),
        revision,
        limit,
        ..Default::default()
    };
    let resp = store.range(req).await?;
    let revision = resp.header.map(|h| h.revision).unwrap_or_default();
    Ok(Page {
        kvs: resp.kvs,
        revision,
        more: resp.more,
    })
}

pub async fn current_revision(store: &DynStore) -> Result<i64, StoreError> {
    let resp = store
        .range(RangeRequest {
            key: b"/registry/".to_vec(),
            limit: 1,
            count_only: true,
            ..Default::default()
        })
        .await?;
    Ok(resp.header.map(|h| h.revision).unwrap_or_default())
}

fn compare(key: &str, target: CompareTarget, union: TargetUnion) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: target as i32,
        key: key.into(),
        range_end: vec![],
        target_union: Some(union),
    }
}

async fn guarded(store: &DynStore, cmp: Compare, op: Request) -> Result<i64, WriteError> {
    let resp = store
        .txn(TxnRequest {
            compare: vec![cmp],
            success: vec![RequestOp { request: Some(op) }],
            failure: vec![],
        })
        .await?;
    if !resp.succeeded {
        return Err(WriteError::Precondition);
    }
    Ok(resp.header.map(|h| h.revision).unwrap_or_default())
}

/// Writes `obj` at `key` only if the key does not exist; returns the new revision.
pub async fn create(store: &DynStore, key: &str, obj: &Value) -> Result<i64, WriteError> {
    let put = Request::RequestPut(PutRequest {
        key: key.into(),
        value: encode(obj),
        ..Default::default()
    });
    guarded(
        store,
        compare(key, CompareTarget::Create, TargetUnion::CreateRevision(0)),
        put,
    )
    .await
}

/// Writes `obj` at `key` only if the key is still at `mod_revision`.
pub async fn update(
    store: &DynStore,
    key: &str,
    obj: &Value,
    mod_revision: i64,
) -> Result<i64, WriteError> {
    let put = Request::RequestPut(PutRequest {
        key: key.into(),
        value: encode(obj),
        ..Default::default()
    });
    guarded(
        store,
        compare(
            key,
            CompareTarget::Mod,
            TargetUnion::ModRevision(mod_revision),
        ),
        put,
    )
    .await
}

/// Deletes `key` only if it is still at `mod_revision`.
pub async fn delete(store: &DynStore, key: &str, mod_revision: i64) -> Result<i64, WriteError> {
    let del = Request::RequestDeleteRange(DeleteRangeRequest {
        key: key.into(),
        ..Default::default()
    });
    guarded(
        store,
        compare(
            key,
            CompareTarget::Mod,
            TargetUnion::ModRevision(mod_revision),
        ),
        del,
    )
    .await
}

/// Stamps a freshly written object with the revision the write got.
pub fn with_revision(mut obj: Value, revision: i64) -> Value {
    crate::metadata::meta_mut(&mut obj)
        .insert("resourceVersion".into(), revision.to_string().into());
    obj
}
