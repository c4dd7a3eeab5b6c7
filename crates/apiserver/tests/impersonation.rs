//! Impersonation with the real kubectl (`--as`, `--as-group`, `--as-uid`): an admin may act as
//! anyone and is then authorized as them; `kubectl auth can-i --as` answers for the impersonated
//! user; a user without the `impersonate` verb gets upstream's 403.

mod common;

use std::path::Path;

use apiserver::AuthorizationMode;
use common::{TestServer, ADMIN_TOKEN};

const JANE: &str = "jane-token-0123456789";
const IMPERSONATOR: &str = "imp-token-0123456789";

/// Under Node,RBAC, with two more users in known_tokens.csv: jane (no bindings) and imp.
async fn server() -> TestServer {
    TestServer::start_with(|c| {
        c.authorization_mode = AuthorizationMode::NodeRbac;
        let tokens = c.token_file.clone().expect("token file");
        std::fs::write(
            &tokens,
            format!(
                "{ADMIN_TOKEN},admin,admin-uid,\"system:masters\"\n{JANE},jane,jane-uid,\"\"\n{IMPERSONATOR},imp,imp-uid,\"\"\n"
            ),
        )
        .unwrap();
    })
    .await
}

async fn as_token(s: &TestServer, kubeconfig: &Path, args: &[&str]) -> (bool, String, String) {
    let out = s.kubectl_with(kubeconfig, args).await;
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn can_i_as_another_user_answers_for_them() {
    let s = server().await;
    // The admin can; someuser, with no bindings, cannot (exit status 1, "no").
    assert_eq!(
        s.ok(&["auth", "can-i", "create", "deployments"])
            .await
            .trim(),
        "yes"
    );
    let out = s
        .kubectl(&["auth", "can-i", "create", "deployments", "--as=someuser"])
        .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no");
    assert_eq!(out.status.code(), Some(1));

    s.ok(&[
        "create",
        "rolebinding",
        "someuser-edit",
        "--clusterrole=edit",
        "--user=someuser",
    ])
    .await;
    assert_eq!(
        s.ok(&["auth", "can-i", "create", "deployments", "--as=someuser"])
            .await
            .trim(),
        "yes"
    );
    let out = s
        .kubectl(&[
            "auth",
            "can-i",
            "create",
            "deployments",
            "--as=someuser",
            "-n",
            "kube-system",
        ])
        .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no");
    // A group brings its bindings along.
    s.ok(&[
        "create",
        "clusterrolebinding",
        "ops-view",
        "--clusterrole=view",
        "--group=ops",
    ])
    .await;
    assert_eq!(
        s.ok(&[
            "auth",
            "can-i",
            "list",
            "pods",
            "-A",
            "--as=nobody",
            "--as-group=ops"
        ])
        .await
        .trim(),
        "yes"
    );

    // Requests are made as the impersonated user: whoami says so, and RBAC refuses as upstream.
    let who = s
        .ok(&[
            "auth",
            "whoami",
            "--as=someuser",
            "--as-group=devs",
            "-o",
            "jsonpath={.status.userInfo}",
        ])
        .await;
    let who: serde_json::Value = serde_json::from_str(&who).expect("userInfo");
    assert_eq!(who["username"], "someuser");
    assert_eq!(
        who["groups"],
        serde_json::json!(["devs", "system:authenticated"])
    );
    s.ok(&["get", "pods", "--as=someuser"]).await;
    let err = s
        .fails(&["get", "pods", "-n", "kube-system", "--as=someuser"])
        .await;
    assert!(
        err.contains(r#"Error from server (Forbidden): pods is forbidden: User "someuser" cannot list resource "pods" in API group "" in the namespace "kube-system""#),
        "{err}"
    );
    let err = s
        .fails(&[
            "get",
            "secrets",
            "--as=system:serviceaccount:default:default",
        ])
        .await;
    assert!(
        err.contains(
            r#"User "system:serviceaccount:default:default" cannot list resource "secrets""#
        ),
        "{err}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impersonating_needs_the_impersonate_verb() {
    let s = server().await;
    let jane = s.kubeconfig_with("jane.kubeconfig", &format!("token: {JANE}"));
    // With nothing cached, kubectl's discovery is refused first, and client-go prints that as
    // "unknown", as against upstream.
    let (ok, _, err) = as_token(&s, &jane, &["get", "pods", "--as=admin"]).await;
    assert!(!ok);
    assert!(
        err.ends_with("Error from server (Forbidden): unknown"),
        "{err}"
    );
    // jane may read discovery as herself; once kubectl has cached it, the request itself is
    // refused, with upstream's message.
    let (ok, _, err) = as_token(&s, &jane, &["api-resources"]).await;
    assert!(ok, "{err}");
    let (ok, _, err) = as_token(&s, &jane, &["get", "pods", "--as=admin"]).await;
    assert!(!ok);
    assert_eq!(
        err,
        r#"Error from server (Forbidden): users "admin" is forbidden: User "jane" cannot impersonate resource "users" in API group "" at the cluster scope"#
    );
    let (ok, _, err) = as_token(
        &s,
        &jane,
        &["auth", "can-i", "create", "deployments", "--as=someuser"],
    )
    .await;
    assert!(!ok);
    assert!(
        err.contains(r#"users "someuser" is forbidden: User "jane" cannot impersonate resource "users" in API group "" at the cluster scope"#),
        "{err}"
    );

    // imp may impersonate the user someuser and the group devs, nothing else.
    let role = s.file(
        "impersonator.yaml",
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: impersonator}
rules:
- {apiGroups: [""], resources: [users], verbs: [impersonate], resourceNames: [someuser]}
- {apiGroups: [""], resources: [groups], verbs: [impersonate], resourceNames: [devs]}
"#,
    );
    s.ok(&["create", "-f", &role]).await;
    s.ok(&[
        "create",
        "clusterrolebinding",
        "imp",
        "--clusterrole=impersonator",
        "--user=imp",
    ])
    .await;
    let imp = s.kubeconfig_with("imp.kubeconfig", &format!("token: {IMPERSONATOR}"));
    // The binding reaches the authorizer through its watch: wait for it.
    let mut result = (false, String::new(), String::new());
    for _ in 0..50 {
        result = as_token(
            &s,
            &imp,
            &[
                "auth",
                "whoami",
                "--as=someuser",
                "--as-group=devs",
                "-o",
                "jsonpath={.status.userInfo.username}",
            ],
        )
        .await;
        if result.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (ok, out, err) = result;
    assert!(ok, "{err}");
    assert_eq!(out, "someuser");
    let (ok, _, err) = as_token(
        &s,
        &imp,
        &[
            "auth",
            "can-i",
            "get",
            "pods",
            "--as=someuser",
            "--as-group=system:masters",
        ],
    )
    .await;
    assert!(!ok);
    assert!(
        err.contains(r#"groups "system:masters" is forbidden: User "imp" cannot impersonate resource "groups" in API group "" at the cluster scope"#),
        "{err}"
    );
    let (ok, _, err) = as_token(&s, &imp, &["auth", "can-i", "get", "pods", "--as=admin"]).await;
    assert!(!ok);
    assert!(err.contains(r#"users "admin" is forbidden"#), "{err}");
    let (ok, _, err) = as_token(
        &s,
        &imp,
        &[
            "auth",
            "can-i",
            "get",
            "pods",
            "--as=someuser",
            "--as-uid=u1",
        ],
    )
    .await;
    assert!(!ok);
    assert!(
        err.contains(r#"uids.authentication.k8s.io "u1" is forbidden: User "imp" cannot impersonate resource "uids" in API group "authentication.k8s.io" at the cluster scope"#),
        "{err}"
    );
    s.stop().await;
}
