//! The rbac.authorization.k8s.io/v1 objects, typed only as far as RBAC needs them.
//!
//! The API server stores objects as JSON; these structs are read from (and written back into)
//! that JSON with serde, so fields RBAC does not care about (uid, resourceVersion, managedFields)
//! stay in the stored `Value` and are never lost by a round trip through this module.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::RbacError;

/// The API group of the RBAC kinds, also the only valid `roleRef.apiGroup`.
pub const GROUP: &str = "rbac.authorization.k8s.io";
/// Annotation that lets an admin opt a bootstrap object out of reconciliation (`"false"`).
pub const AUTOUPDATE_ANNOTATION: &str = "rbac.authorization.kubernetes.io/autoupdate";
/// Label upstream puts on every bootstrap object.
pub const BOOTSTRAPPING_LABEL: &str = "kubernetes.io/bootstrapping";
/// `*`: matches every verb, group, resource or non-resource URL.
pub const ALL: &str = "*";

/// Reads `null` as the type's default: upstream serializes empty rule lists as `rules: null`.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Upstream's `rbacv1.PolicyRule`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    #[serde(default, deserialize_with = "null_as_default")]
    pub verbs: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub api_groups: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub resources: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub resource_names: Vec<String>,
    #[serde(
        default,
        rename = "nonResourceURLs",
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub non_resource_urls: Vec<String>,
}

impl PolicyRule {
    /// A resource rule; handy in tests and for the escalation checks' synthetic rules.
    pub fn resource(verbs: &[&str], groups: &[&str], resources: &[&str]) -> Self {
        PolicyRule {
            verbs: strings(verbs),
            api_groups: strings(groups),
            resources: strings(resources),
            ..Default::default()
        }
    }

    /// A non-resource rule (`/healthz`, `/api/*`).
    pub fn non_resource(verbs: &[&str], urls: &[&str]) -> Self {
        PolicyRule {
            verbs: strings(verbs),
            non_resource_urls: strings(urls),
            ..Default::default()
        }
    }

    /// The same rule restricted to the given object names.
    pub fn with_names(mut self, names: &[&str]) -> Self {
        self.resource_names = strings(names);
        self
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The part of `ObjectMeta` RBAC reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub annotations: BTreeMap<String, String>,
}

/// A `metav1.LabelSelector` as written in an aggregation rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub match_labels: BTreeMap<String, String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub match_expressions: Vec<SelectorRequirement>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelectorRequirement {
    pub key: String,
    pub operator: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AggregationRule {
    #[serde(default, deserialize_with = "null_as_default")]
    pub cluster_role_selectors: Vec<LabelSelector>,
}

/// A Role or a ClusterRole: a named list of rules (ClusterRoles may also aggregate others).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Role {
    #[serde(default)]
    pub metadata: Meta,
    #[serde(default, deserialize_with = "null_as_default")]
    pub rules: Vec<PolicyRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregation_rule: Option<AggregationRule>,
}

/// Upstream's `rbacv1.Subject`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subject {
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_group: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

impl Subject {
    pub fn user(name: &str) -> Self {
        Self::rbac("User", name)
    }

    pub fn group(name: &str) -> Self {
        Self::rbac("Group", name)
    }

    pub fn service_account(namespace: &str, name: &str) -> Self {
        Subject {
            kind: "ServiceAccount".into(),
            api_group: String::new(),
            name: name.into(),
            namespace: namespace.into(),
        }
    }

    fn rbac(kind: &str, name: &str) -> Self {
        Subject {
            kind: kind.into(),
            api_group: GROUP.into(),
            name: name.into(),
            namespace: String::new(),
        }
    }
}

/// Upstream's `rbacv1.RoleRef`: kind is `Role` or `ClusterRole`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleRef {
    #[serde(default)]
    pub api_group: String,
    pub kind: String,
    pub name: String,
}

impl RoleRef {
    pub fn cluster_role(name: &str) -> Self {
        RoleRef {
            api_group: GROUP.into(),
            kind: "ClusterRole".into(),
            name: name.into(),
        }
    }

    pub fn role(name: &str) -> Self {
        RoleRef {
            api_group: GROUP.into(),
            kind: "Role".into(),
            name: name.into(),
        }
    }
}

/// A RoleBinding or a ClusterRoleBinding.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Binding {
    #[serde(default)]
    pub metadata: Meta,
    pub role_ref: RoleRef,
    #[serde(default, deserialize_with = "null_as_default")]
    pub subjects: Vec<Subject>,
}

/// The four RBAC kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    ClusterRole,
    Role,
    ClusterRoleBinding,
    RoleBinding,
}

impl Kind {
    pub fn from_name(kind: &str) -> Option<Kind> {
        match kind {
            "ClusterRole" => Some(Kind::ClusterRole),
            "Role" => Some(Kind::Role),
            "ClusterRoleBinding" => Some(Kind::ClusterRoleBinding),
            "RoleBinding" => Some(Kind::RoleBinding),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::ClusterRole => "ClusterRole",
            Kind::Role => "Role",
            Kind::ClusterRoleBinding => "ClusterRoleBinding",
            Kind::RoleBinding => "RoleBinding",
        }
    }

    /// The REST resource (`clusterroles`), as used in Forbidden messages and `bind` checks.
    pub fn resource(self) -> &'static str {
        match self {
            Kind::ClusterRole => "clusterroles",
            Kind::Role => "roles",
            Kind::ClusterRoleBinding => "clusterrolebindings",
            Kind::RoleBinding => "rolebindings",
        }
    }

    pub fn is_binding(self) -> bool {
        matches!(self, Kind::ClusterRoleBinding | Kind::RoleBinding)
    }
}

/// One RBAC object read from its JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    ClusterRole(Role),
    Role(Role),
    ClusterRoleBinding(Binding),
    RoleBinding(Binding),
}

impl Object {
    /// Reads any of the four kinds, dispatching on `kind`.
    pub fn from_value(value: &Value) -> Result<Object, RbacError> {
        let kind_name = value
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind =
            Kind::from_name(kind_name).ok_or_else(|| RbacError::NotRbac(kind_name.to_string()))?;
        Ok(match kind {
            Kind::ClusterRole => Object::ClusterRole(decode(value)?),
            Kind::Role => Object::Role(decode(value)?),
            Kind::ClusterRoleBinding => Object::ClusterRoleBinding(decode(value)?),
            Kind::RoleBinding => Object::RoleBinding(decode(value)?),
        })
    }

    pub fn kind(&self) -> Kind {
        match self {
            Object::ClusterRole(_) => Kind::ClusterRole,
            Object::Role(_) => Kind::Role,
            Object::ClusterRoleBinding(_) => Kind::ClusterRoleBinding,
            Object::RoleBinding(_) => Kind::RoleBinding,
        }
    }

    pub fn meta(&self) -> &Meta {
        match self {
            Object::ClusterRole(r) | Object::Role(r) => &r.metadata,
            Object::ClusterRoleBinding(b) | Object::RoleBinding(b) => &b.metadata,
        }
    }
}

/// Reads one typed object out of its JSON.
pub fn decode<T: serde::de::DeserializeOwned>(value: &Value) -> Result<T, RbacError> {
    T::deserialize(value).map_err(|e| RbacError::Decode(e.to_string()))
}
