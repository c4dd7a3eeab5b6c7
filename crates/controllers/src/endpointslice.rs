//! Upstream's endpointslice controller (pkg/controller/endpointslice): every Service with a
//! selector gets discovery.k8s.io/v1 EndpointSlices of its pods, at most 100 endpoints each,
//! one address type per slice, endpoints grouped by the ports they resolve to, conditions
//! ready/serving/terminating as upstream, labelled `kubernetes.io/service-name` and
//! `endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io` and owned by the
//! Service (so the garbage collector removes them with it). Slices someone else manages (the
//! API server's own `kubernetes` slice among them) are never touched.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Client, ResourceExt};

use crate::context::Context;
use crate::endpoints::{self, PortKey, Watches};
use crate::error::Result;
use crate::pods;

const NAME: &str = "endpointslice";
pub const SERVICE_NAME: &str = "kubernetes.io/service-name";
pub const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
/// Upstream's `--max-endpoints-per-slice` default.
const MAX_ENDPOINTS: usize = 100;

pub async fn run(ctx: Context) -> Result<()> {
    let client = ctx.client_for("endpointslice-controller").await?;
    let writer = client.clone();
    endpoints::run_over_services(
        client,
        NAME,
        ctx,
        move |svc, watches| reconcile(writer.clone(), svc, watches),
        // Owned by the Service: the garbage collector deletes them.
        |_| async {},
    )
    .await
}

/// Endpoints that serve the same ports, of one address type: the content of one or more slices.
type Groups = BTreeMap<(String, Vec<PortKey>), Vec<Endpoint>>;

async fn reconcile(client: Client, svc: Arc<Service>, watches: Arc<Watches>) -> Result<Action> {
    if !endpoints::has_selector(&svc) || svc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = svc.namespace().unwrap_or_default();
    let api: Api<EndpointSlice> = Api::namespaced(client, &ns);
    let mine = ListParams::default().labels(&format!(
        "{SERVICE_NAME}={},{MANAGED_BY}={CONTROLLER_NAME}",
        svc.name_any()
    ));
    // Read live, not from a cache: a slice created by the previous pass must not be made twice.
    let mut existing = api.list(&mine).await?.items;
    let wanted = desired(&svc, &endpoints::selected(&watches, &svc));
    for slice in wanted {
        let reuse = existing
            .iter()
            .position(|e| e.address_type == slice.address_type && e.ports == slice.ports);
        match reuse.map(|i| existing.remove(i)) {
            Some(old) if old.endpoints == slice.endpoints && old.labels() == slice.labels() => {}
            Some(mut old) => {
                old.endpoints = slice.endpoints;
                old.metadata.labels = slice.metadata.labels;
                old.metadata.owner_references = slice.metadata.owner_references;
                api.replace(&old.name_any(), &PostParams::default(), &old)
                    .await?;
            }
            None => {
                api.create(&PostParams::default(), &slice).await?;
            }
        }
    }
    for stale in existing {
        match api
            .delete(&stale.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    // A periodic pass as upstream's informer resync: the missed updates CI saw came from
    // services listed at start being taken for deleted (fixed in `informer`); this bounds the
    // damage of any other missed event.
    Ok(Action::requeue(RESYNC))
}

/// How often a service's slices are recomputed without a change.
const RESYNC: std::time::Duration = std::time::Duration::from_secs(10);

/// The slices the service should have (without names: existing ones are reused).
fn desired(svc: &Service, selected: &[Arc<Pod>]) -> Vec<EndpointSlice> {
    let mut groups = Groups::new();
    let ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let tolerate_unready = endpoints::publish_not_ready(svc);
    for pod in selected {
        let Some(ip) = endpoints::address_of(pod) else {
            continue;
        };
        let Ok(parsed) = ip.parse::<IpAddr>() else {
            continue;
        };
        let family = if parsed.is_ipv4() { "IPv4" } else { "IPv6" };
        let mut resolved: Vec<PortKey> = ports
            .iter()
            .filter_map(|p| {
                Some((
                    p.name.clone().unwrap_or_default(),
                    endpoints::target_port(p, pod)?,
                    p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                ))
            })
            .collect();
        resolved.sort();
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let serving = pods::is_ready(pod);
        let endpoint = Endpoint {
            addresses: vec![ip],
            conditions: Some(EndpointConditions {
                ready: Some(tolerate_unready || (serving && !terminating)),
                serving: Some(tolerate_unready || serving),
                terminating: Some(terminating),
            }),
            hostname: endpoints::hostname_for(svc, pod),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(endpoints::pod_reference(pod)),
            ..Default::default()
        };
        groups
            .entry((family.to_string(), resolved))
            .or_default()
            .push(endpoint);
    }
    let mut slices = Vec::new();
    for ((family, ports), endpoints) in groups {
        for chunk in endpoints.chunks(MAX_ENDPOINTS) {
            slices.push(slice(svc, &family, &ports, chunk.to_vec()));
        }
    }
    if slices.is_empty() {
        // Upstream keeps one empty slice per service: "no endpoints" is an answer too.
        let family = svc
            .spec
            .as_ref()
            .and_then(|s| s.ip_families.as_ref())
            .and_then(|f| f.first().cloned())
            .unwrap_or_else(|| "IPv4".into());
        slices.push(slice(svc, &family, &[], Vec::new()));
    }
    slices
}

fn slice(
    svc: &Service,
    family: &str,
    ports: &[PortKey],
    endpoints: Vec<Endpoint>,
) -> EndpointSlice {
    let mut labels = endpoints::labels_for(svc);
    labels.insert(SERVICE_NAME.into(), svc.name_any());
    labels.insert(MANAGED_BY.into(), CONTROLLER_NAME.into());
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", svc.name_any())),
            labels: Some(labels),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Service".into(),
                name: svc.name_any(),
                uid: svc.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        address_type: family.to_string(),
        endpoints,
        ports: Some(
            ports
                .iter()
                .map(|(name, port, protocol)| EndpointPort {
                    app_protocol: endpoints::app_protocol(svc, name),
                    name: Some(name.clone()),
                    port: Some(*port),
                    protocol: Some(protocol.clone()),
                })
                .collect(),
        ),
    }
}
