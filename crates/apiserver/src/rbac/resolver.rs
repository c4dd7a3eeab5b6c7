//! The current RBAC objects and the questions asked of them: which rules apply to a user in a
//! namespace (upstream's `DefaultRuleResolver.VisitRulesFor` / `RulesFor`) and whether a request
//! is allowed (upstream's `RBACAuthorizer.Authorize`).
//!
//! [`Policy`] is a plain value (a snapshot); [`RbacAuthorizer`] shares one behind a lock so the
//! API server can swap in changes from its watch while requests keep reading the old snapshot.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use serde_json::{json, Value};

use super::aggregation::aggregate_all;
use super::bindings::Bindings;
use super::objects::{Binding, Kind, Object, PolicyRule, Role, RoleRef, Subject};
use super::rules::{go_quote, rule_allows, Request};
use super::RbacError;
use crate::authn::UserInfo;
use crate::authz::{Attributes, Authorizer, Decision};

/// All Roles, ClusterRoles and bindings, indexed the way evaluation reads them.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    cluster_roles: BTreeMap<String, Role>,
    /// Keyed by (namespace, name).
    roles: BTreeMap<(String, String), Role>,
    cluster_role_bindings: Bindings,
    /// Per namespace, so a request only looks at its own namespace's bindings.
    role_bindings: BTreeMap<String, Bindings>,
}

/// Where an allowing rule came from; its `Display` is upstream's describer text.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub binding: &'a Binding,
    pub subject: &'a Subject,
    /// ClusterRoleBinding (true) or RoleBinding.
    pub cluster: bool,
}

impl fmt::Display for Source<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let meta = &self.binding.metadata;
        let (kind, name, ns) = if self.cluster {
            ("ClusterRoleBinding", meta.name.clone(), "")
        } else {
            (
                "RoleBinding",
                format!("{}/{}", meta.name, meta.namespace),
                meta.namespace.as_str(),
            )
        };
        let role = &self.binding.role_ref;
        write!(
            f,
            "{kind} {} of {} {} to {}",
            go_quote(&name),
            role.kind,
            go_quote(&role.name),
            describe_subject(self.subject, ns)
        )
    }
}

fn describe_subject(s: &Subject, binding_namespace: &str) -> String {
    if s.kind != "ServiceAccount" {
        return format!("{} {}", s.kind, go_quote(&s.name));
    }
    let ns = if s.namespace.is_empty() {
        binding_namespace
    } else {
        &s.namespace
    };
    format!("{} {}", s.kind, go_quote(&format!("{}/{ns}", s.name)))
}

/// What the visitor of [`Policy::visit_rules_for`] is shown.
#[derive(Debug, Clone)]
pub enum Visit<'a> {
    Rule(Source<'a>, &'a PolicyRule),
    /// A binding applies but its role could not be resolved (missing, bad kind).
    Error(String),
}

/// RBAC's answer: it never denies, it only allows or has no opinion (so a later authorizer in
/// a chain may still allow). Both carry upstream's reason text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RbacDecision {
    /// `RBAC: allowed by ClusterRoleBinding "..." of ClusterRole "..." to Group "..."`.
    Allow(String),
    /// Empty, or `RBAC: <role resolution errors>`; goes after `forbidden: ` in the 403.
    NoOpinion(String),
}

/// The rules a user holds in a namespace, plus the resolution errors met on the way (a
/// non-empty list means the rules may be incomplete, as upstream's `RulesFor`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    pub rules: Vec<PolicyRule>,
    pub errors: Vec<String>,
}

impl Rules {
    /// The errors as upstream's aggregate error prints them (`""` when there are none).
    pub fn error_text(&self) -> String {
        aggregate(&self.errors)
    }

    /// A SelfSubjectRulesReview `status`, as upstream's RBAC `RulesFor` and the review's REST
    /// handler build it: each rule split into its resource and non-resource halves; RBAC never
    /// reports itself incomplete, but a resolution error becomes `evaluationError`.
    pub fn review_status(&self) -> Value {
        let resource_rules: Vec<Value> = self
            .rules
            .iter()
            .filter(|r| !r.resources.is_empty())
            .map(|r| {
                let half = PolicyRule {
                    non_resource_urls: Vec::new(),
                    ..r.clone()
                };
                serde_json::to_value(half).unwrap_or_default()
            })
            .collect();
        let non_resource_rules: Vec<Value> = self
            .rules
            .iter()
            .filter(|r| !r.non_resource_urls.is_empty())
            .map(|r| json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls}))
            .collect();
        let mut status = json!({
            "resourceRules": resource_rules,
            "nonResourceRules": non_resource_rules,
            "incomplete": false,
        });
        if !self.errors.is_empty() {
            status["evaluationError"] = Value::String(self.error_text());
        }
        status
    }
}

