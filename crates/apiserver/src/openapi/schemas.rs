//! The built-in kinds' schemas, generated once from the API types (k8s-openapi's
//! `schemars::JsonSchema` implementations, which carry upstream's names and descriptions) in
//! OpenAPI v3 form, with upstream's Kubernetes extensions added from the facts krust already
//! keeps for patching and apply.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use k8s_openapi::schemars::generate::{SchemaGenerator, SchemaSettings};
use k8s_openapi::schemars::JsonSchema;
use k8s_openapi::Resource as ApiResource;
use serde_json::{json, Map, Value};

use super::extensions;

/// Where v3 documents keep their schemas; `$ref`s point here.
pub const V3_PREFIX: &str = "#/components/schemas/";

/// One API type: its group-version-kind and how to put its schema into a generator.
struct ApiType {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    add: fn(&mut SchemaGenerator) -> String,
}

fn add<T: JsonSchema>(gen: &mut SchemaGenerator) -> String {
    gen.subschema_for::<T>();
    T::schema_name().into_owned()
}

macro_rules! api_types {
    ($($ty:ty),* $(,)?) => {
        &[$(ApiType {
            group: <$ty as ApiResource>::GROUP,
            version: <$ty as ApiResource>::VERSION,
            kind: <$ty as ApiResource>::KIND,
            add: add::<$ty>,
        }),*]
    };
}

/// Every API type krust can describe: the kinds the resource table may serve and the kinds its
/// subresources answer with. Which of them a server publishes is the resource table's business.
fn api_types() -> &'static [ApiType] {
    use k8s_openapi::api::{
        apps::v1 as apps, authentication::v1 as authn, authorization::v1 as authz,
        autoscaling::v1 as autoscaling, batch::v1 as batch, certificates::v1 as certificates,
        coordination::v1 as coordination, core::v1 as core, discovery::v1 as discovery,
        events::v1 as events, networking::v1 as networking, policy::v1 as policy, rbac::v1 as rbac,
        scheduling::v1 as scheduling, storage::v1 as storage,
    };
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
    api_types![
        core::Namespace,
        core::Pod,
        core::Service,
        core::Endpoints,
        core::ConfigMap,
        core::Secret,
        core::ServiceAccount,
        core::Node,
        core::Event,
        core::LimitRange,
        core::ResourceQuota,
        core::PersistentVolume,
        core::PersistentVolumeClaim,
        core::Binding,
        apps::Deployment,
        apps::ReplicaSet,
        apps::DaemonSet,
        apps::StatefulSet,
        apps::ControllerRevision,
        events::Event,
        authn::TokenReview,
        authn::SelfSubjectReview,
        authn::TokenRequest,
        authz::LocalSubjectAccessReview,
        authz::SelfSubjectAccessReview,
        authz::SelfSubjectRulesReview,
        authz::SubjectAccessReview,
        autoscaling::Scale,
        batch::Job,
        batch::CronJob,
        certificates::CertificateSigningRequest,
        networking::IngressClass,
        networking::Ingress,
        networking::NetworkPolicy,
        policy::PodDisruptionBudget,
        policy::Eviction,
        rbac::ClusterRoleBinding,
        rbac::ClusterRole,
        rbac::RoleBinding,
        rbac::Role,
        storage::StorageClass,
        apiextensions::CustomResourceDefinition,
        scheduling::PriorityClass,
        coordination::Lease,
        discovery::EndpointSlice,
    ]
}

/// All built-in schemas in v3 form, keyed by upstream's name, and each kind's schema name.
pub struct Catalog {
    pub schemas: Map<String, Value>,
    kinds: BTreeMap<(&'static str, &'static str, &'static str), String>,
}

impl Catalog {
    /// Generated on first use and kept for the process's life: the types never change.
    pub fn get() -> &'static Catalog {
        static CATALOG: OnceLock<Catalog> = OnceLock::new();
        CATALOG.get_or_init(Catalog::generate)
    }

    fn generate() -> Catalog {
        let started = std::time::Instant::now();
        let mut gen = SchemaSettings::openapi3().into_generator();
        let mut kinds = BTreeMap::new();
        for t in api_types() {
            let name = (t.add)(&mut gen);
            kinds.insert((t.group, t.version, t.kind), name);
        }
        let mut schemas = gen.take_definitions(true);
        for ((group, version, kind), name) in &kinds {
            if let Some(s) = schemas.get_mut(name) {
                s["x-kubernetes-group-version-kind"] =
                    json!([{"group": group, "version": version, "kind": kind}]);
            }
        }
        extensions::add(&mut schemas);
        tracing::debug!(
            schemas = schemas.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "generated the built-in OpenAPI schemas"
        );
        Catalog { schemas, kinds }
    }

    /// The schema name of a built-in kind, e.g. `io.k8s.api.apps.v1.Deployment`.
    pub fn kind(&self, group: &str, version: &str, kind: &str) -> Option<&str> {
        self.kinds
            .iter()
            .find(|((g, v, k), _)| *g == group && *v == version && *k == kind)
            .map(|(_, name)| name.as_str())
    }
}

/// The names `schema` refers to (with `prefix`), directly or through nested schemas.
pub fn refs(schema: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match schema {
        Value::Object(m) => {
            if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                if let Some(name) = r.strip_prefix(prefix) {
                    out.insert(name.to_string());
                }
            }
            m.values().for_each(|v| refs(v, prefix, out));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, prefix, out)),
        _ => {}
    }
}

/// `roots` and every schema they reach through `lookup`, as one `components.schemas` map.
pub fn closure<'a>(
    lookup: impl Fn(&str) -> Option<&'a Value>,
    roots: impl IntoIterator<Item = String>,
) -> Map<String, Value> {
    let mut out = Map::new();
    let mut stack: Vec<String> = roots.into_iter().collect();
    while let Some(name) = stack.pop() {
        if out.contains_key(&name) {
            continue;
        }
        let Some(schema) = lookup(&name) else {
            continue;
        };
        let mut next = BTreeSet::new();
        refs(schema, V3_PREFIX, &mut next);
        stack.extend(next);
        out.insert(name, schema.clone());
    }
    out
}
