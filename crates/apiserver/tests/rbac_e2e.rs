//! RBAC turned on in a real API server, driven by the real kubectl: upstream's 403, bindings that
//! take effect, `kubectl auth can-i`, escalation refused, the bootstrap policy reconciled (and a
//! user's change to it kept across a restart), AlwaysAllow, and switching mode while serving.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use apiserver::{AuthorizationMode, Config};
use base64::Engine as _;
use common::TestServer;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};

const JANE_FORBIDDEN: &str =
    r#"User "jane" cannot list resource "pods" in API group "" in the namespace "default""#;

/// A client certificate for CN=jane (no groups), from a second CA added to the server's bundle.
struct Jane {
    cert: String,
    key: String,
}

impl Jane {
    /// Issues jane's certificate and makes the server trust its CA (called from a config tweak).
    fn trusted_by(config: &mut Config) -> Jane {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "jane-ca");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let ca = Issuer::new(ca_params, ca_key);
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, "jane");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        let bundle = config.client_ca.clone().unwrap();
        let mut pem = std::fs::read_to_string(&bundle).unwrap();
        pem.push_str(&ca_cert.pem());
        std::fs::write(&bundle, pem).unwrap();
        Jane {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    fn kubeconfig(&self, server: &TestServer) -> PathBuf {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        server.kubeconfig_with(
            "jane.kubeconfig",
            &format!(
                "client-certificate-data: {}, client-key-data: {}",
                b64(&self.cert),
                b64(&self.key)
            ),
        )
    }
}

async fn start(mode: AuthorizationMode) -> (TestServer, PathBuf) {
    let mut jane = None;
    let server = TestServer::start_with(|c| {
        c.authorization_mode = mode;
        jane = Some(Jane::trusted_by(c));
    })
    .await;
    let kubeconfig = jane.unwrap().kubeconfig(&server);
    (server, kubeconfig)
}

