//! Service-account tokens from the TokenRequest API with the real kubectl: `kubectl create token`
//! prints a JWT that authenticates as the service account, with the requested lifetime and
//! audience; a token bound to a pod stops working when the pod goes; bad requests get upstream's
//! errors. (Each namespace's `default` ServiceAccount is the controller manager's work, tested in
//! the controllers crate; here the test makes the one it uses.)

mod common;

use std::path::Path;
use std::process::Output;

use base64::Engine as _;
use common::TestServer;
use serde_json::{json, Value};

/// A server that can sign tokens: a fresh P-256 key, private half for TokenRequest, public half
/// for the authenticator.
async fn server() -> TestServer {
    let s = TestServer::start_with(|c| {
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
    .await;
    // What the controller manager's serviceaccount controller would have made.
    s.ok(&["create", "serviceaccount", "default"]).await;
    s
}

/// The JWT's payload, decoded.
fn payload(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).expect("a JWT has three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON payload")
}

/// kubectl with only a server, its CA and `token` (an otherwise empty kubeconfig).
async fn with_token(s: &TestServer, kubeconfig: &Path, token: &str, args: &[&str]) -> Output {
    tokio::process::Command::new("/usr/bin/kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--token")
        .arg(token)
        .arg("--cache-dir")
        .arg(s.dir.path().join("cache-token"))
        .args(args)
        .env("HOME", s.dir.path())
        .kill_on_drop(true)
        .output()
        .await
        .expect("run kubectl")
}

/// `kubectl auth whoami` with the token: the username, or the failure's stderr.
async fn whoami(s: &TestServer, token: &str) -> Result<Value, String> {
    let kubeconfig = s.kubeconfig_with("empty.kubeconfig", "");
    let out = with_token(s, &kubeconfig, token, &["auth", "whoami", "-o", "json"]).await;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&out.stdout).expect("whoami JSON"))
}

