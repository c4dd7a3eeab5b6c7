//! Every namespace gets its `default` ServiceAccount (recreated when deleted) and the
//! `kube-root-ca.crt` ConfigMap with the cluster CA; a legacy service-account token Secret is
//! filled with a token that authenticates as its account. (The default-account checks moved
//! here from the API server's token tests when the account moved into the controller manager.)

mod support;

use base64::Engine as _;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use kube::api::{Api, PostParams};
use serde_json::{json, Value};
use support::{eventually, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_get_a_default_service_account_and_the_root_ca() {
    let mut s = Cluster::start().await;
    s.controllers(&["serviceaccount", "root-ca-cert-publisher"])
        .await;
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let accounts: Api<ServiceAccount> = Api::namespaced(s.admin.clone(), ns);
        eventually("the default service account", 30, || async {
            accounts.get_opt("default").await.unwrap()
        })
        .await;
    }
    s.kubectl(&["create", "namespace", "team"]).await;
    let accounts: Api<ServiceAccount> = Api::namespaced(s.admin.clone(), "team");
    eventually("team's default service account", 10, || async {
        accounts.get_opt("default").await.unwrap()
    })
    .await;
    let token = s
        .kubectl(&["create", "token", "default", "-n", "team"])
        .await;
    assert!(!token.trim().is_empty());
    // Deleted, it comes back (a new object).
    let old = accounts.get("default").await.unwrap().metadata.uid;
    s.kubectl(&["delete", "sa", "default", "-n", "team"]).await;
    eventually("the default service account recreated", 10, || async {
        let sa = accounts.get_opt("default").await.unwrap()?;
        (sa.metadata.uid != old).then_some(())
    })
    .await;
    // The CA bundle, as the cluster's CA file holds it.
    let ca = std::fs::read_to_string(pki::Paths::new(s.dir.path()).ca_crt).unwrap();
    let maps: Api<ConfigMap> = Api::namespaced(s.admin.clone(), "team");
    let cm = eventually("kube-root-ca.crt", 10, || async {
        maps.get_opt("kube-root-ca.crt").await.unwrap()
    })
    .await;
    let published = cm.data.unwrap()["ca.crt"].clone();
    assert_eq!(published.trim(), ca.trim());
    // Edited, it is put back.
    s.kubectl(&["create", "configmap", "x", "-n", "team"]).await;
    s.kubectl(&[
        "patch",
        "configmap",
        "kube-root-ca.crt",
        "-n",
        "team",
        "-p",
        r#"{"data":{"ca.crt":"nope"}}"#,
    ])
    .await;
    eventually("kube-root-ca.crt restored", 10, || async {
        let cm = maps.get("kube-root-ca.crt").await.unwrap();
        (cm.data.unwrap()["ca.crt"].trim() == ca.trim()).then_some(())
    })
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_token_secret_gets_a_token_that_authenticates() {
    let s = Cluster::start().await;
    let config = controllers::Config {
        controllers: vec!["serviceaccount-token".into()],
        leader_election: false,
        service_account_key: Some(pki::Paths::new(s.dir.path()).service_account_key),
        ..Default::default()
    };
    let manager = s.manager(config).await;
    s.kubectl(&["create", "serviceaccount", "robot"]).await;
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
        "metadata": {"name": "robot-token", "annotations": {"kubernetes.io/service-account.name": "robot"}}});
    let secrets: Api<Secret> = Api::namespaced(s.admin.clone(), "default");
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(secret.clone()).unwrap(),
        )
        .await
        .unwrap();
    let secret_json = secret;
    let filled = eventually("the token filled in", 30, || async {
        let secret = secrets.get("robot-token").await.unwrap();
        secret.data.filter(|d| d.contains_key("token"))
    })
    .await;
    assert_eq!(filled["namespace"].0, b"default");
    assert!(String::from_utf8_lossy(&filled["ca.crt"].0).contains("BEGIN CERTIFICATE"));
    let token = String::from_utf8(filled["token"].0.clone()).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["iss"], "kubernetes/serviceaccount");
    assert_eq!(
        claims["kubernetes.io/serviceaccount/secret.name"],
        "robot-token"
    );
    // The token authenticates as the account (kubectl auth whoami with only the token).
    let kubeconfig = s.dir.path().join("robot.kubeconfig");
    let admin = std::fs::read_to_string(&s.kubeconfig).unwrap();
    let server = admin
        .lines()
        .find_map(|l| l.trim().strip_prefix("server:"))
        .unwrap()
        .trim()
        .to_string();
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n"
        ),
    )
    .unwrap();
    let out = whoami(&kubeconfig, s.dir.path()).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let me: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        me["status"]["userInfo"]["username"],
        "system:serviceaccount:default:robot"
    );
    // As upstream, a legacy token lives only as long as its Secret: deleting the Secret revokes
    // it even though the account stays.
    secrets
        .delete("robot-token", &Default::default())
        .await
        .unwrap();
    let out = whoami(&kubeconfig, s.dir.path()).await;
    assert!(
        !out.status.success(),
        "a deleted secret's token still works: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Unauthorized"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(secret_json).unwrap(),
        )
        .await
        .unwrap();
    // Its account deleted, the secret goes too.
    s.kubectl(&["delete", "serviceaccount", "robot"]).await;
    eventually("the secret deleted with its account", 30, || async {
        secrets
            .get_opt("robot-token")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    manager.stop().await;
    s.stop().await;
}

/// `kubectl auth whoami -o json` with the given kubeconfig.
async fn whoami(kubeconfig: &std::path::Path, home: &std::path::Path) -> std::process::Output {
    tokio::process::Command::new("/usr/bin/kubectl")
        .args([
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "auth",
            "whoami",
            "-o",
            "json",
        ])
        .env("HOME", home)
        .output()
        .await
        .unwrap()
}
