//! The real kubectl (1.33 and 1.27) against krust over TLS with a client-certificate kubeconfig.

mod common;

use common::TestServer;

const ALL_KINDS: &str = include_str!("manifests/all-kinds.yaml");

/// (resource as kubectl names it, name, namespaced) for every object in all-kinds.yaml.
const OBJECTS: &[(&str, &str, bool)] = &[
    ("configmaps", "cm1", true),
    ("secrets", "s1", true),
    ("serviceaccounts", "sa1", true),
    ("pods", "p1", true),
    ("services", "svc1", true),
    ("endpoints", "svc1", true),
    ("nodes", "node1", false),
    ("events", "ev1", true),
    ("limitranges", "lr1", true),
    ("resourcequotas", "rq1", true),
    ("persistentvolumes", "pv1", false),
    ("persistentvolumeclaims", "pvc1", true),
    ("deployments.apps", "d1", true),
    ("replicasets.apps", "rs1", true),
    ("daemonsets.apps", "ds1", true),
    ("statefulsets.apps", "sts1", true),
    ("controllerrevisions.apps", "cr1", true),
    ("jobs.batch", "j1", true),
    ("cronjobs.batch", "cj1", true),
    ("leases.coordination.k8s.io", "l1", true),
    ("endpointslices.discovery.k8s.io", "es1", true),
    ("events.events.k8s.io", "ev2", true),
    ("ingresses.networking.k8s.io", "ing1", true),
    ("ingressclasses.networking.k8s.io", "ic1", false),
    ("networkpolicies.networking.k8s.io", "np1", true),
    ("poddisruptionbudgets.policy", "pdb1", true),
    ("roles.rbac.authorization.k8s.io", "r1", true),
    ("rolebindings.rbac.authorization.k8s.io", "rb1", true),
    ("clusterroles.rbac.authorization.k8s.io", "cr-1", false),
    (
        "clusterrolebindings.rbac.authorization.k8s.io",
        "crb1",
        false,
    ),
    ("storageclasses.storage.k8s.io", "sc1", false),
    ("priorityclasses.scheduling.k8s.io", "pc1", false),
];

fn object_args<'a>(resource: &'a str, name: &'a str, namespaced: bool) -> Vec<&'a str> {
    let mut args = vec![resource, name];
    if namespaced {
        args.extend(["-n", "ns1"]);
    }
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_namespaces_and_version() {
    let s = TestServer::start().await;
    for v in [None, Some("1.27")] {
        let ns = s.ok_v(v, &["get", "ns"]).await;
        for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            assert!(ns.contains(n), "{ns}");
        }
        let out = s.ok_v(v, &["version", "-o", "json"]).await;
        assert!(out.contains("v1.33.0"), "{out}");
    }
    let svc = s
        .ok(&[
            "get",
            "svc",
            "kubernetes",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ])
        .await;
    assert_eq!(svc, "10.152.183.1");
    s.stop().await;
}

