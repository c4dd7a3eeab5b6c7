//! The endpoints and endpointslice controllers: a Service selecting two ready pods and one not
//! ready gets the right Endpoints and EndpointSlice (named target port resolved per pod,
//! hostname under the service's subdomain, node and pod references), both follow a pod turning
//! ready, terminating and being deleted; services without selectors, the API server's
//! `kubernetes` among them, are left alone. The test plays the kubelet by patching pod status.

mod support;

use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::json;
use support::{eventually, Cluster};

const SLICES: &str = "kubernetes.io/service-name=web";

async fn pod(pods: &Api<Pod>, name: &str, ip: &str, ready: bool, port: i32) {
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"nodeName": "n1", "hostname": name, "subdomain": "web",
                 "containers": [{"name": "c", "image": "busybox",
                                 "ports": [{"name": "http", "containerPort": port}]}]}});
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(pod).unwrap(),
    )
    .await
    .unwrap();
    set_status(pods, name, ip, ready).await;
}

async fn set_status(pods: &Api<Pod>, name: &str, ip: &str, ready: bool) {
    let status = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
}

/// (ready IPs, not-ready IPs, ports) of the service's Endpoints.
async fn endpoints(api: &Api<Endpoints>) -> Option<(Vec<String>, Vec<String>, Vec<(String, i32)>)> {
    let ep = api.get_opt("web").await.unwrap()?;
    let mut ready = Vec::new();
    let mut not_ready = Vec::new();
    let mut ports = Vec::new();
    for s in ep.subsets.unwrap_or_default() {
        ready.extend(s.addresses.unwrap_or_default().into_iter().map(|a| a.ip));
        not_ready.extend(
            s.not_ready_addresses
                .unwrap_or_default()
                .into_iter()
                .map(|a| a.ip),
        );
        ports.extend(
            s.ports
                .unwrap_or_default()
                .into_iter()
                .map(|p| (p.name.unwrap_or_default(), p.port)),
        );
    }
    ready.sort();
    not_ready.sort();
    ports.sort();
    ports.dedup();
    Some((ready, not_ready, ports))
}

/// (ip, ready, serving, terminating, port) of every endpoint of the service's slices.
async fn slice_endpoints(api: &Api<EndpointSlice>) -> Vec<(String, bool, bool, bool, i32)> {
    let mut out = Vec::new();
    for slice in api
        .list(&ListParams::default().labels(SLICES))
        .await
        .unwrap()
    {
        let port = slice
            .ports
            .as_ref()
            .and_then(|p| p.first())
            .and_then(|p| p.port)
            .unwrap_or(0);
        for e in slice.endpoints {
            let c = e.conditions.unwrap_or_default();
            out.push((
                e.addresses[0].clone(),
                c.ready.unwrap_or(false),
                c.serving.unwrap_or(false),
                c.terminating.unwrap_or(false),
                port,
            ));
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_endpoints_follow_its_pods() {
    let mut cluster = Cluster::start().await;
    cluster.node("n1", json!({})).await;
    cluster.controllers(&["endpoints", "endpointslice"]).await;
    let client = cluster.admin.clone();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let eps: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    // Pod c serves the named port elsewhere: the target port is resolved per pod.
    pod(&pods, "a", "10.1.0.1", true, 8080).await;
    pod(&pods, "b", "10.1.0.2", true, 8080).await;
    pod(&pods, "c", "10.1.0.3", false, 9090).await;
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}});
    services
        .create(
            &PostParams::default(),
            &serde_json::from_value(svc).unwrap(),
        )
        .await
        .unwrap();
    let (ready, not_ready, ports) = eventually("the Endpoints", 30, || async {
        endpoints(&eps)
            .await
            .filter(|(r, n, _)| r.len() == 2 && n.len() == 1)
    })
    .await;
    assert_eq!(ready, ["10.1.0.1", "10.1.0.2"]);
    assert_eq!(not_ready, ["10.1.0.3"]);
    assert_eq!(
        ports,
        [("http".to_string(), 8080), ("http".to_string(), 9090)]
    );
    let ep = eps.get("web").await.unwrap();
    let a = ep.subsets.unwrap()[0].addresses.clone().unwrap()[0].clone();
    assert_eq!(a.hostname.as_deref(), Some("a"));
    assert_eq!(a.node_name.as_deref(), Some("n1"));
    let target = a.target_ref.unwrap();
    assert_eq!(
        (target.kind.as_deref(), target.name.as_deref()),
        (Some("Pod"), Some("a"))
    );
    let wanted = vec![
        ("10.1.0.1".to_string(), true, true, false, 8080),
        ("10.1.0.2".to_string(), true, true, false, 8080),
        ("10.1.0.3".to_string(), false, false, false, 9090),
    ];
    eventually("the EndpointSlices", 30, || async {
        (slice_endpoints(&slices).await == wanted).then_some(())
    })
    .await;
    for slice in slices
        .list(&ListParams::default().labels(SLICES))
        .await
        .unwrap()
    {
        assert_eq!(slice.address_type, "IPv4");
        assert_eq!(
            slice
                .labels()
                .get("endpointslice.kubernetes.io/managed-by")
                .map(String::as_str),
            Some("endpointslice-controller.k8s.io")
        );
        let owner = &slice.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.controller),
            ("Service", "web", Some(true))
        );
    }
    // c turns ready.
    set_status(&pods, "c", "10.1.0.3", true).await;
    eventually("c ready in Endpoints", 30, || async {
        endpoints(&eps)
            .await
            .filter(|(r, n, _)| r.len() == 3 && n.is_empty())
    })
    .await;
    eventually("c ready in the slices", 30, || async {
        slice_endpoints(&slices)
            .await
            .iter()
            .all(|e| e.1)
            .then_some(())
    })
    .await;
    // b is deleted (on a node, so it terminates first: out of Endpoints, terminating in slices).
    pods.delete("b", &DeleteParams::default()).await.unwrap();
    eventually("b out of Endpoints", 30, || async {
        endpoints(&eps)
            .await
            .filter(|(r, _, _)| r == &["10.1.0.1", "10.1.0.3"])
    })
    .await;
    eventually("b terminating in the slices", 30, || async {
        slice_endpoints(&slices)
            .await
            .iter()
            .any(|e| e.0 == "10.1.0.2" && !e.1 && e.2 && e.3)
            .then_some(())
    })
    .await;
    pods.delete(
        "b",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    eventually("b gone from the slices", 30, || async {
        (!slice_endpoints(&slices)
            .await
            .iter()
            .any(|e| e.0 == "10.1.0.2"))
        .then_some(())
    })
    .await;
    // The API server's own service, without a selector, keeps what the API server wrote.
    let kubernetes = eps.get("kubernetes").await.unwrap();
    assert_eq!(
        kubernetes.subsets.unwrap()[0].ports.clone().unwrap()[0]
            .name
            .as_deref(),
        Some("https")
    );
    let own = slices.get("kubernetes").await.unwrap();
    assert!(own
        .labels()
        .get("endpointslice.kubernetes.io/managed-by")
        .is_none());
    // A deleted service's Endpoints go with it.
    services
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the Endpoints deleted with the service", 30, || async {
        eps.get_opt("web").await.unwrap().is_none().then_some(())
    })
    .await;
    cluster.stop().await;
}
