//! Namespace lifecycle and the API server's own objects: the four initial namespaces, the
//! `kubernetes` Service/Endpoints/EndpointSlice in `default`, and the finalizer that empties a
//! Terminating namespace and then lets it go. Upstream runs the finalizer in the controller
//! manager; it lives here, in process, until the controllers crate takes it over.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::registry::{DeleteOptions, ListOptions, Registry};
use crate::resources::{self, RESOURCES};
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
    ensure_kubernetes_service(reg, advertise, port).await?;
    ensure_default_service_accounts(reg).await?;
    resume_terminating(reg).await
}

/// Gives every active namespace its `default` ServiceAccount (those created before this server
/// did so, too).
async fn ensure_default_service_accounts(reg: &Registry) -> ApiResult<()> {
    let listed = reg
        .list(resources::namespaces(), None, &ListOptions::default())
        .await?;
    for ns in &listed.items {
        let active = ns["status"]["phase"] != "Terminating";
        match ns["metadata"]["name"].as_str() {
            Some(name) if active => ensure_default_service_account(reg, name).await?,
            _ => {}
        }
    }
    Ok(())
}

/// Creates the `default` ServiceAccount of a new namespace, as upstream's serviceaccounts
/// controller does (pods and `kubectl create token default` need it). The API server does it
/// in process until the controller manager takes this over.
pub async fn ensure_default_service_account(reg: &Registry, ns: &str) -> ApiResult<()> {
    let res = resources::find("", "v1", "serviceaccounts").ok_or(ApiError::NoSuchResource)?;
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "default", "namespace": ns}});
    ignore_exists(reg.create(res, Some(ns), sa, false).await)
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

async fn resume_terminating(reg: &Registry) -> ApiResult<()> {
    let listed = reg
        .list(resources::namespaces(), None, &ListOptions::default())
        .await?;
    for ns in listed
        .items
        .iter()
        .filter(|n| n["status"]["phase"] == "Terminating")
    {
        if let Some(name) = ns["metadata"]["name"].as_str() {
            let _ = reg.terminating.send(name.to_string());
        }
    }
    Ok(())
}

/// Empties each Terminating namespace it is told about, then removes the `kubernetes` finalizer
/// so the namespace itself goes.
pub async fn run_finalizer(reg: Arc<Registry>, mut rx: mpsc::UnboundedReceiver<String>) {
    while let Some(ns) = rx.recv().await {
        let reg = reg.clone();
        tokio::spawn(async move {
            while let Err(e) = finalize(&reg, &ns).await {
                tracing::debug!(namespace = %ns, error = %e, "namespace not empty yet");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
}

#[derive(Debug, thiserror::Error)]
enum FinalizeError {
    #[error("{0} objects remain")]
    Remaining(usize),
    #[error(transparent)]
    Api(#[from] ApiError),
}

async fn finalize(reg: &Registry, ns: &str) -> Result<(), FinalizeError> {
    let nsres = resources::namespaces();
    match reg.get(nsres, None, ns).await {
        Ok(obj) if obj["status"]["phase"] == "Terminating" => {}
        _ => return Ok(()),
    }
    let mut remaining = 0;
    let mut seen_storage = Vec::new();
    for res in RESOURCES.iter().filter(|r| r.namespaced && !r.review) {
        if seen_storage.contains(&res.storage) {
            continue;
        }
        seen_storage.push(res.storage);
        let listed = reg.list(res, Some(ns), &ListOptions::default()).await?;
        for obj in &listed.items {
            let name = obj["metadata"]["name"].as_str().unwrap_or_default();
            match reg
                .delete(res, Some(ns), name, &DeleteOptions::default())
                .await
            {
                Ok(d) if d.gone => {}
                Ok(_) => remaining += 1,
                Err(ApiError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    if remaining > 0 {
        return Err(FinalizeError::Remaining(remaining));
    }
    let result = reg
        .update_with(nsres, None, ns, Some("finalize"), false, |old| {
            let mut new = old.clone();
            if let Some(f) = new["spec"]["finalizers"].as_array_mut() {
                f.retain(|x| x != "kubernetes");
            }
            new["metadata"]
                .as_object_mut()
                .map(|m| m.remove("resourceVersion"));
            Ok(new)
        })
        .await;
    match result {
        Ok(_) | Err(ApiError::NotFound(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
