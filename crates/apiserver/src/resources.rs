//! The table of served resources. Everything generic (routing, storage keys, discovery, errors)
//! is driven by these rows; adding a built-in resource is adding a row.
//!
//! The rows a server serves are a runtime value ([`ResourceTable`]): the built-in rows below, plus
//! the rows the CRD controller adds and removes for each established CustomResourceDefinition
//! (one row per served version). Both kinds of rows are the same [`Resource`] and go through the
//! same routing, registry, discovery and watch code; a custom row carries its schema, printer
//! columns and scale paths in [`Resource::custom`].

use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};

use serde_json::Value;

use crate::kinds::{self, Cause};

/// One served resource, as discovery describes it.
#[derive(Debug, Clone)]
pub struct Resource {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    /// Served subresources: `status`, `scale`, `binding`.
    pub subresources: &'static [&'static str],
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// The path segment under `/registry/` upstream stores this resource at (etcdctl users and
    /// backups see the same layout); resources sharing it share objects.
    pub storage: &'static str,
    /// Upstream answers DELETE with the object rather than a Success Status for these.
    pub returns_deleted_object: bool,
    /// Upstream sets metadata.generation and bumps it on every spec change for these.
    pub generation: bool,
    /// Create-only and never stored: the authentication and authorization reviews, answered by
    /// the server from the request itself.
    pub review: bool,
    /// A finalizer the first DELETE adds (with deletionTimestamp) before the object goes, so a
    /// controller can clean up first: CRDs get `customresourcecleanup.apiextensions.k8s.io`.
    pub delete_finalizer: Option<&'static str>,
    /// What a custom resource's row knows beyond the generic columns: its CRD's schema,
    /// printer columns and scale paths for this version. None for built-in resources.
    pub custom: Option<Arc<crate::crd::Custom>>,
}

const ALL: &[&str] = &["all"];
const NONE: &[&str] = &[];

macro_rules! resource {
    ($group:expr, $version:expr, $kind:expr, $plural:expr, $singular:expr, $namespaced:expr,
     sub $sub:expr, short $short:expr, cat $cat:expr, storage $storage:expr) => {
        Resource {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            singular: $singular,
            namespaced: $namespaced,
            subresources: $sub,
            short_names: $short,
            categories: $cat,
            storage: $storage,
            returns_deleted_object: false,
            generation: false,
            review: false,
            delete_finalizer: None,
            custom: None,
        }
    };
}

