//! Upstream's root-ca-cert-publisher (pkg/controller/certificates/rootcacertpublisher): every
//! namespace has the ConfigMap `kube-root-ca.crt` holding the cluster CA (`ca.crt`), which
//! projected service-account volumes mount; it is recreated when deleted and rewritten when
//! changed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use crate::context::Context;
use crate::error::{Error, Result};

const NAME: &str = "root-ca-cert-publisher";
const CONFIGMAP: &str = "kube-root-ca.crt";
const KEY: &str = "ca.crt";
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

struct State {
    ctx: Context,
    writer: Client,
    ca: String,
    maps: Store<ConfigMap>,
}

pub async fn run(ctx: Context) -> Result<()> {
    let ca = ca_bundle(&ctx)?;
    let writer = ctx.client_for("root-ca-cert-publisher").await?;
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    let only_ours = watcher::Config::default().fields(&format!("metadata.name={CONFIGMAP}"));
    let (maps, changes) =
        crate::informer::start(Api::<ConfigMap>::all(ctx.client.clone()), only_ours);
    let controller = Controller::new(namespaces, watcher::Config::default())
        .watches_stream(changes.map(Ok), |cm| {
            cm.namespace().map(|ns| ObjectRef::new(ns.as_str()))
        });
    let state = Arc::new(State {
        maps,
        ctx,
        writer,
        ca,
    });
    controller
        .run(reconcile, error_policy, state)
        .for_each(|_| async {})
        .await;
    Ok(())
}

/// The CA the controller manager trusts the API server with, as PEM: the cluster CA.
pub(crate) fn ca_bundle(ctx: &Context) -> Result<String> {
    let certs = ctx
        .config
        .root_cert
        .as_ref()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            Error::Invalid("the controller manager has no cluster CA to publish".into())
        })?;
    Ok(certs.iter().map(|der| pem("CERTIFICATE", der)).collect())
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

async fn reconcile(ns: Arc<Namespace>, state: Arc<State>) -> Result<Action> {
    let terminating = ns.metadata.deletion_timestamp.is_some()
        || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
    if terminating {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let api: Api<ConfigMap> = Api::namespaced(state.writer.clone(), &name);
    let data = BTreeMap::from([(KEY.to_string(), state.ca.clone())]);
    let result = match state.maps.get(&ObjectRef::new(CONFIGMAP).within(&name)) {
        None => {
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(CONFIGMAP.into()),
                    annotations: Some(BTreeMap::from([(
                        "kubernetes.io/description".to_string(),
                        DESCRIPTION.to_string(),
                    )])),
                    ..Default::default()
                },
                data: Some(data),
                ..Default::default()
            };
            api.create(&PostParams::default(), &cm).await.map(|_| ())
        }
        Some(cm) if cm.data.as_ref() == Some(&data) && cm.binary_data.is_none() => Ok(()),
        Some(cm) => {
            let mut cm = (*cm).clone();
            cm.data = Some(data);
            cm.binary_data = None;
            api.replace(CONFIGMAP, &PostParams::default(), &cm)
                .await
                .map(|_| ())
        }
    };
    match result {
        // The watch lags behind a create or an update; the next event settles it.
        Ok(()) => {}
        Err(kube::Error::Api(e)) if matches!(e.code, 409) => {}
        Err(kube::Error::Api(e)) if e.code == 403 && e.message.contains("being terminated") => {}
        Err(e) => return Err(e.into()),
    }
    state.ctx.metrics.synced(NAME);
    Ok(Action::await_change())
}

fn error_policy(ns: Arc<Namespace>, error: &Error, state: Arc<State>) -> Action {
    tracing::warn!(namespace = %ns.name_any(), %error, "cannot publish the root CA; retrying");
    state.ctx.metrics.sync_failed(NAME);
    Action::requeue(Duration::from_secs(1))
}
