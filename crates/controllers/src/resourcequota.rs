//! ResourceQuota usage, as upstream's pkg/controller/resourcequota with the core evaluators:
//! `status.hard` mirrors `spec.hard` and `status.used` counts, for each resource the quota
//! names, what its namespace holds now: object counts (`pods`, `services`, `configmaps`,
//! `secrets`, `persistentvolumeclaims`, `count/<resource>[.<group>]`), the requests and limits of
//! pods that have not finished, and claimed storage. Recalculated when a quota or a counted
//! object changes (pods, services, configmaps, secrets, claims; other kinds on the periodic
//! resync) and every `resource_quota_sync_period`.
//!
//! Quota scopes and scope selectors are not evaluated: every quota counts all its namespace's
//! objects.

use std::collections::{BTreeMap, HashSet};

use component_base::quantity::milli_value;
use futures::{stream, StreamExt};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, ResourceQuota, ResourceQuotaStatus, Secret, Service,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{DynamicObject, ListParams, PostParams};
use kube::core::ApiResource;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::informer;

const NAME: &str = "resourcequota";

type Key = ObjectRef<ResourceQuota>;

pub async fn run(ctx: Context) -> Result<()> {
    let client = ctx.client_for("resourcequota-controller").await?;
    let shared = ctx.client.clone();
    let (quotas, quota_changes) = informer::start(
        Api::<ResourceQuota>::all(shared.clone()),
        Default::default(),
    );
    let (pods, pod_changes) = informer::start(Api::<Pod>::all(shared.clone()), Default::default());
    let namespace_of = |o: Option<String>| Change::Namespace(o.unwrap_or_default());
    let mut changes = stream::select_all([
        quota_changes
            .map(|q| Change::Quota(ObjectRef::from_obj(&q)))
            .boxed(),
        pod_changes
            .map(move |o| namespace_of(o.namespace()))
            .boxed(),
        informer::start(Api::<Service>::all(shared.clone()), Default::default())
            .1
            .map(move |o| namespace_of(o.namespace()))
            .boxed(),
        informer::start(Api::<ConfigMap>::all(shared.clone()), Default::default())
            .1
            .map(move |o| namespace_of(o.namespace()))
            .boxed(),
        informer::start(Api::<Secret>::all(shared.clone()), Default::default())
            .1
            .map(move |o| namespace_of(o.namespace()))
            .boxed(),
        informer::start(
            Api::<PersistentVolumeClaim>::all(shared),
            Default::default(),
        )
        .1
        .map(move |o| namespace_of(o.namespace()))
        .boxed(),
    ]);
    let usage = Usage {
        client: client.clone(),
        pods,
    };
    let mut resync = tokio::time::interval(ctx.settings.resource_quota_sync_period);
    let mut pending: HashSet<Key> = HashSet::new();
    loop {
        tokio::select! {
            biased;
            change = changes.next() => match change {
                Some(Change::Quota(key)) => { pending.insert(key); }
                Some(Change::Namespace(ns)) => pending.extend(
                    quotas.state().iter()
                        .filter(|q| q.namespace().as_deref() == Some(ns.as_str()))
                        .map(|q| ObjectRef::from_obj(q.as_ref())),
                ),
                None => return Ok(()),
            },
            _ = resync.tick() => pending.extend(quotas.state().iter().map(|q| ObjectRef::from_obj(q.as_ref()))),
            _ = std::future::ready(()), if !pending.is_empty() => {
                for key in std::mem::take(&mut pending) {
                    let Some(quota) = quotas.get(&key) else { continue };
                    match sync(&client, &usage, &quota).await {
                        Ok(()) => ctx.metrics.synced(NAME),
                        Err(e) => {
                            tracing::warn!(quota = %key, error = %e, "cannot update quota usage");
                            ctx.metrics.sync_failed(NAME);
                        }
                    }
                }
            }
        }
    }
}

enum Change {
    Quota(Key),
    Namespace(String),
}

