//! Upstream's `NodeRestriction` admission plugin (`plugin/pkg/admission/noderestriction`): the
//! Node authorizer lets a kubelet write Nodes, pods' status, mirror pods and leases at all; this
//! limits each kubelet to its own. A node may
//! - create, update and delete only its own Node, never change its taints, set the
//!   `node-restriction.kubernetes.io/` labels or (on update) other `kubernetes.io`/`k8s.io`
//!   labels than the kubelet's own;
//! - create only mirror pods bound to itself and owned by its Node, referencing no service
//!   account, secret, configmap or claim; delete only pods bound to itself; update only the
//!   status of pods bound to itself, and not their labels;
//! - write only its own Lease in `kube-node-lease`;
//! - request tokens only bound to a pod running on itself;
//! - update only the conditions and allocated resources in a PVC's status.

use async_trait::async_trait;
use serde_json::Value;

use super::service_account::{is_mirror_pod, MIRROR_POD_ANNOTATION};
use super::{Attributes, Operation, Plugin};
use crate::authorization::node::{node_identity, NODE_LEASE_NAMESPACE};
use crate::authorization::node_graph::{visit_pod_refs, Vertex};
use crate::registry::Registry;
use crate::resources;
use crate::status::{ApiError, ApiResult};

pub struct NodeRestriction;

#[async_trait]
impl Plugin for NodeRestriction {
    fn name(&self) -> &'static str {
        "NodeRestriction"
    }

    async fn admit(
        &self,
        attrs: &Attributes<'_>,
        object: Option<&mut Value>,
        reg: &Registry,
    ) -> ApiResult<()> {
        let Some(node) = node_identity(attrs.user) else {
            return Ok(());
        };
        let object = object.map(|o| &*o);
        if node.is_empty() {
            let why = format!("could not determine node from user {:?}", attrs.user.name);
            return Err(attrs.forbidden(object, why));
        }
        let check = Check {
            attrs,
            object,
            node,
        };
        match (attrs.res.group, attrs.res.plural) {
            ("", "pods") => match attrs.subresource {
                "" => check.pod(reg).await,
                "status" => check.pod_status(),
                "eviction" => check.pod_eviction(reg).await,
                other => Err(check.refuse(format!(
                    "unexpected pod subresource {other:?}, only 'status' and 'eviction' are allowed"
                ))),
            },
            ("", "nodes") => check.node(),
            ("", "persistentvolumeclaims") => match attrs.subresource {
                "status" => check.pvc_status(),
                _ => Err(check.refuse("may only update PVC status")),
            },
            ("", "serviceaccounts") => check.token(reg).await,
            ("coordination.k8s.io", "leases") => check.lease(),
            _ => Ok(()),
        }
    }
}

struct Check<'a> {
    attrs: &'a Attributes<'a>,
    object: Option<&'a Value>,
    node: &'a str,
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    path.iter()
        .try_fold(v, |v, k| v.get(*k))
        .and_then(Value::as_str)
        .unwrap_or("")
}

