//! ServiceAccount admission with the real kubectl: pods get `serviceAccountName: default` and the
//! projected `kube-api-access-XXXXX` volume mounted read-only in every container, unless the pod
//! or its service account opts out; a pod whose service account is missing is refused with
//! upstream's message. Tokens bound to a pod stop authenticating once it is deleted, and
//! TokenReview honours `spec.audiences`.

mod common;

use common::TestServer;
use serde_json::{json, Value};

/// A server that signs tokens (as tests/tokens.rs): private key for TokenRequest, public key for
/// the authenticator.
async fn server() -> TestServer {
    TestServer::start_with(|c| {
        let dir = c.service_account_keys[0]
            .parent()
            .expect("key dir")
            .to_path_buf();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        std::fs::write(dir.join("signing.key"), key.serialize_pem()).unwrap();
        std::fs::write(dir.join("signing.pub"), key.public_key_pem()).unwrap();
        c.service_account_keys = vec![dir.join("signing.pub")];
        c.service_account_signing_key = Some(dir.join("signing.key"));
    })
    .await
}

/// The default ServiceAccount may come from the server or a controller: make sure it is there.
async fn ensure_default_sa(s: &TestServer, ns: &str) {
    let _ = s
        .kubectl(&["create", "serviceaccount", "default", "-n", ns])
        .await;
}