/// Go's `utilerrors.NewAggregate(...).Error()`: one error as is, several de-duplicated in `[a, b]`.
pub fn aggregate(errors: &[String]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for e in errors {
        if !seen.contains(&e.as_str()) {
            seen.push(e);
        }
    }
    match seen.len() {
        0 => String::new(),
        1 => seen[0].to_string(),
        _ => format!("[{}]", seen.join(", ")),
    }
}

impl Policy {
    pub fn new() -> Self {
        Policy::default()
    }

    /// Builds a policy from stored objects (any mix of the four kinds).
    pub fn from_values<'a>(values: impl IntoIterator<Item = &'a Value>) -> Result<Self, RbacError> {
        let mut policy = Policy::new();
        for value in values {
            policy.apply(value)?;
        }
        Ok(policy)
    }

    /// Adds or replaces one object, read from its JSON (a watch ADDED/MODIFIED event).
    pub fn apply(&mut self, value: &Value) -> Result<(), RbacError> {
        self.insert(Object::from_value(value)?);
        Ok(())
    }

    /// Removes one object given its JSON (a watch DELETED event).
    pub fn delete(&mut self, value: &Value) -> Result<(), RbacError> {
        let object = Object::from_value(value)?;
        let meta = object.meta();
        self.remove(object.kind(), &meta.namespace, &meta.name);
        Ok(())
    }

    pub fn insert(&mut self, object: Object) {
        match object {
            Object::ClusterRole(r) => {
                self.cluster_roles.insert(r.metadata.name.clone(), r);
            }
            Object::Role(r) => {
                let key = (r.metadata.namespace.clone(), r.metadata.name.clone());
                self.roles.insert(key, r);
            }
            Object::ClusterRoleBinding(b) => {
                self.cluster_role_bindings.insert(b);
            }
            Object::RoleBinding(b) => {
                let ns = self
                    .role_bindings
                    .entry(b.metadata.namespace.clone())
                    .or_default();
                ns.insert(b);
            }
        }
    }

    pub fn remove(&mut self, kind: Kind, namespace: &str, name: &str) {
        match kind {
            Kind::ClusterRole => {
                self.cluster_roles.remove(name);
            }
            Kind::Role => {
                self.roles
                    .remove(&(namespace.to_string(), name.to_string()));
            }
            Kind::ClusterRoleBinding => {
                self.cluster_role_bindings.remove(name);
            }
            Kind::RoleBinding => {
                if let Some(ns) = self.role_bindings.get_mut(namespace) {
                    ns.remove(name);
                    if ns.is_empty() {
                        self.role_bindings.remove(namespace);
                    }
                }
            }
        }
    }

    pub fn cluster_role(&self, name: &str) -> Option<&Role> {
        self.cluster_roles.get(name)
    }

    pub fn role(&self, namespace: &str, name: &str) -> Option<&Role> {
        self.roles.get(&(namespace.to_string(), name.to_string()))
    }

    pub fn cluster_roles(&self) -> impl Iterator<Item = &Role> {
        self.cluster_roles.values()
    }

    /// Runs ClusterRole aggregation ([`aggregate_all`]) over this policy, applies the result,
    /// and returns it (role name → new rules) so the caller can write it to the store too.
    pub fn aggregate(&mut self) -> BTreeMap<String, Vec<PolicyRule>> {
        let roles: Vec<Role> = self.cluster_roles.values().cloned().collect();
        let updates = aggregate_all(&roles);
        for (name, rules) in &updates {
            if let Some(role) = self.cluster_roles.get_mut(name) {
                role.rules.clone_from(rules);
            }
        }
        updates
    }

    /// Upstream's `GetRoleReferenceRules`: a RoleBinding's `Role` is looked up in the binding's
    /// namespace; a `ClusterRole` is cluster-wide (the binding decides the scope).
    pub fn role_ref_rules(
        &self,
        role_ref: &RoleRef,
        binding_namespace: &str,
    ) -> Result<&[PolicyRule], String> {
        let found = match role_ref.kind.as_str() {
            "Role" => self.role(binding_namespace, &role_ref.name).ok_or("role"),
            "ClusterRole" => self.cluster_role(&role_ref.name).ok_or("clusterrole"),
            other => {
                return Err(format!(
                    "unsupported role reference kind: {}",
                    go_quote(other)
                ))
            }
        };
        found.map(|r| r.rules.as_slice()).map_err(|kind| {
            format!(
                "{kind}.rbac.authorization.k8s.io {} not found",
                go_quote(&role_ref.name)
            )
        })
    }

    /// Upstream's `VisitRulesFor`: every rule granted to `user` cluster-wide, then (when
    /// `namespace` is set) in that namespace. The visitor returns false to stop early.
    /// Only the bindings naming the user or one of its groups are looked at (an index).
    pub fn visit_rules_for<'a>(
        &'a self,
        user: &UserInfo,
        namespace: &str,
        mut visitor: impl FnMut(Visit<'a>) -> bool,
    ) {
        for binding in self.cluster_role_bindings.candidates(user) {
            if !self.visit_binding(binding, user, "", true, &mut visitor) {
                return;
            }
        }
        let Some(bindings) = (!namespace.is_empty())
            .then(|| self.role_bindings.get(namespace))
            .flatten()
        else {
            return;
        };
        for binding in bindings.candidates(user) {
            if !self.visit_binding(binding, user, namespace, false, &mut visitor) {
                return;
            }
        }
    }

    /// Visits one binding's rules if it applies to `user`; false when the visitor stopped.
    fn visit_binding<'a>(
        &'a self,
        binding: &'a Binding,
        user: &UserInfo,
        namespace: &str,
        cluster: bool,
        visitor: &mut impl FnMut(Visit<'a>) -> bool,
    ) -> bool {
        let Some(subject) = binding
            .subjects
            .iter()
            .find(|s| applies_to(user, s, namespace))
        else {
            return true;
        };
        let rules = match self.role_ref_rules(&binding.role_ref, namespace) {
            Ok(rules) => rules,
            Err(e) => return visitor(Visit::Error(e)),
        };
        let source = Source {
            binding,
            subject,
            cluster,
        };
        rules.iter().all(|rule| visitor(Visit::Rule(source, rule)))
    }

    /// Upstream's `RBACAuthorizer.Authorize`.
    pub fn authorize(&self, attrs: &Attributes) -> RbacDecision {
        let req = Request::from_attributes(attrs);
        let mut allowed = None;
        let mut errors = Vec::new();
        self.visit_rules_for(&attrs.user, &attrs.namespace, |visit| match visit {
            Visit::Rule(source, rule) if rule_allows(rule, &req) => {
                allowed = Some(format!("RBAC: allowed by {source}"));
                false
            }
            Visit::Rule(..) => true,
            Visit::Error(e) => {
                errors.push(e);
                true
            }
        });
        match allowed {
            Some(reason) => RbacDecision::Allow(reason),
            None if errors.is_empty() => RbacDecision::NoOpinion(String::new()),
            None => RbacDecision::NoOpinion(format!("RBAC: {}", aggregate(&errors))),
        }
    }

    /// Upstream's `RulesFor`: the rules `user` holds in `namespace` (cluster-wide ones included).
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> Rules {
        let mut out = Rules::default();
        self.visit_rules_for(user, namespace, |visit| {
            match visit {
                Visit::Rule(_, rule) => out.rules.push(rule.clone()),
                Visit::Error(e) => out.errors.push(e),
            }
            true
        });
        out
    }
}

