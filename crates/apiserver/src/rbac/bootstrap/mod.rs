//! Upstream's default RBAC policy, as data.
//!
//! The YAML files are upstream's own record of what `kube-apiserver` creates at start
//! (`plugin/pkg/auth/authorizer/rbac/bootstrappolicy/testdata`): the default ClusterRoles
//! (`cluster-roles.yaml`, `controller-roles.yaml`), their ClusterRoleBindings, and the Roles and
//! RoleBindings in `kube-system` / `kube-public`. Keeping them as data means an upstream update
//! is a file copy and a diff, not a code change.
//!
//! Differences from the testdata, all upstream behaviour the testdata does not show:
//! - `cluster-role-bindings.yaml` also carries `system:monitoring` (group `system:monitoring`)
//!   and `system:service-account-issuer-discovery` (group `system:serviceaccounts`), which
//!   upstream's `ClusterRoleBindings()` adds outside the listing the testdata was taken from.
//! - `controller-role-bindings.yaml` is generated from `controller-roles.yaml` (each
//!   `system:controller:X` is bound to the service account `kube-system/X`, upstream's rule),
//!   so the two can never disagree.
//! - `system:node` is bound to no one: nodes are authorized by the Node authorizer, not RBAC.
//! - `system:controller:certificate-controller` may also `approve` the
//!   `kubernetes.io/kubelet-serving` signer: krust's csrapproving approves a node's own serving
//!   certificate (upstream leaves that to an external approver).
//! - krust's own controller, the local-path provisioner, has `system:controller:local-path-
//!   provisioner` (volumes, claims, storage classes, events) at the end of the controller
//!   files, bound to `kube-system/local-path-provisioner` as upstream binds its controllers.

use serde_json::Value;

use super::resolver::Policy;
use super::RbacError;

const CLUSTER_ROLES: &str = include_str!("cluster-roles.yaml");
const CONTROLLER_ROLES: &str = include_str!("controller-roles.yaml");
const CLUSTER_ROLE_BINDINGS: &str = include_str!("cluster-role-bindings.yaml");
const CONTROLLER_ROLE_BINDINGS: &str = include_str!("controller-role-bindings.yaml");
const NAMESPACE_ROLES: &str = include_str!("namespace-roles.yaml");
const NAMESPACE_ROLE_BINDINGS: &str = include_str!("namespace-role-bindings.yaml");

/// Namespaces the namespaced bootstrap objects live in; they must exist before those are written.
pub const NAMESPACES: [&str; 2] = ["kube-system", "kube-public"];

/// The items of one of the `kind: List` files, cleaned of the `creationTimestamp: null` and
/// `rules: null` that upstream's dump leaves in.
fn items(yaml: &'static str, file: &'static str) -> Result<Vec<Value>, RbacError> {
    let list: Value = serde_yaml::from_str(yaml).map_err(|e| RbacError::Bootstrap {
        file,
        reason: e.to_string(),
    })?;
    let items = list
        .get("items")
        .and_then(Value::as_array)
        .ok_or(RbacError::Bootstrap {
            file,
            reason: "no items".into(),
        })?;
    Ok(items.iter().cloned().map(clean).collect())
}

fn clean(mut item: Value) -> Value {
    if let Some(meta) = item.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.retain(|_, v| !v.is_null());
    }
    if let Some(obj) = item.as_object_mut() {
        obj.retain(|_, v| !v.is_null());
    }
    item
}

/// Every default ClusterRole, controller roles included.
pub fn cluster_roles() -> Result<Vec<Value>, RbacError> {
    let mut all = items(CLUSTER_ROLES, "cluster-roles.yaml")?;
    all.extend(items(CONTROLLER_ROLES, "controller-roles.yaml")?);
    Ok(all)
}

/// Every default ClusterRoleBinding, controller bindings included.
pub fn cluster_role_bindings() -> Result<Vec<Value>, RbacError> {
    let mut all = items(CLUSTER_ROLE_BINDINGS, "cluster-role-bindings.yaml")?;
    all.extend(items(
        CONTROLLER_ROLE_BINDINGS,
        "controller-role-bindings.yaml",
    )?);
    Ok(all)
}

/// The default Roles (in [`NAMESPACES`]).
pub fn roles() -> Result<Vec<Value>, RbacError> {
    items(NAMESPACE_ROLES, "namespace-roles.yaml")
}

/// The default RoleBindings (in [`NAMESPACES`]).
pub fn role_bindings() -> Result<Vec<Value>, RbacError> {
    items(NAMESPACE_ROLE_BINDINGS, "namespace-role-bindings.yaml")
}

/// Everything, in the order upstream reconciles it: cluster roles, cluster role bindings,
/// roles, role bindings.
pub fn objects() -> Result<Vec<Value>, RbacError> {
    let mut all = cluster_roles()?;
    all.extend(cluster_role_bindings()?);
    all.extend(roles()?);
    all.extend(role_bindings()?);
    Ok(all)
}

/// The policy of a fresh cluster once the aggregation controller has run: every bootstrap
/// object, with `admin`, `edit` and `view` filled from their `system:aggregate-to-*` parts.
pub fn policy() -> Result<Policy, RbacError> {
    let mut policy = Policy::from_values(&objects()?)?;
    policy.aggregate();
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rbac::objects::{Object, AUTOUPDATE_ANNOTATION, BOOTSTRAPPING_LABEL};

    #[test]
    fn every_object_parses_and_is_marked() {
        let all = objects().expect("bootstrap parses");
        assert!(all.len() > 100, "{} objects", all.len());
        for value in &all {
            let object = Object::from_value(value).expect("an RBAC object");
            let meta = object.meta();
            assert_eq!(
                meta.labels.get(BOOTSTRAPPING_LABEL).map(String::as_str),
                Some("rbac-defaults")
            );
            assert_eq!(
                meta.annotations
                    .get(AUTOUPDATE_ANNOTATION)
                    .map(String::as_str),
                Some("true"),
                "{}",
                meta.name
            );
            assert!(value.pointer("/metadata/creationTimestamp").is_none());
        }
    }

    #[test]
    fn every_binding_refers_to_a_bootstrap_role() {
        let policy = policy().expect("bootstrap policy");
        for value in cluster_role_bindings()
            .unwrap()
            .iter()
            .chain(role_bindings().unwrap().iter())
        {
            let Ok(Object::ClusterRoleBinding(b) | Object::RoleBinding(b)) =
                Object::from_value(value)
            else {
                panic!("not a binding: {value}");
            };
            assert!(
                policy
                    .role_ref_rules(&b.role_ref, &b.metadata.namespace)
                    .is_ok(),
                "{} refers to a missing role",
                b.metadata.name
            );
        }
    }

    #[test]
    fn aggregated_roles_are_filled() {
        let policy = policy().unwrap();
        for name in ["admin", "edit", "view"] {
            assert!(
                !policy.cluster_role(name).unwrap().rules.is_empty(),
                "{name}"
            );
        }
        let admin = policy.cluster_role("admin").unwrap().rules.len();
        let edit = policy.cluster_role("edit").unwrap().rules.len();
        let view = policy.cluster_role("view").unwrap().rules.len();
        assert!(admin > edit && edit > view, "{admin} {edit} {view}");
    }
}
