//! The controller manager's frame: per-controller service-account clients and leader election.

mod support;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::Api;
use support::{eventually, Cluster};

#[tokio::test]
async fn controllers_act_as_their_own_service_accounts() {
    let cluster = Cluster::start().await;
    let paths = pki::Paths::new(cluster.dir.path());
    let config = support::kube_config(&paths.controller_config, cluster.addr).await;
    let ctx = controllers::Context::new(
        kube::Client::try_from(config.clone()).unwrap(),
        config,
        "test".into(),
        Default::default(),
    )
    .unwrap();
    let client = ctx
        .client_for("replicaset-controller")
        .await
        .expect("client");
    let accounts: Api<ServiceAccount> = Api::namespaced(cluster.admin.clone(), "kube-system");
    assert!(accounts
        .get_opt("replicaset-controller")
        .await
        .unwrap()
        .is_some());
    // The bootstrap role system:controller:replicaset-controller lets it list pods...
    let pods: Api<Pod> = Api::all(client.clone());
    pods.list(&Default::default())
        .await
        .expect("list pods as the controller");
    // ...but not read secrets, which the controller manager's own role would not allow either.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::all(client);
    let err = secrets.list(&Default::default()).await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref e) if e.code == 403),
        "{err:?}"
    );
    cluster.stop().await;
}

#[tokio::test]
async fn the_lease_holder_is_the_controller_manager() {
    let cluster = Cluster::start().await;
    let manager = cluster
        .manager(controllers::Config {
            controllers: vec!["-job".into(), "*".into()],
            identity: Some("first".into()),
            ..Default::default()
        })
        .await;
    let leases: Api<Lease> = Api::namespaced(cluster.admin.clone(), "kube-system");
    eventually("the kube-controller-manager lease", 20, || async {
        let lease = leases.get_opt("kube-controller-manager").await.unwrap()?;
        let holder = lease.spec?.holder_identity?;
        (holder == "first").then_some(())
    })
    .await;
    manager.stop().await;
    cluster.stop().await;
}