/// Upstream's `appliesToUser`. A ServiceAccount subject without a namespace means the binding's
/// own namespace, so it never matches in a ClusterRoleBinding.
pub fn applies_to(user: &UserInfo, subject: &Subject, namespace: &str) -> bool {
    match subject.kind.as_str() {
        "User" => user.name == subject.name,
        "Group" => user.groups.iter().any(|g| g == &subject.name),
        "ServiceAccount" => {
            let ns = if subject.namespace.is_empty() {
                namespace
            } else {
                &subject.namespace
            };
            !ns.is_empty() && is_service_account(&user.name, ns, &subject.name)
        }
        _ => false,
    }
}

/// `system:serviceaccount:NS:NAME`, compared piecewise to avoid building the string.
fn is_service_account(username: &str, namespace: &str, name: &str) -> bool {
    username
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.strip_prefix(namespace))
        .and_then(|rest| rest.strip_prefix(':'))
        == Some(name)
}

/// A shareable RBAC authorizer: requests read an `Arc` snapshot; watch events replace it.
#[derive(Debug, Default)]
pub struct RbacAuthorizer {
    policy: RwLock<Arc<Policy>>,
}

impl RbacAuthorizer {
    pub fn new(policy: Policy) -> Self {
        RbacAuthorizer {
            policy: RwLock::new(Arc::new(policy)),
        }
    }

