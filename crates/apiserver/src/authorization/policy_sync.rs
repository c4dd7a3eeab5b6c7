//! Keeps the RBAC policy in step with the store: a full load, then the watch cache's events for
//! the four RBAC resources (a lagging or reset subscription loads again). After a ClusterRole
//! changes, aggregation runs in memory and its result is written into the stored roles, as
//! upstream's clusterrole-aggregation controller does, so `kubectl get clusterrole admin` shows it.

use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;

use crate::conversion::from_storage;
use crate::rbac::{Kind, Policy, PolicyRule, RbacAuthorizer};
use crate::registry::{ListOptions, Registry};
use crate::resources::{self, Resource};
use crate::status::{ApiError, ApiResult};
use crate::storage;
use crate::watch_cache::CacheEvent;

const KINDS: [Kind; 4] = [
    Kind::ClusterRole,
    Kind::ClusterRoleBinding,
    Kind::Role,
    Kind::RoleBinding,
];

fn resource(kind: Kind) -> ApiResult<&'static Resource> {
    resources::by_kind(crate::rbac::objects::GROUP, kind.name()).ok_or(ApiError::NoSuchResource)
}

/// Everything stored under the four RBAC resources at `revision`, as one policy.
pub async fn load(reg: &Registry, revision: i64) -> ApiResult<Policy> {
    let opts = ListOptions {
        resource_version: Some(revision.to_string()),
        resource_version_match: "Exact".into(),
        ..Default::default()
    };
    let mut values = Vec::new();
    for kind in KINDS {
        values.extend(reg.list(resource(kind)?, None, &opts).await?.items);
    }
    Policy::from_values(&values).map_err(|e| ApiError::Internal(e.to_string()))
}

/// Where each RBAC kind is stored; every event in the cluster is matched against these.
struct Prefixes(Vec<(Kind, &'static Resource, String)>);

impl Prefixes {
    fn new() -> ApiResult<Prefixes> {
        KINDS
            .into_iter()
            .map(|k| resource(k).map(|res| (k, res, res.prefix())))
            .collect::<ApiResult<_>>()
            .map(Prefixes)
    }

    fn find(&self, key: &str) -> Option<(Kind, &'static Resource)> {
        self.0
            .iter()
            .find(|(_, _, prefix)| key.starts_with(prefix.as_str()))
            .map(|(kind, res, _)| (*kind, *res))
    }
}

/// Follows the store for as long as the server runs.
pub async fn run(reg: Arc<Registry>, rbac: Arc<RbacAuthorizer>) {
    let prefixes = match Prefixes::new() {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "RBAC policy: the RBAC resources are missing; not following");
            return;
        }
    };
    loop {
        if let Err(e) = follow_once(&reg, &rbac, &prefixes).await {
            tracing::warn!(error = %e, "RBAC policy: reloading after an error");
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }
}

/// Subscribes, loads the policy at a revision the subscription covers, then applies events
/// until the subscription lags or ends (Ok) or the store fails (Err).
async fn follow_once(reg: &Registry, rbac: &RbacAuthorizer, prefixes: &Prefixes) -> ApiResult<()> {
    let from = reg.cache.current_revision();
    let mut sub = reg
        .cache
        .subscribe(from)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let loaded_at = storage::current_revision(&reg.store).await?;
    rbac.replace(load(reg, loaded_at).await?);
    write_aggregation(reg, rbac).await;
    loop {
        let event = match sub.live.recv().await {
            Ok(event) => event,
            Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => return Ok(()),
        };
        if event.revision <= loaded_at {
            continue;
        }
        if let Some(kind) = apply(rbac, prefixes, &event) {
            if kind == Kind::ClusterRole {
                write_aggregation(reg, rbac).await;
            }
        }
    }
}

/// Applies one event if it is an RBAC object's; returns its kind.
fn apply(rbac: &RbacAuthorizer, prefixes: &Prefixes, event: &CacheEvent) -> Option<Kind> {
    let (kind, res) = prefixes.find(&event.key)?;
    let obj = from_storage(res, event.obj.clone());
    let applied = match event.deleted {
        true => rbac.update(|p| p.delete(&obj)),
        false => rbac.update(|p| p.apply(&obj)),
    };
    if let Err(e) = applied {
        tracing::warn!(key = %event.key, error = %e, "RBAC policy: ignoring an undecodable object");
    }
    Some(kind)
}

/// Runs aggregation and writes changed rules into the stored ClusterRoles.
async fn write_aggregation(reg: &Registry, rbac: &RbacAuthorizer) {
    let updates = rbac.update(|p| p.aggregate());
    for (name, rules) in updates {
        if let Err(e) = store_rules(reg, &name, &rules).await {
            tracing::warn!(role = %name, error = %e, "RBAC aggregation: cannot write the rules");
        }
    }
}

async fn store_rules(reg: &Registry, name: &str, rules: &[PolicyRule]) -> ApiResult<()> {
    let res = resource(Kind::ClusterRole)?;
    let rules = serde_json::to_value(rules).map_err(|e| ApiError::Internal(e.to_string()))?;
    let unchanged = |old: &Value| old.get("rules").unwrap_or(&json!([])) == &rules;
    let current = reg.get(res, None, name).await?;
    if unchanged(&current) {
        return Ok(());
    }
    reg.update_with(res, None, name, None, false, |old| {
        let mut new = old.clone();
        new["rules"] = rules.clone();
        if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        Ok(new)
    })
    .await
    .map(|_| ())
}
