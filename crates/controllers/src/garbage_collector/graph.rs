//! The dependency graph (upstream's `uidToNode`): every observed object that owns or is owned,
//! by uid, with its owners and dependents, and the work each change calls for. Owners named by
//! a reference but not (yet) observed are virtual nodes, to be verified by a live read.

use std::collections::{BTreeSet, HashMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

pub const ORPHAN: &str = "orphan";
pub const FOREGROUND: &str = "foregroundDeletion";

/// Which object a node is: enough to read, patch and delete it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub api_version: String,
    pub kind: String,
    /// For a virtual owner: the namespace of the dependent that named it.
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
}

#[derive(Clone, Debug)]
pub struct Node {
    pub identity: Identity,
    pub owners: Vec<OwnerReference>,
    pub dependents: BTreeSet<String>,
    /// It has a deletionTimestamp.
    pub deleting: bool,
    /// Deleting in the foreground: it waits for its blocking dependents.
    pub deleting_dependents: bool,
    /// False for an owner known only from a dependent's reference.
    pub observed: bool,
}

/// What the graph asks the workers to do.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Work {
    /// Upstream's attemptToDelete: check the object's owners (or, virtual, that it exists).
    Delete(String),
    /// Upstream's attemptToOrphan: free the dependents, then drop the `orphan` finalizer.
    Orphan(String),
}

#[derive(Default)]
pub struct Graph {
    nodes: HashMap<String, Node>,
}

