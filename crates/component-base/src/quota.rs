//! Resource quota evaluation, shared by the API server's `ResourceQuota` admission and the
//! controller manager's resourcequota controller so both count the same way, as upstream's
//! `pkg/quota/v1` evaluators (core pods, services, claims, and the generic object counter):
//!
//! - [`usage`]: what one object charges (`pods`, `count/pods`, `requests.cpu`, ...);
//! - [`tracks`]: which quota resource names an object of a kind can charge;
//! - [`matches_scopes`]: whether a quota's scopes and scope selector select an object;
//! - [`pod_constraints`]: upstream's rule that a quota on cpu or memory needs every container
//!   to state them;
//! - [`ResourceList`] arithmetic and upstream's printing of quantities.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, PersistentVolumeClaim, Pod, ResourceQuotaSpec, Service,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::quantity::milli_value;

/// A quantity in thousandths of a unit, with the notation it prints in (binary suffixes such as
/// `Mi` or decimal ones such as `k`), as upstream's `resource.Quantity` keeps its format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Amount {
    pub milli: i64,
    pub binary: bool,
}

impl Amount {
    pub fn units(n: i64) -> Amount {
        Amount {
            milli: n.saturating_mul(1000),
            binary: false,
        }
    }

    pub fn parse(q: &Quantity) -> Amount {
        let s = q.0.trim();
        Amount {
            milli: milli_value(q),
            binary: s.ends_with('i'),
        }
    }

    /// Upstream's `Quantity.Add`: a zero takes the other's format.
    pub fn plus(self, other: Amount) -> Amount {
        Amount {
            milli: self.milli.saturating_add(other.milli),
            binary: if self.milli == 0 {
                other.binary
            } else {
                self.binary
            },
        }
    }

    pub fn to_quantity(self) -> Quantity {
        Quantity(self.to_string())
    }
}

impl std::fmt::Display for Amount {
    /// Upstream's canonical `Quantity.String()`: binary suffixes for whole multiples of 1024
    /// when the format is binary and the value is at least 1024, else the largest decimal
    /// suffix (`m`, none, `k`, `M`, ...) that prints the value exactly.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let milli = self.milli;
        if milli == 0 {
            return f.write_str("0");
        }
        if milli % 1000 != 0 {
            return write!(f, "{milli}m");
        }
        let units = milli / 1000;
        if self.binary && units.abs() >= 1024 {
            const BINARY: [(&str, i64); 6] = [
                ("Ei", 1 << 60),
                ("Pi", 1 << 50),
                ("Ti", 1 << 40),
                ("Gi", 1 << 30),
                ("Mi", 1 << 20),
                ("Ki", 1 << 10),
            ];
            if let Some((suffix, size)) = BINARY.iter().find(|(_, size)| units % size == 0) {
                return write!(f, "{}{suffix}", units / size);
            }
            return write!(f, "{units}");
        }
        const DECIMAL: [(&str, i64); 6] = [
            ("E", 1_000_000_000_000_000_000),
            ("P", 1_000_000_000_000_000),
            ("T", 1_000_000_000_000),
            ("G", 1_000_000_000),
            ("M", 1_000_000),
            ("k", 1_000),
        ];
        match DECIMAL.iter().find(|(_, size)| units % size == 0) {
            Some((suffix, size)) => write!(f, "{}{suffix}", units / size),
            None => write!(f, "{units}"),
        }
    }
}

/// Quota resource names to amounts (upstream's `corev1.ResourceList`), sorted by name.
pub type ResourceList = BTreeMap<String, Amount>;

pub fn from_quantities(map: &BTreeMap<String, Quantity>) -> ResourceList {
    map.iter()
        .map(|(k, q)| (k.clone(), Amount::parse(q)))
        .collect()
}

pub fn to_quantities(list: &ResourceList) -> BTreeMap<String, Quantity> {
    list.iter()
        .map(|(k, a)| (k.clone(), a.to_quantity()))
        .collect()
}

