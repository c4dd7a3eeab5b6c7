//! kube-rs and raw HTTP clients against krust: the watcher, bad input, authentication, paging,
//! restart recovery and expired resource versions.

mod common;

use std::time::Duration;

use common::{TestServer, ADMIN_TOKEN};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::watcher;
use serde_json::{json, Value};

/// Sends a raw request; returns (status code, body as JSON or a string).
async fn raw(
    client: &kube::Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("Content-Type", content_type)
        .body(body)
        .unwrap();
    match client.request_text(req).await {
        Ok(text) => (
            200,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ),
        Err(kube::Error::Api(e)) => (e.code, json!({"message": e.message, "reason": e.reason})),
        Err(e) => panic!("{method} {path}: {e}"),
    }
}

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}})).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_sees_create_update_delete_in_order() {
    let s = TestServer::start().await;
    let client = s.admin_client().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stream_api = api.clone();
    let task = tokio::spawn(async move {
        let mut stream = watcher(
            stream_api,
            watcher::Config::default().fields("metadata.name=watched"),
        )
        .boxed();
        while let Some(ev) = stream.next().await {
            let label = match ev.expect("watch event") {
                watcher::Event::Apply(o) => format!(
                    "apply:{}",
                    o.data
                        .unwrap_or_default()
                        .get("k")
                        .cloned()
                        .unwrap_or_default()
                ),
                watcher::Event::Delete(o) => {
                    format!("delete:{}", o.metadata.name.unwrap_or_default())
                }
                watcher::Event::InitDone => "init".to_string(),
                _ => continue,
            };
            if tx.send(label).is_err() {
                return;
            }
        }
    });
    assert_eq!(rx.recv().await.unwrap(), "init");
    api.create(&PostParams::default(), &cm("watched"))
        .await
        .unwrap();
    let mut updated = api.get("watched").await.unwrap();
    updated
        .data
        .as_mut()
        .unwrap()
        .insert("k".into(), "v2".into());
    api.replace("watched", &PostParams::default(), &updated)
        .await
        .unwrap();
    api.create(&PostParams::default(), &cm("ignored"))
        .await
        .unwrap();
    api.delete("watched", &DeleteParams::default())
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let ev = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("event in time")
            .unwrap();
        seen.push(ev);
    }
    assert_eq!(seen, vec!["apply:v", "apply:v2", "delete:watched"]);
    task.abort();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_right_status_and_changes_nothing() {
    let s = TestServer::start().await;
    let client = s.admin_client().await;
    let path = "/api/v1/namespaces/default/configmaps";
    let json_ct = "application/json";

    let (code, body) = raw(&client, "POST", path, json_ct, b"{not json".to_vec()).await;
    assert_eq!(
        (code, body["reason"].as_str()),
        (400, Some("BadRequest")),
        "{body}"
    );
    let (code, _) = raw(
        &client,
        "POST",
        path,
        "application/yaml",
        b"metadata: [unclosed\n  - :".to_vec(),
    )
    .await;
    assert_eq!(code, 400);

    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}});
    let (code, body) = raw(
        &client,
        "POST",
        path,
        json_ct,
        secret.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 400, "{body}");

    let mistyped = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "typed"}, "data": "not-a-map"});
    let (code, body) = raw(
        &client,
        "POST",
        path,
        json_ct,
        mistyped.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("cannot unmarshal string into Go struct field ConfigMap.data"),
        "{body}"
    );
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [1]}});
    let (code, _) = raw(
        &client,
        "POST",
        "/api/v1/namespaces/default/services",
        json_ct,
        svc.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 400);

    let bad_name =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name"}});
    let (code, body) = raw(
        &client,
        "POST",
        path,
        json_ct,
        bad_name.to_string().into_bytes(),
    )
    .await;
    assert_eq!(
        (code, body["reason"].as_str()),
        (422, Some("Invalid")),
        "{body}"
    );
    let msg = body["message"].as_str().unwrap();
    assert!(msg.starts_with("ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"), "{msg}");

    let huge = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "huge"}, "data": {"k": "x".repeat(10 << 20)}});
    let (code, body) = raw(
        &client,
        "POST",
        path,
        json_ct,
        huge.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 413, "{body}");

    let (code, _) = raw(
        &client,
        "POST",
        path,
        "application/vnd.kubernetes.protobuf",
        b"k8s\0garbage".to_vec(),
    )
    .await;
    assert!(code == 415 || code == 400, "{code}");

    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &cm("c1")).await.unwrap();
    let err = api
        .create(&PostParams::default(), &cm("c1"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(e) if e.code == 409 && e.message == "configmaps \"c1\" already exists"),
        "{err}"
    );
    let stale = api.get("c1").await.unwrap();
    let mut fresh = stale.clone();
    fresh
        .data
        .as_mut()
        .unwrap()
        .insert("k".into(), "new".into());
    api.replace("c1", &PostParams::default(), &fresh)
        .await
        .unwrap();
    let mut stale_write = stale.clone();
    stale_write
        .data
        .as_mut()
        .unwrap()
        .insert("k".into(), "lost".into());
    let err = api
        .replace("c1", &PostParams::default(), &stale_write)
        .await
        .unwrap_err();
    match &err {
        kube::Error::Api(e) => {
            assert_eq!(e.code, 409);
            assert_eq!(e.message, "Operation cannot be fulfilled on configmaps \"c1\": the object has been modified; please apply your changes to the latest version and try again");
        }
        other => panic!("{other}"),
    }
    let err = api.get("nope").await.unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(e) if e.code == 404 && e.message == "configmaps \"nope\" not found"),
        "{err}"
    );

    let names: Vec<String> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n == "x" || n == "huge" || n == "Bad_Name" || n == "typed"),
        "{names:?}"
    );
    assert_eq!(api.get("c1").await.unwrap().data.unwrap()["k"], "new");

    let (code, body) = raw(
        &client,
        "GET",
        "/api/v1/namespaces/default/configmaps?labelSelector=a%20in%20b",
        json_ct,
        vec![],
    )
    .await;
    assert_eq!(code, 400, "{body}");
    let (code, _) = raw(
        &client,
        "POST",
        "/api/v1/namespaces/missing/configmaps",
        json_ct,
        json!({"metadata": {"name": "a"}}).to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 404);
    let (code, _) = raw(
        &client,
        "PUT",
        "/api/v1/namespaces/default/configmaps",
        json_ct,
        vec![],
    )
    .await;
    assert_eq!(code, 405);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication() {
    let s = TestServer::start().await;
    let token_client = s
        .client_from(&s.kubeconfig_with("token.kubeconfig", &format!("token: {ADMIN_TOKEN}")))
        .await;
    let (code, body) = raw(
        &token_client,
        "GET",
        "/api/v1/namespaces",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, 200, "{body}");

    let wrong = s
        .client_from(&s.kubeconfig_with("wrong.kubeconfig", "token: not-a-token"))
        .await;
    let (code, body) = raw(
        &wrong,
        "GET",
        "/api/v1/namespaces",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(
        (code, body["reason"].as_str()),
        (401, Some("Unauthorized")),
        "{body}"
    );
    let (code, _) = raw(&wrong, "GET", "/healthz", "application/json", vec![]).await;
    assert_eq!(
        code, 401,
        "a rejected credential is 401 even where anonymous is allowed"
    );

    let anon = s
        .client_from(&s.kubeconfig_with("anon.kubeconfig", ""))
        .await;
    let (code, _) = raw(&anon, "GET", "/api", "application/json", vec![]).await;
    assert_eq!(code, 401);
    let (code, body) = raw(&anon, "GET", "/version", "application/json", vec![]).await;
    assert_eq!(
        (code, body["gitVersion"].as_str()),
        (200, Some(apiserver::KUBERNETES_VERSION))
    );
    for p in ["/healthz", "/livez", "/readyz"] {
        let (code, body) = raw(&anon, "GET", p, "application/json", vec![]).await;
        assert_eq!((code, body.as_str()), (200, Some("ok")), "{p}");
    }
    let (_, body) = raw(&anon, "GET", "/readyz?verbose", "application/json", vec![]).await;
    let text = body.as_str().unwrap();
    assert!(
        text.contains("[+]ping ok")
            && text.contains("[+]etcd ok")
            && text.ends_with("readyz check passed\n"),
        "{text}"
    );

    // A bound token names its service account's uid; a token for an older incarnation is refused.
    // The account the controller manager would have made.
    s.ok(&["create", "sa", "default", "-n", "kube-system"])
        .await;
    let sa_uid = s
        .ok(&[
            "get",
            "sa",
            "default",
            "-n",
            "kube-system",
            "-o",
            "jsonpath={.metadata.uid}",
        ])
        .await;
    let jwt = service_account_token(&s, "system:serviceaccount:kube-system:default", &sa_uid);
    let sa = s
        .client_from(&s.kubeconfig_with("sa.kubeconfig", &format!("token: {jwt}")))
        .await;
    let (code, body) = raw(
        &sa,
        "GET",
        "/api/v1/namespaces/kube-system/configmaps",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let forged = service_account_token(&s, "nobody", &sa_uid) + "x";
    let forged_client = s
        .client_from(&s.kubeconfig_with("forged.kubeconfig", &format!("token: {forged}")))
        .await;
    let (code, _) = raw(
        &forged_client,
        "GET",
        "/api/v1/namespaces",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, 401);

    let kubectl_wrong = tokio::process::Command::new("/usr/bin/kubectl")
        .args([
            "--kubeconfig",
            s.dir.path().join("wrong.kubeconfig").to_str().unwrap(),
            "get",
            "ns",
        ])
        .env("HOME", s.dir.path())
        .output()
        .await
        .unwrap();
    assert!(!kubectl_wrong.status.success());
    let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": jwt}});
    let (code, body) = raw(
        &token_client,
        "POST",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        "application/json",
        review.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"]["authenticated"], true);
    assert_eq!(
        body["status"]["user"]["username"],
        "system:serviceaccount:kube-system:default"
    );
    let sar = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": "bob", "resourceAttributes": {"verb": "get", "resource": "pods", "namespace": "default"}}});
    let (code, body) = raw(
        &token_client,
        "POST",
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        "application/json",
        sar.to_string().into_bytes(),
    )
    .await;
    assert_eq!(
        (code, body["status"]["allowed"].as_bool()),
        (200, Some(true)),
        "{body}"
    );
    let (code, body) = raw(&token_client, "GET", "/metrics", "application/json", vec![]).await;
    assert_eq!(code, 200);
    assert!(
        body.as_str().unwrap().contains("apiserver_request_total"),
        "{body}"
    );
    s.stop().await;
}

fn service_account_token(s: &TestServer, sub: &str, uid: &str) -> String {
    let claims = json!({"iss": "https://kubernetes.default.svc", "sub": sub, "aud": ["https://kubernetes.default.svc"],
                        "exp": 4_000_000_000u64, "kubernetes.io": {"namespace": "kube-system", "serviceaccount": {"name": "default", "uid": uid}}});
    let key = jsonwebtoken::EncodingKey::from_ec_pem(s.pki.sa_private.as_bytes()).unwrap();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        &claims,
        &key,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_and_resource_versions() {
    let s = TestServer::start().await;
    let client = s.admin_client().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for i in 0..7 {
        api.create(&PostParams::default(), &cm(&format!("p{i}")))
            .await
            .unwrap();
    }
    let mut names = Vec::new();
    let mut lp = ListParams::default().limit(3);
    let first = api.list(&lp).await.unwrap();
    let rv = first.metadata.resource_version.clone().unwrap();
    names.extend(first.items.iter().filter_map(|c| c.metadata.name.clone()));
    let mut token = first.metadata.continue_;
    api.create(&PostParams::default(), &cm("p9-late"))
        .await
        .unwrap();
    while let Some(t) = token.filter(|t| !t.is_empty()) {
        lp = lp.continue_token(&t);
        let page = api.list(&lp).await.unwrap();
        assert_eq!(
            page.metadata.resource_version.as_deref(),
            Some(rv.as_str()),
            "pages share one snapshot"
        );
        names.extend(page.items.iter().filter_map(|c| c.metadata.name.clone()));
        token = page.metadata.continue_;
    }
    let expected: Vec<String> = (0..7).map(|i| format!("p{i}")).collect();
    assert_eq!(names, expected);

    let (code, body) = raw(
        &client,
        "GET",
        &format!(
            "/api/v1/namespaces/default/configmaps?resourceVersion={rv}&resourceVersionMatch=Exact"
        ),
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(body["items"].as_array().unwrap().len(), 7);
    let (code, _) = raw(
        &client,
        "GET",
        "/api/v1/namespaces/default/configmaps?resourceVersionMatch=Exact",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, 400);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_recovers_allocations_and_expires_old_watches() {
    let s = TestServer::start().await;
    let client = s.admin_client().await;
    let (code, body) = raw(&client, "POST", "/api/v1/namespaces/default/services", "application/json",
        json!({"metadata": {"name": "np"}, "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}}).to_string().into_bytes()).await;
    assert_eq!(code, 200, "{body}");
    let ip = body["spec"]["clusterIP"].as_str().unwrap().to_string();
    let (store, dir) = s.shutdown().await;

    let s = TestServer::start_on(store, dir, |_| {}).await;
    let client = s.admin_client().await;
    let dup = json!({"metadata": {"name": "dup"}, "spec": {"clusterIP": ip, "type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}});
    let (code, body) = raw(
        &client,
        "POST",
        "/api/v1/namespaces/default/services",
        "application/json",
        dup.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    let msg = body["message"].as_str().unwrap();
    assert!(
        msg.contains("spec.clusterIPs[0]: Invalid value: \"")
            && msg.contains("provided IP is already allocated"),
        "{msg}"
    );
    let dup_port = json!({"metadata": {"name": "dup"}, "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}});
    let (code, body) = raw(
        &client,
        "POST",
        "/api/v1/namespaces/default/services",
        "application/json",
        dup_port.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains(
            "spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
        ),
        "{body}"
    );

    let (code, body) = raw(
        &client,
        "GET",
        "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=2&timeoutSeconds=2",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, 200);
    let text = body
        .as_str()
        .map(String::from)
        .unwrap_or_else(|| body.to_string());
    assert!(
        text.contains("\"type\":\"ERROR\"")
            && text.contains("\"code\":410")
            && text.contains("too old resource version"),
        "{text}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_insecure_port_and_foreign_certificates() {
    let s = TestServer::start_with(|c| {
        let dir = c.tls_cert.parent().unwrap().to_path_buf();
        std::fs::write(
            dir.join("basic_auth.csv"),
            "s3cret,alice,alice-uid,\"devs\"\n",
        )
        .unwrap();
        c.basic_auth_file = Some(dir.join("basic_auth.csv"));
        c.insecure_bind = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let basic = s
        .client_from(&s.kubeconfig_with("basic.kubeconfig", "username: alice, password: s3cret"))
        .await;
    let who = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"});
    let (code, body) = raw(
        &basic,
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        "application/json",
        who.to_string().into_bytes(),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let groups = body["status"]["userInfo"]["groups"].to_string();
    assert_eq!(body["status"]["userInfo"]["username"], "alice");
    assert!(
        groups.contains("devs") && groups.contains("system:authenticated"),
        "{groups}"
    );
    let wrong = s
        .client_from(
            &s.kubeconfig_with("basic-wrong.kubeconfig", "username: alice, password: nope"),
        )
        .await;
    let (code, _) = raw(
        &wrong,
        "GET",
        "/api/v1/namespaces",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(code, 401);

    let insecure = s.insecure_addr.expect("insecure port bound");
    let cfg = kube::Config::new(format!("http://{insecure}").parse().unwrap());
    let plain = kube::Client::try_from(cfg).unwrap();
    let (code, body) = raw(
        &plain,
        "GET",
        "/api/v1/namespaces/default",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!(
        (code, body["metadata"]["name"].as_str()),
        (200, Some("default")),
        "{body}"
    );

    // A client certificate from another CA fails the TLS handshake.
    let other = common::make_pki(tempfile::tempdir().unwrap().path());
    let foreign = format!(
        "client-certificate-data: {}, client-key-data: {}",
        b64(&other.admin_cert),
        b64(&other.admin_key)
    );
    let client = s
        .client_from(&s.kubeconfig_with("foreign.kubeconfig", &foreign))
        .await;
    let req = http::Request::get("/api/v1/namespaces")
        .body(vec![])
        .unwrap();
    assert!(client.request_text(req).await.is_err());
    s.stop().await;
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Many watchers on one HTTP/2 connection all see a change, fanned out by the watch cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_watchers_fan_out() {
    let s = TestServer::start().await;
    let client = s.admin_client().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut watches = Vec::new();
    for _ in 0..300 {
        let api = api.clone();
        let rv = rv.clone();
        watches.push(tokio::spawn(async move {
            let wp = kube::api::WatchParams::default().timeout(20);
            let mut stream = api.watch(&wp, &rv).await.expect("watch").boxed();
            while let Some(ev) = stream.next().await {
                if let Ok(kube::api::WatchEvent::Added(cm)) = ev {
                    return cm.metadata.name;
                }
            }
            None
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    api.create(&PostParams::default(), &cm("fanned"))
        .await
        .unwrap();
    for w in watches {
        let name = tokio::time::timeout(Duration::from_secs(20), w)
            .await
            .expect("in time")
            .unwrap();
        assert_eq!(name.as_deref(), Some("fanned"));
    }
    s.stop().await;
}