/// Writes `status.hard` and `status.used` when they differ from what is stored.
async fn sync(client: &Client, usage: &Usage, quota: &ResourceQuota) -> Result<()> {
    if quota.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let ns = quota.namespace().unwrap_or_default();
    let hard = quota
        .spec
        .as_ref()
        .and_then(|s| s.hard.clone())
        .unwrap_or_default();
    let mut used = BTreeMap::new();
    for resource in hard.keys() {
        if let Some(q) = usage.of(resource, &ns).await? {
            used.insert(resource.clone(), q);
        }
    }
    let status = ResourceQuotaStatus {
        hard: Some(hard),
        used: Some(used),
    };
    if quota.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let mut updated = quota.clone();
    updated.status = Some(status);
    let api: Api<ResourceQuota> = Api::namespaced(client.clone(), &ns);
    match api
        .replace_status(&quota.name_any(), &PostParams::default(), &updated)
        .await
    {
        Ok(_) => Ok(()),
        // The newer quota is on its way through the watch and will be synced.
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

struct Usage {
    client: Client,
    pods: Store<Pod>,
}

impl Usage {
    /// The usage of one quota resource in `ns`, or `None` for one nothing evaluates.
    async fn of(&self, resource: &str, ns: &str) -> Result<Option<Quantity>> {
        let count = |n: usize| Ok(Some(Quantity(n.to_string())));
        match resource {
            "pods" | "count/pods" => count(self.active_pods(ns).len()),
            "services" | "count/services" => count(self.list::<Service>(ns).await?.len()),
            "services.loadbalancers" | "services.nodeports" => {
                let wanted = if resource == "services.loadbalancers" {
                    "LoadBalancer"
                } else {
                    "NodePort"
                };
                let services = self.list::<Service>(ns).await?;
                let typed = services
                    .iter()
                    .filter(|s| s.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some(wanted))
                    .count();
                count(typed)
            }
            "configmaps" | "count/configmaps" => count(self.count::<ConfigMap>(ns).await?),
            "secrets" | "count/secrets" => count(self.count::<Secret>(ns).await?),
            "resourcequotas" | "count/resourcequotas" => {
                count(self.count::<ResourceQuota>(ns).await?)
            }
            "persistentvolumeclaims" | "count/persistentvolumeclaims" => {
                count(self.count::<PersistentVolumeClaim>(ns).await?)
            }
            "requests.storage" => {
                let claims = self.list::<PersistentVolumeClaim>(ns).await?;
                let bytes: i64 = claims
                    .iter()
                    .filter_map(|c| {
                        c.spec
                            .as_ref()?
                            .resources
                            .as_ref()?
                            .requests
                            .as_ref()?
                            .get("storage")
                    })
                    .map(milli_value)
                    .sum();
                Ok(Some(format_quantity(bytes, true)))
            }
            "cpu" | "requests.cpu" => Ok(Some(self.pod_sum(ns, "cpu", Side::Requests))),
            "memory" | "requests.memory" => Ok(Some(self.pod_sum(ns, "memory", Side::Requests))),
            "ephemeral-storage" | "requests.ephemeral-storage" => {
                Ok(Some(self.pod_sum(ns, "ephemeral-storage", Side::Requests)))
            }
            "limits.cpu" => Ok(Some(self.pod_sum(ns, "cpu", Side::Limits))),
            "limits.memory" => Ok(Some(self.pod_sum(ns, "memory", Side::Limits))),
            "limits.ephemeral-storage" => {
                Ok(Some(self.pod_sum(ns, "ephemeral-storage", Side::Limits)))
            }
            other => match other.strip_prefix("count/") {
                Some(resource) => self.generic_count(resource, ns).await,
                None => Ok(None),
            },
        }
    }

    /// Upstream's QuotaV1Pod: pods that have not finished count.
    fn active_pods(&self, ns: &str) -> Vec<std::sync::Arc<Pod>> {
        self.pods
            .state_filter(|p| p.namespace().as_deref() == Some(ns) && !crate::pods::is_finished(p))
    }

    /// Upstream's PodRequests/PodLimits summed over active pods: the containers' sum, or the
    /// largest init container's if larger, plus the pod overhead.
    fn pod_sum(&self, ns: &str, resource: &str, side: Side) -> Quantity {
        let mut binary = false;
        let mut total = 0;
        for pod in self.active_pods(ns) {
            let Some(spec) = pod.spec.as_ref() else {
                continue;
            };
            let mut of = |containers: &[k8s_openapi::api::core::v1::Container]| -> Vec<i64> {
                containers
                    .iter()
                    .filter_map(|c| {
                        let r = c.resources.as_ref()?;
                        let map = match side {
                            Side::Requests => r.requests.as_ref().or(r.limits.as_ref()),
                            Side::Limits => r.limits.as_ref(),
                        }?;
                        let q = map.get(resource)?;
                        binary |= q.0.ends_with('i');
                        Some(milli_value(q))
                    })
                    .collect()
            };
            let containers: i64 = of(&spec.containers).iter().sum();
            let init = of(spec.init_containers.as_deref().unwrap_or_default())
                .into_iter()
                .max()
                .unwrap_or(0);
            let overhead = spec
                .overhead
                .as_ref()
                .and_then(|o| o.get(resource))
                .map(milli_value)
                .unwrap_or(0);
            total += containers.max(init) + overhead;
        }
        if resource == "cpu" {
            format_milli(total)
        } else {
            format_quantity(total, binary)
        }
    }

    async fn list<K: Namespaced>(&self, ns: &str) -> Result<Vec<K>> {
        let api: Api<K> = Api::namespaced(self.client.clone(), ns);
        Ok(api.list(&ListParams::default()).await?.items)
    }

    async fn count<K: Namespaced>(&self, ns: &str) -> Result<usize> {
        let api: Api<K> = Api::namespaced(self.client.clone(), ns);
        Ok(api.list_metadata(&ListParams::default()).await?.items.len())
    }

    /// `count/<resource>.<group>` (or `count/<resource>` for the core group): found through
    /// discovery, counted by a metadata list.
    async fn generic_count(&self, resource: &str, ns: &str) -> Result<Option<Quantity>> {
        let (plural, group) = resource.split_once('.').unwrap_or((resource, ""));
        let found = kube::discovery::group(&self.client, group).await;
        let Ok(found) = found else {
            return Ok(None);
        };
        let version = found.preferred_version_or_latest().to_string();
        let Some((api_resource, _)) = found
            .versioned_resources(&version)
            .into_iter()
            .find(|(r, _)| r.plural == plural)
        else {
            return Ok(None);
        };
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), ns, &ApiResource { ..api_resource });
        let listed = api
            .list_metadata(&ListParams::default())
            .await
            .map_err(Error::from)?;
        Ok(Some(Quantity(listed.items.len().to_string())))
    }
}

