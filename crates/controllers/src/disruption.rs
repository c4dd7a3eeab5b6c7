//! PodDisruptionBudget status, as upstream's pkg/controller/disruption: how many of the selected
//! pods are healthy, how many must be, how many are expected (the owning controllers' scale, read
//! through their `scale` subresource, or the pod count for an integer `minAvailable`), and so how
//! many may be disrupted now. The API server's `pods/eviction` reads `disruptionsAllowed` and
//! records the pods it let go in `disruptedPods`, which this controller expires.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use component_base::label_selector;
use futures::{stream, StreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::time::Instant;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::informer;
use crate::ownership::controller_of;

const NAME: &str = "disruption";

/// How long a pod the eviction API let go counts as disrupted before it should be gone
/// (upstream's DeletionTimeout).
const DELETION_TIMEOUT: Duration = Duration::from_secs(120);

/// Retry delay after a failed sync.
const RETRY: Duration = Duration::from_secs(5);

type Key = ObjectRef<PodDisruptionBudget>;

pub async fn run(ctx: Context) -> Result<()> {
    let client = ctx.client_for("disruption-controller").await?;
    let shared = ctx.client.clone();
    let (pdbs, pdb_changes) = informer::start(
        Api::<PodDisruptionBudget>::all(shared.clone()),
        Default::default(),
    );
    let (pods, pod_changes) = informer::start(Api::<Pod>::all(shared.clone()), Default::default());
    let (replica_sets, rs_changes) =
        informer::start(Api::<ReplicaSet>::all(shared.clone()), Default::default());
    let (_, deploy_changes) =
        informer::start(Api::<Deployment>::all(shared.clone()), Default::default());
    // krust serves no ReplicationControllers; their pods' scale is still read generically.
    let (_, sts_changes) = informer::start(Api::<StatefulSet>::all(shared), Default::default());
    let mut changes = stream::select_all([
        pdb_changes
            .map(|p| Change::Budget(ObjectRef::from_obj(&p)))
            .boxed(),
        pod_changes.map(|p| Change::Pod(Box::new(p))).boxed(),
        // A controller's scale is the budgets' expected pod count.
        rs_changes.map(|o| Change::Namespace(o.namespace())).boxed(),
        deploy_changes
            .map(|o| Change::Namespace(o.namespace()))
            .boxed(),
        sts_changes
            .map(|o| Change::Namespace(o.namespace()))
            .boxed(),
    ]);
    let controller = Budgets {
        recorder: ctx.recorder(client.clone(), "disruption-controller"),
        client,
        pdbs,
        pods,
        replica_sets,
        ctx,
    };
    let mut pending: HashSet<Key> = HashSet::new();
    let mut rechecks: Vec<(Instant, Key)> = Vec::new();
    loop {
        let next_recheck = rechecks.iter().map(|(t, _)| *t).min();
        tokio::select! {
            biased;
            change = changes.next() => match change {
                Some(change) => pending.extend(controller.budgets_for(change)),
                None => return Ok(()),
            },
            _ = sleep_until(next_recheck) => {
                let now = Instant::now();
                rechecks.retain(|(t, key)| if *t <= now { pending.insert(key.clone()); false } else { true });
            }
            _ = std::future::ready(()), if !pending.is_empty() => {
                for key in std::mem::take(&mut pending) {
                    if let Some(after) = controller.sync(&key).await {
                        rechecks.push((Instant::now() + after, key));
                    }
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

enum Change {
    Budget(Key),
    Pod(Box<Pod>),
    Namespace(Option<String>),
}

struct Budgets {
    ctx: Context,
    client: Client,
    recorder: Recorder,
    pdbs: Store<PodDisruptionBudget>,
    pods: Store<Pod>,
    replica_sets: Store<ReplicaSet>,
}

impl Budgets {
    /// The budgets a change may affect: a pod's are those whose selector matches it (its old
    /// labels are not known here, so every budget of its namespace is looked at again; they are
    /// few).
    fn budgets_for(&self, change: Change) -> Vec<Key> {
        let namespace = match change {
            Change::Budget(key) => return vec![key],
            Change::Pod(pod) => pod.namespace(),
            Change::Namespace(ns) => ns,
        };
        self.pdbs
            .state()
            .iter()
            .filter(|p| p.namespace() == namespace)
            .map(|p| ObjectRef::from_obj(p.as_ref()))
            .collect()
    }

    /// Upstream's sync: computes and writes the status; on failure writes the fail-safe status
    /// (no disruption allowed). Returns when to look again.
    async fn sync(&self, key: &Key) -> Option<Duration> {
        let pdb = self.pdbs.get(key)?;
        if pdb.metadata.deletion_timestamp.is_some() {
            return None;
        }
        match self.try_sync(&pdb).await {
            Ok(recheck) => {
                self.ctx.metrics.synced(NAME);
                recheck
            }
            Err(e) => {
                tracing::warn!(pdb = %key, error = %e, "cannot sync PodDisruptionBudget");
                self.ctx.metrics.sync_failed(NAME);
                if let Err(e) = self.fail_safe(&pdb, &e.to_string()).await {
                    tracing::warn!(pdb = %key, error = %e, "cannot write the fail-safe status");
                }
                Some(RETRY)
            }
        }
    }

    async fn try_sync(&self, pdb: &PodDisruptionBudget) -> Result<Option<Duration>> {
        let pods = self.pods_for(pdb);
        if pods.is_empty() {
            self.event(
                pdb,
                EventType::Normal,
                "NoPods",
                "No matching pods found".into(),
            )
            .await;
        }
        let expected = self.expected_pods(pdb, &pods).await?;
        if !expected.unmanaged.is_empty() {
            let note = format!("Pods selected by this PodDisruptionBudget (selector: {:?}) were found to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value.", pdb.spec.as_ref().and_then(|s| s.selector.as_ref()));
            self.event(pdb, EventType::Warning, "UnmanagedPods", note)
                .await;
        }
        let now = Timestamp::now();
        let (disrupted, recheck) = disrupted_pods(pdb, &pods, now);
        let healthy = count_healthy(&pods, &disrupted, now);
        let status = status(pdb, healthy, expected.desired, expected.count, disrupted);
        if pdb.status.as_ref() != Some(&status) {
            self.write_status(pdb, status).await?;
        }
        Ok(recheck)
    }

    /// The pods the budget selects: a missing selector selects none, an empty one all of the
    /// namespace (policy/v1).
    fn pods_for(&self, pdb: &PodDisruptionBudget) -> Vec<Pod> {
        let Some(selector) = pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
            return Vec::new();
        };
        let ns = pdb.namespace();
        self.pods
            .state()
            .iter()
            .filter(|p| {
                p.namespace() == ns && label_selector::matches(selector, p.metadata.labels.as_ref())
            })
            .map(|p| p.as_ref().clone())
            .collect()
    }

    /// Upstream's getExpectedPodCount.
    async fn expected_pods(&self, pdb: &PodDisruptionBudget, pods: &[Pod]) -> Result<Expected> {
        let spec = pdb.spec.clone().unwrap_or_default();
        if let Some(max_unavailable) = &spec.max_unavailable {
            let (count, unmanaged) = self.expected_scale(pods).await?;
            let max = scaled(max_unavailable, count)?;
            return Ok(Expected {
                count,
                desired: (count - max).max(0),
                unmanaged,
            });
        }
        match &spec.min_available {
            Some(IntOrString::Int(n)) => Ok(Expected {
                count: pods.len() as i32,
                desired: *n,
                unmanaged: Vec::new(),
            }),
            Some(min @ IntOrString::String(_)) => {
                let (count, unmanaged) = self.expected_scale(pods).await?;
                Ok(Expected {
                    count,
                    desired: scaled(min, count)?,
                    unmanaged,
                })
            }
            None => Ok(Expected {
                count: pods.len() as i32,
                desired: 0,
                unmanaged: Vec::new(),
            }),
        }
    }

    /// Upstream's getExpectedScale: the sum of the scales of the pods' controllers (a
    /// Deployment's for pods of its ReplicaSets); pods without a controller are reported, a
    /// controller that cannot be found is an error.
    async fn expected_scale(&self, pods: &[Pod]) -> Result<(i32, Vec<String>)> {
        let mut scales: BTreeMap<String, i32> = BTreeMap::new();
        let mut unmanaged = Vec::new();
        for pod in pods {
            let Some(owner) = controller_of(&pod.metadata) else {
                unmanaged.push(pod.name_any());
                continue;
            };
            if scales.contains_key(&owner.uid) {
                continue;
            }
            let ns = pod.namespace().unwrap_or_default();
            let target = self.scaled_controller(owner, &ns);
            let replicas = self.scale_of(&target, &ns).await?.ok_or_else(|| {
                Error::Invalid(format!("found no controllers for pod {:?}", pod.name_any()))
            })?;
            scales.insert(owner.uid.clone(), replicas);
        }
        Ok((scales.values().sum(), unmanaged))
    }

    /// The controller whose scale counts: a ReplicaSet's own Deployment, else the owner itself.
    fn scaled_controller(&self, owner: &OwnerReference, ns: &str) -> OwnerReference {
        if owner.kind == "ReplicaSet" && owner.api_version == "apps/v1" {
            let rs = self
                .replica_sets
                .get(&ObjectRef::new(&owner.name).within(ns));
            if let Some(rs) = rs.filter(|rs| rs.metadata.uid.as_deref() == Some(&owner.uid)) {
                if let Some(deployment) =
                    controller_of(&rs.metadata).filter(|d| d.kind == "Deployment")
                {
                    return deployment.clone();
                }
            }
        }
        owner.clone()
    }

    /// `spec.replicas` of the controller's `scale` subresource, if it is that controller (same
    /// uid) and has one.
    async fn scale_of(&self, owner: &OwnerReference, ns: &str) -> Result<Option<i32>> {
        let (group, version) = owner
            .api_version
            .split_once('/')
            .unwrap_or(("", &owner.api_version));
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, &owner.kind));
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &resource);
        match api.get_scale(&owner.name).await {
            Ok(scale) if scale.metadata.uid.as_deref().is_none_or(|u| u == owner.uid) => {
                Ok(Some(scale.spec.and_then(|s| s.replicas).unwrap_or(0)))
            }
            Ok(_) => Ok(None),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn write_status(
        &self,
        pdb: &PodDisruptionBudget,
        status: PodDisruptionBudgetStatus,
    ) -> Result<()> {
        let api: Api<PodDisruptionBudget> =
            Api::namespaced(self.client.clone(), &pdb.namespace().unwrap_or_default());
        let mut updated = pdb.clone();
        updated.status = Some(status);
        match api
            .replace_status(&pdb.name_any(), &PostParams::default(), &updated)
            .await
        {
            Ok(_) => Ok(()),
            // A newer version is on its way through the watch and will be synced.
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Upstream's failSafe: when the status cannot be computed, no disruption is allowed.
    async fn fail_safe(&self, pdb: &PodDisruptionBudget, message: &str) -> Result<()> {
        let mut status = pdb.status.clone().unwrap_or_default();
        status.disruptions_allowed = 0;
        status.observed_generation = pdb.metadata.generation;
        set_condition(&mut status, "False", "SyncFailed", message);
        self.write_status(pdb, status).await
    }

    async fn event(&self, pdb: &PodDisruptionBudget, type_: EventType, reason: &str, note: String) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: "Sync".into(),
            secondary: None,
        };
        let _ = self.recorder.publish(&event, &pdb.object_ref(&())).await;
    }
}

struct Expected {
    count: i32,
    desired: i32,
    unmanaged: Vec<String>,
}

/// Upstream's GetScaledValueFromIntOrPercent, rounding up.
fn scaled(value: &IntOrString, total: i32) -> Result<i32> {
    match value {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let percent: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "invalid value for IntOrString: invalid value {s:?}"
                    ))
                })?;
            Ok(((percent * total as i64 + 99) / 100) as i32)
        }
    }
}

