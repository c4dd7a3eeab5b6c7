//! The API server's authorization as it runs: which mode is on (switchable while serving, for
//! `krust enable rbac`), the `Node,RBAC` chain, and keeping the RBAC policy in step with the store.
//!
//! - [`Switch`]: the one [`Authorizer`] every request goes through; AlwaysAllow or Node,RBAC,
//!   changed at run time without touching the listeners.
//! - [`policy_sync`]: loads the RBAC objects at start, follows the watch cache, and writes
//!   ClusterRole aggregation back to the store.
//! - [`bootstrap`]: reconciles upstream's default roles and bindings at start (in every mode,
//!   as upstream, so that switching to RBAC later finds them).
//! - [`node`]: the Node authorizer, over the pod/secret/PV graph [`node_graph`] keeps current.
//! - [`check_write`]: the escalation checks on writes of the four RBAC kinds (RBAC mode only).
//! - [`impersonation`]: the `Impersonate-*` headers, each authorized with the `impersonate` verb.

pub mod bootstrap;
pub mod impersonation;
pub mod node;
pub mod node_graph;
pub mod policy_sync;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::watch;

use crate::authn::UserInfo;
use crate::authz::{Attributes, Authorizer, Decision};
use crate::config::AuthorizationMode;
use crate::rbac::{escalation, Kind, RbacAuthorizer, RbacDecision};
use crate::resources::Resource;
use crate::status::{ApiError, ApiResult, Subject};
use node::NodeAuthorizer;
use node_graph::NodeGraph;

/// The authorizer of a running API server: one mode at a time, switchable while serving.
/// The RBAC policy is kept current in every mode, so switching is instant.
pub struct Switch {
    rbac_on: AtomicBool,
    rbac: Arc<RbacAuthorizer>,
    node: NodeAuthorizer,
}

impl Switch {
    pub fn new(mode: AuthorizationMode, rbac: Arc<RbacAuthorizer>) -> Self {
        Switch {
            rbac_on: AtomicBool::new(mode == AuthorizationMode::NodeRbac),
            rbac,
            node: NodeAuthorizer::new(Arc::new(NodeGraph::default())),
        }
    }

    /// The Node authorizer's graph, for the server to keep current.
    pub fn node_graph(&self) -> &Arc<NodeGraph> {
        self.node.graph()
    }

    pub fn mode(&self) -> AuthorizationMode {
        match self.rbac_on.load(Ordering::Acquire) {
            true => AuthorizationMode::NodeRbac,
            false => AuthorizationMode::AlwaysAllow,
        }
    }

    pub fn set_mode(&self, mode: AuthorizationMode) {
        let previous = self.mode();
        self.rbac_on
            .store(mode == AuthorizationMode::NodeRbac, Ordering::Release);
        if previous != mode {
            tracing::info!(from = %previous, to = %mode, "authorization mode switched");
        }
    }

    pub fn rbac(&self) -> &Arc<RbacAuthorizer> {
        &self.rbac
    }

    /// Upstream's union authorizer over `Node,RBAC`: the first Allow wins; otherwise the
    /// non-empty reasons, joined by a newline, go into the 403. As upstream, `system:masters`
    /// is allowed first, whatever the policy holds (it is how an admin repairs a broken one).
    fn node_rbac(&self, attrs: &Attributes) -> Decision {
        if escalation::escalation_allowed(&attrs.user) {
            return Decision::Allow;
        }
        let mut reasons = Vec::new();
        match self.node.decide(attrs) {
            RbacDecision::Allow(_) => return Decision::Allow,
            RbacDecision::NoOpinion(reason) if !reason.is_empty() => reasons.push(reason),
            RbacDecision::NoOpinion(_) => {}
        }
        match self.rbac.decide(attrs) {
            RbacDecision::Allow(_) => return Decision::Allow,
            RbacDecision::NoOpinion(reason) if !reason.is_empty() => reasons.push(reason),
            RbacDecision::NoOpinion(_) => {}
        }
        Decision::Deny(reasons.join("\n"))
    }
}

