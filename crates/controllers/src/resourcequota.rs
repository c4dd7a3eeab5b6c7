//! ResourceQuota usage, as upstream's pkg/controller/resourcequota with the core evaluators:
//! `status.hard` mirrors `spec.hard` and `status.used` counts, for each resource the quota
//! names, what its namespace holds now: object counts (`pods`, `services`, `configmaps`,
//! `secrets`, `persistentvolumeclaims`, `count/<resource>[.<group>]`), the requests and limits of
//! pods that have not finished, and claimed storage. Recalculated when a quota or a counted
//! object changes (pods, services, configmaps, secrets, claims; other kinds on the periodic
//! resync) and every `resource_quota_sync_period`.
//!
//! Scopes and scope selectors (Terminating, NotTerminating, BestEffort, NotBestEffort,
//! PriorityClass) select the pods a quota counts. What an object charges is
//! `component_base::quota`, which the API server's ResourceQuota admission uses too, so the
//! usage admission charges and the usage recounted here agree.

use std::collections::HashSet;

use component_base::quota::{self, Amount, Object, ResourceList};
use futures::{stream, StreamExt};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, ReplicationController, ResourceQuota, ResourceQuotaSpec,
    ResourceQuotaStatus, Secret, Service,
};
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
    let spec = quota.spec.clone().unwrap_or_default();
    let hard = spec.hard.clone().unwrap_or_default();
    let used = usage.calculate(&ns, &spec).await?;
    let status = ResourceQuotaStatus {
        hard: Some(hard),
        used: Some(quota::to_quantities(&used)),
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

/// The core kinds counted by a metadata list (their usage is their number).
const COUNTED: &[&str] = &[
    "configmaps",
    "secrets",
    "resourcequotas",
    "replicationcontrollers",
];

impl Usage {
    /// Upstream's `CalculateUsage`: for every resource in `spec.hard` some evaluator knows,
    /// the sum of what the namespace's objects that the quota's scopes select charge, from
    /// zero.
    async fn calculate(&self, ns: &str, spec: &ResourceQuotaSpec) -> Result<ResourceList> {
        let names: Vec<String> = spec.hard.iter().flat_map(|h| h.keys().cloned()).collect();
        let tracked = |group: &str, plural: &str| -> Vec<String> {
            names
                .iter()
                .filter(|n| quota::tracks(group, plural, n))
                .cloned()
                .collect()
        };
        let mut used = ResourceList::new();
        let mut charge = |names: &[String], object: &Object<'_>, group: &str, plural: &str| {
            if quota::matches_scopes(spec, object) {
                let usage = quota::usage(group, plural, object);
                used = quota::add(&used, &quota::mask(&usage, names));
            }
        };
        let pod_names = tracked("", "pods");
        if !pod_names.is_empty() {
            for pod in self.pods_in(ns) {
                charge(&pod_names, &Object::Pod(&pod), "", "pods");
            }
        }
        let service_names = tracked("", "services");
        if !service_names.is_empty() {
            for service in self.list::<Service>(ns).await? {
                charge(&service_names, &Object::Service(&service), "", "services");
            }
        }
        let claim_names = tracked("", "persistentvolumeclaims");
        if !claim_names.is_empty() {
            for claim in self.list::<PersistentVolumeClaim>(ns).await? {
                let object = Object::Claim(&claim);
                charge(&claim_names, &object, "", "persistentvolumeclaims");
            }
        }
        for name in &names {
            if used.contains_key(name) || !is_evaluated(name) {
                continue;
            }
            // Counted kinds; a scoped quota selects none of them (upstream's
            // MatchesNoScopeFunc), yet shows the resource at zero.
            let count = match quota::has_scopes(spec) {
                true => Some(0),
                false => self.count_of(name, ns).await?,
            };
            if let Some(n) = count {
                used.insert(name.clone(), Amount::units(n as i64));
            }
        }
        // Every evaluated resource shows, at zero when nothing charged it.
        for name in names.iter().filter(|n| is_evaluated(n)) {
            used.entry(name.clone()).or_default();
        }
        Ok(used)
    }

    /// The namespace's pods, finished ones included (`count/pods` counts them).
    fn pods_in(&self, ns: &str) -> Vec<std::sync::Arc<Pod>> {
        self.pods
            .state_filter(|p| p.namespace().as_deref() == Some(ns))
    }

    /// How many objects `name` (`secrets`, `count/secrets`, `count/deployments.apps`) counts,
    /// or `None` when no served resource answers to it.
    async fn count_of(&self, name: &str, ns: &str) -> Result<Option<usize>> {
        let resource = name.strip_prefix("count/").unwrap_or(name);
        match resource {
            "configmaps" => Ok(Some(self.count::<ConfigMap>(ns).await?)),
            "secrets" => Ok(Some(self.count::<Secret>(ns).await?)),
            "resourcequotas" => Ok(Some(self.count::<ResourceQuota>(ns).await?)),
            "replicationcontrollers" => Ok(Some(self.count::<ReplicationController>(ns).await?)),
            _ if name.starts_with("count/") => self.generic_count(resource, ns).await,
            _ => Ok(None),
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
    async fn generic_count(&self, resource: &str, ns: &str) -> Result<Option<usize>> {
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
        Ok(Some(listed.items.len()))
    }
}

/// Whether some evaluator computes `name`: the typed kinds' names, the legacy object counts
/// and every `count/<resource>[.<group>]`.
fn is_evaluated(name: &str) -> bool {
    name.starts_with("count/")
        || COUNTED.contains(&name)
        || ["pods", "services", "persistentvolumeclaims"]
            .iter()
            .any(|plural| quota::tracks("", plural, name))
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