    /// The current policy; cheap (one `Arc` clone), and unaffected by later updates.
    pub fn snapshot(&self) -> Arc<Policy> {
        self.policy
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn replace(&self, policy: Policy) {
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy);
    }

    /// Changes the policy in place; copies it only if a request still holds the old snapshot.
    pub fn update<T>(&self, change: impl FnOnce(&mut Policy) -> T) -> T {
        let mut guard = self.policy.write().unwrap_or_else(|e| e.into_inner());
        change(Arc::make_mut(&mut guard))
    }

    pub fn decide(&self, attrs: &Attributes) -> RbacDecision {
        self.snapshot().authorize(attrs)
    }
}

#[async_trait]
impl Authorizer for RbacAuthorizer {
    async fn authorize(&self, attrs: &Attributes) -> Decision {
        match self.decide(attrs) {
            RbacDecision::Allow(_) => Decision::Allow,
            RbacDecision::NoOpinion(reason) => Decision::Deny(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rbac::objects::Meta;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            name: name.into(),
            uid: String::new(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            extra: Default::default(),
        }
    }

    fn binding(name: &str, ns: &str, role_ref: RoleRef, subjects: Vec<Subject>) -> Binding {
        Binding {
            metadata: Meta {
                name: name.into(),
                namespace: ns.into(),
                ..Default::default()
            },
            role_ref,
            subjects,
        }
    }

    #[test]
    fn service_account_names() {
        assert!(is_service_account(
            "system:serviceaccount:ns:sa",
            "ns",
            "sa"
        ));
        assert!(!is_service_account(
            "system:serviceaccount:ns:sa2",
            "ns",
            "sa"
        ));
        assert!(!is_service_account(
            "system:serviceaccount:nsx:sa",
            "ns",
            "sa"
        ));
        assert!(!is_service_account("sa", "ns", "sa"));
    }

    #[test]
    fn namespace_less_service_account_subject_uses_binding_namespace() {
        let sa = user("system:serviceaccount:dev:builder", &[]);
        let subject = Subject {
            kind: "ServiceAccount".into(),
            name: "builder".into(),
            ..Default::default()
        };
        assert!(applies_to(&sa, &subject, "dev"));
        assert!(!applies_to(&sa, &subject, "prod"));
        assert!(!applies_to(&sa, &subject, ""));
    }

    #[test]
    fn describers_match_upstream() {
        let b = binding(
            "rb",
            "dev",
            RoleRef::cluster_role("view"),
            vec![Subject::service_account("", "sa")],
        );
        let source = Source {
            binding: &b,
            subject: &b.subjects[0],
            cluster: false,
        };
        assert_eq!(
            source.to_string(),
            r#"RoleBinding "rb/dev" of ClusterRole "view" to ServiceAccount "sa/dev""#
        );
    }

    #[test]
    fn rules_review_status_splits_rules() {
        let rules = Rules {
            rules: vec![
                PolicyRule::resource(&["get"], &[""], &["pods"]).with_names(&["p"]),
                PolicyRule::non_resource(&["get"], &["/api"]),
            ],
            errors: vec!["boom".into()],
        };
        assert_eq!(
            rules.review_status(),
            serde_json::json!({
                "resourceRules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["p"]}],
                "nonResourceRules": [{"verbs": ["get"], "nonResourceURLs": ["/api"]}],
                "incomplete": false,
                "evaluationError": "boom",
            })
        );
    }

    #[test]
    fn missing_roles_are_reported() {
        let mut p = Policy::new();
        p.insert(Object::ClusterRoleBinding(binding(
            "b",
            "",
            RoleRef::cluster_role("gone"),
            vec![Subject::user("alice")],
        )));
        let rules = p.rules_for(&user("alice", &[]), "");
        assert!(rules.rules.is_empty());
        assert_eq!(
            rules.error_text(),
            r#"clusterrole.rbac.authorization.k8s.io "gone" not found"#
        );
        assert_eq!(aggregate(&["a".into(), "b".into(), "a".into()]), "[a, b]");
    }
}