async fn create_token(s: &TestServer, args: &[&str]) -> String {
    let mut all = vec!["create", "token"];
    all.extend_from_slice(args);
    s.ok(&all).await.trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_token_authenticates_as_the_service_account() {
    let s = server().await;
    let sa_uid = s
        .ok(&["get", "sa", "default", "-o", "jsonpath={.metadata.uid}"])
        .await;
    let token = create_token(&s, &["default"]).await;
    assert_eq!(token.split('.').count(), 3, "not a JWT: {token}");
    let claims = payload(&token);
    assert_eq!(claims["iss"], "https://kubernetes.default.svc");
    assert_eq!(claims["sub"], "system:serviceaccount:default:default");
    assert_eq!(claims["aud"], json!(["https://kubernetes.default.svc"]));
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );
    assert_eq!(claims["nbf"], claims["iat"]);
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
    assert_eq!(
        claims["kubernetes.io"],
        json!({"namespace": "default", "serviceaccount": {"name": "default", "uid": sa_uid}})
    );

    let me = whoami(&s, &token).await.expect("token accepted");
    let user = &me["status"]["userInfo"];
    assert_eq!(user["username"], "system:serviceaccount:default:default");
    assert_eq!(user["uid"], sa_uid.as_str());
    let groups = user["groups"].as_array().unwrap();
    assert!(
        groups.contains(&json!("system:serviceaccounts:default")),
        "{user}"
    );

    let short = create_token(&s, &["default", "--duration=10m"]).await;
    let claims = payload(&short);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        600
    );
    assert!(whoami(&s, &short).await.is_ok());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_audience_and_deleted_service_account_are_refused() {
    let s = server().await;
    let foo = create_token(&s, &["default", "--audience=foo"]).await;
    assert_eq!(payload(&foo)["aud"], json!(["foo"]));
    let err = whoami(&s, &foo)
        .await
        .expect_err("foo is not the server's audience");
    assert!(
        err.contains("Unauthorized") || err.contains("logged in"),
        "{err}"
    );

    s.ok(&["create", "serviceaccount", "robot"]).await;
    let robot = create_token(&s, &["robot"]).await;
    assert!(whoami(&s, &robot).await.is_ok());
    s.ok(&["delete", "serviceaccount", "robot"]).await;
    assert!(
        whoami(&s, &robot).await.is_err(),
        "token outlived its service account"
    );
    // Recreated under the same name it is another account: the old token stays refused.
    s.ok(&["create", "serviceaccount", "robot"]).await;
    assert!(
        whoami(&s, &robot).await.is_err(),
        "token of the old uid accepted"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_bound_to_a_pod_dies_with_it() {
    let s = server().await;
    s.ok(&["run", "p", "--image=registry.k8s.io/pause:3.10"])
        .await;
    let pod_uid = s
        .ok(&["get", "pod", "p", "-o", "jsonpath={.metadata.uid}"])
        .await;
    let token = create_token(
        &s,
        &[
            "default",
            "--bound-object-kind",
            "Pod",
            "--bound-object-name",
            "p",
        ],
    )
    .await;
    assert_eq!(
        payload(&token)["kubernetes.io"]["pod"],
        json!({"name": "p", "uid": pod_uid})
    );
    assert!(whoami(&s, &token).await.is_ok());
    s.ok(&["delete", "pod", "p", "--grace-period=0", "--force"])
        .await;
    let err = whoami(&s, &token)
        .await
        .expect_err("token outlived its pod");
    assert!(
        err.contains("Unauthorized") || err.contains("logged in"),
        "{err}"
    );

    let err = s
        .fails(&[
            "create",
            "token",
            "default",
            "--bound-object-kind",
            "Pod",
            "--bound-object-name",
            "gone",
        ])
        .await;
    assert!(err.contains(r#"pods "gone" not found"#), "{err}");
    s.stop().await;
}

/// POSTs a TokenRequest as the admin; returns the status code and body.
async fn token_request(s: &TestServer, sa: &str, spec: Value) -> (u16, Value) {
    let client = s.admin_client().await;
    let body =
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec});
    let req = http::Request::builder()
        .method("POST")
        .uri(format!(
            "/api/v1/namespaces/default/serviceaccounts/{sa}/token"
        ))
        .header("Content-Type", "application/json")
        .body(body.to_string().into_bytes())
        .unwrap();
    match client.request_text(req).await {
        Ok(text) => (201, serde_json::from_str(&text).unwrap()),
        Err(kube::Error::Api(e)) => (e.code, json!({"message": e.message, "reason": e.reason})),
        Err(e) => panic!("token request: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_upstream_errors() {
    let s = server().await;
    let (code, body) = token_request(&s, "default", json!({"expirationSeconds": 60})).await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(
        body["message"],
        "TokenRequest.authentication.k8s.io \"\" is invalid: spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"
    );
    let (code, body) = token_request(&s, "nosuch", json!({})).await;
    assert_eq!(
        (code, body["message"].as_str()),
        (404, Some(r#"serviceaccounts "nosuch" not found"#))
    );
    let err = s.fails(&["create", "token", "nosuch"]).await;
    assert!(
        err.contains(r#"serviceaccounts "nosuch" not found"#),
        "{err}"
    );

    let (code, body) = token_request(&s, "default", json!({})).await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["kind"], "TokenRequest");
    assert_eq!(body["spec"]["expirationSeconds"], 3600);
    assert!(body["status"]["expirationTimestamp"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_lists_token_request() {
    let s = server().await;
    let v1: Value = serde_json::from_str(&s.ok(&["get", "--raw", "/api/v1"]).await).unwrap();
    let token_res = v1["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "serviceaccounts/token")
        .expect("serviceaccounts/token in discovery");
    assert_eq!(token_res["verbs"], json!(["create"]));
    assert_eq!(token_res["kind"], "TokenRequest");
    s.stop().await;
}
