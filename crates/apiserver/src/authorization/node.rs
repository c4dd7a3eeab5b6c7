//! The Node authorizer, as upstream's (`plugin/pkg/auth/authorizer/node`, with
//! AuthorizeNodeWithSelectors on as in 1.33): a kubelet (`system:node:NAME` in `system:nodes`)
//! reads only the secrets, configmaps, PVCs and PVs of pods bound to its node, creates tokens
//! only for their service accounts, reads only its own Node and those pods, and touches only its
//! own Lease; everything else is upstream's static node rules (the `system:node` ClusterRole).
//! It never denies: anything it does not allow goes on to RBAC, with its reason kept for the 403.
//! Which node may do what to an object it is allowed to write (its own Node, its pods' status)
//! is NodeRestriction admission's business ([`crate::admission::node_restriction`]).

use std::sync::Arc;

use super::node_graph::{NodeGraph, Vertex};
use crate::authn::UserInfo;
use crate::authz::{exact_match, Attributes};
use crate::rbac::rules::{rule_allows, Request};
use crate::rbac::{PolicyRule, RbacDecision};

/// Upstream's `NamespaceNodeLease`.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// Upstream's `NodeIdentity`: Some(name) for a node's user (the name may be empty, which no
/// rule allows), None for everyone else.
pub fn node_identity(user: &UserInfo) -> Option<&str> {
    let name = user.name.strip_prefix("system:node:")?;
    user.groups
        .iter()
        .any(|g| g == "system:nodes")
        .then_some(name)
}

pub struct NodeAuthorizer {
    graph: Arc<NodeGraph>,
    /// Upstream's `NodeRules()`: the `system:node` ClusterRole's rules.
    rules: Vec<PolicyRule>,
}

fn no(reason: impl Into<String>) -> RbacDecision {
    RbacDecision::NoOpinion(reason.into())
}

fn yes() -> RbacDecision {
    RbacDecision::Allow(String::new())
}

impl NodeAuthorizer {
    pub fn new(graph: Arc<NodeGraph>) -> Self {
        NodeAuthorizer {
            graph,
            rules: node_rules(),
        }
    }

    pub fn graph(&self) -> &Arc<NodeGraph> {
        &self.graph
    }

    pub fn decide(&self, attrs: &Attributes) -> RbacDecision {
        let Some(node) = node_identity(&attrs.user) else {
            return no("");
        };
        if node.is_empty() {
            return no(format!("unknown node for user {:?}", attrs.user.name));
        }
        if attrs.resource_request {
            let core = attrs.api_group.is_empty();
            match (core, attrs.api_group.as_str(), attrs.resource.as_str()) {
                (true, _, "secrets") => return self.read_namespaced(node, Vertex::Secret, attrs),
                (true, _, "configmaps") => {
                    return self.read_namespaced(node, Vertex::ConfigMap, attrs)
                }
                (true, _, "persistentvolumeclaims") if attrs.subresource == "status" => {
                    return self.status_update(node, attrs)
                }
                (true, _, "persistentvolumeclaims") => return self.get(node, Vertex::Pvc, attrs),
                (true, _, "persistentvolumes") => return self.get_pv(node, attrs),
                (true, _, "serviceaccounts") => return self.create_token(node, attrs),
                (true, _, "nodes") => return authorize_node(node, attrs),
                (true, _, "pods") => return self.authorize_pod(node, attrs),
                (false, "coordination.k8s.io", "leases") => return authorize_lease(node, attrs),
                _ => {}
            }
        }
        let req = Request::from_attributes(attrs);
        match self.rules.iter().any(|r| rule_allows(r, &req)) {
            true => yes(),
            false => no(""),
        }
    }

    fn related(&self, node: &str, vertex: Vertex, attrs: &Attributes) -> RbacDecision {
        if attrs.name.is_empty() {
            return no("No Object name found");
        }
        if self
            .graph
            .reaches(vertex, &attrs.namespace, &attrs.name, node)
        {
            return yes();
        }
        tracing::debug!(node, kind = vertex.name(), namespace = %attrs.namespace, name = %attrs.name, "NODE DENY: no relationship");
        no(format!(
            "no relationship found between node '{node}' and this object"
        ))
    }

    /// Upstream's `authorizeReadNamespacedObject`.
    fn read_namespaced(&self, node: &str, vertex: Vertex, attrs: &Attributes) -> RbacDecision {
        if !matches!(attrs.verb.as_str(), "get" | "list" | "watch") {
            return no("can only read resources of this type");
        }
        if !attrs.subresource.is_empty() {
            return no("cannot read subresource");
        }
        if attrs.namespace.is_empty() {
            return no("can only read namespaced object of this type");
        }
        self.related(node, vertex, attrs)
    }