/// Upstream's `quota.Add`.
pub fn add(a: &ResourceList, b: &ResourceList) -> ResourceList {
    let mut out = a.clone();
    for (k, v) in b {
        let sum = out.get(k).copied().unwrap_or_default().plus(*v);
        out.insert(k.clone(), sum);
    }
    out
}

/// Upstream's `quota.SubtractWithNonNegativeResult`: `a - b`, each at least zero.
pub fn subtract_non_negative(a: &ResourceList, b: &ResourceList) -> ResourceList {
    let mut out = a.clone();
    for (k, v) in out.iter_mut() {
        if let Some(other) = b.get(k) {
            v.milli = (v.milli - other.milli).max(0);
        }
    }
    out
}

/// Upstream's `quota.Mask`: only the entries named.
pub fn mask<'a>(list: &ResourceList, names: impl IntoIterator<Item = &'a String>) -> ResourceList {
    names
        .into_iter()
        .filter_map(|n| list.get(n).map(|v| (n.clone(), *v)))
        .collect()
}

/// Upstream's `quota.LessThanOrEqual`: the names in `a` above their bound in `b`.
pub fn exceeded(a: &ResourceList, b: &ResourceList) -> Vec<String> {
    a.iter()
        .filter(|(k, v)| b.get(*k).is_some_and(|bound| v.milli > bound.milli))
        .map(|(k, _)| k.clone())
        .collect()
}

pub fn is_zero(list: &ResourceList) -> bool {
    list.values().all(|v| v.milli == 0)
}

/// Upstream's `prettyPrint`: `name=quantity` pairs sorted by name, comma-separated.
pub fn pretty(list: &ResourceList) -> String {
    list.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// An object a quota may charge, typed where usage depends on its content.
pub enum Object<'a> {
    Pod(&'a Pod),
    Service(&'a Service),
    Claim(&'a PersistentVolumeClaim),
    /// Any other kind: charged by object count only.
    Counted,
}

/// `count/<plural>` for the core group, `count/<plural>.<group>` otherwise.
pub fn count_name(group: &str, plural: &str) -> String {
    match group {
        "" => format!("count/{plural}"),
        g => format!("count/{plural}.{g}"),
    }
}

/// The core kinds with a legacy object-count name (`secrets` beside `count/secrets`).
const LEGACY_COUNTED: &[&str] = &[
    "pods",
    "services",
    "configmaps",
    "secrets",
    "resourcequotas",
    "replicationcontrollers",
    "persistentvolumeclaims",
];

const COMPUTE: &[&str] = &["cpu", "memory", "ephemeral-storage"];

/// Whether quota resource `name` is one an object of `group`/`plural` can charge (upstream's
/// `MatchingResources` of the kind's evaluator).
pub fn tracks(group: &str, plural: &str, name: &str) -> bool {
    if name == count_name(group, plural) {
        return true;
    }
    if !group.is_empty() {
        return false;
    }
    if name == plural && LEGACY_COUNTED.contains(&plural) {
        return true;
    }
    match plural {
        "pods" => is_pod_compute(name),
        "services" => matches!(name, "services.loadbalancers" | "services.nodeports"),
        "persistentvolumeclaims" => {
            name == "requests.storage"
                || name.ends_with(".storageclass.storage.k8s.io/requests.storage")
                || name.ends_with(".storageclass.storage.k8s.io/persistentvolumeclaims")
        }
        _ => false,
    }
}

fn is_pod_compute(name: &str) -> bool {
    let bare = name
        .strip_prefix("requests.")
        .or_else(|| name.strip_prefix("limits."))
        .unwrap_or(name);
    COMPUTE.contains(&bare)
        || bare.starts_with("hugepages-")
        || (name.starts_with("requests.") && bare.contains('/'))
}

/// What `object` of `group`/`plural` charges (upstream's evaluators' `Usage`).
pub fn usage(group: &str, plural: &str, object: &Object<'_>) -> ResourceList {
    let mut out = ResourceList::new();
    out.insert(count_name(group, plural), Amount::units(1));
    if group.is_empty() && LEGACY_COUNTED.contains(&plural) && plural != "pods" {
        out.insert(plural.to_string(), Amount::units(1));
    }
    match object {
        Object::Pod(pod) if is_active_pod(pod) => {
            out.insert("pods".into(), Amount::units(1));
            out.extend(pod_compute(pod));
        }
        Object::Service(service) => out.extend(service_usage(service)),
        Object::Claim(claim) => out.extend(claim_usage(claim)),
        _ => {}
    }
    out
}

/// Upstream's `QuotaV1Pod`: a pod that has not finished and is not stuck terminating past its
/// grace period counts for compute resources and `pods`.
pub fn is_active_pod(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return false;
    }
    let meta = &pod.metadata;
    match (&meta.deletion_timestamp, meta.deletion_grace_period_seconds) {
        (Some(at), Some(grace)) => {
            let until = at.0.as_second().saturating_add(grace);
            k8s_openapi::jiff::Timestamp::now().as_second() <= until
        }
        _ => true,
    }
}

/// A container's request for `resource`: the request, else the limit (the API's defaulting
/// copies a limit into a missing request).
fn request<'a>(c: &'a Container, resource: &str) -> Option<&'a Quantity> {
    let r = c.resources.as_ref()?;
    r.requests
        .as_ref()
        .and_then(|m| m.get(resource))
        .or_else(|| r.limits.as_ref()?.get(resource))
}

