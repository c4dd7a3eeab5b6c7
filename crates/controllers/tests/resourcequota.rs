//! ResourceQuota usage follows the objects created in and deleted from its namespace.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, ResourceQuota};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use support::{eventually, Cluster};

async fn create<K>(client: &Client, value: serde_json::Value)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), "default");
    api.create(
        &PostParams::default(),
        &serde_json::from_value(value).unwrap(),
    )
    .await
    .expect("create");
}

fn pod(name: &str, cpu: &str, memory: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                    "resources": {"requests": {"cpu": cpu, "memory": memory},
                                  "limits": {"cpu": cpu, "memory": memory}}}]}})
}

async fn used_is(client: &Client, want: &[(&str, &str)]) {
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), "default");
    let want: BTreeMap<String, String> = want
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let what = format!("quota used {want:?}");
    eventually(&what, 20, || async {
        let used: BTreeMap<String, String> = quotas
            .get("q")
            .await
            .unwrap()
            .status?
            .used?
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        (used == want).then_some(())
    })
    .await;
}

#[tokio::test]
async fn used_follows_created_and_deleted_objects() {
    let cluster = Cluster::start().await;
    let admin = cluster.admin.clone();
    let manager = cluster
        .manager(controllers::Config {
            controllers: vec!["resourcequota".into()],
            leader_election: false,
            // count/deployments.apps is not watched: it follows on the resync.
            resource_quota_sync_period: Duration::from_secs(2),
            ..Default::default()
        })
        .await;
    create::<ResourceQuota>(
        &admin,
        json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q"},
               "spec": {"hard": {"pods": "10", "count/pods": "10", "configmaps": "10",
                                 "services": "5", "requests.cpu": "4", "requests.memory": "4Gi",
                                 "limits.cpu": "4", "limits.memory": "4Gi",
                                 "count/deployments.apps": "3"}}}),
    )
    .await;
    // The namespace's own kube-root-ca.crt config map may or may not be there: count it.
    let configmaps: Api<ConfigMap> = Api::namespaced(admin.clone(), "default");
    let base = configmaps
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .len();
    let zero = [
        ("pods", "0"),
        ("count/pods", "0"),
        ("services", "1"), // the kubernetes service
        ("requests.cpu", "0"),
        ("requests.memory", "0"),
        ("limits.cpu", "0"),
        ("limits.memory", "0"),
        ("count/deployments.apps", "0"),
    ];
    let with = |extra: &[(&'static str, String)]| -> Vec<(&'static str, String)> {
        let mut all: Vec<(&str, String)> = zero.iter().map(|(k, v)| (*k, v.to_string())).collect();
        for (k, v) in extra {
            all.retain(|(key, _)| key != k);
            all.push((k, v.clone()));
        }
        all
    };
    let check = |list: Vec<(&'static str, String)>| {
        let admin = admin.clone();
        async move {
            let refs: Vec<(&str, &str)> = list.iter().map(|(k, v)| (*k, v.as_str())).collect();
            used_is(&admin, &refs).await
        }
    };
    check(with(&[("configmaps", base.to_string())])).await;

    create::<Pod>(&admin, pod("a", "500m", "128Mi")).await;
    create::<Pod>(&admin, pod("b", "1", "128Mi")).await;
    create::<ConfigMap>(
        &admin,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}}),
    )
    .await;
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"selector": {"matchLabels": {"app": "d"}},
                 "template": {"metadata": {"labels": {"app": "d"}},
                              "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}}});
    create::<k8s_openapi::api::apps::v1::Deployment>(&admin, deployment).await;
    check(with(&[
        ("pods", "2".into()),
        ("count/pods", "2".into()),
        ("configmaps", (base + 1).to_string()),
        ("requests.cpu", "1500m".into()),
        ("limits.cpu", "1500m".into()),
        ("requests.memory", "256Mi".into()),
        ("limits.memory", "256Mi".into()),
        ("count/deployments.apps", "1".into()),
    ]))
    .await;

    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    pods.delete("a", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    configmaps
        .delete("cm", &DeleteParams::default())
        .await
        .unwrap();
    check(with(&[
        ("pods", "1".into()),
        ("count/pods", "1".into()),
        ("configmaps", base.to_string()),
        ("requests.cpu", "1".into()),
        ("limits.cpu", "1".into()),
        ("requests.memory", "128Mi".into()),
        ("limits.memory", "128Mi".into()),
        ("count/deployments.apps", "1".into()),
    ]))
    .await;
    manager.stop().await;
    cluster.stop().await;
}

/// A cluster running only the resourcequota controller, resyncing every 2 s.
async fn quota_cluster() -> (Cluster, support::Running) {
    let cluster = Cluster::start().await;
    let manager = cluster
        .manager(controllers::Config {
            controllers: vec!["resourcequota".into()],
            leader_election: false,
            resource_quota_sync_period: Duration::from_secs(2),
            ..Default::default()
        })
        .await;
    (cluster, manager)
}

/// Waits until quota `name` in `ns` shows `used` (as the controller writes it).
async fn quota_used(client: &Client, ns: &str, name: &str, want: &[(&str, &str)]) {
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), ns);
    let want: BTreeMap<String, String> = want
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    eventually(&format!("quota {ns}/{name} used {want:?}"), 20, || async {
        let used: BTreeMap<String, String> = quotas
            .get(name)
            .await
            .ok()?
            .status?
            .used?
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        (used == want).then_some(())
    })
    .await;
}

