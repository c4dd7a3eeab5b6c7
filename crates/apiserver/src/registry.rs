//! The generic registry: create, read, update, delete and list for every resource in the table,
//! with upstream's object semantics (server-owned metadata, defaulting and validation, optimistic
//! concurrency, finalizers and graceful deletion, namespace checks). The HTTP layer (`rest`) and
//! the API server's own bootstrap both work through it.

use std::sync::Arc;

use base64::Engine as _;
use serde_json::{json, Value};

use crate::admission::{self, Admission, Operation};
use crate::allocators::Allocators;
use crate::authn::UserInfo;
use crate::authorization::{self, Switch};
use crate::conversion::{from_storage, to_storage};
use crate::kinds::Cause;
use crate::metadata::{self, has_finalizers};
use crate::resources::{self, Resource, ResourceTable};
use crate::selectors::Selector;
use crate::status::{ApiError, ApiResult, Subject};
use crate::storage::{self, DynStore, Stored, WriteError};
use crate::strategy;
use crate::watch_cache::WatchCache;

/// How often a write retries when its read went stale under it (not the caller's precondition).
const RETRIES: usize = 8;

#[derive(Clone)]
pub struct Registry {
    pub store: DynStore,
    pub cache: Arc<WatchCache>,
    pub allocators: Arc<Allocators>,
    /// The server's authorizer, for the RBAC escalation checks on writes.
    pub authorization: Arc<Switch>,
    /// Who writes through this registry: a client's request ([`Registry::acting_for`]), or
    /// `None` for the server's own writes (bootstrap, finalizer, aggregation), never checked.
    pub requester: Option<UserInfo>,
    /// The resources this server serves (built-in rows and those of established CRDs).
    pub resources: Arc<ResourceTable>,
    /// The admission chain a client's writes go through.
    pub admission: Arc<Admission>,
}

/// Options of a DELETE (query and `DeleteOptions` body).
#[derive(Debug, Default, Clone)]
pub struct DeleteOptions {
    pub grace_period: Option<i64>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub dry_run: bool,
    pub propagation: crate::propagation::Propagation,
}

/// What a delete did: removed the object, or marked it and left it for finalizers/grace.
pub struct Deleted {
    pub obj: Value,
    pub gone: bool,
}

/// What a list asks for.
#[derive(Debug, Default, Clone)]
pub struct ListOptions {
    pub selector: Selector,
    pub limit: i64,
    pub continue_token: String,
    pub resource_version: Option<String>,
    pub resource_version_match: String,
}

/// The list-level metadata of a list: the revision it was read at and where the next page starts.
pub struct ListMeta {
    pub revision: i64,
    pub continue_token: Option<String>,
}

pub struct ListResult {
    pub items: Vec<Value>,
    pub revision: i64,
    pub continue_token: Option<String>,
}

fn not_found(res: &Resource, name: &str) -> ApiError {
    ApiError::NotFound(Subject::new(res.group, res.plural, name))
}

fn conflict(res: &Resource, name: &str) -> ApiError {
    ApiError::Conflict(
        Subject::new(res.group, res.plural, name),
        "the object has been modified; please apply your changes to the latest version and try again".into(),
    )
}

pub fn invalid(res: &Resource, name: &str, causes: Vec<Cause>) -> ApiError {
    ApiError::Invalid(Subject::new(res.group, res.kind, name), causes)
}

/// The body's apiVersion and kind, when given, must be the URL's.
pub fn check_type(
    res: &Resource,
    obj: &Value,
    expected_kind: &str,
    expected_version: &str,
) -> ApiResult<()> {
    if let Some(av) = obj["apiVersion"].as_str() {
        if av != expected_version {
            return Err(ApiError::BadRequest(format!(
                "the API version in the data ({av}) does not match the expected API version ({expected_version})"
            )));
        }
    }
    if let Some(kind) = obj["kind"].as_str() {
        if kind != expected_kind {
            return Err(ApiError::BadRequest(format!(
                "the kind in the data ({kind}) does not match the expected kind ({expected_kind}) for {}",
                res.plural
            )));
        }
    }
    Ok(())
}

impl Registry {
    /// This registry, writing on behalf of `user` (a per-request view; clones only handles).
    pub fn acting_for(&self, user: &UserInfo) -> Registry {
        Registry {
            requester: Some(user.clone()),
            ..self.clone()
        }
    }

