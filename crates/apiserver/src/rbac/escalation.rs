//! Escalation prevention: nobody may create a role granting, or a binding to a role granting,
//! more than they already hold, unless they have `escalate` (roles) or `bind` (bindings) on it.
//!
//! Follows upstream's `pkg/registry/rbac/validation.ConfirmNoEscalation`,
//! `pkg/registry/rbac/escalation_check.go` and the `policybased` storages of roles, cluster
//! roles and their bindings. The registry calls [`check_role_write`] / [`check_binding_write`]
//! on every create and update of the four RBAC kinds, before storing.

use serde_json::Value;
use thiserror::Error;

use super::objects::{decode, Binding, Kind, PolicyRule, Role, RoleRef, ALL, GROUP};
use super::resolver::{Policy, RbacDecision};
use super::rules::{covers, describe_missing, go_quote, go_quote_list};
use crate::authn::UserInfo;
use crate::authz::Attributes;

/// The group whose members may do anything, escalation included (upstream's loopback identity).
pub const MASTERS_GROUP: &str = "system:masters";

/// A refused write, printed as upstream's Forbidden status message.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{} is forbidden: {reason}", subject(.resource, .name))]
pub struct Forbidden {
    /// Plural resource, e.g. `roles`.
    pub resource: &'static str,
    pub name: String,
    /// The text after `is forbidden: `.
    pub reason: String,
}

fn subject(resource: &str, name: &str) -> String {
    let qualified = format!("{resource}.{GROUP}");
    if name.is_empty() {
        qualified
    } else {
        format!("{qualified} {}", go_quote(name))
    }
}

/// Upstream's `EscalationAllowed`.
pub fn escalation_allowed(user: &UserInfo) -> bool {
    user.groups.iter().any(|g| g == MASTERS_GROUP)
}

fn resource_attributes(
    user: &UserInfo,
    verb: &str,
    resource: &str,
    namespace: &str,
    name: &str,
) -> Attributes {
    Attributes {
        user: user.clone(),
        verb: verb.into(),
        resource_request: true,
        api_group: GROUP.into(),
        api_version: ALL.into(),
        resource: resource.into(),
        subresource: String::new(),
        namespace: namespace.into(),
        name: name.into(),
        path: String::new(),
        field_selector: String::new(),
    }
}

fn allowed(policy: &Policy, attrs: &Attributes) -> bool {
    matches!(policy.authorize(attrs), RbacDecision::Allow(_))
}

/// Upstream's `RoleEscalationAuthorized`: the `escalate` verb on the role being written.
pub fn role_escalation_authorized(
    policy: &Policy,
    user: &UserInfo,
    kind: Kind,
    namespace: &str,
    name: &str,
) -> bool {
    matches!(kind, Kind::Role | Kind::ClusterRole)
        && allowed(
            policy,
            &resource_attributes(user, "escalate", kind.resource(), namespace, name),
        )
}

/// Upstream's `BindingAuthorized`: the `bind` verb on the referenced role, checked in the
/// binding's namespace (empty for ClusterRoleBindings), so `bind` can be delegated per namespace.
pub fn binding_authorized(
    policy: &Policy,
    user: &UserInfo,
    role_ref: &RoleRef,
    binding_namespace: &str,
) -> bool {
    let resource = match role_ref.kind.as_str() {
        "ClusterRole" => "clusterroles",
        "Role" => "roles",
        _ => return false,
    };
    let mut attrs = resource_attributes(user, "bind", resource, binding_namespace, &role_ref.name);
    attrs.api_group = role_ref.api_group.clone();
    allowed(policy, &attrs)
}

/// Upstream's `ConfirmNoEscalation`: `Err` holds the reason text when `user`, with the rules they
/// hold in `namespace`, does not cover `rules`.
pub fn confirm_no_escalation(
    policy: &Policy,
    user: &UserInfo,
    namespace: &str,
    rules: &[PolicyRule],
) -> Result<(), String> {
    let held = policy.rules_for(user, namespace);
    let (covered, missing) = covers(&held.rules, rules);
    if covered {
        return Ok(());
    }
    let mut msg = format!(
        "user {} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
        go_quote(&user.name),
        go_quote_list(&user.groups),
        describe_missing(&missing).join("\n")
    );
    if !held.errors.is_empty() {
        msg.push_str(&format!("; resolution errors: [{}]", held.error_text()));
    }
    Err(msg)
}

/// `*` on everything: what setting an aggregation rule requires, since it can gather anything.
fn full_authority() -> Vec<PolicyRule> {
    vec![
        PolicyRule::resource(&[ALL], &[ALL], &[ALL]),
        PolicyRule::non_resource(&[ALL], &[ALL]),
    ]
}