impl Check<'_> {
    fn refuse(&self, why: impl std::fmt::Display) -> ApiError {
        self.attrs.forbidden(self.object, why)
    }

    fn unexpected(&self) -> ApiError {
        self.refuse(format!(
            "unexpected operation {:?}",
            self.attrs.operation.as_str()
        ))
    }

    async fn pod(&self, reg: &Registry) -> ApiResult<()> {
        let node = self.node;
        match self.attrs.operation {
            Operation::Create => self.mirror_pod_create(reg).await,
            Operation::Delete => {
                let existing = self.attrs.old.map(|p| str_at(p, &["spec", "nodeName"]));
                if existing != Some(node) {
                    return Err(self.refuse(format!(
                        "node {node:?} can only delete pods with spec.nodeName set to itself"
                    )));
                }
                let _ = reg;
                Ok(())
            }
            op => Err(self.refuse(format!(
                "unexpected operation {:?}, node {node:?} can only create and delete mirror pods",
                op.as_str()
            ))),
        }
    }

    /// Upstream's `admitPodCreate`.
    async fn mirror_pod_create(&self, reg: &Registry) -> ApiResult<()> {
        let node = self.node;
        let Some(pod) = self.object else {
            return Err(self.unexpected());
        };
        if !is_mirror_pod(pod) {
            return Err(self.refuse(format!(
                "pod does not have {MIRROR_POD_ANNOTATION:?} annotation, node {node:?} can only create mirror pods"
            )));
        }
        if str_at(pod, &["spec", "nodeName"]) != node {
            return Err(self.refuse(format!(
                "node {node:?} can only create pods with spec.nodeName set to itself"
            )));
        }
        let owners = pod["metadata"]["ownerReferences"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        match owners.as_slice() {
            [] => {
                return Err(self.refuse(format!(
                    "node {node:?} can only create pods with an owner reference set to itself"
                )))
            }
            [owner] => self.node_owner(owner, reg).await?,
            _ => {
                return Err(self.refuse(format!(
                    "node {node:?} can only create pods with a single owner reference set to itself"
                )))
            }
        }
        if !str_at(pod, &["spec", "serviceAccountName"]).is_empty() {
            return Err(self.refuse(format!(
                "node {node:?} can not create pods that reference a service account"
            )));
        }
        let (mut secrets, mut configmaps, mut claims) = (false, false, false);
        visit_pod_refs(pod, |vertex, _| match vertex {
            Vertex::Secret => secrets = true,
            Vertex::ConfigMap => configmaps = true,
            _ => {}
        });
        for v in pod["spec"]["volumes"].as_array().into_iter().flatten() {
            claims |= v.get("persistentVolumeClaim").is_some();
        }
        let refused = if secrets {
            "secrets"
        } else if configmaps {
            "configmaps"
        } else if claims {
            "persistentvolumeclaims"
        } else {
            return Ok(());
        };
        Err(self.refuse(format!(
            "node {node:?} can not create pods that reference {refused}"
        )))
    }

    /// The mirror pod's one owner must be this node's Node, as controller, not blocking deletion.
    async fn node_owner(&self, owner: &Value, reg: &Registry) -> ApiResult<()> {
        let node = self.node;
        if owner["apiVersion"] != "v1" || owner["kind"] != "Node" || owner["name"] != node {
            return Err(self.refuse(format!(
                "node {node:?} can only create pods with an owner reference set to itself"
            )));
        }
        if owner["controller"].as_bool() != Some(true) {
            return Err(self.refuse(format!(
                "node {node:?} can only create pods with a controller owner reference set to itself"
            )));
        }
        if owner["blockOwnerDeletion"].as_bool() == Some(true) {
            return Err(self.refuse(format!(
                "node {node:?} must not set blockOwnerDeletion on an owner reference"
            )));
        }
        let nodes = resources::find("", "v1", "nodes").ok_or(ApiError::NoSuchResource)?;
        let found = match reg.get(nodes, None, node).await {
            Ok(found) => found,
            Err(e @ ApiError::NotFound(_)) => return Err(e),
            Err(e) => {
                return Err(self.refuse(format!("error looking up node {node} to verify uid: {e}")))
            }
        };
        let uid = str_at(&found, &["metadata", "uid"]);
        let claimed = owner["uid"].as_str().unwrap_or("");
        if claimed != uid {
            return Err(self.refuse(format!(
                "node {node} UID mismatch: expected {claimed} got {uid}"
            )));
        }
        Ok(())
    }

    /// Upstream's `admitPodStatus`.
    fn pod_status(&self) -> ApiResult<()> {
        let node = self.node;
        let (Operation::Update, Some(old), Some(new)) =
            (self.attrs.operation, self.attrs.old, self.object)
        else {
            return Err(self.unexpected());
        };
        if str_at(old, &["spec", "nodeName"]) != node {
            return Err(self.refuse(format!(
                "node {node:?} can only update pod status for pods with spec.nodeName set to itself"
            )));
        }
        if labels(old) != labels(new) {
            return Err(self.refuse(format!(
                "node {node:?} cannot update labels through pod status"
            )));
        }
        Ok(())
    }

    /// Upstream's `admitPodEviction` (krust serves no eviction subresource yet).
    async fn pod_eviction(&self, reg: &Registry) -> ApiResult<()> {
        let node = self.node;
        if self.attrs.operation != Operation::Create {
            return Err(self.unexpected());
        }
        let pods = resources::find("", "v1", "pods").ok_or(ApiError::NoSuchResource)?;
        let ns = Some(self.attrs.namespace).filter(|n| !n.is_empty());
        let pod = reg.get(pods, ns, self.attrs.name).await?;
        if str_at(&pod, &["spec", "nodeName"]) != node {
            return Err(self.refuse(format!(
                "node {node} can only evict pods with spec.nodeName set to itself"
            )));
        }
        Ok(())
    }

    /// Upstream's `admitNode`.
    fn node(&self) -> ApiResult<()> {
        let node = self.node;
        if self.attrs.name != node {
            return Err(self.refuse(format!(
                "node {node:?} is not allowed to modify node {:?}",
                self.attrs.name
            )));
        }
        match (self.attrs.operation, self.object, self.attrs.old) {
            (Operation::Create, Some(new), _) => {
                if !new["spec"]["configSource"].is_null() {
                    return Err(self.refuse(format!(
                        "node {node:?} is not allowed to create pods with a non-nil configSource"
                    )));
                }
                let forbidden = forbidden_labels(&modified_labels(new, None));
                if !forbidden.is_empty() {
                    return Err(self.refuse(format!(
                        "node {node:?} is not allowed to set the following labels: {}",
                        forbidden.join(", ")
                    )));
                }
            }
            (Operation::Update, Some(new), Some(old)) => {
                let source = &new["spec"]["configSource"];
                if !source.is_null() && *source != old["spec"]["configSource"] {
                    return Err(self.refuse(format!(
                        "node {node:?} is not allowed to update configSource to a new non-nil configSource"
                    )));
                }
                if taints(new) != taints(old) {
                    return Err(
                        self.refuse(format!("node {node:?} is not allowed to modify taints"))
                    );
                }
                let forbidden = forbidden_labels(&modified_labels(new, Some(old)));
                if !forbidden.is_empty() {
                    return Err(self.refuse(format!(
                        "is not allowed to modify labels: {}",
                        forbidden.join(", ")
                    )));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Upstream's `admitPVCStatus`: only conditions and allocated resources may change.
    fn pvc_status(&self) -> ApiResult<()> {
        let (Operation::Update, Some(old), Some(new)) =
            (self.attrs.operation, self.attrs.old, self.object)
        else {
            return Err(self.unexpected());
        };
        let comparable = |pvc: &Value| {
            let mut pvc = pvc.clone();
            if let Some(m) = pvc["metadata"].as_object_mut() {
                m.remove("resourceVersion");
            }
            if let Some(s) = pvc["status"].as_object_mut() {
                for field in [
                    "conditions",
                    "allocatedResourceStatuses",
                    "allocatedResources",
                ] {
                    s.remove(field);
                }
            }
            pvc
        };
        if comparable(old) != comparable(new) {
            return Err(self.refuse(format!(
                "node {:?} is not allowed to update fields other than status.conditions and status.allocatedResources",
                self.node
            )));
        }
        Ok(())
    }

    /// Upstream's `admitLease`.
    fn lease(&self) -> ApiResult<()> {
        if self.attrs.namespace != NODE_LEASE_NAMESPACE {
            return Err(self.refuse(format!(
                "can only access leases in the {NODE_LEASE_NAMESPACE:?} system namespace"
            )));
        }
        let name = match (self.attrs.operation, self.object) {
            (Operation::Create, Some(lease)) => str_at(lease, &["metadata", "name"]),
            _ => self.attrs.name,
        };
        if name != self.node {
            return Err(
                self.refuse("can only access node lease with the same name as the requesting node")
            );
        }
        Ok(())
    }

    /// Upstream's `admitServiceAccount`: a node's TokenRequest is bound to a pod on that node.
    async fn token(&self, reg: &Registry) -> ApiResult<()> {
        if self.attrs.operation != Operation::Create || self.attrs.subresource != "token" {
            return Ok(());
        }
        let Some(request) = self.object else {
            return Err(self.unexpected());
        };
        let r = &request["spec"]["boundObjectRef"];
        let name = r["name"].as_str().unwrap_or("");
        if r["apiVersion"] != "v1" || r["kind"] != "Pod" || name.is_empty() {
            return Err(self.refuse("node requested token not bound to a pod"));
        }
        let uid = r["uid"].as_str().unwrap_or("");
        if uid.is_empty() {
            return Err(self.refuse("node requested token with a pod binding without a uid"));
        }
        let pods = resources::find("", "v1", "pods").ok_or(ApiError::NoSuchResource)?;
        let pod = match reg.get(pods, Some(self.attrs.namespace), name).await {
            Ok(pod) => pod,
            Err(e @ ApiError::NotFound(_)) => return Err(e),
            Err(e) => return Err(self.refuse(e)),
        };
        if str_at(&pod, &["metadata", "uid"]) != uid {
            return Err(self.refuse(format!(
                "the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"
            )));
        }
        if str_at(&pod, &["spec", "nodeName"]) != self.node {
            return Err(
                self.refuse("node requested token bound to a pod scheduled on a different node")
            );
        }
        Ok(())
    }
}

fn labels(obj: &Value) -> &Value {
    &obj["metadata"]["labels"]
}

/// Taints, with no taints and an empty list the same.
fn taints(node: &Value) -> Vec<Value> {
    node["spec"]["taints"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Keys whose value differs between `new` and `old` (or that only one has).
fn modified_labels(new: &Value, old: Option<&Value>) -> Vec<String> {
    let empty = serde_json::Map::new();
    let new = labels(new).as_object().unwrap_or(&empty);
    let old = old.and_then(|o| labels(o).as_object()).unwrap_or(&empty);
    let mut keys: Vec<String> = new
        .iter()
        .filter(|(k, v)| old.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
        .chain(old.keys().filter(|k| !new.contains_key(*k)).cloned())
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// The labels upstream's kubelet sets itself (`kubeletapis.IsKubeletLabel`).
const KUBELET_LABELS: &[&str] = &[
    "kubernetes.io/hostname",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "kubernetes.io/os",
    "kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/arch",
];

fn label_namespace(key: &str) -> &str {
    key.split_once('/').map(|(ns, _)| ns).unwrap_or("")
}

fn in_domain(namespace: &str, domain: &str) -> bool {
    namespace == domain || namespace.ends_with(&format!(".{domain}"))
}

fn is_kubelet_label(key: &str) -> bool {
    let ns = label_namespace(key);
    KUBELET_LABELS.contains(&key)
        || in_domain(ns, "kubelet.kubernetes.io")
        || in_domain(ns, "node.kubernetes.io")
}

/// Upstream's `getForbiddenLabels`, sorted as its `sets.String.List()`.
fn forbidden_labels(modified: &[String]) -> Vec<String> {
    modified
        .iter()
        .filter(|key| {
            let ns = label_namespace(key);
            let restricted = in_domain(ns, "node-restriction.kubernetes.io");
            let kubernetes = in_domain(ns, "kubernetes.io") || in_domain(ns, "k8s.io");
            restricted || (kubernetes && !is_kubelet_label(key))
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn protected_labels() {
        let old = json!({"metadata": {"labels": {"kubernetes.io/hostname": "n1", "team": "a"}}});
        let new = json!({"metadata": {"labels": {
            "kubernetes.io/hostname": "n2", "team": "b",
            "node-restriction.kubernetes.io/secure": "yes",
            "example.k8s.io/x": "1",
            "node.kubernetes.io/instance-type": "big",
            "foo.kubelet.kubernetes.io/y": "1",
        }}});
        let modified = modified_labels(&new, Some(&old));
        assert_eq!(
            forbidden_labels(&modified),
            ["example.k8s.io/x", "node-restriction.kubernetes.io/secure"]
        );
        assert!(modified_labels(&old, Some(&old)).is_empty());
        assert_eq!(
            modified_labels(&json!({}), Some(&old)),
            ["kubernetes.io/hostname", "team"]
        );
    }
}
