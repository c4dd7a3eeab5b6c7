//! Upstream's `ResourceQuota` admission plugin (`plugin/pkg/admission/resourcequota`): a create
//! (or an update that raises usage: a service's type or ports, a claim's storage) in a namespace
//! with quotas is refused with 403 when it would take a quota's `status.used` past its
//! `status.hard`, and otherwise charged to the quota at once: the quotas' `status.used` is
//! written before the object is stored, with the quota's resourceVersion as precondition and a
//! fresh evaluation on conflict, so two concurrent creates cannot both take a quota's last slot
//! (upstream's optimistic counting). The resourcequota controller later recounts what is
//! really there. What an object charges and which quotas select it is
//! `component_base::quota`, shared with that controller.
//!
//! Messages are upstream's: `exceeded quota: NAME, requested: pods=1, used: pods=2, limited:
//! pods=2`, `failed quota: NAME: must specify limits.cpu for: c` (a quota on cpu or memory needs
//! every container to state them), `status unknown for quota: NAME, resources: pods` (a quota
//! the controller has not counted yet).

use std::collections::{BTreeMap, HashSet};

use async_trait::async_trait;
use component_base::quota::{self, Object, ResourceList};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, ResourceQuota as Quota, Service};
use serde_json::Value;

use super::{Attributes, Operation, Plugin};
use crate::registry::{ListOptions, Registry};
use crate::resources;
use crate::status::{ApiError, ApiResult};

/// Evaluations against fresh quotas before giving up on conflicting quota writes.
const ATTEMPTS: usize = 16;

pub struct ResourceQuota;

#[async_trait]
impl Plugin for ResourceQuota {
    fn name(&self) -> &'static str {
        "ResourceQuota"
    }

    async fn admit(
        &self,
        attrs: &Attributes<'_>,
        object: Option<&mut Value>,
        reg: &Registry,
    ) -> ApiResult<()> {
        let Some(object) = object else {
            return Ok(());
        };
        if !attrs.subresource.is_empty() || attrs.namespace.is_empty() || !handles(attrs) {
            return Ok(());
        }
        let input = Typed::new(attrs.res.plural, attrs.res.group, object);
        let old = attrs
            .old
            .map(|o| Typed::new(attrs.res.plural, attrs.res.group, o));
        let mut charged: HashSet<String> = HashSet::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                let pause = 5 + rand::random_range(0..20u64) * attempt as u64;
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
            }
            let quotas = namespace_quotas(reg, attrs.namespace).await?;
            let pending: Vec<&(Quota, Value)> = quotas
                .iter()
                .filter(|(q, _)| !charged.contains(&q.metadata.name.clone().unwrap_or_default()))
                .collect();
            let charges = evaluate(attrs, object, &input, old.as_ref(), &pending)?;
            match write_charges(reg, attrs.namespace, charges, &mut charged).await? {
                true => return Ok(()),
                false => continue,
            }
        }
        Err(attrs.forbidden(
            Some(object),
            "unable to update quota status: too many conflicting writes",
        ))
    }
}

/// Upstream's evaluators' `Handles`: every create; of updates, only those of services and
/// claims can raise usage (pods' resources cannot change in place here).
fn handles(attrs: &Attributes<'_>) -> bool {
    match attrs.operation {
        Operation::Create => true,
        Operation::Update => {
            attrs.res.group.is_empty()
                && matches!(attrs.res.plural, "services" | "persistentvolumeclaims")
        }
        Operation::Delete => false,
    }
}

/// The request's object, typed where usage depends on its content.
enum Typed {
    Pod(Box<Pod>),
    Service(Box<Service>),
    Claim(Box<PersistentVolumeClaim>),
    Counted,
}

impl Typed {
    fn new(plural: &str, group: &str, object: &Value) -> Typed {
        fn parse<T: serde::de::DeserializeOwned>(v: &Value) -> Option<Box<T>> {
            match serde_json::from_value(v.clone()) {
                Ok(t) => Some(Box::new(t)),
                Err(e) => {
                    // Validation ran before admission; count the object at least.
                    tracing::warn!(error = %e, "quota admission cannot read the object");
                    None
                }
            }
        }
        match (group, plural) {
            ("", "pods") => parse(object).map_or(Typed::Counted, Typed::Pod),
            ("", "services") => parse(object).map_or(Typed::Counted, Typed::Service),
            ("", "persistentvolumeclaims") => parse(object).map_or(Typed::Counted, Typed::Claim),
            _ => Typed::Counted,
        }
    }

    fn object(&self) -> Object<'_> {
        match self {
            Typed::Pod(p) => Object::Pod(p),
            Typed::Service(s) => Object::Service(s),
            Typed::Claim(c) => Object::Claim(c),
            Typed::Counted => Object::Counted,
        }
    }
}

