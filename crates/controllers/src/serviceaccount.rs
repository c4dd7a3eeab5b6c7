//! Upstream's serviceaccount controller (pkg/controller/serviceaccount): every active namespace
//! has a `default` ServiceAccount, recreated when deleted. Pods are refused in a namespace
//! without it, so it is made as soon as the namespace appears.
//!
//! As upstream, it reads through the controller manager's own watches and only creates with its
//! own account (`service-account-controller`, whose role allows nothing else).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use crate::context::Context;
use crate::error::{Error, Result};

const NAME: &str = "serviceaccount";
/// The accounts every namespace gets (upstream's `--service-account-names` default).
const ACCOUNTS: &[&str] = &["default"];

struct State {
    ctx: Context,
    writer: Client,
    accounts: kube::runtime::reflector::Store<ServiceAccount>,
}

pub async fn run(ctx: Context) -> Result<()> {
    let writer = ctx.client_for("service-account-controller").await?;
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    let (accounts, changes) = crate::informer::start(
        Api::<ServiceAccount>::all(ctx.client.clone()),
        watcher::Config::default(),
    );
    let controller = Controller::new(namespaces, watcher::Config::default())
        .watches_stream(changes.map(Ok), |sa| {
            sa.namespace().map(|ns| ObjectRef::new(ns.as_str()))
        });
    let state = Arc::new(State {
        ctx,
        writer,
        accounts,
    });
    controller
        .run(reconcile, error_policy, state)
        .for_each(|_| async {})
        .await;
    Ok(())
}

async fn reconcile(ns: Arc<Namespace>, state: Arc<State>) -> Result<Action> {
    let active = ns.metadata.deletion_timestamp.is_none()
        && ns.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating");
    if !active {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let api: Api<ServiceAccount> = Api::namespaced(state.writer.clone(), &name);
    for account in ACCOUNTS {
        let key = ObjectRef::new(account).within(&name);
        if state.accounts.get(&key).is_some() {
            continue;
        }
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(account.to_string()),
                ..Default::default()
            },
            ..Default::default()
        };
        match api.create(&PostParams::default(), &sa).await {
            Ok(_) => tracing::debug!(namespace = %name, account, "service account created"),
            // Already there (the watch lags), or the namespace began terminating meanwhile.
            Err(kube::Error::Api(e))
                if e.code == 409
                    || e.code == 403 && e.reason == "Forbidden" && ns_terminating(&e.message) => {}
            Err(e) => return Err(e.into()),
        }
    }
    state.ctx.metrics.synced(NAME);
    Ok(Action::await_change())
}

/// NamespaceLifecycle's refusal of content in a terminating namespace.
fn ns_terminating(message: &str) -> bool {
    message.contains("because it is being terminated")
}

fn error_policy(ns: Arc<Namespace>, error: &Error, state: Arc<State>) -> Action {
    tracing::warn!(namespace = %ns.name_any(), %error, "cannot create the default service account; retrying");
    state.ctx.metrics.sync_failed(NAME);
    Action::requeue(Duration::from_secs(1))
}