    /// Upstream's `authorizeGet`.
    fn get(&self, node: &str, vertex: Vertex, attrs: &Attributes) -> RbacDecision {
        if let Some(refused) = get_only(attrs) {
            return refused;
        }
        self.related(node, vertex, attrs)
    }

    fn get_pv(&self, node: &str, attrs: &Attributes) -> RbacDecision {
        if let Some(refused) = get_only(attrs) {
            return refused;
        }
        if attrs.name.is_empty() {
            return no("No Object name found");
        }
        match self.graph.pv_reaches(&attrs.name, node) {
            true => yes(),
            false => no(format!(
                "no relationship found between node '{node}' and this object"
            )),
        }
    }

    /// Upstream's `authorizeStatusUpdate` (PVC status, for volume expansion).
    fn status_update(&self, node: &str, attrs: &Attributes) -> RbacDecision {
        if !matches!(attrs.verb.as_str(), "update" | "patch") {
            return no("can only get/update/patch this type");
        }
        self.related(node, Vertex::Pvc, attrs)
    }

    /// Upstream's `authorizeCreateToken`.
    fn create_token(&self, node: &str, attrs: &Attributes) -> RbacDecision {
        if attrs.verb != "create" || attrs.name.is_empty() {
            return no("can only create tokens for individual service accounts");
        }
        if attrs.subresource != "token" {
            return no("can only create token subresource of serviceaccount");
        }
        self.related(node, Vertex::ServiceAccount, attrs)
    }

    /// Upstream's `authorizePod`.
    fn authorize_pod(&self, node: &str, attrs: &Attributes) -> RbacDecision {
        match (attrs.subresource.as_str(), attrs.verb.as_str()) {
            ("", "get") => self.get(node, Vertex::Pod, attrs),
            ("", "list" | "watch") => {
                if exact_match(&attrs.field_selector, "spec.nodeName").as_deref() == Some(node) {
                    return yes();
                }
                if !attrs.name.is_empty() {
                    return self.related(node, Vertex::Pod, attrs);
                }
                no("can only list/watch pods with spec.nodeName field selector")
            }
            // Mirror pods; NodeRestriction limits them to the node's own.
            ("", "create" | "delete") => yes(),
            ("status", "update" | "patch") => yes(),
            ("eviction", "create") => yes(),
            _ => no(""),
        }
    }
}

fn get_only(attrs: &Attributes) -> Option<RbacDecision> {
    if attrs.verb != "get" {
        return Some(no("can only get individual resources of this type"));
    }
    if !attrs.subresource.is_empty() {
        return Some(no("cannot get subresource"));
    }
    None
}

/// Upstream's `authorizeNode`: writes are allowed here and limited to the node's own object by
/// NodeRestriction; reads only of its own Node.
fn authorize_node(node: &str, attrs: &Attributes) -> RbacDecision {
    match (attrs.subresource.as_str(), attrs.verb.as_str()) {
        ("", "create" | "update" | "patch") => yes(),
        ("", "get" | "list" | "watch") => match attrs.name.as_str() {
            name if name == node => yes(),
            "" => no(format!(
                "node '{node}' cannot read all nodes, only its own Node object"
            )),
            other => no(format!(
                "node '{node}' cannot read '{other}', only its own Node object"
            )),
        },
        ("status", "update" | "patch") => yes(),
        _ => no(""),
    }
}

/// Upstream's `authorizeLease`.
fn authorize_lease(node: &str, attrs: &Attributes) -> RbacDecision {
    let verb = attrs.verb.as_str();
    if !matches!(verb, "get" | "create" | "update" | "patch" | "delete") {
        return no("can only get, create, update, patch, or delete a node lease");
    }
    if attrs.namespace != NODE_LEASE_NAMESPACE {
        return no(format!(
            "can only access leases in the {NODE_LEASE_NAMESPACE:?} system namespace"
        ));
    }
    // A create's name is in the body: NodeRestriction checks it.
    if verb != "create" && attrs.name != node {
        return no("can only access node lease with the same name as the requesting node");
    }
    yes()
}

