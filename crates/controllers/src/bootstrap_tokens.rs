//! The token cleaner (upstream's pkg/controller/bootstrap/tokencleaner.go): deletes a bootstrap
//! token Secret (`kube-system`, type `bootstrap.kubernetes.io/token`) once its `expiration` has
//! passed, acting as the `token-cleaner` service account. A token is refused by the API server
//! from that moment anyway; this keeps expired ones from piling up.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use crate::context::Context;
use crate::error::{Error, Result};

const ACCOUNT: &str = "token-cleaner";
const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";

struct State {
    client: Client,
    metrics: crate::Metrics,
}

pub async fn run(ctx: Context) -> Result<()> {
    let client = ctx.client_for(ACCOUNT).await?;
    let state = Arc::new(State {
        client: client.clone(),
        metrics: ctx.metrics.clone(),
    });
    let selector = format!("type={SECRET_TYPE}");
    Controller::new(
        Api::<Secret>::namespaced(client, "kube-system"),
        watcher::Config::default().fields(&selector),
    )
    .run(reconcile, error_policy, state)
    .for_each(|_| std::future::ready(()))
    .await;
    Ok(())
}

fn error_policy(_: Arc<Secret>, error: &Error, state: Arc<State>) -> Action {
    state.metrics.sync_failed("tokencleaner");
    tracing::warn!(%error, "tokencleaner sync failed");
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile(secret: Arc<Secret>, state: Arc<State>) -> Result<Action> {
    state.metrics.synced("tokencleaner");
    if secret.type_.as_deref() != Some(SECRET_TYPE) || secret.metadata.deletion_timestamp.is_some()
    {
        return Ok(Action::await_change());
    }
    match time_left(&secret, Timestamp::now()) {
        None => return Ok(Action::await_change()),
        Some(left) if !left.is_zero() => return Ok(Action::requeue(left)),
        Some(_) => {}
    }
    tracing::info!(secret = %secret.name_any(), "deleting an expired bootstrap token");
    let api: Api<Secret> = Api::namespaced(state.client.clone(), "kube-system");
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: secret.uid(),
            resource_version: secret.resource_version(),
        }),
        ..Default::default()
    };
    match api.delete(&secret.name_any(), &params).await {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

/// Time until the token expires (zero: expired, as is an unreadable expiration, which the API
/// server refuses too); `None` for a token without one.
fn time_left(secret: &Secret, now: Timestamp) -> Option<Duration> {
    let raw = secret.data.as_ref()?.get("expiration")?;
    let at = std::str::from_utf8(&raw.0)
        .ok()
        .and_then(|s| s.parse::<Timestamp>().ok());
    let Some(at) = at else {
        return Some(Duration::ZERO);
    };
    Some(Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn token(expiration: &str) -> Secret {
        Secret {
            type_: Some(SECRET_TYPE.into()),
            data: Some(
                [("expiration".to_string(), ByteString(expiration.into()))]
                    .into_iter()
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn expiry() {
        let now: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        let left = time_left(&token("2030-01-01T00:01:00Z"), now).unwrap();
        assert_eq!(left, Duration::from_secs(60));
        assert!(time_left(&token("2029-12-31T00:00:00Z"), now)
            .unwrap()
            .is_zero());
        assert!(time_left(&token("garbage"), now).unwrap().is_zero());
        assert!(time_left(&Secret::default(), now).is_none());
    }
}