/// kubectl that must fail: its stderr.
async fn refused(cluster: &Cluster, args: &[&str]) -> String {
    let out = cluster.kubectl_v(None, args).await;
    assert!(
        !out.status.success(),
        "kubectl {args:?} unexpectedly succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

#[tokio::test]
async fn kubectl_run_past_a_quota_is_refused_with_upstreams_message() {
    let (cluster, manager) = quota_cluster().await;
    cluster.kubectl(&["create", "namespace", "q"]).await;
    cluster
        .kubectl(&["create", "quota", "pods", "-n", "q", "--hard=pods=2"])
        .await;
    quota_used(&cluster.admin, "q", "pods", &[("pods", "0")]).await;
    for name in ["a", "b"] {
        cluster
            .kubectl(&["run", name, "-n", "q", "--image=busybox"])
            .await;
    }
    let err = refused(&cluster, &["run", "c", "-n", "q", "--image=busybox"]).await;
    assert_eq!(
        err,
        "Error from server (Forbidden): pods \"c\" is forbidden: exceeded quota: pods, \
         requested: pods=1, used: pods=2, limited: pods=2"
    );
    // Admission charged the quota before the controller recounted.
    quota_used(&cluster.admin, "q", "pods", &[("pods", "2")]).await;
    // A freed slot can be taken again once the controller has seen the deletion.
    cluster
        .kubectl(&[
            "delete",
            "pod",
            "a",
            "-n",
            "q",
            "--grace-period=0",
            "--force",
        ])
        .await;
    quota_used(&cluster.admin, "q", "pods", &[("pods", "1")]).await;
    cluster
        .kubectl(&["run", "c", "-n", "q", "--image=busybox"])
        .await;
    manager.stop().await;
    cluster.stop().await;
}

#[tokio::test]
async fn compute_quotas_need_requests_and_add_up_quantities() {
    let (cluster, manager) = quota_cluster().await;
    cluster.kubectl(&["create", "namespace", "c"]).await;
    cluster
        .kubectl(&[
            "create",
            "quota",
            "compute",
            "-n",
            "c",
            "--hard=requests.cpu=1,limits.memory=1Gi,services.nodeports=1",
        ])
        .await;
    let zero = [
        ("requests.cpu", "0"),
        ("limits.memory", "0"),
        ("services.nodeports", "0"),
    ];
    quota_used(&cluster.admin, "c", "compute", &zero).await;
    let err = refused(&cluster, &["run", "bare", "-n", "c", "--image=busybox"]).await;
    assert_eq!(
        err,
        "Error from server (Forbidden): pods \"bare\" is forbidden: failed quota: compute: \
         must specify limits.memory for: bare; requests.cpu for: bare"
    );
    let manifest = |name: &str| {
        let path = cluster.dir.path().join(format!("{name}.yaml"));
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: c}}\nspec:\n  \
                 containers:\n  - name: c\n    image: busybox\n    resources:\n      \
                 requests: {{cpu: 600m}}\n      limits: {{cpu: 600m, memory: 512Mi}}\n"
            ),
        )
        .unwrap();
        path.display().to_string()
    };
    cluster.kubectl(&["create", "-f", &manifest("first")]).await;
    let err = refused(&cluster, &["create", "-f", &manifest("second")]).await;
    assert_eq!(
        err,
        "Error from server (Forbidden): error when creating \"".to_string()
            + &manifest("second")
            + "\": pods \"second\" is forbidden: exceeded quota: compute, requested: \
               requests.cpu=600m, used: requests.cpu=600m, limited: requests.cpu=1"
    );
    quota_used(
        &cluster.admin,
        "c",
        "compute",
        &[
            ("requests.cpu", "600m"),
            ("limits.memory", "512Mi"),
            ("services.nodeports", "0"),
        ],
    )
    .await;
    // A NodePort service with two ports charges two node ports.
    let err = refused(
        &cluster,
        &[
            "create",
            "service",
            "nodeport",
            "web",
            "-n",
            "c",
            "--tcp=80:80,443:443",
        ],
    )
    .await;
    assert!(
        err.ends_with(
            "services \"web\" is forbidden: exceeded quota: compute, requested: \
             services.nodeports=2, used: services.nodeports=0, limited: services.nodeports=1"
        ),
        "{err}"
    );
    manager.stop().await;
    cluster.stop().await;
}

