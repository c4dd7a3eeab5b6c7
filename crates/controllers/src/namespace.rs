//! Upstream's namespace controller (pkg/controller/namespace): a namespace being deleted has
//! every namespaced resource the API server serves deleted, its status conditions say what is
//! left and why, and once it is empty its `kubernetes` finalizer is removed through the
//! `namespaces/finalize` subresource, after which the API server lets it go.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use crate::context::Context;
use crate::discovery::{self, Served};
use crate::error::{Error, Result};

const NAME: &str = "namespace";
/// The finalizer this controller owns in `spec.finalizers`.
const FINALIZER: &str = "kubernetes";

struct State {
    ctx: Context,
    client: Client,
}

pub async fn run(ctx: Context) -> Result<()> {
    let client = ctx.client_for("namespace-controller").await?;
    let api: Api<Namespace> = Api::all(client.clone());
    let state = Arc::new(State { ctx, client });
    Controller::new(api, watcher::Config::default())
        .run(reconcile, error_policy, state)
        .for_each(|_| async {})
        .await;
    Ok(())
}

async fn reconcile(ns: Arc<Namespace>, state: Arc<State>) -> Result<Action> {
    let finalizing = ns.metadata.deletion_timestamp.is_some()
        && ns
            .spec
            .as_ref()
            .and_then(|s| s.finalizers.as_ref())
            .is_some_and(|f| f.iter().any(|x| x == FINALIZER));
    if !finalizing {
        return Ok(Action::await_change());
    }
    let outcome = delete_content(&state.client, &ns.name_any()).await;
    update_conditions(&state.client, &ns, outcome.conditions()).await?;
    state.ctx.metrics.synced(NAME);
    if !outcome.empty() {
        tracing::debug!(namespace = %ns.name_any(), "namespace content remains; checking again");
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    finalize(&state.client, &ns).await?;
    tracing::info!(namespace = %ns.name_any(), "namespace emptied and finalized");
    Ok(Action::await_change())
}

fn error_policy(ns: Arc<Namespace>, error: &Error, state: Arc<State>) -> Action {
    tracing::warn!(namespace = %ns.name_any(), %error, "namespace deletion failed; retrying");
    state.ctx.metrics.sync_failed(NAME);
    Action::requeue(Duration::from_secs(2))
}

/// What one pass over the namespace's content found.
#[derive(Default)]
struct Outcome {
    discovery_error: Option<String>,
    /// Resources whose deletion failed, with why.
    delete_errors: Vec<String>,
    /// Objects left, by group-resource.
    remaining: BTreeMap<String, usize>,
    /// Objects left, by the finalizer they carry.
    finalizers: BTreeMap<String, usize>,
}

impl Outcome {
    fn empty(&self) -> bool {
        self.discovery_error.is_none() && self.delete_errors.is_empty() && self.remaining.is_empty()
    }

    /// Upstream's five deletion conditions (the group-version parsing one never fails here).
    fn conditions(&self) -> Vec<(&'static str, Option<(&'static str, String)>)> {
        let listing = |m: &BTreeMap<String, usize>, fmt: fn(&str, usize) -> String| {
            m.iter()
                .map(|(k, n)| fmt(k, *n))
                .collect::<Vec<_>>()
                .join(", ")
        };
        vec![
            (
                "NamespaceDeletionDiscoveryFailure",
                self.discovery_error.as_ref().map(|e| {
                    (
                        "DiscoveryFailed",
                        format!("Discovery failed for some groups, 1 failing: {e}"),
                    )
                }),
            ),
            ("NamespaceDeletionGroupVersionParsingFailure", None),
            (
                "NamespaceDeletionContentFailure",
                (!self.delete_errors.is_empty()).then(|| {
                    (
                        "ContentDeletionFailed",
                        format!(
                            "Failed to delete all resource types, {} remaining: {}",
                            self.delete_errors.len(),
                            self.delete_errors.join(", ")
                        ),
                    )
                }),
            ),
            (
                "NamespaceContentRemaining",
                (!self.remaining.is_empty()).then(|| {
                    let list = listing(&self.remaining, |r, n| {
                        format!("{r} has {n} resource instances")
                    });
                    (
                        "SomeResourcesRemain",
                        format!("Some resources are remaining: {list}"),
                    )
                }),
            ),
            (
                "NamespaceFinalizersRemaining",
                (!self.finalizers.is_empty()).then(|| {
                    let list = listing(&self.finalizers, |f, n| {
                        format!("{f} in {n} resource instances")
                    });
                    (
                        "SomeFinalizersRemain",
                        format!("Some content in the namespace has finalizers remaining: {list}"),
                    )
                }),
            ),
        ]
    }
}