/// Checks a create (`old` = None) or update of a Role or ClusterRole given as stored JSON.
pub fn check_role_write(
    policy: &Policy,
    user: &UserInfo,
    new: &Value,
    old: Option<&Value>,
) -> Result<(), Forbidden> {
    let kind = kind_of(new);
    let resource = kind.map_or("roles", Kind::resource);
    let role: Role = decode(new).map_err(|e| forbidden(resource, new, e.to_string()))?;
    let (ns, name) = (&role.metadata.namespace, &role.metadata.name);
    let Some(kind) = kind.filter(|k| matches!(k, Kind::Role | Kind::ClusterRole)) else {
        return Err(forbidden(resource, new, "not a Role or ClusterRole".into()));
    };
    if escalation_allowed(user) || role_escalation_authorized(policy, user, kind, ns, name) {
        return Ok(());
    }
    if old.is_some_and(|old| only_gc_fields_changed(old, new)) {
        return Ok(());
    }
    confirm_no_escalation(policy, user, ns, &role.rules)
        .map_err(|reason| forbidden(resource, new, reason))?;
    let aggregates = role
        .aggregation_rule
        .as_ref()
        .is_some_and(|a| !a.cluster_role_selectors.is_empty());
    if aggregates && confirm_no_escalation(policy, user, ns, &full_authority()).is_err() {
        let reason = "must have cluster-admin privileges to use the aggregationRule".to_string();
        return Err(forbidden(resource, new, reason));
    }
    Ok(())
}

/// Checks a create (`old` = None) or update of a RoleBinding or ClusterRoleBinding.
pub fn check_binding_write(
    policy: &Policy,
    user: &UserInfo,
    new: &Value,
    old: Option<&Value>,
) -> Result<(), Forbidden> {
    let resource = kind_of(new).map_or("rolebindings", Kind::resource);
    let binding: Binding = decode(new).map_err(|e| forbidden(resource, new, e.to_string()))?;
    let ns = &binding.metadata.namespace;
    if escalation_allowed(user) {
        return Ok(());
    }
    if old.is_some_and(|old| only_gc_fields_changed(old, new)) {
        return Ok(());
    }
    if binding_authorized(policy, user, &binding.role_ref, ns) {
        return Ok(());
    }
    let rules = policy
        .role_ref_rules(&binding.role_ref, ns)
        .map_err(|reason| forbidden(resource, new, reason))?;
    confirm_no_escalation(policy, user, ns, rules)
        .map_err(|reason| forbidden(resource, new, reason))
}

fn kind_of(value: &Value) -> Option<Kind> {
    value
        .get("kind")
        .and_then(Value::as_str)
        .and_then(Kind::from_name)
}

fn forbidden(resource: &'static str, object: &Value, reason: String) -> Forbidden {
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    Forbidden {
        resource,
        name: name.to_string(),
        reason,
    }
}

/// Upstream's `IsOnlyMutatingGCFields`: an update that only touches owner references or
/// finalizers (what the garbage collector needs to delete the object) is never an escalation.
pub fn only_gc_fields_changed(old: &Value, new: &Value) -> bool {
    let mut stomped = new.clone();
    for field in ["ownerReferences", "finalizers", "selfLink", "managedFields"] {
        copy_meta_field(old, &mut stomped, field);
    }
    &stomped == old
}

fn copy_meta_field(from: &Value, to: &mut Value, field: &str) {
    let Some(meta) = to.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    match from.get("metadata").and_then(|m| m.get(field)) {
        Some(v) => meta.insert(field.to_string(), v.clone()),
        None => meta.remove(field),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn gc_only_updates_are_recognised() {
        let old = json!({"kind": "Role", "metadata": {"name": "r"}, "rules": []});
        let mut new = old.clone();
        new["metadata"]["finalizers"] = json!(["x"]);
        assert!(only_gc_fields_changed(&old, &new));
        new["rules"] = json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]);
        assert!(!only_gc_fields_changed(&old, &new));
    }

    #[test]
    fn forbidden_messages() {
        let f = Forbidden {
            resource: "roles",
            name: "r".into(),
            reason: "why".into(),
        };
        assert_eq!(
            f.to_string(),
            r#"roles.rbac.authorization.k8s.io "r" is forbidden: why"#
        );
        let nameless = Forbidden {
            name: String::new(),
            ..f
        };
        assert_eq!(
            nameless.to_string(),
            "roles.rbac.authorization.k8s.io is forbidden: why"
        );
    }
}