/// A namespaced built-in kind the controller lists.
trait Namespaced:
    kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
{
}

impl<K> Namespaced for K where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
{
}

#[derive(Clone, Copy)]
enum Side {
    Requests,
    Limits,
}

/// Millicores as upstream prints them: whole cores without a suffix, else `NNNm`.
fn format_milli(milli: i64) -> Quantity {
    if milli % 1000 == 0 {
        Quantity((milli / 1000).to_string())
    } else {
        Quantity(format!("{milli}m"))
    }
}

/// A byte count from `milli_value` (thousandths): with the binary suffix that divides it when
/// the inputs used binary suffixes (`256Mi`), else in plain units.
fn format_quantity(milli: i64, binary: bool) -> Quantity {
    if milli % 1000 != 0 {
        return format_milli(milli);
    }
    let units = milli / 1000;
    if binary && units != 0 {
        for (suffix, size) in [
            ("Ei", 1i64 << 60),
            ("Pi", 1 << 50),
            ("Ti", 1 << 40),
            ("Gi", 1 << 30),
            ("Mi", 1 << 20),
            ("Ki", 1 << 10),
        ] {
            if units % size == 0 {
                return Quantity(format!("{}{suffix}", units / size));
            }
        }
    }
    Quantity(units.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_print_as_upstream() {
        assert_eq!(format_milli(1500).0, "1500m");
        assert_eq!(format_milli(2000).0, "2");
        assert_eq!(format_quantity(256 * 1024 * 1024 * 1000, true).0, "256Mi");
        assert_eq!(format_quantity(1000 * 1000, false).0, "1000");
        assert_eq!(format_quantity(0, true).0, "0");
    }
}
