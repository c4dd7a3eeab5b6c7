//! The API server's own objects: the four initial namespaces and the `kubernetes`
//! Service/Endpoints/EndpointSlice in `default`. Emptying a Terminating namespace (and removing
//! its `kubernetes` finalizer) and each namespace's `default` ServiceAccount are the controller
//! manager's work, as upstream (the controllers crate's `namespace` and `serviceaccount`).

use serde_json::{json, Value};
use std::net::IpAddr;

use crate::registry::{ListOptions, Registry};
use crate::resources;
use crate::status::{ApiError, ApiResult};

pub const INITIAL: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Creates what a fresh cluster has and repairs what a restart needs.
pub async fn bootstrap(reg: &Registry, advertise: IpAddr, port: u16) -> ApiResult<()> {
    recover_allocations(reg).await?;
    let nsres = resources::namespaces();
    for ns in INITIAL {
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        ignore_exists(reg.create(nsres, None, obj, false).await)?;
    }
    ensure_kubernetes_service(reg, advertise, port).await
}

fn ignore_exists(r: ApiResult<Value>) -> ApiResult<()> {
    match r {
        Ok(_) | Err(ApiError::AlreadyExists(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

async fn recover_allocations(reg: &Registry) -> ApiResult<()> {
    let Some(services) = resources::find("", "v1", "services") else {
        return Ok(());
    };
    let listed = reg.list(services, None, &ListOptions::default()).await?;
    for svc in &listed.items {
        reg.allocators.recover(svc);
    }
    Ok(())
}

async fn ensure_kubernetes_service(reg: &Registry, advertise: IpAddr, port: u16) -> ApiResult<()> {
    let ip = reg.allocators.first_ip().to_string();
    let svc = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": ip, "sessionAffinity": "None",
                 "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]}});
    let services = resources::find("", "v1", "services").ok_or(ApiError::NoSuchResource)?;
    // Created once; after a restart the stored Service already holds the first IP.
    if let Err(ApiError::NotFound(_)) = reg.get(services, Some("default"), "kubernetes").await {
        ignore_exists(reg.create(services, Some("default"), svc, false).await)?;
    }
    let eps = json!({"apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": advertise.to_string()}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]});
    upsert(reg, "", "endpoints", eps).await?;
    let family = if advertise.is_ipv4() { "IPv4" } else { "IPv6" };
    let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": family,
        "endpoints": [{"addresses": [advertise.to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}]});
    upsert(reg, "discovery.k8s.io", "endpointslices", slice).await
}

/// Creates `obj`, or replaces the stored one's content (the address may change between runs).
async fn upsert(reg: &Registry, group: &str, plural: &str, obj: Value) -> ApiResult<()> {
    let res = resources::find(group, "v1", plural).ok_or(ApiError::NoSuchResource)?;
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    match reg.create(res, Some("default"), obj.clone(), false).await {
        Err(ApiError::AlreadyExists(_)) => {
            reg.update_with(res, Some("default"), &name, None, false, |old| {
                let mut new = obj.clone();
                new["metadata"] = old["metadata"].clone();
                if let Some(m) = new["metadata"].as_object_mut() {
                    m.remove("resourceVersion");
                }
                Ok(new)
            })
            .await?;
            Ok(())
        }
        other => other.map(|_| ()),
    }
}