    /// The RBAC escalation checks, for a client's write of a Role, ClusterRole or binding.
    fn check_authority(&self, res: &Resource, new: &Value, old: Option<&Value>) -> ApiResult<()> {
        match &self.requester {
            Some(user) => authorization::check_write(&self.authorization, user, res, new, old),
            None => Ok(()),
        }
    }

    pub async fn get(&self, res: &Resource, ns: Option<&str>, name: &str) -> ApiResult<Value> {
        Ok(from_storage(res, self.get_stored(res, ns, name).await?.obj))
    }

    async fn get_stored(&self, res: &Resource, ns: Option<&str>, name: &str) -> ApiResult<Stored> {
        storage::get(&self.store, &res.key(ns, name))
            .await?
            .ok_or_else(|| not_found(res, name))
    }

    /// Refuses content in a missing or terminating namespace, as upstream's NamespaceLifecycle.
    async fn check_namespace(&self, res: &Resource, ns: &str, name: &str) -> ApiResult<()> {
        let nsres = resources::namespaces();
        let Some(stored) = storage::get(&self.store, &nsres.key(None, ns)).await? else {
            return Err(not_found(nsres, ns));
        };
        if stored.obj["status"]["phase"] == "Terminating" {
            let msg = format!(
                "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                qualified(res)
            );
            return Err(ApiError::Forbidden(
                Subject::new(res.group, res.plural, name),
                msg,
            ));
        }
        Ok(())
    }