fn limit<'a>(c: &'a Container, resource: &str) -> Option<&'a Quantity> {
    c.resources.as_ref()?.limits.as_ref()?.get(resource)
}

/// Upstream's `podComputeUsageHelper` over the pod's requests and limits (resourcehelper's
/// PodRequests/PodLimits: the containers' sum or the largest init container's, if larger, plus
/// the overhead).
fn pod_compute(pod: &Pod) -> ResourceList {
    let mut out = ResourceList::new();
    let Some(spec) = pod.spec.as_ref() else {
        return out;
    };
    let inits = spec.init_containers.as_deref().unwrap_or_default();
    let mut names: Vec<String> = Vec::new();
    for c in spec.containers.iter().chain(inits) {
        for map in c.resources.iter().flat_map(|r| [&r.requests, &r.limits]) {
            names.extend(map.iter().flat_map(|m| m.keys().cloned()));
        }
    }
    names.sort();
    names.dedup();
    let overhead = |name: &str| {
        spec.overhead
            .as_ref()
            .and_then(|o| o.get(name))
            .map(Amount::parse)
            .unwrap_or_default()
    };
    for name in &names {
        let of = |pick: fn(&Container, &str) -> Option<Amount>| -> Option<Amount> {
            let sum = spec
                .containers
                .iter()
                .filter_map(|c| pick(c, name))
                .reduce(Amount::plus);
            let init = inits
                .iter()
                .filter_map(|c| pick(c, name))
                .max_by_key(|a| a.milli);
            let total = match (sum, init) {
                (Some(s), Some(i)) if i.milli > s.milli => i,
                (Some(s), _) => s,
                (None, i) => i?,
            };
            Some(total.plus(overhead(name)))
        };
        let requested = of(|c, n| request(c, n).map(Amount::parse));
        let limited = of(|c, n| limit(c, n).map(Amount::parse));
        charge_compute(&mut out, name, requested, limited);
    }
    out
}

/// The quota names one compute resource charges: `cpu` and `requests.cpu` for the request,
/// `limits.cpu` for the limit; extended resources only as `requests.<name>`.
fn charge_compute(out: &mut ResourceList, name: &str, req: Option<Amount>, lim: Option<Amount>) {
    let standard = COMPUTE.contains(&name);
    let huge = name.starts_with("hugepages-");
    if let Some(req) = req {
        if standard || huge {
            out.insert(name.to_string(), req);
        }
        out.insert(format!("requests.{name}"), req);
    }
    if let Some(lim) = lim {
        if standard {
            out.insert(format!("limits.{name}"), lim);
        }
    }
}

