//! Upstream's endpoints controller (pkg/controller/endpoint): the Endpoints of every Service
//! with a selector list the IPs of its pods (ready ones under `addresses`, the others under
//! `notReadyAddresses`, all ready with `publishNotReadyAddresses`), with each service port's
//! target port resolved per pod (named ports by the pod's container ports), the pod's hostname
//! when its subdomain is the service, its node and a reference to it. Services without a
//! selector (the API server's own `kubernetes` in `default` among them) are left alone, as
//! upstream; the Endpoints of a deleted Service go with it.
//!
//! The pod and service watches, and what [`endpointslice`](crate::endpointslice) shares with
//! it (which pods a service selects, ports resolved per pod), live here.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use component_base::label_selector;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
    ServicePort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::informer;
use crate::pods;

const NAME: &str = "endpoints";
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

/// The watches both endpoint controllers run on: services (the reconciled kind) and pods,
/// a pod change triggering the services that select it now or selected it before.
pub struct Watches {
    pub services: Store<Service>,
    pub pods: Store<Pod>,
}

/// Starts the watches and runs `reconcile` for every service that changed or whose pods did;
/// `deleted` is called for a service that went away.
pub async fn run_over_services<R, Fut, D, DFut>(
    client: Client,
    name: &'static str,
    ctx: Context,
    reconcile: R,
    deleted: D,
) -> Result<()>
where
    R: Fn(Arc<Service>, Arc<Watches>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Action>> + Send + 'static,
    D: Fn(Service) -> DFut + Send + Sync + 'static,
    DFut: std::future::Future<Output = ()> + Send + 'static,
{
    let (services, service_changes) = informer::start(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    );
    let (pods, pod_changes) = informer::start(Api::<Pod>::all(client), watcher::Config::default());
    let watches = Arc::new(Watches {
        services: services.clone(),
        pods,
    });
    let deleted = Arc::new(deleted);
    let gone = services.clone();
    let on_delete = deleted.clone();
    let trigger = service_changes.filter_map(move |svc| {
        let deleted_now = gone.get(&ObjectRef::from_obj(&svc)).is_none();
        let cleanup = deleted_now.then(|| on_delete(svc.clone()));
        async move {
            match cleanup {
                Some(cleanup) => {
                    cleanup.await;
                    None
                }
                None => Some(Ok(svc)),
            }
        }
    });
    let state = (watches.clone(), ctx, name);
    Controller::for_stream(trigger, services)
        .watches_stream(
            pod_changes.map(Ok),
            pod_mapper(watches.services.clone()),
        )
        .run(
            move |svc, state: Arc<(Arc<Watches>, Context, &'static str)>| {
                let fut = reconcile(svc.clone(), state.0.clone());
                let (ctx, name, deleted) = (state.1.clone(), state.2, deleted.clone());
                let services = state.0.services.clone();
                async move {
                    let result = fut.await;
                    // The service may have gone while this sync wrote for it, after the
                    // deletion's cleanup ran: clean up again so nothing outlives it.
                    if !still_there(&services, &svc) {
                        deleted(svc.as_ref().clone()).await;
                    }
                    if result.is_ok() {
                        ctx.metrics.synced(name);
                    }
                    result
                }
            },
            |svc, error: &Error, state| {
                tracing::warn!(controller = state.2, service = %svc.name_any(), %error, "cannot sync the service's endpoints; retrying");
                state.1.metrics.sync_failed(state.2);
                Action::requeue(Duration::from_secs(1))
            },
            Arc::new(state),
        )
        .for_each(|_| async {})
        .await;
    Ok(())
}

/// Whether the store still holds a service of this name (a successor's sync rewrites what
/// this one wrote, so only absence calls for a cleanup).
fn still_there(services: &Store<Service>, svc: &Service) -> bool {
    services.get(&ObjectRef::from_obj(svc)).is_some()
}

/// The services a pod belonged to at its last change.
type Memberships = HashSet<ObjectRef<Service>>;

/// The services a pod change concerns: those selecting it now and those that did before (a
/// relabelled pod leaves a service, as upstream's getPodServiceMemberships of old and new).
fn pod_mapper(
    services: Store<Service>,
) -> impl Fn(Pod) -> Vec<ObjectRef<Service>> + Send + Sync + 'static {
    let before: Mutex<HashMap<(String, String), Memberships>> = Mutex::default();
    move |pod| {
        let key = (pod.namespace().unwrap_or_default(), pod.name_any());
        let now: HashSet<_> = services
            .state()
            .iter()
            .filter(|s| selects(s, &pod))
            .map(|s| ObjectRef::from_obj(s.as_ref()))
            .collect();
        let mut before = before.lock().unwrap_or_else(|e| e.into_inner());
        let old = match now.is_empty() {
            true => before.remove(&key),
            false => before.insert(key, now.clone()),
        };
        now.into_iter().chain(old.into_iter().flatten()).collect()
    }
}