/// The `system:node` ClusterRole's rules from the bootstrap policy (upstream's `NodeRules()`,
/// which that role is built from).
fn node_rules() -> Vec<PolicyRule> {
    let roles = match crate::rbac::bootstrap::cluster_roles() {
        Ok(roles) => roles,
        Err(e) => {
            tracing::error!(error = %e, "bootstrap policy unreadable: the Node authorizer has no static rules");
            return Vec::new();
        }
    };
    roles
        .iter()
        .find(|r| r["metadata"]["name"] == "system:node")
        .and_then(|r| serde_json::from_value(r["rules"].clone()).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kubelet(name: &str) -> UserInfo {
        UserInfo {
            name: format!("system:node:{name}"),
            groups: vec!["system:nodes".into(), "system:authenticated".into()],
            ..Default::default()
        }
    }

    fn attrs(user: UserInfo, verb: &str, resource: &str, ns: &str, name: &str) -> Attributes {
        let (group, resource) = resource.split_once(':').unwrap_or(("", resource));
        let (resource, sub) = resource.split_once('/').unwrap_or((resource, ""));
        Attributes {
            user,
            verb: verb.into(),
            resource_request: true,
            api_group: group.into(),
            api_version: "v1".into(),
            resource: resource.into(),
            subresource: sub.into(),
            namespace: ns.into(),
            name: name.into(),
            ..Default::default()
        }
    }

    fn allowed(d: RbacDecision) -> bool {
        matches!(d, RbacDecision::Allow(_))
    }

    #[test]
    fn kubelets_read_what_their_pods_use() {
        let graph = Arc::new(NodeGraph::default());
        graph.apply_pod(
            &json!({"metadata": {"namespace": "ns", "name": "p"},
                    "spec": {"nodeName": "n1", "serviceAccountName": "sa",
                             "volumes": [{"name": "v", "secret": {"secretName": "s"}}]}}),
            false,
        );
        let a = NodeAuthorizer::new(graph);
        let n1 = || kubelet("n1");
        assert!(allowed(a.decide(&attrs(n1(), "get", "secrets", "ns", "s"))));
        assert_eq!(
            a.decide(&attrs(n1(), "get", "secrets", "ns", "other")),
            no("no relationship found between node 'n1' and this object")
        );
        assert!(!allowed(a.decide(&attrs(
            kubelet("n2"),
            "get",
            "secrets",
            "ns",
            "s"
        ))));
        assert_eq!(
            a.decide(&attrs(n1(), "update", "secrets", "ns", "s")),
            no("can only read resources of this type")
        );
        assert!(allowed(a.decide(&attrs(
            n1(),
            "create",
            "serviceaccounts/token",
            "ns",
            "sa"
        ))));
        assert!(!allowed(a.decide(&attrs(
            n1(),
            "create",
            "serviceaccounts/token",
            "ns",
            "x"
        ))));
        assert!(allowed(a.decide(&attrs(n1(), "get", "pods", "ns", "p"))));
        let mut list = attrs(n1(), "list", "pods", "", "");
        assert!(!allowed(a.decide(&list)));
        list.field_selector = "spec.nodeName=n1".into();
        assert!(allowed(a.decide(&list)));
        assert!(allowed(a.decide(&attrs(n1(), "get", "nodes", "", "n1"))));
        assert_eq!(
            a.decide(&attrs(n1(), "get", "nodes", "", "n2")),
            no("node 'n1' cannot read 'n2', only its own Node object")
        );
        assert!(
            allowed(a.decide(&attrs(n1(), "patch", "nodes/status", "", "n2"))),
            "NodeRestriction's job"
        );
        assert!(allowed(a.decide(&attrs(
            n1(),
            "update",
            "coordination.k8s.io:leases",
            "kube-node-lease",
            "n1"
        ))));
        assert!(!allowed(a.decide(&attrs(
            n1(),
            "update",
            "coordination.k8s.io:leases",
            "kube-node-lease",
            "n2"
        ))));
        // Static rules: services are readable, deployments are not.
        assert!(allowed(a.decide(&attrs(n1(), "list", "services", "", ""))));
        assert!(!allowed(a.decide(&attrs(
            n1(),
            "list",
            "apps:deployments",
            "",
            ""
        ))));
        // Not a node: no opinion, no reason.
        let jane = UserInfo {
            name: "jane".into(),
            ..Default::default()
        };
        assert_eq!(a.decide(&attrs(jane, "get", "secrets", "ns", "s")), no(""));
        let nameless = UserInfo {
            name: "system:node:".into(),
            groups: vec!["system:nodes".into()],
            ..Default::default()
        };
        assert_eq!(
            a.decide(&attrs(nameless, "get", "secrets", "ns", "s")),
            no("unknown node for user \"system:node:\"")
        );
    }
}