/// Upstream's discovery order: core, then groups in the order the API server registers them.
pub static RESOURCES: &[Resource] = &[
    Resource {
        returns_deleted_object: true,
        ..resource!("", "v1", "Namespace", "namespaces", "namespace", false, sub &["status", "finalize"], short &["ns"], cat NONE, storage "namespaces")
    },
    Resource {
        returns_deleted_object: true,
        generation: true,
        ..resource!("", "v1", "Pod", "pods", "pod", true, sub &["status", "binding", "eviction", "log", "exec", "attach", "portforward"], short &["po"], cat ALL, storage "pods")
    },
    Resource {
        returns_deleted_object: true,
        ..resource!("", "v1", "Service", "services", "service", true, sub &["status"], short &["svc"], cat ALL, storage "services/specs")
    },
    resource!("", "v1", "Endpoints", "endpoints", "endpoints", true, sub NONE, short &["ep"], cat NONE, storage "services/endpoints"),
    resource!("", "v1", "ConfigMap", "configmaps", "configmap", true, sub NONE, short &["cm"], cat NONE, storage "configmaps"),
    resource!("", "v1", "Secret", "secrets", "secret", true, sub NONE, short NONE, cat NONE, storage "secrets"),
    resource!("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", true, sub &["token"], short &["sa"], cat NONE, storage "serviceaccounts"),
    resource!("", "v1", "Node", "nodes", "node", false, sub &["status", "proxy"], short &["no"], cat NONE, storage "minions"),
    resource!("", "v1", "Event", "events", "event", true, sub NONE, short &["ev"], cat NONE, storage "events"),
    resource!("", "v1", "LimitRange", "limitranges", "limitrange", true, sub NONE, short &["limits"], cat NONE, storage "limitranges"),
    resource!("", "v1", "ResourceQuota", "resourcequotas", "resourcequota", true, sub &["status"], short &["quota"], cat NONE, storage "resourcequotas"),
    resource!("", "v1", "PersistentVolume", "persistentvolumes", "persistentvolume", false, sub &["status"], short &["pv"], cat NONE, storage "persistentvolumes"),
    resource!("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", "persistentvolumeclaim", true, sub &["status"], short &["pvc"], cat NONE, storage "persistentvolumeclaims"),
    Resource {
        generation: true,
        ..resource!("apps", "v1", "Deployment", "deployments", "deployment", true, sub &["status", "scale"], short &["deploy"], cat ALL, storage "deployments")
    },
    Resource {
        generation: true,
        ..resource!("apps", "v1", "ReplicaSet", "replicasets", "replicaset", true, sub &["status", "scale"], short &["rs"], cat ALL, storage "replicasets")
    },
    Resource {
        generation: true,
        ..resource!("apps", "v1", "DaemonSet", "daemonsets", "daemonset", true, sub &["status"], short &["ds"], cat ALL, storage "daemonsets")
    },
    Resource {
        generation: true,
        ..resource!("apps", "v1", "StatefulSet", "statefulsets", "statefulset", true, sub &["status", "scale"], short &["sts"], cat ALL, storage "statefulsets")
    },
    resource!("apps", "v1", "ControllerRevision", "controllerrevisions", "controllerrevision", true, sub NONE, short NONE, cat NONE, storage "controllerrevisions"),
    resource!("events.k8s.io", "v1", "Event", "events", "event", true, sub NONE, short &["ev"], cat NONE, storage "events"),
    Resource {
        review: true,
        ..resource!("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", "tokenreview", false, sub NONE, short NONE, cat NONE, storage "tokenreviews")
    },
    Resource {
        review: true,
        ..resource!("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", "selfsubjectreview", false, sub NONE, short NONE, cat NONE, storage "selfsubjectreviews")
    },
    Resource {
        review: true,
        ..resource!("authorization.k8s.io", "v1", "LocalSubjectAccessReview", "localsubjectaccessreviews", "localsubjectaccessreview", true, sub NONE, short NONE, cat NONE, storage "localsubjectaccessreviews")
    },
    Resource {
        review: true,
        ..resource!("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", "selfsubjectaccessreview", false, sub NONE, short NONE, cat NONE, storage "selfsubjectaccessreviews")
    },
    Resource {
        review: true,
        ..resource!("authorization.k8s.io", "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews", "selfsubjectrulesreview", false, sub NONE, short NONE, cat NONE, storage "selfsubjectrulesreviews")
    },
    Resource {
        review: true,
        ..resource!("authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews", "subjectaccessreview", false, sub NONE, short NONE, cat NONE, storage "subjectaccessreviews")
    },
    Resource {
        generation: true,
        ..resource!("batch", "v1", "Job", "jobs", "job", true, sub &["status"], short NONE, cat ALL, storage "jobs")
    },
    Resource {
        generation: true,
        ..resource!("batch", "v1", "CronJob", "cronjobs", "cronjob", true, sub &["status"], short &["cj"], cat ALL, storage "cronjobs")
    },
    resource!("certificates.k8s.io", "v1", "CertificateSigningRequest", "certificatesigningrequests", "certificatesigningrequest", false, sub &["status", "approval"], short &["csr"], cat NONE, storage "certificatesigningrequests"),
    Resource {
        generation: true,
        ..resource!("networking.k8s.io", "v1", "IngressClass", "ingressclasses", "ingressclass", false, sub NONE, short NONE, cat NONE, storage "ingressclasses")
    },
    Resource {
        generation: true,
        ..resource!("networking.k8s.io", "v1", "Ingress", "ingresses", "ingress", true, sub &["status"], short &["ing"], cat NONE, storage "ingress")
    },
    Resource {
        generation: true,
        ..resource!("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", "networkpolicy", true, sub NONE, short &["netpol"], cat NONE, storage "networkpolicies")
    },
    Resource {
        generation: true,
        ..resource!("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", "poddisruptionbudget", true, sub &["status"], short &["pdb"], cat NONE, storage "poddisruptionbudgets")
    },
    resource!("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", "clusterrolebinding", false, sub NONE, short NONE, cat NONE, storage "clusterrolebindings"),
    resource!("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", "clusterrole", false, sub NONE, short NONE, cat NONE, storage "clusterroles"),
    resource!("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", "rolebinding", true, sub NONE, short NONE, cat NONE, storage "rolebindings"),
    resource!("rbac.authorization.k8s.io", "v1", "Role", "roles", "role", true, sub NONE, short NONE, cat NONE, storage "roles"),
    resource!("storage.k8s.io", "v1", "StorageClass", "storageclasses", "storageclass", false, sub NONE, short &["sc"], cat NONE, storage "storageclasses"),
    Resource {
        generation: true,
        delete_finalizer: Some(crate::crd::CLEANUP_FINALIZER),
        ..resource!("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", "customresourcedefinition", false, sub &["status"], short &["crd", "crds"], cat &["api-extensions"], storage "apiextensions.k8s.io/customresourcedefinitions")
    },
    resource!("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", "priorityclass", false, sub NONE, short &["pc"], cat NONE, storage "priorityclasses"),
    resource!("coordination.k8s.io", "v1", "Lease", "leases", "lease", true, sub NONE, short NONE, cat NONE, storage "leases"),
    resource!("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", true, sub NONE, short NONE, cat NONE, storage "endpointslices"),
];