/// Upstream's buildDisruptedPodMap: the pods the eviction API let go that are not yet being
/// deleted and not overdue, and when the earliest of them is.
fn disrupted_pods(
    pdb: &PodDisruptionBudget,
    pods: &[Pod],
    now: Timestamp,
) -> (BTreeMap<String, Time>, Option<Duration>) {
    let recorded = pdb
        .status
        .as_ref()
        .and_then(|s| s.disrupted_pods.clone())
        .unwrap_or_default();
    let mut kept = BTreeMap::new();
    let mut recheck: Option<Duration> = None;
    for pod in pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        let Some(at) = recorded.get(&pod.name_any()) else {
            continue;
        };
        let Ok(expires) = at.0.checked_add(DELETION_TIMEOUT) else {
            continue;
        };
        if expires < now {
            tracing::info!(pod = %pod.name_any(), "pod was expected to be deleted but was not");
            continue;
        }
        let left = Duration::try_from(expires.duration_since(now)).unwrap_or_default();
        recheck = Some(recheck.map_or(left, |r| r.min(left)));
        kept.insert(pod.name_any(), at.clone());
    }
    (kept, recheck)
}

/// Upstream's countHealthyPods: ready, not being deleted, not just disrupted.
fn count_healthy(pods: &[Pod], disrupted: &BTreeMap<String, Time>, now: Timestamp) -> i32 {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            disrupted
                .get(&p.name_any())
                .and_then(|t| t.0.checked_add(DELETION_TIMEOUT).ok())
                .is_none_or(|expires| expires <= now)
        })
        .filter(|p| crate::pods::is_ready(p))
        .count() as i32
}