async fn pod_json(s: &TestServer, args: &[&str]) -> Value {
    let mut all = vec!["get", "pod"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(&s.ok(&all).await).expect("pod JSON")
}

const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_get_the_service_account_token_volume() {
    let s = server().await;
    ensure_default_sa(&s, "default").await;
    let manifest = s.file(
        "pod.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  initContainers: [{name: init, image: busybox}]
  containers:
  - {name: a, image: nginx}
  - {name: b, image: nginx, volumeMounts: [{name: data, mountPath: /data}]}
  volumes: [{name: data, emptyDir: {}}]
"#,
    );
    s.ok(&["create", "-f", &manifest]).await;
    let pod = pod_json(&s, &["web"]).await;
    let spec = &pod["spec"];
    assert_eq!(spec["serviceAccountName"], "default");
    assert_eq!(spec["serviceAccount"], "default");
    let volumes = spec["volumes"].as_array().expect("volumes");
    assert_eq!(volumes.len(), 2);
    let volume = &volumes[1];
    let name = volume["name"].as_str().expect("volume name");
    assert!(
        name.starts_with("kube-api-access-") && name.len() == "kube-api-access-".len() + 5,
        "{name}"
    );
    assert_eq!(
        volume["projected"],
        json!({
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        })
    );
    let mount = json!({"name": name, "readOnly": true, "mountPath": MOUNT_PATH});
    assert_eq!(spec["initContainers"][0]["volumeMounts"], json!([mount]));
    assert_eq!(spec["containers"][0]["volumeMounts"], json!([mount]));
    assert_eq!(
        spec["containers"][1]["volumeMounts"],
        json!([{"name": "data", "mountPath": "/data"}, mount])
    );

    // Opting out: on the pod, or on its service account.
    s.ok(&[
        "run",
        "quiet",
        "--image=nginx",
        "--overrides",
        r#"{"spec":{"automountServiceAccountToken":false}}"#,
    ])
    .await;
    let quiet = pod_json(&s, &["quiet"]).await;
    assert!(quiet["spec"]["volumes"].is_null(), "{}", quiet["spec"]);
    assert!(quiet["spec"]["containers"][0]["volumeMounts"].is_null());
    let sa = s.file(
        "robot.yaml",
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: robot}\nautomountServiceAccountToken: false\nimagePullSecrets: [{name: registry}]\n",
    );
    s.ok(&["create", "-f", &sa]).await;
    s.ok(&[
        "run",
        "robotic",
        "--image=nginx",
        "--overrides",
        r#"{"spec":{"serviceAccountName":"robot"}}"#,
    ])
    .await;
    let robotic = pod_json(&s, &["robotic"]).await;
    assert!(robotic["spec"]["volumes"].is_null(), "{}", robotic["spec"]);
    assert_eq!(
        robotic["spec"]["imagePullSecrets"],
        json!([{"name": "registry"}])
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_whose_service_account_is_missing_is_refused() {
    let s = server().await;
    s.ok(&["create", "namespace", "bare"]).await;
    // Whoever made it, the namespace's default ServiceAccount goes.
    let _ = s
        .kubectl(&["delete", "serviceaccount", "default", "-n", "bare"])
        .await;
    let err = s.fails(&["run", "p", "-n", "bare", "--image=nginx"]).await;
    assert!(
        err.contains(r#"Error from server (Forbidden): pods "p" is forbidden: error looking up service account bare/default: serviceaccount "default" not found"#),
        "{err}"
    );
    let err = s
        .fails(&[
            "run",
            "q",
            "--image=nginx",
            "--overrides",
            r#"{"spec":{"serviceAccountName":"ghost"}}"#,
        ])
        .await;
    assert!(
        err.contains(r#"pods "q" is forbidden: error looking up service account default/ghost: serviceaccount "ghost" not found"#),
        "{err}"
    );
    assert!(
        s.kubectl(&["get", "pod", "p", "-n", "bare"])
            .await
            .status
            .code()
            == Some(1)
    );
    s.stop().await;
}

/// `kubectl auth whoami` with only `token`: Ok(username) or Err(stderr).
async fn whoami(s: &TestServer, token: &str) -> Result<String, String> {
    let kubeconfig = s.kubeconfig_with("token.kubeconfig", &format!("token: {token}"));
    let out = s
        .kubectl_with(
            &kubeconfig,
            &[
                "auth",
                "whoami",
                "-o",
                "jsonpath={.status.userInfo.username}",
            ],
        )
        .await;
    match out.status.success() {
        true => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_bound_token_dies_with_its_pod() {
    let s = server().await;
    ensure_default_sa(&s, "default").await;
    s.ok(&["run", "p", "--image=registry.k8s.io/pause:3.10"])
        .await;
    let token = s
        .ok(&[
            "create",
            "token",
            "default",
            "--bound-object-kind",
            "Pod",
            "--bound-object-name",
            "p",
        ])
        .await;
    let token = token.trim();
    assert_eq!(
        whoami(&s, token).await.expect("a live pod's token"),
        "system:serviceaccount:default:default"
    );
    s.ok(&["delete", "pod", "p", "--grace-period=0", "--force"])
        .await;
    let err = whoami(&s, token).await.expect_err("the pod is gone");
    assert!(
        err.contains("Unauthorized") || err.contains("logged in"),
        "{err}"
    );
    s.stop().await;
}

/// POSTs a TokenReview as the admin and returns its status.
async fn token_review(s: &TestServer, token: &str, audiences: &[&str]) -> Value {
    let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                      "spec": {"token": token, "audiences": audiences}});
    let file = s.file("review.json", &body.to_string());
    let out = s.ok(&["create", "-f", &file, "-o", "json"]).await;
    let review: Value = serde_json::from_str(&out).expect("review JSON");
    review["status"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_review_honours_audiences() {
    let s = server().await;
    ensure_default_sa(&s, "default").await;
    let foo = s
        .ok(&[
            "create",
            "token",
            "default",
            "--audience=foo",
            "--audience=bar",
        ])
        .await;
    let foo = foo.trim();
    let status = token_review(&s, foo, &["foo", "other"]).await;
    assert_eq!(status["authenticated"], true, "{status}");
    assert_eq!(status["audiences"], json!(["foo"]));
    assert_eq!(
        status["user"]["username"],
        "system:serviceaccount:default:default"
    );
    let status = token_review(&s, foo, &["other"]).await;
    assert!(status["authenticated"].is_null(), "{status}");
    assert_eq!(status["error"], "invalid bearer token");
    // No spec.audiences: the server's own, which a foo/bar token is not for.
    let status = token_review(&s, foo, &[]).await;
    assert!(status["authenticated"].is_null(), "{status}");

    let plain = s.ok(&["create", "token", "default"]).await;
    let status = token_review(&s, plain.trim(), &[]).await;
    assert_eq!(status["authenticated"], true, "{status}");
    assert_eq!(
        status["audiences"],
        json!(["https://kubernetes.default.svc"])
    );
    let status = token_review(&s, plain.trim(), &["foo"]).await;
    assert!(status["authenticated"].is_null(), "{status}");
    // Static tokens are for the server's audiences only.
    let status = token_review(&s, common::ADMIN_TOKEN, &[]).await;
    assert_eq!(status["authenticated"], true, "{status}");
    let status = token_review(&s, common::ADMIN_TOKEN, &["foo"]).await;
    assert!(status["authenticated"].is_null(), "{status}");
    s.stop().await;
}