impl Resource {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The verbs discovery advertises for the resource itself.
    pub fn verbs(&self) -> &'static [&'static str] {
        if self.review {
            return &["create"];
        }
        if self.plural == "namespaces" {
            &[
                "create", "delete", "get", "list", "patch", "update", "watch",
            ]
        } else {
            &[
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ]
        }
    }

    /// `/registry/pods/` — every object of the resource lives under this prefix.
    pub fn prefix(&self) -> String {
        format!("/registry/{}/", self.storage)
    }

    /// The prefix of one namespace's objects, or of all objects when `ns` is None.
    pub fn scope_prefix(&self, ns: Option<&str>) -> String {
        match ns {
            Some(ns) if self.namespaced => format!("{}{ns}/", self.prefix()),
            _ => self.prefix(),
        }
    }

    pub fn key(&self, ns: Option<&str>, name: &str) -> String {
        format!("{}{name}", self.scope_prefix(ns))
    }

    pub fn has_subresource(&self, sub: &str) -> bool {
        self.subresources.contains(&sub)
    }

    /// `WidgetList`: a custom resource's list kind is its CRD's, a built-in's is kind + List.
    pub fn list_kind(&self) -> String {
        match &self.custom {
            Some(c) => c.list_kind.to_string(),
            None => format!("{}List", self.kind),
        }
    }

    /// Defaulting before validation, on create and update: upstream's per-kind defaults for a
    /// built-in, pruning and the schema's defaults for a custom resource.
    pub fn apply_defaults(&self, obj: &mut Value) {
        match &self.custom {
            Some(c) => c.prune_and_default(obj),
            None if self.is_crd() => crate::crd::definition::apply_defaults(obj),
            None => kinds::apply_defaults(self.group, self.kind, obj),
        }
    }

    /// The kind's own validation (after `apply_defaults`); `old` is the stored object on update.
    pub fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        match &self.custom {
            Some(c) => c.validate(obj, old),
            None if self.is_crd() => crate::crd::definition::validate(obj, old),
            None => kinds::validate(self.group, self.kind, obj, old),
        }
    }

    /// apiextensions.k8s.io CustomResourceDefinition itself.
    pub fn is_crd(&self) -> bool {
        self.group == "apiextensions.k8s.io" && self.kind == "CustomResourceDefinition"
    }
}

/// The resources one server serves: the built-in rows, then the custom ones in the order their
/// CRDs were established. Readers take a snapshot (one `Arc` clone); the CRD controller swaps in
/// a new list, so a request never sees a half-updated table.
pub struct ResourceTable {
    rows: RwLock<Arc<Vec<Arc<Resource>>>>,
}

impl Default for ResourceTable {
    fn default() -> Self {
        ResourceTable {
            rows: RwLock::new(Arc::new(RESOURCES.iter().cloned().map(Arc::new).collect())),
        }
    }
}

impl ResourceTable {
    pub fn snapshot(&self) -> Arc<Vec<Arc<Resource>>> {
        self.rows.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<Arc<Resource>> {
        self.snapshot()
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
            .cloned()
    }

    /// Replaces the rows a CRD owns (none when `rows` is empty).
    pub fn set_custom(&self, crd: &str, rows: Vec<Resource>) {
        let mut guard = self.rows.write().unwrap_or_else(|e| e.into_inner());
        let mut next: Vec<Arc<Resource>> = guard
            .iter()
            .filter(|r| r.custom.as_ref().is_none_or(|c| c.crd_name != crd))
            .cloned()
            .collect();
        next.extend(rows.into_iter().map(Arc::new));
        *guard = Arc::new(next);
    }

    /// The served groups (core excluded) in discovery order, each with its versions, the
    /// preferred first (custom groups order versions as upstream's version priority).
    pub fn groups(&self) -> Vec<(&'static str, Vec<&'static str>)> {
        let mut out = group_versions(self.snapshot().iter().map(|r| &**r));
        for (_, versions) in &mut out {
            versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        }
        out
    }

    pub fn in_group_version(&self, group: &str, version: &str) -> Vec<Arc<Resource>> {
        self.snapshot()
            .iter()
            .filter(|r| r.group == group && r.version == version)
            .cloned()
            .collect()
    }
}

/// Upstream's kube-aware version order: GA > beta > alpha, higher numbers first, anything not
/// shaped like `v1beta2` last (alphabetically, so compared reversed).
pub fn version_priority(v: &str) -> (u8, u64, u64, std::cmp::Reverse<String>) {
    let parse = || -> Option<(u8, u64, u64)> {
        let rest = v.strip_prefix('v')?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let major: u64 = digits.parse().ok()?;
        let tail = &rest[digits.len()..];
        if tail.is_empty() {
            return Some((3, major, 0));
        }
        let (level, n) = if let Some(n) = tail.strip_prefix("beta") {
            (2, n)
        } else {
            (1, tail.strip_prefix("alpha")?)
        };
        Some((level, major, n.parse().ok()?))
    };
    match parse() {
        Some((level, major, minor)) => (level, major, minor, std::cmp::Reverse(String::new())),
        None => (0, 0, 0, std::cmp::Reverse(v.to_string())),
    }
}

fn group_versions<'a>(
    rows: impl Iterator<Item = &'a Resource>,
) -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&str, Vec<&str>)> = Vec::new();
    for r in rows.filter(|r| !r.group.is_empty()) {
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) if !versions.contains(&r.version) => versions.push(r.version),
            Some(_) => {}
            None => out.push((r.group, vec![r.version])),
        }
    }
    out
}

