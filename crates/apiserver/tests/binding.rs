//! `pods/binding`, as the scheduler uses it: it sets spec.nodeName once, which a pod update may
//! never do, and a second binding is a conflict.

mod common;

use common::TestServer;
use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
use kube::api::{Api, PostParams};
use serde_json::json;

#[tokio::test]
async fn binding_assigns_a_node_once_and_a_plain_update_cannot() {
    let server = TestServer::start().await;
    // What the controller manager's serviceaccount controller would have made (ServiceAccount
    // admission refuses pods without it).
    server.ok(&["create", "serviceaccount", "default"]).await;
    let pods: Api<Pod> = Api::namespaced(server.admin_client().await, "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();

    // A plain update may not set the node (upstream's pod update rules).
    let mut changed = pods.get("p").await.unwrap();
    changed.spec.as_mut().unwrap().node_name = Some("n1".into());
    let err = pods
        .replace("p", &PostParams::default(), &changed)
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref e) if e.code == 422),
        "{err}"
    );

    let binding = Binding {
        metadata: kube::api::ObjectMeta {
            name: Some("p".into()),
            ..Default::default()
        },
        target: ObjectReference {
            kind: Some("Node".into()),
            name: Some("n1".into()),
            ..Default::default()
        },
    };
    let bind = |b: &Binding| {
        let body = serde_json::to_vec(b).unwrap();
        let req = http::Request::post("/api/v1/namespaces/default/pods/p/binding")
            .header("Content-Type", "application/json")
            .body(body)
            .unwrap();
        let client = pods.clone().into_client();
        async move { client.request_text(req).await }
    };
    bind(&binding).await.expect("the first binding is accepted");
    let bound = pods.get("p").await.unwrap();
    assert_eq!(bound.spec.unwrap().node_name.as_deref(), Some("n1"));

    let err = bind(&binding).await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref e) if e.code == 409),
        "{err}"
    );
    server.stop().await;
}