/// kubectl as the user of `kubeconfig`: (success, stdout, stderr).
async fn as_user(server: &TestServer, kubeconfig: &Path, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["--kubeconfig", kubeconfig.to_str().unwrap()];
    all.extend_from_slice(args);
    // The admin kubeconfig comes first on the command line; the last --kubeconfig wins.
    let out = server.kubectl(&all).await;
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Retries until kubectl as `kubeconfig` succeeds (`want`) or fails, for changes that reach the
/// authorizer through the watch; returns the last output.
async fn eventually(
    server: &TestServer,
    kubeconfig: &Path,
    args: &[&str],
    want: bool,
) -> (bool, String, String) {
    let mut last = (false, String::new(), String::new());
    for _ in 0..50 {
        last = as_user(server, kubeconfig, args).await;
        if last.0 == want {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("kubectl {args:?}: wanted success={want}, got {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_denies_until_bound_and_answers_can_i() {
    let (server, jane) = start(AuthorizationMode::NodeRbac).await;
    let (ok, _, err) = as_user(&server, &jane, &["get", "pods", "-n", "default"]).await;
    assert!(!ok && err.contains(JANE_FORBIDDEN), "{err}");
    assert!(err.contains("(Forbidden)"), "{err}");
    // system:public-info-viewer still lets anyone, even unauthenticated, probe health and version.
    // (curl: kubectl would prompt for a password when given no credentials.)
    let ca = server.file("ca.pem", &server.pki.ca_pem);
    for path in ["/healthz", "/readyz", "/version"] {
        let out = tokio::process::Command::new("curl")
            .args([
                "-sS",
                "--fail",
                "--cacert",
                &ca,
                &format!("{}{path}", server.url()),
            ])
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "anonymous {path}: {out:?}");
    }

    server
        .ok(&[
            "create",
            "rolebinding",
            "jane-view",
            "--clusterrole=view",
            "--user=jane",
            "-n",
            "default",
        ])
        .await;
    eventually(&server, &jane, &["get", "pods", "-n", "default"], true).await;
    let (ok, _, err) = as_user(&server, &jane, &["get", "secrets", "-n", "default"]).await;
    assert!(
        !ok && err.contains("cannot list resource \"secrets\""),
        "{err}"
    );
    let (ok, _, _) = as_user(&server, &jane, &["get", "pods", "-n", "kube-system"]).await;
    assert!(!ok, "the binding is for default only");

    let (ok, out, _) = as_user(
        &server,
        &jane,
        &["auth", "can-i", "list", "pods", "-n", "default"],
    )
    .await;
    assert!(ok && out.trim() == "yes", "{out}");
    let (ok, out, _) = as_user(
        &server,
        &jane,
        &["auth", "can-i", "delete", "secrets", "-n", "default"],
    )
    .await;
    assert!(!ok && out.trim() == "no", "{out}");
    let (ok, out, err) = as_user(
        &server,
        &jane,
        &["auth", "can-i", "--list", "-n", "default"],
    )
    .await;
    assert!(ok, "{err}");
    let pods = out
        .lines()
        .find(|l| l.starts_with("pods "))
        .unwrap_or_default();
    assert!(pods.contains("[get list watch]"), "{out}");
    assert!(!out.lines().any(|l| l.starts_with("secrets ")), "{out}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalation_is_refused() {
    let (server, jane) = start(AuthorizationMode::NodeRbac).await;
    let writer = server.file(
        "writer.yaml",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: rbac-writer, namespace: default}\nrules:\n- apiGroups: [rbac.authorization.k8s.io]\n  resources: [roles, rolebindings]\n  verbs: [create, get]\n",
    );
    server.ok(&["apply", "-f", &writer]).await;
    for (name, role) in [
        ("jane-writer", "--role=rbac-writer"),
        ("jane-edit", "--clusterrole=edit"),
    ] {
        server
            .ok(&[
                "create",
                "rolebinding",
                name,
                role,
                "--user=jane",
                "-n",
                "default",
            ])
            .await;
    }
    // Held through edit: allowed.
    eventually(
        &server,
        &jane,
        &[
            "create",
            "role",
            "pod-reader",
            "--verb=get",
            "--resource=pods",
            "-n",
            "default",
        ],
        true,
    )
    .await;
    // `*` on secrets is more than edit grants, and jane has no `escalate`: refused, upstream's text.
    let (ok, _, err) = as_user(
        &server,
        &jane,
        &[
            "create",
            "role",
            "grabber",
            "--verb=*",
            "--resource=secrets",
            "-n",
            "default",
        ],
    )
    .await;
    assert!(!ok, "escalation allowed");
    assert!(
        err.contains(r#"roles.rbac.authorization.k8s.io "grabber" is forbidden: user "jane" (groups=["system:authenticated"]) is attempting to grant RBAC permissions not currently held"#),
        "{err}"
    );
    let (ok, _, err) = as_user(
        &server,
        &jane,
        &[
            "create",
            "rolebinding",
            "jane-admin",
            "--clusterrole=cluster-admin",
            "--user=jane",
            "-n",
            "default",
        ],
    )
    .await;
    assert!(
        !ok && err.contains("is forbidden"),
        "binding cluster-admin: {err}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_policy_exists_and_user_changes_survive_a_restart() {
    let (server, _) = start(AuthorizationMode::NodeRbac).await;
    server
        .ok(&[
            "get",
            "clusterrole",
            "cluster-admin",
            "view",
            "edit",
            "admin",
            "system:discovery",
        ])
        .await;
    server
        .ok(&[
            "get",
            "clusterrolebinding",
            "cluster-admin",
            "system:discovery",
        ])
        .await;
    server
        .ok(&[
            "get",
            "role",
            "-n",
            "kube-system",
            "extension-apiserver-authentication-reader",
        ])
        .await;
    // Aggregation is written back: `admin` lists what its parts grant.
    let admin_rules = server
        .ok(&[
            "get",
            "clusterrole",
            "admin",
            "-o",
            "jsonpath={.rules[*].resources}",
        ])
        .await;
    assert!(admin_rules.contains("pods"), "{admin_rules}");

    let rule =
        r#"[{"op":"add","path":"/rules/-","value":{"verbs":["get"],"nonResourceURLs":["/mine"]}}]"#;
    server
        .ok(&[
            "patch",
            "clusterrole",
            "system:discovery",
            "--type=json",
            "-p",
            rule,
        ])
        .await;
    let (store, dir) = server.shutdown().await;
    let server = TestServer::start_on(store, dir, |c| {
        c.authorization_mode = AuthorizationMode::NodeRbac
    })
    .await;
    let urls = server
        .ok(&[
            "get",
            "clusterrole",
            "system:discovery",
            "-o",
            "jsonpath={.rules[*].nonResourceURLs}",
        ])
        .await;
    assert!(
        urls.contains("/mine") && urls.contains("/version"),
        "{urls}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_allow_lets_anyone_authenticated_do_everything() {
    let (server, jane) = start(AuthorizationMode::AlwaysAllow).await;
    for args in [
        &["get", "pods", "-n", "default"][..],
        &["get", "secrets", "-A"],
        &[
            "create",
            "clusterrolebinding",
            "jane-root",
            "--clusterrole=cluster-admin",
            "--user=jane",
        ],
    ] {
        let (ok, _, err) = as_user(&server, &jane, args).await;
        assert!(ok, "{args:?}: {err}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mode_switches_while_serving() {
    let (tx, rx) = tokio::sync::watch::channel(AuthorizationMode::AlwaysAllow);
    let mut jane = None;
    let server = TestServer::start_with(|c| {
        c.authorization_updates = Some(rx);
        jane = Some(Jane::trusted_by(c));
    })
    .await;
    let jane = jane.unwrap().kubeconfig(&server);
    as_user(&server, &jane, &["get", "pods"])
        .await
        .0
        .then_some(())
        .expect("AlwaysAllow");
    tx.send(AuthorizationMode::NodeRbac).unwrap();
    let (_, _, err) = eventually(&server, &jane, &["get", "pods", "-n", "default"], false).await;
    assert!(err.contains(JANE_FORBIDDEN), "{err}");
    // system:masters is allowed before RBAC is asked, so even a deleted cluster-admin binding
    // leaves the admin able to repair the policy.
    server
        .ok(&["delete", "clusterrolebinding", "cluster-admin"])
        .await;
    server.ok(&["get", "pods"]).await;
    tx.send(AuthorizationMode::AlwaysAllow).unwrap();
    eventually(&server, &jane, &["get", "pods", "-n", "default"], true).await;
    server.stop().await;
}
