//! Service-account tokens of projected volumes, as upstream's token manager: requested with the
//! TokenRequest API bound to the pod (so they die with it), kept per pod, account, audience and
//! lifetime, and requested anew once 80% of the lifetime has passed (or 24 hours), so a pod
//! synced regularly always holds a fresh one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount, ServiceAccountTokenProjection};
use kube::api::{Api, PostParams};

use super::SetUpError;

/// Upstream's default `expirationSeconds`.
const DEFAULT_EXPIRATION: i64 = 3600;
/// Upstream refreshes a token at least daily, whatever its lifetime.
const MAX_AGE: Duration = Duration::from_secs(24 * 3600);

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    pod_uid: String,
    namespace: String,
    account: String,
    audience: String,
    expiration: i64,
}

struct Cached {
    token: String,
    issued: SystemTime,
    expires: SystemTime,
}

#[derive(Default)]
pub(crate) struct Tokens {
    cache: Mutex<HashMap<Key, Cached>>,
    /// Added to the clock (tests of rotation).
    skew: Mutex<Duration>,
}

impl Tokens {
    fn now(&self) -> SystemTime {
        SystemTime::now() + *self.skew.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn advance(&self, by: Duration) {
        *self.skew.lock().unwrap_or_else(|e| e.into_inner()) += by;
    }

    pub(crate) fn forget_pod(&self, pod_uid: &str) {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| k.pod_uid != pod_uid);
    }

    /// The pod's current token for `projection`, requested if none is fresh enough.
    pub(crate) async fn get(
        &self,
        client: &kube::Client,
        pod: &Pod,
        projection: &ServiceAccountTokenProjection,
    ) -> Result<String, SetUpError> {
        let key = Key {
            pod_uid: pod.metadata.uid.clone().unwrap_or_default(),
            namespace: pod
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            account: pod
                .spec
                .as_ref()
                .and_then(|s| s.service_account_name.clone())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "default".into()),
            audience: projection.audience.clone().unwrap_or_default(),
            expiration: projection.expiration_seconds.unwrap_or(DEFAULT_EXPIRATION),
        };
        let now = self.now();
        if let Some(c) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            if !needs_refresh(c, now) {
                return Ok(c.token.clone());
            }
        }
        let fresh = request(client, pod, &key, now).await?;
        let token = fresh.token.clone();
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, fresh);
        Ok(token)
    }
}

/// Upstream's `requiresRefresh`: past 80% of the lifetime, or older than a day.
fn needs_refresh(c: &Cached, now: SystemTime) -> bool {
    let lifetime = c.expires.duration_since(c.issued).unwrap_or_default();
    now >= c.issued + lifetime.mul_f64(0.8) || now >= c.issued + MAX_AGE
}

async fn request(
    client: &kube::Client,
    pod: &Pod,
    key: &Key,
    now: SystemTime,
) -> Result<Cached, SetUpError> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &key.namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: match key.audience.as_str() {
                "" => vec![],
                a => vec![a.to_string()],
            },
            expiration_seconds: Some(key.expiration),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..Default::default()
    };
    let answer = api
        .create_token_request(&key.account, &PostParams::default(), &request)
        .await
        .map_err(|e| {
            SetUpError::Message(format!("failed to fetch token: {}", SetUpError::from(e)))
        })?;
    let status = answer
        .status
        .ok_or_else(|| SetUpError::Message("failed to fetch token: no status".into()))?;
    let expires_in = status
        .expiration_timestamp
        .0
        .duration_since(k8s_openapi::jiff::Timestamp::now());
    let expires_in = Duration::try_from(expires_in).unwrap_or_default();
    Ok(Cached {
        token: status.token,
        issued: now,
        expires: now + expires_in,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refreshes_at_eighty_percent() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let c = Cached {
            token: String::new(),
            issued: t0,
            expires: t0 + Duration::from_secs(1000),
        };
        assert!(!needs_refresh(&c, t0 + Duration::from_secs(799)));
        assert!(needs_refresh(&c, t0 + Duration::from_secs(800)));
    }
}