impl Graph {
    pub fn node(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// The observed nodes of one kind, for noticing what a relist no longer has.
    pub fn observed_of(&self, api_version: &str, kind: &str) -> Vec<String> {
        self.nodes
            .values()
            .filter(|n| {
                n.observed && n.identity.api_version == api_version && n.identity.kind == kind
            })
            .map(|n| n.identity.uid.clone())
            .collect()
    }

    /// Dependents whose reference to `uid` blocks its deletion (`blockOwnerDeletion`).
    pub fn blocking_dependents(&self, uid: &str) -> Vec<Node> {
        self.dependents(uid)
            .into_iter()
            .filter(|d| {
                d.owners
                    .iter()
                    .any(|r| r.uid == uid && r.block_owner_deletion == Some(true))
            })
            .collect()
    }

    pub fn dependents(&self, uid: &str) -> Vec<Node> {
        self.nodes
            .get(uid)
            .map(|n| {
                n.dependents
                    .iter()
                    .filter_map(|d| self.nodes.get(d).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// An object was added or changed (upstream's processGraphChanges for add/update).
    pub fn apply(&mut self, identity: Identity, meta: &ObjectMeta) -> Vec<Work> {
        let uid = identity.uid.clone();
        let owners = meta.owner_references.clone().unwrap_or_default();
        let finalizers = meta.finalizers.clone().unwrap_or_default();
        let deleting = meta.deletion_timestamp.is_some();
        let foreground = deleting && finalizers.iter().any(|f| f == FOREGROUND);
        let old = self.nodes.get(&uid).cloned();
        let old_owners = old
            .as_ref()
            .filter(|n| n.observed)
            .map(|n| n.owners.clone())
            .unwrap_or_default();
        let dependents = old.map(|n| n.dependents).unwrap_or_default();
        let mut work = Vec::new();
        for gone in old_owners
            .iter()
            .filter(|r| !owners.iter().any(|o| o.uid == r.uid))
        {
            work.extend(self.unlink(&gone.uid, &uid));
        }
        for added in owners
            .iter()
            .filter(|r| !old_owners.iter().any(|o| o.uid == r.uid))
        {
            let owner = self.nodes.entry(added.uid.clone()).or_insert_with(|| Node {
                identity: Identity {
                    api_version: added.api_version.clone(),
                    kind: added.kind.clone(),
                    namespace: identity.namespace.clone(),
                    name: added.name.clone(),
                    uid: added.uid.clone(),
                },
                owners: Vec::new(),
                dependents: BTreeSet::new(),
                deleting: false,
                deleting_dependents: false,
                observed: false,
            });
            owner.dependents.insert(uid.clone());
            if !owner.observed {
                work.push(Work::Delete(added.uid.clone()));
            }
            if owner.deleting_dependents {
                work.push(Work::Delete(uid.clone()));
            }
        }
        let node = Node {
            identity,
            owners,
            dependents,
            deleting,
            deleting_dependents: foreground,
            observed: true,
        };
        if deleting && finalizers.iter().any(|f| f == ORPHAN) {
            work.push(Work::Orphan(uid.clone()));
        }
        if foreground {
            work.push(Work::Delete(uid.clone()));
            work.extend(node.dependents.iter().cloned().map(Work::Delete));
        }
        self.nodes.insert(uid, node);
        work
    }

    /// An object is gone (a watch's delete, or a live read that found it absent): its
    /// dependents are checked, and owners waiting for it are looked at again.
    pub fn remove(&mut self, uid: &str) -> Vec<Work> {
        let Some(node) = self.nodes.remove(uid) else {
            return Vec::new();
        };
        let mut work: Vec<Work> = node.dependents.iter().cloned().map(Work::Delete).collect();
        if node.observed {
            for owner in &node.owners {
                work.extend(self.unlink(&owner.uid, uid));
            }
        }
        // Dependents still name it; keep it as a virtual owner so their links stay known.
        let dependents: BTreeSet<String> = node
            .dependents
            .into_iter()
            .filter(|d| self.nodes.contains_key(d))
            .collect();
        if !dependents.is_empty() {
            self.nodes.insert(
                uid.to_string(),
                Node {
                    dependents,
                    observed: false,
                    deleting: false,
                    deleting_dependents: false,
                    owners: Vec::new(),
                    ..node_placeholder(&node.identity)
                },
            );
        }
        work
    }

    /// Drops `dependent` from `owner`'s dependents; an owner waiting for its dependents is looked
    /// at again, a virtual owner nobody names any more is forgotten.
    fn unlink(&mut self, owner: &str, dependent: &str) -> Vec<Work> {
        let Some(node) = self.nodes.get_mut(owner) else {
            return Vec::new();
        };
        node.dependents.remove(dependent);
        if !node.observed && node.dependents.is_empty() {
            self.nodes.remove(owner);
            return Vec::new();
        }
        if node.deleting_dependents {
            return vec![Work::Delete(owner.to_string())];
        }
        Vec::new()
    }
}

fn node_placeholder(identity: &Identity) -> Node {
    Node {
        identity: identity.clone(),
        owners: Vec::new(),
        dependents: BTreeSet::new(),
        deleting: false,
        deleting_dependents: false,
        observed: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(uid: &str) -> Identity {
        Identity {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: Some("ns".into()),
            name: uid.into(),
            uid: uid.into(),
        }
    }

    fn meta(owners: &[&str], deleting: bool, finalizers: &[&str]) -> ObjectMeta {
        ObjectMeta {
            owner_references: Some(
                owners
                    .iter()
                    .map(|o| OwnerReference {
                        api_version: "v1".into(),
                        kind: "ConfigMap".into(),
                        name: o.to_string(),
                        uid: o.to_string(),
                        block_owner_deletion: Some(true),
                        ..Default::default()
                    })
                    .collect(),
            ),
            deletion_timestamp: deleting.then(|| {
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::now(),
                )
            }),
            finalizers: Some(finalizers.iter().map(|f| f.to_string()).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn links_owners_and_dependents_and_asks_for_work() {
        let mut g = Graph::default();
        // A dependent seen before its owner: the owner is virtual and is to be verified.
        assert_eq!(
            g.apply(id("child"), &meta(&["owner"], false, &[])),
            vec![Work::Delete("owner".into())]
        );
        assert!(!g.node("owner").unwrap().observed);
        assert!(g.apply(id("owner"), &meta(&[], false, &[])).is_empty());
        assert_eq!(g.dependents("owner").len(), 1);
        // Foreground deletion of the owner: it and its dependents are looked at.
        let work = g.apply(id("owner"), &meta(&[], true, &[FOREGROUND]));
        assert!(
            work.contains(&Work::Delete("owner".into()))
                && work.contains(&Work::Delete("child".into()))
        );
        assert_eq!(g.blocking_dependents("owner").len(), 1);
        // The dependent goes: the waiting owner is looked at again.
        assert_eq!(g.remove("child"), vec![Work::Delete("owner".into())]);
        assert!(g.blocking_dependents("owner").is_empty());
        // Orphaning.
        g.apply(id("c2"), &meta(&["owner"], false, &[]));
        let work = g.apply(id("owner"), &meta(&[], true, &[ORPHAN]));
        assert_eq!(work, vec![Work::Orphan("owner".into())]);
        // An owner going away asks for its dependents to be checked, and stays virtual for them.
        assert_eq!(g.remove("owner"), vec![Work::Delete("c2".into())]);
        assert!(!g.node("owner").unwrap().observed);
        g.remove("c2");
        assert!(g.node("owner").is_none());
    }
}