/// A `&'static str` for a name that arrives at run time (a CRD's group, kinds, plural, ...),
/// so custom rows share the built-in rows' type. Each distinct string is kept once for the
/// process's life: the set is bounded by the names CRDs ever used, not by how often they change.
pub fn intern(s: &str) -> &'static str {
    static NAMES: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut guard = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    let set = guard.get_or_insert_with(HashSet::new);
    if let Some(found) = set.get(s) {
        return found;
    }
    let leaked: &'static str = Box::leak(s.to_string().into_boxed_str());
    set.insert(leaked);
    leaked
}

/// As [`intern`], for a list of names (short names, categories, subresources).
pub fn intern_list(items: &[String]) -> &'static [&'static str] {
    static LISTS: Mutex<Option<HashSet<&'static [&'static str]>>> = Mutex::new(None);
    let wanted: Vec<&'static str> = items.iter().map(|s| intern(s)).collect();
    let mut guard = LISTS.lock().unwrap_or_else(|e| e.into_inner());
    let set = guard.get_or_insert_with(HashSet::new);
    if let Some(found) = set.get(wanted.as_slice()) {
        return found;
    }
    let leaked: &'static [&'static str] = Box::leak(wanted.into_boxed_slice());
    set.insert(leaked);
    leaked
}

/// The verbs discovery advertises for a subresource.
pub fn subresource_verbs(sub: &str) -> &'static [&'static str] {
    match sub {
        "binding" | "token" | "eviction" => &["create"],
        "finalize" => &["update"],
        "log" => &["get"],
        "exec" | "attach" | "portforward" => &["create", "get"],
        "proxy" => &["create", "delete", "get", "patch", "update"],
        _ => &["get", "patch", "update"],
    }
}

/// The kind a subresource answers with: (group, version, kind).
/// (`find`, `by_kind`, `groups` and `in_group_version` below look at the built-in rows only: for
/// code that names a built-in resource; what a server serves is its [`ResourceTable`].)
pub fn subresource_kind(res: &Resource, sub: &str) -> (&'static str, &'static str, &'static str) {
    match sub {
        "scale" => ("autoscaling", "v1", "Scale"),
        "binding" => ("", "v1", "Binding"),
        "eviction" => ("policy", "v1", "Eviction"),
        "token" => ("authentication.k8s.io", "v1", "TokenRequest"),
        "exec" => ("", "v1", "PodExecOptions"),
        "attach" => ("", "v1", "PodAttachOptions"),
        "portforward" => ("", "v1", "PodPortForwardOptions"),
        "proxy" if res.plural == "nodes" => ("", "v1", "NodeProxyOptions"),
        _ => (res.group, res.version, res.kind),
    }
}

pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

pub fn namespaces() -> &'static Resource {
    &RESOURCES[0]
}

pub fn by_kind(group: &str, kind: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.kind == kind)
}

/// The served groups (core excluded) in discovery order, each with its versions.
pub fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    group_versions(RESOURCES.iter())
}

pub fn in_group_version<'a>(
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'static Resource> + 'a {
    RESOURCES
        .iter()
        .filter(move |r| r.group == group && r.version == version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_upstream_layout() {
        let pods = find("", "v1", "pods").unwrap();
        assert_eq!(pods.key(Some("default"), "x"), "/registry/pods/default/x");
        let nodes = find("", "v1", "nodes").unwrap();
        assert_eq!(nodes.key(None, "n1"), "/registry/minions/n1");
        assert_eq!(namespaces().plural, "namespaces");
    }

    #[test]
    fn groups_are_unique() {
        let g = groups();
        assert!(g
            .iter()
            .any(|(name, v)| *name == "apps" && v == &vec!["v1"]));
        let mut names: Vec<_> = g.iter().map(|(n, _)| *n).collect();
        names.dedup();
        assert_eq!(names.len(), g.len());
    }
}
