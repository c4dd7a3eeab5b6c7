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