fn service_usage(service: &Service) -> ResourceList {
    let mut out = ResourceList::new();
    let Some(spec) = service.spec.as_ref() else {
        return out;
    };
    let ports = spec.ports.as_ref().map_or(0, Vec::len) as i64;
    match spec.type_.as_deref() {
        Some("LoadBalancer") => {
            out.insert("services.loadbalancers".into(), Amount::units(1));
            if spec.allocate_load_balancer_node_ports != Some(false) {
                out.insert("services.nodeports".into(), Amount::units(ports));
            }
        }
        Some("NodePort") => {
            out.insert("services.nodeports".into(), Amount::units(ports));
        }
        _ => {}
    }
    out
}

fn claim_usage(claim: &PersistentVolumeClaim) -> ResourceList {
    let mut out = ResourceList::new();
    let spec = claim.spec.as_ref();
    let class = spec.and_then(|s| s.storage_class_name.as_deref());
    if let Some(class) = class.filter(|c| !c.is_empty()) {
        out.insert(
            format!("{class}.storageclass.storage.k8s.io/persistentvolumeclaims"),
            Amount::units(1),
        );
    }
    let requested = spec
        .and_then(|s| s.resources.as_ref()?.requests.as_ref()?.get("storage"))
        .map(Amount::parse);
    if let Some(storage) = requested {
        out.insert("requests.storage".into(), storage);
        if let Some(class) = class.filter(|c| !c.is_empty()) {
            out.insert(
                format!("{class}.storageclass.storage.k8s.io/requests.storage"),
                storage,
            );
        }
    }
    out
}

/// One scope requirement: upstream's `ScopedResourceSelectorRequirement`; plain `spec.scopes`
/// entries are `Exists` requirements.
struct Requirement<'a> {
    scope: &'a str,
    operator: &'a str,
    values: &'a [String],
}

fn requirements(spec: &ResourceQuotaSpec) -> Vec<Requirement<'_>> {
    let plain = spec.scopes.iter().flatten().map(|s| Requirement {
        scope: s,
        operator: "Exists",
        values: &[],
    });
    let selected = spec
        .scope_selector
        .iter()
        .flat_map(|s| s.match_expressions.iter().flatten())
        .map(|e| Requirement {
            scope: &e.scope_name,
            operator: &e.operator,
            values: e.values.as_deref().unwrap_or_default(),
        });
    plain.chain(selected).collect()
}

/// Whether a quota has scopes (or a scope selector) at all.
pub fn has_scopes(spec: &ResourceQuotaSpec) -> bool {
    !requirements(spec).is_empty()
}

/// Whether every scope of the quota selects `object` (upstream's `Matches`): only pods have
/// scopes (Terminating, NotTerminating, BestEffort, NotBestEffort, PriorityClass,
/// CrossNamespacePodAffinity); other objects match only quotas without scopes.
pub fn matches_scopes(spec: &ResourceQuotaSpec, object: &Object<'_>) -> bool {
    let all = requirements(spec);
    if all.is_empty() {
        return true;
    }
    match object {
        Object::Pod(pod) => all.iter().all(|r| pod_matches(r, pod)),
        _ => false,
    }
}