/// Deletes everything namespaced in `ns` (a collection delete where the resource allows it,
/// else one by one) and counts what is left.
async fn delete_content(client: &Client, ns: &str) -> Outcome {
    let mut outcome = Outcome::default();
    let resources = match discovery::served(client, &["delete", "list"]).await {
        Ok(r) => r,
        Err(e) => {
            outcome.discovery_error = Some(e.to_string());
            return outcome;
        }
    };
    for served in resources.iter().filter(|s| s.namespaced) {
        if let Err(e) = delete_all(client, ns, served, &mut outcome).await {
            outcome
                .delete_errors
                .push(format!("{}: {e}", served.group_resource()));
        }
    }
    outcome
}

async fn delete_all(
    client: &Client,
    ns: &str,
    served: &Served,
    outcome: &mut Outcome,
) -> Result<()> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &served.resource);
    if served.supports("deletecollection") {
        api.delete_collection(&DeleteParams::default(), &ListParams::default())
            .await?;
    } else {
        for obj in api.list(&ListParams::default()).await? {
            match api.delete(&obj.name_any(), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if matches!(e.code, 404) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    let left = api.list(&ListParams::default()).await?;
    if !left.items.is_empty() {
        *outcome
            .remaining
            .entry(served.group_resource())
            .or_default() += left.items.len();
        for obj in &left.items {
            for f in obj.finalizers() {
                *outcome.finalizers.entry(f.clone()).or_default() += 1;
            }
        }
    }
    Ok(())
}

/// Writes the conditions through `namespaces/status` when any of them changed.
async fn update_conditions(
    client: &Client,
    ns: &Namespace,
    wanted: Vec<(&'static str, Option<(&'static str, String)>)>,
) -> Result<()> {
    let old = ns
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut new: Vec<NamespaceCondition> = old
        .iter()
        .filter(|c| !wanted.iter().any(|(t, _)| *t == c.type_))
        .cloned()
        .collect();
    for (type_, failure) in wanted {
        let (status, reason, message) = match failure {
            Some((reason, message)) => ("True", reason.to_string(), message),
            None => (
                "False",
                ok_reason(type_).0.into(),
                ok_reason(type_).1.into(),
            ),
        };
        let previous = old.iter().find(|c| c.type_ == type_);
        let unchanged = previous.is_some_and(|p| {
            p.status == status
                && p.reason.as_deref() == Some(&reason)
                && p.message.as_deref() == Some(&message)
        });
        new.push(match (unchanged, previous) {
            (true, Some(p)) => p.clone(),
            _ => NamespaceCondition {
                type_: type_.into(),
                status: status.into(),
                reason: Some(reason),
                message: Some(message),
                last_transition_time: Some(Time(k8s_openapi::jiff::Timestamp::now())),
            },
        });
    }
    if new.len() == old.len() && new.iter().all(|c| old.contains(c)) {
        return Ok(());
    }
    let mut updated = ns.clone();
    updated.metadata.managed_fields = None;
    updated
        .status
        .get_or_insert_with(Default::default)
        .conditions = Some(new);
    let api: Api<Namespace> = Api::all(client.clone());
    match api
        .replace_status(&ns.name_any(), &PostParams::default(), &updated)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if matches!(e.code, 404 | 409) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Upstream's reason and message of a condition that is not failing.
fn ok_reason(type_: &str) -> (&'static str, &'static str) {
    match type_ {
        "NamespaceDeletionDiscoveryFailure" => (
            "ResourcesDiscovered",
            "All resources successfully discovered",
        ),
        "NamespaceDeletionGroupVersionParsingFailure" => (
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed",
        ),
        "NamespaceDeletionContentFailure" => (
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization",
        ),
        "NamespaceContentRemaining" => ("ContentRemoved", "All content successfully removed"),
        _ => (
            "ContentHasNoFinalizers",
            "All content-preserving finalizers finished",
        ),
    }
}

/// Removes the `kubernetes` finalizer through `namespaces/finalize` (read fresh, so the update
/// carries the current resourceVersion).
async fn finalize(client: &Client, ns: &Namespace) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let Some(mut current) = api.get_opt(&ns.name_any()).await? else {
        return Ok(());
    };
    if let Some(f) = current.spec.as_mut().and_then(|s| s.finalizers.as_mut()) {
        f.retain(|x| x != FINALIZER);
    }
    current.metadata.managed_fields = None;
    match api
        .replace_subresource("finalize", &ns.name_any(), &PostParams::default(), &current)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if matches!(e.code, 404) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
