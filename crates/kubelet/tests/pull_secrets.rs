//! Pulling from a registry that wants credentials: a pod whose `imagePullSecrets` hold them runs
//! the image pulled through CRI from a basic-auth registry on 127.0.0.1 (the fixture in
//! `pull_support`), and one without them, or with the wrong password, is left in
//! ErrImagePull/ImagePullBackOff with the runtime's message. Each test runs in a network
//! namespace of its own; needs root (skipped, saying so, without).

mod pods_support;
mod pull_support;
mod support;

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use pods_support::{container_status, Cluster};
use pull_support::Registry;
use serde_json::json;

const USER: &str = "puller";
const PASSWORD: &str = "s3cret";

async fn start() -> (Cluster, Registry) {
    let cluster = Cluster::start().await;
    let oci = support::images_dir().join("busybox.tar");
    let registry = Registry::start(&oci, "krust/busybox", "pulled", USER, PASSWORD).await;
    (cluster, registry)
}

/// A `kubernetes.io/dockerconfigjson` secret as `kubectl create secret docker-registry` writes it.
async fn pull_secret(cluster: &Cluster, name: &str, server: &str, password: &str) {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}"));
    let config = json!({"auths": {server: {"username": USER, "password": password, "auth": auth}}});
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": config.to_string()}
    }))
    .unwrap();
    Api::<Secret>::namespaced(cluster.admin.clone(), "default")
        .create(&Default::default(), &secret)
        .await
        .expect("create the pull secret");
}

fn pod(name: &str, image: &str, secrets: &[&str]) -> serde_json::Value {
    let refs: Vec<_> = secrets.iter().map(|s| json!({"name": s})).collect();
    json!({
        "metadata": {"name": name},
        "spec": {
            "hostNetwork": true,
            "terminationGracePeriodSeconds": 1,
            "imagePullSecrets": refs,
            "containers": [{
                "name": "main",
                "image": image,
                "imagePullPolicy": "Always",
                "command": ["sleep", "3600"]
            }]
        }
    })
}

fn waiting(pod: &serde_json::Value) -> (String, String) {
    let w = &container_status(pod, "main")["state"]["waiting"];
    (
        w["reason"].as_str().unwrap_or("").to_string(),
        w["message"].as_str().unwrap_or("").to_string(),
    )
}

/// The right secret (keyed by the registry's `host:port`, as `kubectl create secret
/// docker-registry --docker-server` writes it) lets the pod pull and run; the registry saw the
/// credentials.
#[test]
fn a_pod_with_the_pull_secret_pulls_and_runs() {
    if !support::can_run_containers() {
        return;
    }
    support::netns::run(async {
        let (cluster, registry) = start().await;
        pull_secret(&cluster, "regcred", &registry.host(), PASSWORD).await;
        cluster
            .create_pod(pod("pulled", &registry.image(), &["regcred"]))
            .await;
        let pod = cluster
            .wait_pod("pulled", 90, "Running", |p| {
                container_status(p, "main")["state"]["running"].is_object()
            })
            .await;
        assert!(
            registry.authorized_requests() > 0,
            "the registry saw no credentials"
        );
        assert_eq!(container_status(&pod, "main")["image"], registry.image());
        assert!(container_status(&pod, "main")["imageID"]
            .as_str()
            .unwrap_or("")
            .contains("@sha256:"));
        cluster.stop().await;
        registry.stop().await;
    });
}

/// Without a secret, and with a secret holding the wrong password, the pull fails with the
/// runtime's 401 and the pod shows ErrImagePull, then ImagePullBackOff.
#[test]
fn a_pod_without_the_right_secret_cannot_pull() {
    if !support::can_run_containers() {
        return;
    }
    support::netns::run(async {
        let (cluster, registry) = start().await;
        pull_secret(
            &cluster,
            "wrong",
            &format!("https://{}", registry.host()),
            "nope",
        )
        .await;
        let image = registry.image();
        cluster.create_pod(pod("nosecret", &image, &[])).await;
        cluster
            .create_pod(pod("wrongsecret", &image, &["wrong"]))
            .await;
        for name in ["nosecret", "wrongsecret"] {
            let pod = cluster
                .wait_pod(name, 60, "ErrImagePull", |p| waiting(p).0 == "ErrImagePull")
                .await;
            let (_, message) = waiting(&pod);
            assert!(
                message.starts_with(&format!(
                    "rpc error: code = Unknown desc = failed to pull and unpack image \"{image}\""
                )),
                "{name}: {message}"
            );
            assert!(message.contains("401 Unauthorized"), "{name}: {message}");
            let pod = cluster
                .wait_pod(name, 30, "ImagePullBackOff", |p| {
                    waiting(p).0 == "ImagePullBackOff"
                })
                .await;
            assert_eq!(
                waiting(&pod).1,
                format!("Back-off pulling image \"{image}\"")
            );
        }
        assert_eq!(registry.authorized_requests(), 0);
        assert!(
            registry.wrong_credentials() > 0,
            "the wrong secret's credentials never reached the registry"
        );
        cluster.stop().await;
        registry.stop().await;
    });
}

/// The older `kubernetes.io/dockercfg` secret (no `auths` level) with a key matching the
/// registry by a host glob (`127.0.0.*:PORT`), listed after a secret for another registry: the
/// keyring picks the matching credential and the pod runs.
#[test]
fn a_dockercfg_secret_with_a_glob_key_pulls() {
    if !support::can_run_containers() {
        return;
    }
    support::netns::run(async {
        let (cluster, registry) = start().await;
        pull_secret(&cluster, "elsewhere", "quay.io", "other").await;
        let glob = format!("127.0.0.*:{}", registry.addr.port());
        let config = json!({glob: {"username": USER, "password": PASSWORD, "email": "a@b.c"}});
        let secret: Secret = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "oldcfg"},
            "type": "kubernetes.io/dockercfg",
            "stringData": {".dockercfg": config.to_string()}
        }))
        .unwrap();
        Api::<Secret>::namespaced(cluster.admin.clone(), "default")
            .create(&Default::default(), &secret)
            .await
            .expect("create the dockercfg secret");
        cluster
            .create_pod(pod("globbed", &registry.image(), &["elsewhere", "oldcfg"]))
            .await;
        cluster
            .wait_pod("globbed", 90, "Running", |p| {
                container_status(p, "main")["state"]["running"].is_object()
            })
            .await;
        assert!(registry.authorized_requests() > 0);
        assert_eq!(registry.wrong_credentials(), 0);
        cluster.stop().await;
        registry.stop().await;
    });
}