fn pod_matches(r: &Requirement<'_>, pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    let terminating = spec
        .and_then(|s| s.active_deadline_seconds)
        .is_some_and(|d| d >= 0);
    match r.scope {
        "Terminating" => terminating,
        "NotTerminating" => !terminating,
        "BestEffort" => is_best_effort(pod),
        "NotBestEffort" => !is_best_effort(pod),
        "PriorityClass" => {
            let class = spec
                .and_then(|s| s.priority_class_name.as_deref())
                .unwrap_or("");
            // Upstream matches the label set {PriorityClass: <name>}, which always has the key.
            match r.operator {
                "Exists" => !class.is_empty(),
                "In" => r.values.iter().any(|v| v == class),
                "NotIn" => !r.values.iter().any(|v| v == class),
                _ => false,
            }
        }
        "CrossNamespacePodAffinity" => uses_cross_namespace_affinity(pod),
        _ => false,
    }
}

/// Upstream's QoS BestEffort: no container or init container requests or limits cpu or memory.
pub fn is_best_effort(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    let inits = spec.init_containers.as_deref().unwrap_or_default();
    spec.containers.iter().chain(inits).all(|c| {
        ["cpu", "memory"]
            .iter()
            .all(|r| request(c, r).is_none_or(|q| milli_value(q) == 0) && limit(c, r).is_none())
    })
}

fn uses_cross_namespace_affinity(pod: &Pod) -> bool {
    let Some(affinity) = pod.spec.as_ref().and_then(|s| s.affinity.as_ref()) else {
        return false;
    };
    let crosses = |t: &k8s_openapi::api::core::v1::PodAffinityTerm| {
        t.namespace_selector.is_some() || t.namespaces.as_ref().is_some_and(|n| !n.is_empty())
    };
    let (mut required, mut preferred) = (Vec::new(), Vec::new());
    if let Some(a) = &affinity.pod_affinity {
        required.extend(
            a.required_during_scheduling_ignored_during_execution
                .iter()
                .flatten(),
        );
        preferred.extend(
            a.preferred_during_scheduling_ignored_during_execution
                .iter()
                .flatten(),
        );
    }
    if let Some(a) = &affinity.pod_anti_affinity {
        required.extend(
            a.required_during_scheduling_ignored_during_execution
                .iter()
                .flatten(),
        );
        preferred.extend(
            a.preferred_during_scheduling_ignored_during_execution
                .iter()
                .flatten(),
        );
    }
    required.into_iter().any(crosses) || preferred.iter().any(|w| crosses(&w.pod_affinity_term))
}