/// Upstream's updatePdbStatus + UpdateDisruptionAllowedCondition.
fn status(
    pdb: &PodDisruptionBudget,
    healthy: i32,
    desired: i32,
    expected: i32,
    disrupted: BTreeMap<String, Time>,
) -> PodDisruptionBudgetStatus {
    let mut allowed = healthy - desired;
    if expected <= 0 || allowed <= 0 {
        allowed = 0;
    }
    let old = pdb.status.clone().unwrap_or_default();
    let mut status = PodDisruptionBudgetStatus {
        current_healthy: healthy,
        desired_healthy: desired,
        expected_pods: expected,
        disruptions_allowed: allowed,
        disrupted_pods: (!disrupted.is_empty() || old.disrupted_pods.is_some())
            .then_some(disrupted),
        observed_generation: pdb.metadata.generation,
        conditions: old.conditions,
    };
    if allowed > 0 {
        set_condition(&mut status, "True", "SufficientPods", "");
    } else {
        set_condition(&mut status, "False", "InsufficientPods", "");
    }
    status
}

/// apimachinery's SetStatusCondition for `DisruptionAllowed`: the transition time moves only
/// when the status does.
fn set_condition(status: &mut PodDisruptionBudgetStatus, value: &str, reason: &str, message: &str) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let generation = status.observed_generation;
    match conditions
        .iter_mut()
        .find(|c| c.type_ == "DisruptionAllowed")
    {
        Some(c) => {
            if c.status != value {
                c.status = value.into();
                c.last_transition_time = Time(Timestamp::now());
            }
            c.reason = reason.into();
            c.message = message.into();
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: "DisruptionAllowed".into(),
            status: value.into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: generation,
            last_transition_time: Time(Timestamp::now()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_up() {
        assert_eq!(scaled(&IntOrString::String("50%".into()), 3).unwrap(), 2);
        assert_eq!(scaled(&IntOrString::String("10%".into()), 10).unwrap(), 1);
        assert_eq!(scaled(&IntOrString::Int(2), 10).unwrap(), 2);
        assert!(scaled(&IntOrString::String("half".into()), 10).is_err());
    }

    #[test]
    fn no_disruption_below_the_desired_count() {
        let pdb = PodDisruptionBudget {
            metadata: Default::default(),
            spec: None,
            status: None,
        };
        let s = status(&pdb, 3, 2, 3, BTreeMap::new());
        assert_eq!(s.disruptions_allowed, 1);
        assert_eq!(s.conditions.as_ref().unwrap()[0].reason, "SufficientPods");
        let s = status(&pdb, 2, 2, 3, BTreeMap::new());
        assert_eq!(s.disruptions_allowed, 0);
        assert_eq!(s.conditions.as_ref().unwrap()[0].status, "False");
    }
}