/// The namespace's quotas, read from the store (not a cache: the count must be current), typed
/// and with their stored JSON for the status write.
async fn namespace_quotas(reg: &Registry, ns: &str) -> ApiResult<Vec<(Quota, Value)>> {
    let res = quota_resource()?;
    let listed = reg.list(res, Some(ns), &ListOptions::default()).await?;
    Ok(listed
        .items
        .into_iter()
        .filter_map(|v| Some((serde_json::from_value(v.clone()).ok()?, v)))
        .collect())
}

fn quota_resource() -> ApiResult<&'static resources::Resource> {
    resources::find("", "v1", "resourcequotas").ok_or(ApiError::NoSuchResource)
}

/// A quota to write: its stored JSON and the usage it will show.
struct Charge {
    stored: Value,
    used: ResourceList,
}

/// Upstream's `checkRequest`: the quotas that select the object, refusals, and each selected
/// quota's new usage.
fn evaluate(
    attrs: &Attributes<'_>,
    raw: &Value,
    input: &Typed,
    old: Option<&Typed>,
    quotas: &[&(Quota, Value)],
) -> ApiResult<Vec<Charge>> {
    let (group, plural) = (attrs.res.group, attrs.res.plural);
    let object = input.object();
    let mut selected = Vec::new();
    for (q, stored) in quotas {
        let name = q.metadata.name.as_deref().unwrap_or("");
        let status = q.status.clone().unwrap_or_default();
        let hard = quota::from_quantities(&status.hard.unwrap_or_default());
        let used = quota::from_quantities(&status.used.unwrap_or_default());
        let restricted: Vec<String> = hard
            .keys()
            .filter(|n| quota::tracks(group, plural, n))
            .cloned()
            .collect();
        let spec = q.spec.clone().unwrap_or_default();
        if restricted.is_empty() || !quota::matches_scopes(&spec, &object) {
            continue;
        }
        if let Object::Pod(pod) = &object {
            if let Err(why) = quota::pod_constraints(&restricted, pod) {
                return Err(attrs.forbidden(Some(raw), format!("failed quota: {name}: {why}")));
            }
        }
        if restricted.iter().any(|r| !used.contains_key(r)) {
            let why = format!(
                "status unknown for quota: {name}, resources: {}",
                restricted.join(",")
            );
            return Err(attrs.forbidden(Some(raw), why));
        }
        selected.push((name, stored, hard, used));
    }
    if selected.is_empty() {
        return Ok(Vec::new());
    }
    let mut delta = quota::usage(group, plural, &object);
    if let (Operation::Update, Some(old)) = (attrs.operation, old) {
        delta = quota::subtract_non_negative(&delta, &quota::usage(group, plural, &old.object()));
    }
    delta.retain(|_, v| v.milli != 0);
    if delta.is_empty() {
        return Ok(Vec::new());
    }
    let mut charges = Vec::new();
    for (name, stored, hard, used) in selected {
        let requested = quota::mask(&delta, hard.keys());
        let new_used = quota::add(&used, &requested);
        let over = quota::exceeded(&quota::mask(&new_used, requested.keys()), &hard);
        if !over.is_empty() {
            let why = format!(
                "exceeded quota: {name}, requested: {}, used: {}, limited: {}",
                quota::pretty(&quota::mask(&requested, &over)),
                quota::pretty(&quota::mask(&used, &over)),
                quota::pretty(&quota::mask(&hard, &over)),
            );
            return Err(attrs.forbidden(Some(raw), why));
        }
        if new_used != used {
            charges.push(Charge {
                stored: stored.clone(),
                used: new_used,
            });
        }
    }
    Ok(charges)
}

/// Writes each charged quota's `status.used` with its resourceVersion as precondition. `false`
/// when one went stale under us: the caller re-evaluates the rest against fresh quotas.
async fn write_charges(
    reg: &Registry,
    ns: &str,
    charges: Vec<Charge>,
    charged: &mut HashSet<String>,
) -> ApiResult<bool> {
    let res = quota_resource()?;
    // The server's own write: no admission, no requester.
    let server = Registry {
        requester: None,
        ..reg.clone()
    };
    for charge in charges {
        let name = charge.stored["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let mut updated = charge.stored;
        let used: BTreeMap<String, Value> = quota::to_quantities(&charge.used)
            .into_iter()
            .map(|(k, q)| (k, Value::String(q.0)))
            .collect();
        updated["status"]["used"] = serde_json::to_value(used).unwrap_or_default();
        let write = server
            .update_with(res, Some(ns), &name, Some("status"), false, |_| {
                Ok(updated.clone())
            })
            .await;
        match write {
            Ok(_) => {
                charged.insert(name);
            }
            Err(ApiError::Conflict(..)) => return Ok(false),
            // Deleted meanwhile: it limits nothing any more.
            Err(ApiError::NotFound(_)) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}