#[async_trait]
impl Authorizer for Switch {
    async fn authorize(&self, attrs: &Attributes) -> Decision {
        match self.mode() {
            AuthorizationMode::AlwaysAllow => Decision::Allow,
            AuthorizationMode::NodeRbac => self.node_rbac(attrs),
        }
    }
}

/// Applies every mode sent on `updates` until the sender goes away.
pub async fn follow_mode(switch: Arc<Switch>, mut updates: watch::Receiver<AuthorizationMode>) {
    loop {
        let mode = *updates.borrow_and_update();
        switch.set_mode(mode);
        if updates.changed().await.is_err() {
            return;
        }
    }
}

/// Upstream's escalation checks on a create (`old` = None) or update of a Role, ClusterRole,
/// RoleBinding or ClusterRoleBinding by `user`. Only in RBAC mode: under AlwaysAllow everyone
/// may do everything anyway, as upstream.
pub fn check_write(
    switch: &Switch,
    user: &UserInfo,
    res: &Resource,
    new: &Value,
    old: Option<&Value>,
) -> ApiResult<()> {
    let Some(kind) = rbac_kind(res) else {
        return Ok(());
    };
    if switch.mode() != AuthorizationMode::NodeRbac {
        return Ok(());
    }
    let mut typed = new.clone();
    crate::conversion::set_type(res, &mut typed);
    let policy = switch.rbac.snapshot();
    let checked = match kind.is_binding() {
        true => escalation::check_binding_write(&policy, user, &typed, old),
        false => escalation::check_role_write(&policy, user, &typed, old),
    };
    checked.map_err(|e| {
        let message = e.to_string();
        ApiError::Forbidden(Subject::new(res.group, e.resource, &e.name), message)
    })
}

/// The RBAC kind a resource holds, if it is one of the four.
pub fn rbac_kind(res: &Resource) -> Option<Kind> {
    (res.group == crate::rbac::objects::GROUP)
        .then(|| Kind::from_name(res.kind))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rbac::{Object, Policy, RoleRef, Subject};

    fn attrs(user: &str, groups: &[&str]) -> Attributes {
        Attributes {
            user: UserInfo {
                name: user.into(),
                uid: String::new(),
                groups: groups.iter().map(|g| g.to_string()).collect(),
                extra: Default::default(),
            },
            verb: "list".into(),
            resource_request: true,
            api_group: String::new(),
            api_version: "v1".into(),
            resource: "pods".into(),
            subresource: String::new(),
            namespace: "default".into(),
            name: String::new(),
            path: "/api/v1/namespaces/default/pods".into(),
            ..Default::default()
        }
    }

    /// A policy whose only binding points at a missing role, so RBAC has a reason to give.
    fn dangling() -> Arc<RbacAuthorizer> {
        let mut policy = Policy::new();
        let binding = serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "b"},
            "roleRef": RoleRef::cluster_role("gone"),
            "subjects": [Subject::user("jane")],
        });
        policy.insert(Object::from_value(&binding).unwrap());
        Arc::new(RbacAuthorizer::new(policy))
    }

    #[tokio::test]
    async fn the_chain_joins_reasons_and_lets_masters_through() {
        let switch = Switch::new(AuthorizationMode::NodeRbac, dangling());
        let denied = switch.authorize(&attrs("jane", &[])).await;
        assert_eq!(
            denied,
            Decision::Deny(
                r#"RBAC: clusterrole.rbac.authorization.k8s.io "gone" not found"#.into()
            )
        );
        let admin = attrs("admin", &["system:masters"]);
        assert_eq!(switch.authorize(&admin).await, Decision::Allow);
        switch.set_mode(AuthorizationMode::AlwaysAllow);
        assert_eq!(switch.authorize(&attrs("jane", &[])).await, Decision::Allow);
    }
}
