//! Role-based access control, as upstream's RBAC authorizer and registry checks.
//!
//! - [`objects`]: Roles, ClusterRoles and bindings, read from the stored JSON.
//! - [`rules`]: what one rule allows; whether rules cover other rules.
//! - [`resolver`]: [`Policy`] (all current RBAC objects) answers "which rules does this user
//!   hold here" and "is this request allowed"; [`RbacAuthorizer`] shares it across requests.
//! - [`escalation`]: the create/update checks that stop privilege escalation.
//! - [`aggregation`]: ClusterRole aggregation (`admin` ⊇ `edit` ⊇ `view`).
//! - [`bootstrap`]: upstream's default roles and bindings, as data.
//! - [`reconcile`]: start-up reconciliation of that data with what is stored.
//!
//! # How to plug it in
//!
//! 1. **Hold the objects.** Build one [`RbacAuthorizer`] at start from everything stored under
//!    the four RBAC resources (`Policy::from_values`), then keep it current from the watch cache:
//!    on ADDED/MODIFIED call `authorizer.update(|p| p.apply(&obj))`, on DELETED
//!    `authorizer.update(|p| p.delete(&obj))`. Requests read an `Arc` snapshot
//!    ([`RbacAuthorizer::snapshot`]), so updates never block or tear a decision.
//! 2. **Authorize.** `RbacAuthorizer` implements [`crate::authz::Authorizer`]: `Allow`, or
//!    `Deny(reason)` where `reason` is upstream's (usually empty) text for
//!    [`crate::authz::forbidden_message`]. For a `Node,RBAC` chain use
//!    [`RbacAuthorizer::decide`], whose `NoOpinion` lets the chain continue.
//! 3. **Check writes.** Before storing a create/update of a Role or ClusterRole call
//!    [`escalation::check_role_write`]; of a RoleBinding or ClusterRoleBinding,
//!    [`escalation::check_binding_write`]; answer 403 with the error's `Display` on `Err`.
//! 4. **Bootstrap.** After the store is up and `kube-system` / `kube-public` exist, for each of
//!    [`bootstrap::objects`] call [`reconcile::reconcile`] with the stored version and write
//!    [`reconcile::Reconciled::to_write`] (create, update, or delete-then-create for
//!    `Recreate`); retry that object on a conflict.
//! 5. **Aggregate.** After a ClusterRole event, `authorizer.update(|p| p.aggregate())`
//!    ([`Policy::aggregate`]) applies aggregation in memory and returns the changed roles' new
//!    rules; write those into the stored roles too, as upstream's controller does, so
//!    `kubectl get clusterrole admin -o yaml` shows them (the write comes back as a no-op).
//! 6. **Review APIs.** A SelfSubjectRulesReview's `status` is
//!    `policy.rules_for(&user, &spec.namespace).review_status()` ([`Rules::review_status`]);
//!    the access reviews are the authorizer on attributes built from the review's spec, as now.

use thiserror::Error;

pub mod aggregation;
mod bindings;
pub mod bootstrap;
pub mod escalation;
pub mod objects;
pub mod reconcile;
pub mod resolver;
pub mod rules;

pub use objects::{Binding, Kind, Object, PolicyRule, Role, RoleRef, Subject};
pub use resolver::{Policy, RbacAuthorizer, RbacDecision, Rules};

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum RbacError {
    #[error("{0:?} is not an RBAC kind")]
    NotRbac(String),
    #[error("decoding RBAC object: {0}")]
    Decode(String),
    #[error("bootstrap policy {file}: {reason}")]
    Bootstrap { file: &'static str, reason: String },
}