/// Whether the service's selector picks the pod (a service without one picks nothing).
pub fn selects(svc: &Service, pod: &Pod) -> bool {
    let Some(selector) = svc.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return false;
    };
    if selector.is_empty() || svc.namespace() != pod.namespace() {
        return false;
    }
    let selector = k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
        match_labels: Some(selector.clone()),
        match_expressions: None,
    };
    label_selector::matches(&selector, pod.metadata.labels.as_ref())
}

/// A service the endpoint controllers manage: one with a selector.
pub fn has_selector(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .is_some_and(|s| !s.is_empty())
}

pub fn publish_not_ready(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

pub fn headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// The pods the service selects, in its namespace, sorted by name.
pub fn selected(watches: &Watches, svc: &Service) -> Vec<Arc<Pod>> {
    let mut pods: Vec<_> = watches
        .pods
        .state()
        .into_iter()
        .filter(|p| selects(svc, p))
        .collect();
    pods.sort_by_key(|p| p.name_any());
    pods
}

/// The pod's IP, if it has one and is not finished (upstream's ShouldPodBeInEndpoints, with
/// terminating pods left to the caller).
pub fn address_of(pod: &Pod) -> Option<String> {
    if pods::is_finished(pod) {
        return None;
    }
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .filter(|ip| !ip.is_empty())
}

/// The pod's hostname when it asks for a DNS name under this service (`hostname` set and
/// `subdomain` the service's name).
pub fn hostname_for(svc: &Service, pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let subdomain_is_svc = spec.subdomain.as_deref() == Some(svc.name_any().as_str());
    spec.hostname
        .clone()
        .filter(|h| !h.is_empty() && subdomain_is_svc)
}

/// The service port's target on this pod: a number as is, a name looked up among the pod's
/// container ports of the same protocol (None when the pod has no such port).
pub fn target_port(port: &ServicePort, pod: &Pod) -> Option<i32> {
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => match name.parse::<i32>() {
            Ok(n) => Some(n),
            Err(_) => pod
                .spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port),
        },
    }
}

/// The appProtocol of the service port of that name.
pub fn app_protocol(svc: &Service, name: &str) -> Option<String> {
    svc.spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .and_then(|ps| ps.iter().find(|p| p.name.as_deref().unwrap_or("") == name))
        .and_then(|p| p.app_protocol.clone())
}

