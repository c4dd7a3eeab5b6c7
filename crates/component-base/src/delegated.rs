//! Authentication and authorization delegated to the API server, as upstream's
//! DelegatingAuthenticationOptions / DelegatingAuthorizationOptions: bearer tokens are checked
//! with a TokenReview, requests with a SubjectAccessReview, both created with the component's
//! own client. Answers are cached for upstream's default times to live, so a scraper does not
//! cost two API round trips per scrape.

use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::Api;

use crate::cache::TtlCache;

/// For other secure ports that check callers themselves (the kubelet's 10250): the TLS
/// configuration that verifies optional client certificates against the cluster CA, and the
/// user such a certificate names.
pub use crate::secure::{server_tls, user_of_cert};

/// Upstream's `--authentication-token-webhook-cache-ttl` default, for both outcomes.
pub const TOKEN_TTL: Duration = Duration::from_secs(10);
/// Upstream's `--authorization-webhook-cache-authorized-ttl` default.
pub const ALLOWED_TTL: Duration = Duration::from_secs(10);
/// Upstream's `--authorization-webhook-cache-unauthorized-ttl` default.
pub const DENIED_TTL: Duration = Duration::from_secs(10);

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
}

/// The authorizer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Not allowed, with the authorizer's reason (often empty).
    Deny(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("the TokenReview failed: {0}")]
    TokenReview(#[source] kube::Error),
    #[error("the SubjectAccessReview failed: {0}")]
    SubjectAccessReview(#[source] kube::Error),
}

/// Who may read what on a component's secure port; cheap to share behind an `Arc`.
pub struct Delegated {
    client: kube::Client,
    tokens: TtlCache<String, Option<User>>,
    decisions: TtlCache<(User, String, String), Decision>,
}

impl Delegated {
    pub fn new(client: kube::Client) -> Self {
        Delegated {
            client,
            tokens: TtlCache::default(),
            decisions: TtlCache::default(),
        }
    }

    /// The user behind `token`, or `None` when the API server does not know it.
    pub async fn authenticate_token(&self, token: &str) -> Result<Option<User>, ReviewError> {
        if let Some(known) = self.tokens.get(&token.to_string(), Instant::now()) {
            return Ok(known);
        }
        let user = self.token_review(token).await?;
        self.tokens
            .insert(token.to_string(), user.clone(), TOKEN_TTL, Instant::now());
        Ok(user)
    }

    /// Whether `user` may `verb` the non-resource `path`.
    pub async fn authorize(
        &self,
        user: &User,
        verb: &str,
        path: &str,
    ) -> Result<Decision, ReviewError> {
        let key = (user.clone(), verb.to_string(), path.to_string());
        if let Some(known) = self.decisions.get(&key, Instant::now()) {
            return Ok(known);
        }
        let decision = self.access_review(user, verb, path).await?;
        let ttl = match decision {
            Decision::Allow => ALLOWED_TTL,
            Decision::Deny(_) => DENIED_TTL,
        };
        self.decisions
            .insert(key, decision.clone(), ttl, Instant::now());
        Ok(decision)
    }

    /// Whether `user` may `verb` a resource (or one of its subresources), as the kubelet asks
    /// for `nodes/proxy`, `nodes/log`, ... (upstream's kubelet authorizer attributes).
    pub async fn authorize_resource(
        &self,
        user: &User,
        attrs: &ResourceAttributes,
    ) -> Result<Decision, ReviewError> {
        let verb = attrs.verb.clone().unwrap_or_default();
        // The path slot of the cache key, for a resource: one string per distinct attribute set.
        let target = format!(
            "resource:{}/{}/{}/{}/{}/{}",
            attrs.group.as_deref().unwrap_or_default(),
            attrs.version.as_deref().unwrap_or_default(),
            attrs.resource.as_deref().unwrap_or_default(),
            attrs.subresource.as_deref().unwrap_or_default(),
            attrs.namespace.as_deref().unwrap_or_default(),
            attrs.name.as_deref().unwrap_or_default(),
        );
        let key = (user.clone(), verb, target);
        if let Some(known) = self.decisions.get(&key, Instant::now()) {
            return Ok(known);
        }
        let mut review = access_review_of(user, "", "");
        review.spec.non_resource_attributes = None;
        review.spec.resource_attributes = Some(attrs.clone());
        let answer = self
            .create(&review)
            .await
            .map_err(ReviewError::SubjectAccessReview)?;
        let decision = decision_of(answer);
        let ttl = match decision {
            Decision::Allow => ALLOWED_TTL,
            Decision::Deny(_) => DENIED_TTL,
        };
        self.decisions
            .insert(key, decision.clone(), ttl, Instant::now());
        Ok(decision)
    }

    async fn token_review(&self, token: &str) -> Result<Option<User>, ReviewError> {
        let answer = self
            .create(&token_review_of(token))
            .await
            .map_err(ReviewError::TokenReview)?;
        Ok(user_of(answer))
    }

    async fn access_review(
        &self,
        user: &User,
        verb: &str,
        path: &str,
    ) -> Result<Decision, ReviewError> {
        let answer = self
            .create(&access_review_of(user, verb, path))
            .await
            .map_err(ReviewError::SubjectAccessReview)?;
        Ok(decision_of(answer))
    }

    /// Creates a review; the API server answers in the returned object's status.
    async fn create<K>(&self, review: &K) -> Result<K, kube::Error>
    where
        K: kube::Resource<Scope = kube::core::ClusterResourceScope, DynamicType = ()>
            + Clone
            + std::fmt::Debug
            + serde::Serialize
            + serde::de::DeserializeOwned,
    {
        Api::<K>::all(self.client.clone())
            .create(&PostParams::default(), review)
            .await
    }
}

fn token_review_of(token: &str) -> TokenReview {
    TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.to_string()),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Whether `user` may `verb` the non-resource `path`, as a review to create.
fn access_review_of(user: &User, verb: &str, path: &str) -> SubjectAccessReview {
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.name.clone()),
            uid: (!user.uid.is_empty()).then(|| user.uid.clone()),
            groups: Some(user.groups.clone()),
            non_resource_attributes: Some(NonResourceAttributes {
                path: Some(path.to_string()),
                verb: Some(verb.to_string()),
            }),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The authenticated user of a TokenReview answer.
fn user_of(review: TokenReview) -> Option<User> {
    let status = review.status?;
    if status.authenticated != Some(true) {
        return None;
    }
    let info = status.user?;
    Some(User {
        name: info.username?,
        uid: info.uid.unwrap_or_default(),
        groups: info.groups.unwrap_or_default(),
    })
}

fn decision_of(review: SubjectAccessReview) -> Decision {
    let Some(status) = review.status else {
        return Decision::Deny(String::new());
    };
    if status.allowed && status.denied != Some(true) {
        Decision::Allow
    } else {
        Decision::Deny(status.reason.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use k8s_openapi::api::authentication::v1::{TokenReviewStatus, UserInfo};
    use k8s_openapi::api::authorization::v1::SubjectAccessReviewStatus;

    fn token_answer(authenticated: bool) -> TokenReview {
        TokenReview {
            status: Some(TokenReviewStatus {
                authenticated: Some(authenticated),
                user: Some(UserInfo {
                    username: Some("system:kube-proxy".into()),
                    uid: Some("u1".into()),
                    groups: Some(vec!["system:authenticated".into()]),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn an_authenticated_review_names_the_user() {
        let user = user_of(token_answer(true)).expect("user");
        assert_eq!(user.name, "system:kube-proxy");
        assert_eq!(user.uid, "u1");
        assert_eq!(user.groups, ["system:authenticated"]);
        assert_eq!(user_of(token_answer(false)), None);
        assert_eq!(user_of(TokenReview::default()), None);
    }

    fn access_answer(allowed: bool, denied: Option<bool>, reason: &str) -> SubjectAccessReview {
        SubjectAccessReview {
            status: Some(SubjectAccessReviewStatus {
                allowed,
                denied,
                reason: Some(reason.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn only_an_allowed_and_not_denied_review_allows() {
        assert_eq!(decision_of(access_answer(true, None, "")), Decision::Allow);
        assert_eq!(
            decision_of(access_answer(false, None, "no rule")),
            Decision::Deny("no rule".into())
        );
        assert_eq!(
            decision_of(access_answer(true, Some(true), "")),
            Decision::Deny(String::new())
        );
        assert_eq!(
            decision_of(SubjectAccessReview::default()),
            Decision::Deny(String::new())
        );
    }

    /// A client whose API server answers every review with `status` and counts the reviews.
    fn counting_client(status: serde_json::Value) -> (kube::Client, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            counter.fetch_add(1, Ordering::SeqCst);
            let (kind, api_version) = if req.uri().path().contains("tokenreviews") {
                ("TokenReview", "authentication.k8s.io/v1")
            } else {
                ("SubjectAccessReview", "authorization.k8s.io/v1")
            };
            let body = serde_json::json!({
                "kind": kind, "apiVersion": api_version, "spec": {}, "status": status
            });
            let res = http::Response::builder()
                .status(201)
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(bytes::Bytes::from(
                    body.to_string(),
                )));
            async move { res }
        });
        (kube::Client::new(service, "default"), calls)
    }

    fn proxy() -> User {
        User {
            name: "system:kube-proxy".into(),
            uid: String::new(),
            groups: vec!["system:authenticated".into()],
        }
    }

    #[tokio::test]
    async fn a_token_is_reviewed_once_within_its_ttl() {
        let status =
            serde_json::json!({"authenticated": true, "user": {"username": "system:kube-proxy"}});
        let (client, calls) = counting_client(status);
        let delegated = Delegated::new(client);
        for _ in 0..3 {
            let user = delegated.authenticate_token("t1").await.expect("review");
            assert_eq!(user.map(|u| u.name).as_deref(), Some("system:kube-proxy"));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        delegated.authenticate_token("t2").await.expect("review");
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "another token is another review"
        );
    }

    #[tokio::test]
    async fn an_unknown_token_is_remembered_too() {
        let (client, calls) = counting_client(serde_json::json!({"authenticated": false}));
        let delegated = Delegated::new(client);
        for _ in 0..3 {
            assert_eq!(
                delegated.authenticate_token("bad").await.expect("review"),
                None
            );
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_decision_is_cached_per_user_verb_and_path() {
        let status = serde_json::json!({"allowed": false, "reason": "no RBAC rule"});
        let (client, calls) = counting_client(status);
        let delegated = Delegated::new(client);
        for _ in 0..3 {
            let decision = delegated.authorize(&proxy(), "get", "/metrics").await;
            assert_eq!(
                decision.expect("review"),
                Decision::Deny("no RBAC rule".into())
            );
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        delegated
            .authorize(&proxy(), "get", "/other")
            .await
            .expect("review");
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "another path is another review"
        );
    }

    #[tokio::test]
    async fn a_failed_review_is_not_cached() {
        let service = tower::service_fn(|_req: http::Request<kube::client::Body>| async {
            http::Response::builder()
                .status(500)
                .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
        });
        let failing = Delegated::new(kube::Client::new(service, "default"));
        assert!(failing.authenticate_token("t").await.is_err());
        assert!(failing.authenticate_token("t").await.is_err());
        assert!(failing
            .authorize(&proxy(), "get", "/metrics")
            .await
            .is_err());
    }

    #[test]
    fn answers_are_kept_as_long_as_upstream_keeps_them() {
        assert_eq!(TOKEN_TTL, Duration::from_secs(10));
        assert_eq!(ALLOWED_TTL, Duration::from_secs(10));
        assert_eq!(DENIED_TTL, Duration::from_secs(10));
    }
}
