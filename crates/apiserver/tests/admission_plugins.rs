//! Admission plugins seen through the real kubectl: DefaultTolerationSeconds gives pods the
//! not-ready/unreachable NoExecute tolerations (300 s) they lack.

mod common;

use common::TestServer;
use serde_json::Value;

/// A server without the ServiceAccount plugin (no controller makes `default` accounts here).
async fn server() -> TestServer {
    TestServer::start_with(|c| c.disable_admission_plugins = vec!["ServiceAccount".into()]).await
}

async fn get_json(s: &TestServer, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(&s.ok(&all).await).expect("JSON")
}

fn toleration_keys(pod: &Value) -> Vec<(String, String, Option<i64>)> {
    pod["spec"]["tolerations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let f = |k: &str| t[k].as_str().unwrap_or("").to_string();
            (f("key"), f("effect"), t["tolerationSeconds"].as_i64())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_get_default_not_ready_and_unreachable_tolerations() {
    let s = server().await;
    s.ok(&["run", "plain", "--image=busybox"]).await;
    let pod = get_json(&s, &["pod", "plain"]).await;
    let not_ready = "node.kubernetes.io/not-ready".to_string();
    let unreachable = "node.kubernetes.io/unreachable".to_string();
    let no_execute = "NoExecute".to_string();
    assert_eq!(
        toleration_keys(&pod),
        vec![
            (not_ready.clone(), no_execute.clone(), Some(300)),
            (unreachable.clone(), no_execute.clone(), Some(300)),
        ]
    );
    assert_eq!(pod["spec"]["tolerations"][0]["operator"], "Exists");

    // A pod that already tolerates unreachable nodes keeps its own toleration and gets only
    // the not-ready one.
    let manifest = s.file(
        "patient.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: patient}
spec:
  containers: [{name: c, image: busybox}]
  tolerations:
  - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 6}
"#,
    );
    s.ok(&["create", "-f", &manifest]).await;
    let pod = get_json(&s, &["pod", "patient"]).await;
    assert_eq!(
        toleration_keys(&pod),
        vec![
            (unreachable, no_execute.clone(), Some(6)),
            (not_ready, no_execute, Some(300)),
        ]
    );
    s.stop().await;
}