#[tokio::test]
async fn concurrent_creates_never_share_the_last_slot() {
    let (cluster, manager) = quota_cluster().await;
    cluster.kubectl(&["create", "namespace", "race"]).await;
    cluster
        .kubectl(&[
            "create",
            "quota",
            "slots",
            "-n",
            "race",
            "--hard=count/configmaps=3",
        ])
        .await;
    quota_used(
        &cluster.admin,
        "race",
        "slots",
        &[("count/configmaps", "0")],
    )
    .await;
    let configmaps: Api<ConfigMap> = Api::namespaced(cluster.admin.clone(), "race");
    let attempts = (0..12).map(|i| {
        let api = configmaps.clone();
        async move {
            let cm =
                serde_json::from_value(json!({"metadata": {"name": format!("cm-{i}")}})).unwrap();
            api.create(&PostParams::default(), &cm).await
        }
    });
    let results = futures::future::join_all(attempts).await;
    let created = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(created, 3, "{results:?}");
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        match r {
            kube::Error::Api(e) => {
                assert_eq!(e.code, 403, "{e:?}");
                assert!(e.message.contains("exceeded quota: slots, requested: count/configmaps=1, used: count/configmaps=3, limited: count/configmaps=3"), "{}", e.message);
            }
            other => panic!("unexpected error {other:?}"),
        }
    }
    quota_used(
        &cluster.admin,
        "race",
        "slots",
        &[("count/configmaps", "3")],
    )
    .await;
    manager.stop().await;
    cluster.stop().await;
}

#[tokio::test]
async fn scoped_quotas_count_only_the_pods_they_select() {
    let (cluster, manager) = quota_cluster().await;
    cluster.kubectl(&["create", "namespace", "s"]).await;
    cluster
        .kubectl(&[
            "create",
            "quota",
            "besteffort",
            "-n",
            "s",
            "--hard=pods=1",
            "--scopes=BestEffort",
        ])
        .await;
    let high = cluster.dir.path().join("high.yaml");
    std::fs::write(
        &high,
        "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: high, namespace: s}\nspec:\n  \
         hard: {pods: \"5\", requests.cpu: \"1\"}\n  scopeSelector:\n    matchExpressions:\n    \
         - {scopeName: PriorityClass, operator: In, values: [high]}\n",
    )
    .unwrap();
    cluster
        .kubectl(&["create", "-f", &high.display().to_string()])
        .await;
    quota_used(&cluster.admin, "s", "besteffort", &[("pods", "0")]).await;
    quota_used(
        &cluster.admin,
        "s",
        "high",
        &[("pods", "0"), ("requests.cpu", "0")],
    )
    .await;
    // BestEffort pods: one fits, the second is refused.
    cluster
        .kubectl(&["run", "be1", "-n", "s", "--image=busybox"])
        .await;
    let err = refused(&cluster, &["run", "be2", "-n", "s", "--image=busybox"]).await;
    assert!(
        err.ends_with(
            "exceeded quota: besteffort, requested: pods=1, used: pods=1, limited: pods=1"
        ),
        "{err}"
    );
    // A pod with requests is not BestEffort; without the priority class the other quota
    // does not select it either.
    let pods: Api<Pod> = Api::namespaced(cluster.admin.clone(), "s");
    let mut burstable = pod("burstable", "300m", "64Mi");
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(burstable.clone()).unwrap(),
    )
    .await
    .expect("burstable pod outside both scopes");
    // With priorityClassName high it is selected and charged.
    burstable["metadata"]["name"] = json!("urgent");
    burstable["spec"]["priorityClassName"] = json!("high");
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(burstable).unwrap(),
    )
    .await
    .expect("high priority pod");
    // The controller's recount applies the same scopes.
    quota_used(&cluster.admin, "s", "besteffort", &[("pods", "1")]).await;
    quota_used(
        &cluster.admin,
        "s",
        "high",
        &[("pods", "1"), ("requests.cpu", "300m")],
    )
    .await;
    manager.stop().await;
    cluster.stop().await;
}