pub fn pod_reference(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.namespace(),
        name: Some(pod.name_any()),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

/// The labels the managed object carries: the service's, plus the headless marker.
pub fn labels_for(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.labels().clone();
    labels.remove(HEADLESS_LABEL);
    if headless(svc) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels
}

pub async fn run(ctx: Context) -> Result<()> {
    let client = ctx.client_for("endpoint-controller").await?;
    let writer = client.clone();
    let deleter = client.clone();
    run_over_services(
        client,
        NAME,
        ctx,
        move |svc, watches| reconcile(writer.clone(), svc, watches),
        move |svc| delete_endpoints(deleter.clone(), svc),
    )
    .await
}

/// A deleted service's Endpoints go too (those of a selector-less one are someone else's).
async fn delete_endpoints(client: Client, svc: Service) {
    if !has_selector(&svc) {
        return;
    }
    let ns = svc.namespace().unwrap_or_default();
    let api: Api<Endpoints> = Api::namespaced(client, &ns);
    match api.delete(&svc.name_any(), &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => {
            tracing::warn!(service = %svc.name_any(), error = %e, "cannot delete the Endpoints of a deleted service")
        }
    }
}

async fn reconcile(client: Client, svc: Arc<Service>, watches: Arc<Watches>) -> Result<Action> {
    if !has_selector(&svc) || svc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = svc.namespace().unwrap_or_default();
    let subsets = subsets(&svc, &selected(&watches, &svc));
    let api: Api<Endpoints> = Api::namespaced(client, &ns);
    let labels = labels_for(&svc);
    let current = api.get_opt(&svc.name_any()).await?;
    let wanted_subsets = (!subsets.is_empty()).then_some(subsets);
    let result = match current {
        Some(ep) if ep.subsets == wanted_subsets && ep.labels() == &labels => {
            return Ok(Action::await_change())
        }
        Some(mut ep) => {
            ep.subsets = wanted_subsets;
            ep.metadata.labels = Some(labels);
            api.replace(&svc.name_any(), &PostParams::default(), &ep)
                .await
        }
        None => {
            let ep = Endpoints {
                metadata: ObjectMeta {
                    name: Some(svc.name_any()),
                    labels: Some(labels),
                    ..Default::default()
                },
                subsets: wanted_subsets,
            };
            api.create(&PostParams::default(), &ep).await
        }
    };
    match result {
        Ok(_) => Ok(Action::await_change()),
        // Changed or created meanwhile: look again.
        Err(kube::Error::Api(e)) if e.code == 409 => {
            Ok(Action::requeue(Duration::from_millis(200)))
        }
        // The namespace is going away.
        Err(kube::Error::Api(e)) if e.code == 403 && e.message.contains("being terminated") => {
            Ok(Action::await_change())
        }
        Err(e) => Err(e.into()),
    }
}

/// A port as resolved for one pod: name, number, protocol.
pub type PortKey = (String, i32, String);

/// Upstream's subsets, repacked: addresses grouped by the ports they serve, sorted.
fn subsets(svc: &Service, selected: &[Arc<Pod>]) -> Vec<EndpointSubset> {
    let spec = svc.spec.clone().unwrap_or_default();
    let ports = spec.ports.unwrap_or_default();
    let tolerate_unready = publish_not_ready(svc);
    let mut groups: BTreeMap<Vec<PortKey>, (Vec<EndpointAddress>, Vec<EndpointAddress>)> =
        BTreeMap::new();
    for pod in selected {
        let Some(ip) = address_of(pod) else { continue };
        if pod.metadata.deletion_timestamp.is_some() && !tolerate_unready {
            continue;
        }
        let address = EndpointAddress {
            ip,
            hostname: hostname_for(svc, pod),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(pod_reference(pod)),
        };
        let ready = tolerate_unready || pods::is_ready(pod);
        let resolved: Vec<PortKey> = if ports.is_empty() && headless(svc) {
            Vec::new()
        } else {
            ports
                .iter()
                .filter_map(|p| {
                    let target = target_port(p, pod)?;
                    Some((
                        p.name.clone().unwrap_or_default(),
                        target,
                        p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    ))
                })
                .collect()
        };
        if resolved.is_empty() && !(ports.is_empty() && headless(svc)) {
            continue;
        }
        let mut resolved = resolved;
        resolved.sort();
        let group = groups.entry(resolved).or_default();
        match ready {
            true => group.0.push(address),
            false => group.1.push(address),
        }
    }
    groups
        .into_iter()
        .map(|(ports, (mut ready, mut not_ready))| {
            ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            not_ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then(|| {
                    ports
                        .into_iter()
                        .map(|(name, port, protocol)| EndpointPort {
                            app_protocol: app_protocol(svc, &name),
                            name: (!name.is_empty()).then_some(name),
                            port,
                            protocol: Some(protocol),
                        })
                        .collect()
                }),
            }
        })
        .collect()
}