    pub async fn create(
        &self,
        res: &Resource,
        ns: Option<&str>,
        mut obj: Value,
        dry_run: bool,
    ) -> ApiResult<Value> {
        if let Some(custom) = res.custom.as_ref().filter(|c| c.terminating) {
            return Err(custom.terminating_error(res));
        }
        strategy::prepare_create(res, &mut obj);
        crate::certificates::prepare_create(res, &mut obj, self.requester.as_ref());
        let generate = obj["metadata"]["generateName"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let named = !metadata::name(&obj).is_empty();
        for _ in 0..RETRIES {
            let mut attempt = obj.clone();
            if !named && !generate.is_empty() {
                metadata::meta_mut(&mut attempt).insert(
                    "name".into(),
                    format!("{generate}{}", metadata::random_suffix()).into(),
                );
            }
            match self.create_once(res, ns, attempt, dry_run).await {
                Err(ApiError::AlreadyExists(_)) if !named && !generate.is_empty() => continue,
                other => return other,
            }
        }
        Err(ApiError::AlreadyExists(Subject::new(
            res.group, res.plural, &generate,
        )))
    }

    async fn create_once(
        &self,
        res: &Resource,
        ns: Option<&str>,
        mut obj: Value,
        dry_run: bool,
    ) -> ApiResult<Value> {
        metadata::prepare_create(res, &mut obj, ns);
        res.apply_defaults(&mut obj);
        let name = metadata::name(&obj).to_string();
        let causes = merge_causes(metadata::validate(res, &obj), res.validate(&obj, None));
        if !causes.is_empty() {
            return Err(invalid(res, &name, causes));
        }
        self.check_authority(res, &obj, None)?;
        if let (true, Some(ns)) = (res.namespaced, ns) {
            self.check_namespace(res, ns, &name).await?;
        }
        admission::run(
            self,
            Operation::Create,
            res,
            None,
            ns,
            &name,
            Some(&mut obj),
            None,
        )
        .await?;
        strategy::allocate(res, &self.allocators, &mut obj).map_err(|c| invalid(res, &name, c))?;
        if dry_run {
            strategy::release(res, &self.allocators, &obj);
            return Ok(from_storage(res, obj));
        }
        let stored = to_storage(res, obj);
        match storage::create(&self.store, &res.key(ns, &name), &stored).await {
            Ok(rev) => Ok(from_storage(res, storage::with_revision(stored, rev))),
            Err(e) => {
                strategy::release(res, &self.allocators, &stored);
                Err(match e {
                    WriteError::Precondition => {
                        ApiError::AlreadyExists(Subject::new(res.group, res.plural, &name))
                    }
                    other => other.into(),
                })
            }
        }
    }

    /// Read-modify-write of one object: `mutate` turns the current object into the desired one.
    /// A resourceVersion in the result is the caller's precondition (409 when stale); without one
    /// the write is retried against fresh reads, as upstream's GuaranteedUpdate.
    pub async fn update_with<F>(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        sub: Option<&str>,
        dry_run: bool,
        mutate: F,
    ) -> ApiResult<Value>
    where
        F: Fn(&Value) -> ApiResult<Value>,
    {
        for _ in 0..RETRIES {
            let cur = self.get_stored(res, ns, name).await?;
            let old = from_storage(res, cur.obj.clone());
            let mut new = mutate(&old)?;
            let precondition = new["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("")
                .to_string();
            if !precondition.is_empty() && precondition != cur.mod_revision.to_string() {
                return Err(conflict(res, name));
            }
            strategy::merge_for_subresource(res, sub, &mut new, &old);
            admission::run(
                self,
                Operation::Update,
                res,
                sub,
                ns,
                name,
                Some(&mut new),
                Some(&old),
            )
            .await?;
            match self
                .write_update(res, ns, name, sub, new, &old, &cur, dry_run)
                .await
            {
                Err(ApiError::Conflict(..)) if precondition.is_empty() => continue,
                other => return other,
            }
        }
        Err(conflict(res, name))
    }

    #[allow(clippy::too_many_arguments)]
    async fn write_update(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        sub: Option<&str>,
        mut new: Value,
        old: &Value,
        cur: &Stored,
        dry_run: bool,
    ) -> ApiResult<Value> {
        metadata::prepare_update(res, &mut new, old);
        res.apply_defaults(&mut new);
        // A binding sets spec.nodeName, which a pod update may never change: upstream's binding
        // storage writes it without the update rules, so the object is validated as a whole only.
        let update_of = (sub != Some("binding")).then_some(old);
        let causes = merge_causes(metadata::validate(res, &new), res.validate(&new, update_of));
        if !causes.is_empty() {
            return Err(invalid(res, name, causes));
        }
        self.check_authority(res, &new, Some(old))?;
        strategy::reallocate(res, &self.allocators, &mut new, old)
            .map_err(|c| invalid(res, name, c))?;
        let stored_new = to_storage(res, new);
        if dry_run {
            strategy::undo_reallocate(res, &self.allocators, &stored_new, old);
            // What the write would store, at the revision it was computed from.
            return Ok(from_storage(
                res,
                storage::with_revision(stored_new, cur.mod_revision),
            ));
        }
        if same_content(&stored_new, &cur.obj) {
            return Ok(from_storage(res, cur.obj.clone()));
        }
        let key = res.key(ns, name);
        if finished_deleting(res, &stored_new) {
            return match storage::delete(&self.store, &key, cur.mod_revision).await {
                Ok(rev) => {
                    strategy::release(res, &self.allocators, &stored_new);
                    Ok(from_storage(res, storage::with_revision(stored_new, rev)))
                }
                Err(WriteError::Precondition) => Err(conflict(res, name)),
                Err(e) => Err(e.into()),
            };
        }
        match storage::update(&self.store, &key, &stored_new, cur.mod_revision).await {
            Ok(rev) => Ok(from_storage(res, storage::with_revision(stored_new, rev))),
            Err(WriteError::Precondition) => Err(conflict(res, name)),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn delete(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<Deleted> {
        if strategy::undeletable(res, name) {
            let msg = format!(
                "{} \"{name}\" is forbidden: this namespace may not be deleted",
                qualified(res)
            );
            return Err(ApiError::Forbidden(
                Subject::new(res.group, res.plural, name),
                msg,
            ));
        }
        for _ in 0..RETRIES {
            let cur = self.get_stored(res, ns, name).await?;
            check_preconditions(res, name, &cur, opts)?;
            if self.requester.is_some() {
                let old = from_storage(res, cur.obj.clone());
                admission::run(
                    self,
                    Operation::Delete,
                    res,
                    None,
                    ns,
                    name,
                    None,
                    Some(&old),
                )
                .await?;
            }
            match self.delete_once(res, ns, name, &cur, opts).await {
                Err(ApiError::Conflict(..)) => continue,
                other => return other,
            }
        }
        Err(conflict(res, name))
    }

    async fn delete_once(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        cur: &Stored,
        opts: &DeleteOptions,
    ) -> ApiResult<Deleted> {
        // Deletion propagation: the garbage-collection finalizer the request asks for.
        let marked;
        let cur = match opts.propagation.finalizers(&cur.obj) {
            Some(f) if !cur.obj["metadata"]["deletionTimestamp"].is_null() => {
                let mut obj = cur.obj.clone();
                obj["metadata"]["finalizers"] = f.into();
                return self
                    .write_deleting(res, ns, name, cur, obj, opts.dry_run)
                    .await;
            }
            Some(f) => {
                let mut obj = cur.obj.clone();
                obj["metadata"]["finalizers"] = f.into();
                marked = Stored { obj, ..cur.clone() };
                &marked
            }
            None => cur,
        };
        let is_namespace = res.plural == "namespaces" && res.group.is_empty();
        let grace = strategy::grace_period(res, &cur.obj, opts.grace_period);
        let spec_finalizers = is_namespace
            && cur.obj["spec"]["finalizers"]
                .as_array()
                .is_some_and(|f| !f.is_empty());
        if let Some(finalizer) = res.delete_finalizer {
            if cur.obj["metadata"]["deletionTimestamp"].is_null() {
                return self
                    .mark_for_cleanup(res, ns, name, cur, finalizer, opts.dry_run)
                    .await;
            }
        }
        if has_finalizers(&cur.obj) || grace.is_some() || spec_finalizers {
            return self
                .mark_deleting(res, ns, name, cur, grace, is_namespace, opts.dry_run)
                .await;
        }
        if opts.dry_run {
            return Ok(Deleted {
                obj: from_storage(res, cur.obj.clone()),
                gone: true,
            });
        }
        match storage::delete(&self.store, &res.key(ns, name), cur.mod_revision).await {
            Ok(_) => {
                strategy::release(res, &self.allocators, &cur.obj);
                Ok(Deleted {
                    obj: from_storage(res, cur.obj.clone()),
                    gone: true,
                })
            }
            Err(WriteError::Precondition) => Err(conflict(res, name)),
            Err(e) => Err(e.into()),
        }
    }

    /// The first delete of a resource with a cleanup finalizer (CRDs): adds it with the
    /// deletionTimestamp, and leaves the object to the controller that cleans up and removes it.
    async fn mark_for_cleanup(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        cur: &Stored,
        finalizer: &str,
        dry_run: bool,
    ) -> ApiResult<Deleted> {
        let mut obj = cur.obj.clone();
        let m = metadata::meta_mut(&mut obj);
        m.insert("deletionTimestamp".into(), metadata::now_rfc3339().into());
        m.insert("deletionGracePeriodSeconds".into(), 0.into());
        let finalizers = m.entry("finalizers").or_insert_with(|| json!([]));
        if let Some(list) = finalizers.as_array_mut() {
            if !list.iter().any(|f| f == finalizer) {
                list.push(finalizer.into());
            }
        }
        if dry_run {
            return Ok(Deleted {
                obj: from_storage(res, obj),
                gone: false,
            });
        }
        match storage::update(&self.store, &res.key(ns, name), &obj, cur.mod_revision).await {
            Ok(rev) => Ok(Deleted {
                obj: from_storage(res, storage::with_revision(obj, rev)),
                gone: false,
            }),
            Err(WriteError::Precondition) => Err(conflict(res, name)),
            Err(e) => Err(e.into()),
        }
    }

    /// Stores a deleting object's changed finalizers, removing it when none is left to wait for.
    async fn write_deleting(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        cur: &Stored,
        obj: Value,
        dry_run: bool,
    ) -> ApiResult<Deleted> {
        let gone = finished_deleting(res, &obj);
        let key = res.key(ns, name);
        let written = match (dry_run, gone) {
            (true, _) => Ok(cur.mod_revision),
            (false, true) => storage::delete(&self.store, &key, cur.mod_revision).await,
            (false, false) => storage::update(&self.store, &key, &obj, cur.mod_revision).await,
        };
        match written {
            Ok(rev) => Ok(Deleted {
                obj: from_storage(res, storage::with_revision(obj, rev)),
                gone,
            }),
            Err(WriteError::Precondition) => Err(conflict(res, name)),
            Err(e) => Err(e.into()),
        }
    }

    /// Sets deletionTimestamp (once) and leaves the object for its finalizers, its kubelet or the
    /// namespace finalizer.
    #[allow(clippy::too_many_arguments)]
    async fn mark_deleting(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        cur: &Stored,
        grace: Option<i64>,
        is_namespace: bool,
        dry_run: bool,
    ) -> ApiResult<Deleted> {
        let mut obj = cur.obj.clone();
        let already = !obj["metadata"]["deletionTimestamp"].is_null();
        let shorter = grace.is_some_and(|g| {
            obj["metadata"]["deletionGracePeriodSeconds"]
                .as_i64()
                .is_none_or(|old| g < old)
        });
        if already && !shorter {
            return Ok(Deleted {
                obj: from_storage(res, obj),
                gone: false,
            });
        }
        let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(grace.unwrap_or(0));
        let m = metadata::meta_mut(&mut obj);
        m.insert("deletionTimestamp".into(), metadata::rfc3339(at).into());
        m.insert(
            "deletionGracePeriodSeconds".into(),
            grace.unwrap_or(0).into(),
        );
        if is_namespace {
            obj["status"]["phase"] = json!("Terminating");
        }
        if dry_run {
            return Ok(Deleted {
                obj: from_storage(res, obj),
                gone: false,
            });
        }
        let rev =
            match storage::update(&self.store, &res.key(ns, name), &obj, cur.mod_revision).await {
                Ok(rev) => rev,
                Err(WriteError::Precondition) => return Err(conflict(res, name)),
                Err(e) => return Err(e.into()),
            };
        Ok(Deleted {
            obj: from_storage(res, storage::with_revision(obj, rev)),
            gone: false,
        })
    }

    pub async fn list(
        &self,
        res: &Resource,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> ApiResult<ListResult> {
        let mut items = Vec::new();
        let meta = self.list_each(res, ns, opts, |obj| items.push(obj)).await?;
        Ok(ListResult {
            items,
            revision: meta.revision,
            continue_token: meta.continue_token,
        })
    }

    /// Like `list`, but hands each matching object to `emit` as soon as it is decoded, so a caller
    /// that encodes as it goes never holds every object of a large list as a `Value` at once.
    pub async fn list_each(
        &self,
        res: &Resource,
        ns: Option<&str>,
        opts: &ListOptions,
        mut emit: impl FnMut(Value),
    ) -> ApiResult<ListMeta> {
        let prefix = res.scope_prefix(ns);
        let (mut revision, start) = list_start(&prefix, opts)?;
        let limit = usize::try_from(opts.limit.max(0)).unwrap_or(0);
        let mut count = 0usize;
        let mut next = start;
        let mut continue_token = None;
        loop {
            let want = if limit > 0 {
                (limit - count) as i64 + 1
            } else {
                0
            };
            let page = storage::list(&self.store, &prefix, Some(&next), revision, want)
                .await
                .map_err(|e| list_error(e, !opts.continue_token.is_empty()))?;
            if revision == 0 {
                revision = page.revision;
                check_not_older(opts, revision)?;
            }
            let mut last = None;
            // Decoded one at a time: only the current object exists as a `Value`.
            for item in page.kvs.iter().filter_map(storage::decode) {
                if limit > 0 && count == limit {
                    continue_token = Some(encode_continue(revision, &item.key[prefix.len()..]));
                    break;
                }
                let obj = from_storage(res, item.obj);
                if opts.selector.matches(res, &obj) {
                    count += 1;
                    emit(obj);
                }
                last = Some(item.key);
            }
            match (continue_token.is_some(), page.more, last) {
                (false, true, Some(last)) => next = format!("{last}\0"),
                _ => break,
            }
        }
        Ok(ListMeta {
            revision,
            continue_token,
        })
    }
}

/// The generic metadata checks and the per-kind ones overlap on names and labels; a client sees
/// each cause once.
fn merge_causes(generic: Vec<Cause>, per_kind: Vec<Cause>) -> Vec<Cause> {
    let mut out = per_kind;
    for c in generic {
        if !out
            .iter()
            .any(|o| o.field == c.field && o.message == c.message)
        {
            out.push(c);
        }
    }
    out
}

fn qualified(res: &Resource) -> String {
    if res.group.is_empty() {
        res.plural.to_string()
    } else {
        format!("{}.{}", res.plural, res.group)
    }
}

/// Bytes-equal stored forms mean the update changes nothing; upstream then skips the write and
/// keeps the resourceVersion.
fn same_content(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        v
    };
    strip(a) == strip(b)
}

/// A deleting object whose last finalizer went away is removed (pods wait for their kubelet,
/// which deletes them with grace 0).
fn finished_deleting(res: &Resource, obj: &Value) -> bool {
    let deleting = !obj["metadata"]["deletionTimestamp"].is_null();
    let waiting_for_kubelet = res.plural == "pods"
        && obj["metadata"]["deletionGracePeriodSeconds"]
            .as_i64()
            .unwrap_or(0)
            > 0;
    let ns_finalizers = res.plural == "namespaces"
        && obj["spec"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
    deleting && !has_finalizers(obj) && !waiting_for_kubelet && !ns_finalizers
}

fn check_preconditions(
    res: &Resource,
    name: &str,
    cur: &Stored,
    opts: &DeleteOptions,
) -> ApiResult<()> {
    let subject = || Subject::new(res.group, res.plural, name);
    if let Some(uid) = &opts.uid {
        let have = cur.obj["metadata"]["uid"].as_str().unwrap_or("");
        if uid != have {
            return Err(ApiError::Conflict(
                subject(),
                format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {have}"
                ),
            ));
        }
    }
    if let Some(rv) = &opts.resource_version {
        if *rv != cur.mod_revision.to_string() {
            return Err(ApiError::Conflict(subject(), format!("Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}", cur.mod_revision)));
        }
    }
    Ok(())
}

/// Where a list starts: (revision to read at, 0 = latest; first key).
fn list_start(prefix: &str, opts: &ListOptions) -> ApiResult<(i64, String)> {
    let rv = opts.resource_version.as_deref().unwrap_or("");
    let matching = opts.resource_version_match.as_str();
    if !matching.is_empty() && rv.is_empty() {
        return Err(ApiError::BadRequest("resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided".into()));
    }
    if !opts.continue_token.is_empty() {
        if !matching.is_empty() {
            return Err(ApiError::BadRequest("resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden when continue is provided".into()));
        }
        let (rev, start) = decode_continue(&opts.continue_token)?;
        return Ok((rev, format!("{prefix}{start}")));
    }
    let exact = match matching {
        "" | "NotOlderThan" => false,
        "Exact" => true,
        other => return Err(ApiError::BadRequest(format!("resourceVersionMatch: Unsupported value: \"{other}\": supported values: \"Exact\", \"NotOlderThan\""))),
    };
    let parsed = parse_rv(rv)?;
    if exact {
        if parsed == 0 {
            return Err(ApiError::BadRequest(
                "resourceVersionMatch \"Exact\" is forbidden for resourceVersion \"0\"".into(),
            ));
        }
        return Ok((parsed, prefix.to_string()));
    }
    Ok((0, prefix.to_string()))
}

pub fn parse_rv(rv: &str) -> ApiResult<i64> {
    if rv.is_empty() {
        return Ok(0);
    }
    rv.parse::<i64>()
        .ok()
        .filter(|r| *r >= 0)
        .ok_or_else(|| ApiError::BadRequest(format!("invalid resource version \"{rv}\"")))
}

fn check_not_older(opts: &ListOptions, current: i64) -> ApiResult<()> {
    let wanted = parse_rv(opts.resource_version.as_deref().unwrap_or(""))?;
    if wanted > current && opts.resource_version_match != "Exact" {
        return Err(ApiError::Timeout(format!(
            "Too large resource version: {wanted}, current: {current}"
        )));
    }
    Ok(())
}

fn list_error(e: store::StoreError, continuing: bool) -> ApiError {
    match e {
        store::StoreError::Compacted { .. } if continuing => ApiError::Gone(
            "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.".into(),
        ),
        store::StoreError::Compacted { .. } => ApiError::Gone("The resourceVersion for the provided list is too old.".into()),
        store::StoreError::FutureRevision => ApiError::Timeout("Too large resource version".into()),
        other => other.into(),
    }
}

/// Upstream's continue token: base64url of `{"v":"meta.k8s.io/v1","rv":N,"start":"<key>"}`.
fn encode_continue(rev: i64, start: &str) -> String {
    let body = json!({"v": "meta.k8s.io/v1", "rv": rev, "start": start});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(body.to_string())
}

fn decode_continue(token: &str) -> ApiResult<(i64, String)> {
    let bad = || {
        ApiError::BadRequest("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)".into())
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rev = v["rv"].as_i64().filter(|r| *r > 0).ok_or_else(bad)?;
    let start = v["start"].as_str().ok_or_else(bad)?;
    if start.starts_with('/') || start.split('/').any(|p| p == "..") {
        return Err(bad());
    }
    Ok((rev, start.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_round_trip() {
        let t = encode_continue(42, "default/x\0");
        assert_eq!(
            decode_continue(&t).unwrap(),
            (42, "default/x\0".to_string())
        );
        assert!(decode_continue("garbage").is_err());
    }

    #[test]
    fn exact_needs_rv() {
        let opts = ListOptions {
            resource_version_match: "Exact".into(),
            ..Default::default()
        };
        assert!(list_start("/registry/pods/", &opts).is_err());
        let opts = ListOptions {
            resource_version: Some("7".into()),
            resource_version_match: "Exact".into(),
            ..Default::default()
        };
        assert_eq!(list_start("/registry/pods/", &opts).unwrap().0, 7);
    }

    async fn test_registry(dir: &std::path::Path) -> Registry {
        let engine = store::engine::Engine::open(dir, Default::default()).await;
        let store: DynStore = engine.expect("store");
        let rbac = Arc::new(crate::rbac::RbacAuthorizer::default());
        let mode = crate::config::AuthorizationMode::AlwaysAllow;
        Registry {
            cache: WatchCache::start(store.clone()).await.expect("cache"),
            store,
            allocators: Arc::new(Allocators::new(
                crate::allocators::Cidr::parse("10.152.183.0/24").expect("cidr"),
                30000..=32767,
            )),
            authorization: Arc::new(Switch::new(mode, rbac)),
            requester: None,
            resources: Default::default(),
            admission: Default::default(),
        }
    }

    /// A selected, paged list hands out exactly the objects a get returns, in key order, and its
    /// JSON items are byte-for-byte those objects without kind/apiVersion.
    #[tokio::test]
    async fn paged_selected_list_matches_gets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let reg = test_registry(dir.path()).await;
        let res = resources::find("", "v1", "configmaps").expect("configmaps");
        for i in 0..7 {
            let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("c{i}"), "namespace": "a", "labels": {"odd": (i % 2).to_string()}},
                "data": {"k": "\"v\"\u{e9}"}});
            storage::create(&reg.store, &res.key(Some("a"), &format!("c{i}")), &obj)
                .await
                .expect("create");
        }
        let mut opts = ListOptions {
            selector: Selector {
                labels: crate::selectors::LabelSelector::parse("odd=1").expect("selector"),
                ..Default::default()
            },
            limit: 2,
            ..Default::default()
        };
        let (mut names, mut pages) = (Vec::new(), 0);
        loop {
            let mut items = crate::list_encoding::JsonItems::default();
            let mut objs = Vec::new();
            let meta = reg
                .list_each(res, Some("a"), &opts, |o| {
                    objs.push(o.clone());
                    items.push(o);
                })
                .await
                .expect("list");
            let body = items.finish(res, json!({}));
            let list: Value = serde_json::from_slice(&body).expect("json");
            for (obj, item) in objs.iter().zip(list["items"].as_array().expect("items")) {
                let name = obj["metadata"]["name"].as_str().expect("name");
                let got = reg.get(res, Some("a"), name).await.expect("get");
                assert_eq!(obj, &got);
                let mut typeless = got.clone();
                crate::conversion::strip_type(&mut typeless);
                assert_eq!(item, &typeless);
                assert!(body
                    .windows(serde_json::to_vec(&typeless).unwrap().len())
                    .any(|w| w == serde_json::to_vec(&typeless).unwrap()));
                names.push(name.to_string());
            }
            pages += 1;
            match meta.continue_token {
                Some(c) => opts.continue_token = c,
                None => break,
            }
        }
        assert_eq!(names, ["c1", "c3", "c5"]);
        assert_eq!(pages, 2);
    }
}