/// Upstream's pod evaluator `Constraints`: when a quota limits cpu or memory (requests or
/// limits), every container and init container must state it. The error is upstream's
/// `must specify limits.cpu for: a,b; requests.memory for: a`.
pub fn pod_constraints(required: &[String], pod: &Pod) -> Result<(), String> {
    const VALIDATED: &[&str] = &[
        "cpu",
        "memory",
        "requests.cpu",
        "requests.memory",
        "limits.cpu",
        "limits.memory",
    ];
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(());
    };
    let mut missing: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let inits = spec.init_containers.as_deref().unwrap_or_default();
    for c in spec.containers.iter().chain(inits) {
        let mut own = ResourceList::new();
        for r in ["cpu", "memory"] {
            let requested = request(c, r).map(Amount::parse);
            charge_compute(&mut own, r, requested, limit(c, r).map(Amount::parse));
        }
        for name in required.iter().filter(|n| VALIDATED.contains(&n.as_str())) {
            if !own.contains_key(name) {
                missing.entry(name).or_default().push(&c.name);
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let parts: Vec<String> = missing
        .into_iter()
        .map(|(r, mut names)| {
            names.sort();
            names.dedup();
            format!("{r} for: {}", names.join(","))
        })
        .collect();
    Err(format!("must specify {}", parts.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    fn q(s: &str) -> Amount {
        Amount::parse(&Quantity(s.into()))
    }

    #[test]
    fn quantities_print_as_upstream() {
        assert_eq!(q("1500m").to_string(), "1500m");
        assert_eq!(q("2").to_string(), "2");
        assert_eq!(q("2000").to_string(), "2k");
        assert_eq!(q("256Mi").to_string(), "256Mi");
        assert_eq!(q("1Gi").plus(q("512Mi")).to_string(), "1536Mi");
        assert_eq!(Amount::default().plus(q("1Gi")).to_string(), "1Gi");
        assert_eq!(q("129e6").to_string(), "129M");
        assert_eq!(q("1000Mi").to_string(), "1000Mi");
        assert_eq!(q("0").to_string(), "0");
    }

    #[test]
    fn pod_usage_sums_containers_and_takes_the_larger_init() {
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {
        "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2"}}}],
        "containers": [
            {"name": "a", "resources": {"requests": {"cpu": "500m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}},
            {"name": "b", "resources": {"limits": {"cpu": "1", "memory": "128Mi"}}},
        ]}}));
        let u = usage("", "pods", &Object::Pod(&p));
        let shown: BTreeMap<_, _> = u.iter().map(|(k, v)| (k.as_str(), v.to_string())).collect();
        assert_eq!(shown["pods"], "1");
        assert_eq!(shown["count/pods"], "1");
        assert_eq!(shown["requests.cpu"], "2");
        assert_eq!(shown["cpu"], "2");
        assert_eq!(shown["limits.cpu"], "1");
        assert_eq!(shown["requests.memory"], "256Mi");
        assert_eq!(shown["limits.memory"], "384Mi");
        let done = pod(
            json!({"metadata": {"name": "p"}, "spec": {"containers": []},
                              "status": {"phase": "Succeeded"}}),
        );
        let u = usage("", "pods", &Object::Pod(&done));
        assert_eq!(u.keys().collect::<Vec<_>>(), vec!["count/pods"]);
    }

    #[test]
    fn missing_requests_are_named_per_resource() {
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "b", "resources": {"requests": {"cpu": "1"}}},
            {"name": "a"},
        ]}}));
        let required = vec!["requests.cpu".to_string(), "limits.memory".to_string()];
        assert_eq!(
            pod_constraints(&required, &p).unwrap_err(),
            "must specify limits.memory for: a,b; requests.cpu for: a"
        );
        assert!(pod_constraints(&["pods".into()], &p).is_ok());
    }

    #[test]
    fn scopes_select_pods() {
        let spec =
            |v: serde_json::Value| -> ResourceQuotaSpec { serde_json::from_value(v).unwrap() };
        let best_effort = pod(json!({"metadata": {}, "spec": {"containers": [{"name": "a"}]}}));
        let burstable = pod(json!({"metadata": {}, "spec": {"activeDeadlineSeconds": 10,
            "priorityClassName": "high",
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}]}}));
        let be = spec(json!({"scopes": ["BestEffort"]}));
        assert!(matches_scopes(&be, &Object::Pod(&best_effort)));
        assert!(!matches_scopes(&be, &Object::Pod(&burstable)));
        let term = spec(json!({"scopes": ["Terminating", "NotBestEffort"]}));
        assert!(matches_scopes(&term, &Object::Pod(&burstable)));
        assert!(!matches_scopes(&term, &Object::Pod(&best_effort)));
        let high = spec(json!({"scopeSelector": {"matchExpressions": [
            {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}}));
        assert!(matches_scopes(&high, &Object::Pod(&burstable)));
        assert!(!matches_scopes(&high, &Object::Pod(&best_effort)));
        // Scoped quotas never charge other kinds.
        assert!(!matches_scopes(&be, &Object::Counted));
        assert!(matches_scopes(&spec(json!({})), &Object::Counted));
    }

    #[test]
    fn kinds_track_their_names() {
        assert!(tracks("", "pods", "requests.cpu"));
        assert!(tracks("", "pods", "count/pods"));
        assert!(tracks("", "secrets", "secrets"));
        assert!(tracks("apps", "deployments", "count/deployments.apps"));
        assert!(!tracks("apps", "deployments", "pods"));
        assert!(!tracks("", "configmaps", "requests.cpu"));
        assert!(tracks("", "services", "services.nodeports"));
    }
}
