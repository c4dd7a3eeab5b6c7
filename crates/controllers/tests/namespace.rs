//! The namespace controller: `kubectl delete namespace` (the real kubectl) empties the namespace
//! of every resource and removes it; content held by a finalizer keeps it Terminating with
//! upstream's conditions saying why. (Moved here from the API server's kubectl tests when the
//! namespace finalizer moved into the controller manager.)

mod support;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use support::{eventually, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_namespace_with_contents() {
    let mut s = Cluster::start().await;
    s.controllers(&["namespace"]).await;
    s.kubectl_v(Some("1.27"), &["create", "ns", "doomed"]).await;
    s.kubectl(&[
        "create",
        "configmap",
        "c1",
        "-n",
        "doomed",
        "--from-literal=a=b",
    ])
    .await;
    s.kubectl(&[
        "create",
        "deployment",
        "d",
        "-n",
        "doomed",
        "--image=busybox",
    ])
    .await;
    s.kubectl(&["create", "secret", "generic", "s", "-n", "doomed"])
        .await;
    s.kubectl(&["delete", "ns", "doomed", "--timeout=30s"])
        .await;
    let out = s.kubectl_v(None, &["get", "ns", "doomed"]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not found"), "{err}");
    let out = s
        .kubectl_v(Some("1.27"), &["create", "configmap", "c2", "-n", "doomed"])
        .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("namespaces \"doomed\" not found"), "{err}");
    let left = s
        .kubectl(&["get", "cm,deploy,secret", "-n", "doomed", "-o", "name"])
        .await;
    assert_eq!(left.trim(), "");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_with_finalizers_keeps_the_namespace_terminating_with_conditions() {
    let mut s = Cluster::start().await;
    s.controllers(&["namespace"]).await;
    let namespaces: Api<Namespace> = Api::all(s.admin.clone());
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "held"}});
    namespaces
        .create(&PostParams::default(), &serde_json::from_value(ns).unwrap())
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(s.admin.clone(), "held");
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "keep", "finalizers": ["example.com/keep"]}});
    cms.create(&PostParams::default(), &serde_json::from_value(cm).unwrap())
        .await
        .unwrap();
    namespaces
        .delete("held", &Default::default())
        .await
        .unwrap();
    let conditions = eventually("the remaining-content conditions", 30, || async {
        let ns = namespaces.get("held").await.unwrap();
        let conditions = ns.status?.conditions?;
        let remaining = conditions
            .iter()
            .find(|c| c.type_ == "NamespaceContentRemaining")?;
        (remaining.status == "True").then_some(conditions)
    })
    .await;
    let find = |t: &str| conditions.iter().find(|c| c.type_ == t).unwrap().clone();
    let remaining = find("NamespaceContentRemaining");
    assert_eq!(remaining.reason.as_deref(), Some("SomeResourcesRemain"));
    assert_eq!(
        remaining.message.as_deref(),
        Some("Some resources are remaining: configmaps has 1 resource instances")
    );
    let finalizers = find("NamespaceFinalizersRemaining");
    assert_eq!(finalizers.status, "True");
    assert_eq!(
        finalizers.message.as_deref(),
        Some("Some content in the namespace has finalizers remaining: example.com/keep in 1 resource instances")
    );
    let discovery = find("NamespaceDeletionDiscoveryFailure");
    assert_eq!(
        (discovery.status.as_str(), discovery.reason.as_deref()),
        ("False", Some("ResourcesDiscovered"))
    );
    cms.patch(
        "keep",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    eventually("the namespace gone", 30, || async {
        namespaces
            .get_opt("held")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    s.stop().await;
}