/// kubectl 1.33's `create` generators send protobuf bodies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_generators_protobuf() {
    let s = TestServer::start().await;
    s.ok(&["create", "ns", "gen"]).await;
    s.ok(&[
        "create",
        "configmap",
        "c",
        "-n",
        "gen",
        "--from-literal=a=b",
    ])
    .await;
    s.ok(&[
        "create",
        "secret",
        "generic",
        "s",
        "-n",
        "gen",
        "--from-literal=pw=hunter2",
    ])
    .await;
    s.ok(&["create", "serviceaccount", "sa", "-n", "gen"]).await;
    s.ok(&[
        "create",
        "deployment",
        "d",
        "-n",
        "gen",
        "--image=busybox",
        "--replicas=0",
    ])
    .await;
    s.ok(&[
        "create",
        "service",
        "nodeport",
        "np",
        "-n",
        "gen",
        "--tcp=80:8080",
    ])
    .await;
    s.ok(&["create", "job", "j", "-n", "gen", "--image=busybox"])
        .await;
    s.ok(&[
        "create",
        "cronjob",
        "cj",
        "-n",
        "gen",
        "--image=busybox",
        "--schedule=*/5 * * * *",
    ])
    .await;
    s.ok(&[
        "create",
        "role",
        "r",
        "-n",
        "gen",
        "--verb=get",
        "--resource=pods",
    ])
    .await;
    s.ok(&[
        "create",
        "rolebinding",
        "rb",
        "-n",
        "gen",
        "--role=r",
        "--user=bob",
    ])
    .await;
    s.ok(&[
        "create",
        "clusterrole",
        "cr",
        "--verb=get",
        "--resource=nodes",
    ])
    .await;
    s.ok(&["create", "quota", "q", "-n", "gen", "--hard=pods=3"])
        .await;
    s.ok(&["create", "priorityclass", "pc", "--value=100"])
        .await;
    s.ok(&[
        "create",
        "pdb",
        "pdb",
        "-n",
        "gen",
        "--selector=app=x",
        "--min-available=1",
    ])
    .await;
    s.ok(&[
        "create",
        "ingress",
        "ing",
        "-n",
        "gen",
        "--rule=example.com/=svc:80",
    ])
    .await;
    let cm = s
        .ok(&["get", "cm", "c", "-n", "gen", "-o", "jsonpath={.data.a}"])
        .await;
    assert_eq!(cm, "b");
    let secret = s
        .ok(&[
            "get",
            "secret",
            "s",
            "-n",
            "gen",
            "-o",
            "jsonpath={.data.pw}",
        ])
        .await;
    assert_eq!(secret, "aHVudGVyMg==");
    let d = s.ok(&["get", "deploy", "d", "-n", "gen", "-o", "jsonpath={.spec.replicas} {.spec.selector.matchLabels.app} {.spec.template.spec.containers[0].image}"]).await;
    assert_eq!(d, "0 d busybox");
    let np = s
        .ok(&[
            "get",
            "svc",
            "np",
            "-n",
            "gen",
            "-o",
            "jsonpath={.spec.type} {.spec.ports[0].targetPort}",
        ])
        .await;
    assert_eq!(np, "NodePort 8080");
    // The namespace controller (not running here) empties it; the API server marks it.
    s.ok(&["delete", "ns", "gen", "--wait=false"]).await;
    let phase = s
        .ok(&["get", "ns", "gen", "-o", "jsonpath={.status.phase}"])
        .await;
    assert_eq!(phase, "Terminating");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_resources() {
    let s = TestServer::start().await;
    for v in [None, Some("1.27")] {
        let out = s.ok_v(v, &["api-resources"]).await;
        for needle in [
            "pods",
            "po",
            "deployments",
            "deploy",
            "apps/v1",
            "networkpolicies",
            "priorityclasses",
            "leases",
        ] {
            assert!(out.contains(needle), "{v:?}: missing {needle} in\n{out}");
        }
        let out = s
            .ok_v(v, &["api-resources", "--categories=all", "-o", "name"])
            .await;
        assert!(
            out.contains("pods") && out.contains("deployments.apps") && !out.contains("configmaps"),
            "{out}"
        );
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_create_get_describe_delete() {
    let s = TestServer::start().await;
    let file = s.file("all.yaml", ALL_KINDS);
    let out = s.ok(&["create", "-f", &file]).await;
    assert!(out.contains("deployment.apps/d1 created"), "{out}");
    for (res, name, namespaced) in OBJECTS {
        let args = object_args(res, name, *namespaced);
        let mut get = vec!["get"];
        get.extend(&args);
        let table = s.ok(&get).await;
        // Upstream's event columns show the involved object, not the event's name.
        let shown = if res.starts_with("events") {
            "pod/p1"
        } else {
            name
        };
        assert!(table.contains(shown), "{res}: {table}");
        get.extend(["-o", "yaml"]);
        let yaml = s.ok(&get).await;
        assert!(
            yaml.contains(&format!("name: {name}"))
                && yaml.contains("resourceVersion:")
                && yaml.contains("uid:"),
            "{res}: {yaml}"
        );
        let mut describe = vec!["describe"];
        describe.extend(&args);
        let d = s.ok(&describe).await;
        assert!(d.contains(name), "{res}: {d}");
    }
    let old = s
        .ok_v(Some("1.27"), &["get", "deploy,svc,pods,cm", "-n", "ns1"])
        .await;
    assert!(
        old.contains("deployment.apps/d1") && old.contains("service/svc1"),
        "{old}"
    );
    for (res, name, namespaced) in OBJECTS {
        let mut del = vec!["delete"];
        del.extend(object_args(res, name, *namespaced));
        let out = s.ok(&del).await;
        assert!(out.contains("deleted"), "{res}: {out}");
        let mut get = vec!["get"];
        get.extend(object_args(res, name, *namespaced));
        let err = s.fails(&get).await;
        assert!(
            err.contains("NotFound") || err.contains("not found"),
            "{res}: {err}"
        );
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wide_all_label_annotate_scale() {
    let s = TestServer::start().await;
    let file = s.file("all.yaml", ALL_KINDS);
    s.ok(&["create", "-f", &file]).await;
    let wide = s.ok(&["get", "pods", "-o", "wide", "-n", "ns1"]).await;
    assert!(
        wide.contains("NOMINATED NODE") && wide.contains("p1"),
        "{wide}"
    );
    let all = s.ok(&["get", "all", "-A"]).await;
    for needle in [
        "pod/p1",
        "service/kubernetes",
        "deployment.apps/d1",
        "replicaset.apps/rs1",
        "cronjob.batch/cj1",
    ] {
        assert!(all.contains(needle), "missing {needle}:\n{all}");
    }
    s.ok(&["label", "pod", "p1", "-n", "ns1", "tier=front"])
        .await;
    let labelled = s
        .ok(&["get", "pods", "-n", "ns1", "-l", "tier=front", "-o", "name"])
        .await;
    assert_eq!(labelled.trim(), "pod/p1");
    let none = s
        .ok(&[
            "get",
            "pods",
            "-n",
            "ns1",
            "-l",
            "tier in (back)",
            "-o",
            "name",
        ])
        .await;
    assert_eq!(none.trim(), "");
    s.ok(&["annotate", "pod", "p1", "-n", "ns1", "note=hello"])
        .await;
    let ann = s
        .ok(&[
            "get",
            "pod",
            "p1",
            "-n",
            "ns1",
            "-o",
            "jsonpath={.metadata.annotations.note}",
        ])
        .await;
    assert_eq!(ann, "hello");
    let gen0 = s
        .ok(&[
            "get",
            "deploy",
            "d1",
            "-n",
            "ns1",
            "-o",
            "jsonpath={.metadata.generation}",
        ])
        .await;
    s.ok(&["scale", "deployment", "d1", "-n", "ns1", "--replicas=3"])
        .await;
    let replicas = s
        .ok(&[
            "get",
            "deploy",
            "d1",
            "-n",
            "ns1",
            "-o",
            "jsonpath={.spec.replicas} {.metadata.generation}",
        ])
        .await;
    assert_eq!(replicas, format!("3 {}", gen0.parse::<i64>().unwrap() + 1));
    s.ok_v(
        Some("1.27"),
        &["scale", "deployment", "d1", "-n", "ns1", "--replicas=2"],
    )
    .await;
    s.ok(&["label", "deploy", "d1", "-n", "ns1", "x=y"]).await;
    let after = s
        .ok(&[
            "get",
            "deploy",
            "d1",
            "-n",
            "ns1",
            "-o",
            "jsonpath={.spec.replicas} {.metadata.generation}",
        ])
        .await;
    assert_eq!(
        after,
        format!("2 {}", gen0.parse::<i64>().unwrap() + 2),
        "labels must not bump generation"
    );
    let field = s
        .ok(&[
            "get",
            "pods",
            "-A",
            "--field-selector",
            "metadata.name=p1",
            "-o",
            "name",
        ])
        .await;
    assert_eq!(field.trim(), "pod/p1");
    let err = s
        .fails(&["get", "pods", "--field-selector", "spec.bogus=x"])
        .await;
    assert!(err.contains("field label not supported"), "{err}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_watch_prints_events() {
    let s = TestServer::start().await;
    s.ok_v(
        Some("1.27"),
        &["create", "configmap", "w0", "--from-literal=a=b"],
    )
    .await;
    let mut child = tokio::process::Command::new("/usr/bin/kubectl")
        .args([
            "--kubeconfig",
            s.kubeconfig.to_str().unwrap(),
            "get",
            "configmaps",
            "-w",
            "--output-watch-events",
        ])
        .env("HOME", s.dir.path())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    s.ok_v(
        Some("1.27"),
        &["create", "configmap", "w1", "--from-literal=a=b"],
    )
    .await;
    s.ok(&["label", "configmap", "w1", "x=y"]).await;
    s.ok(&["delete", "configmap", "w1"]).await;
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    child.start_kill().unwrap();
    let out = child.wait_with_output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("w1")).collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].starts_with("ADDED")
            && lines[1].starts_with("MODIFIED")
            && lines[2].starts_with("DELETED"),
        "{text}"
    );
    assert!(text.contains("w0"), "{text}");
    s.stop().await;
}

/// Emptying and removing a deleted namespace is the controller manager's (tested with the
/// controllers: crates/controllers/tests/namespace.rs); the API server refuses to delete `default`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_namespace_cannot_be_deleted() {
    let s = TestServer::start().await;
    let err = s.fails(&["delete", "ns", "default"]).await;
    assert!(err.contains("forbidden"), "{err}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_multi_document_manifest() {
    let s = TestServer::start().await;
    let manifest = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: app\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: conf\n  namespace: app\ndata:\n  k: v\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: app\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: nginx\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: app\nspec:\n  type: NodePort\n  selector: {app: web}\n  ports:\n  - port: 80\n";
    let file = s.file("app.yaml", manifest);
    for v in [None, Some("1.27")] {
        let out = s.ok_v(v, &["apply", "-f", &file]).await;
        assert!(out.contains("deployment.apps/web"), "{out}");
    }
    let np = s
        .ok(&[
            "get",
            "svc",
            "web",
            "-n",
            "app",
            "-o",
            "jsonpath={.spec.ports[0].nodePort}",
        ])
        .await;
    let np: u16 = np.parse().unwrap();
    assert!((30000..=32767).contains(&np));
    let ann = s
        .ok(&["get", "cm", "conf", "-n", "app", "-o", "yaml"])
        .await;
    assert!(
        ann.contains("kubectl.kubernetes.io/last-applied-configuration"),
        "{ann}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_are_refused_by_kubectl_strict_validation() {
    let s = TestServer::start().await;
    let bad = s.file(
        "bad.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: typo\ndataa:\n  k: v\n",
    );
    let err = s.fails(&["create", "-f", &bad]).await;
    assert!(
        err.contains("strict decoding error: unknown field \"dataa\""),
        "{err}"
    );
    let out = s.kubectl(&["create", "-f", &bad, "--validate=warn"]).await;
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field \"dataa\""));
    let yaml = s.ok(&["get", "cm", "typo", "-o", "yaml"]).await;
    assert!(!yaml.contains("dataa"), "{yaml}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_can_i_and_whoami() {
    let s = TestServer::start().await;
    for v in [None, Some("1.27")] {
        let out = s
            .ok_v(v, &["auth", "can-i", "create", "pods", "-n", "default"])
            .await;
        assert_eq!(out.trim(), "yes");
    }
    let who = s
        .ok(&[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ])
        .await;
    assert_eq!(who, "admin");
    s.stop().await;
}
