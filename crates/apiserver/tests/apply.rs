//! `kubectl apply` (client- and server-side), `edit`, `patch`, `diff` and server-side dry runs
//! with the real kubectl 1.33 and 1.27, and server-side apply from kube-rs.

mod common;

use common::TestServer;
use serde_json::{json, Value};

const VERSIONS: [Option<&str>; 2] = [None, Some("1.27")];

fn tag(v: Option<&str>) -> String {
    v.unwrap_or("133").replace('.', "")
}

/// A Deployment manifest with `replicas` and the given (name, image) containers.
fn deployment(ns: &str, replicas: i64, containers: &[(&str, &str)]) -> String {
    let mut out = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: {ns}\n  labels:\n    app: web\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      containers:\n"
    );
    for (name, image) in containers {
        out.push_str(&format!(
            "      - name: {name}\n        image: {image}\n        ports:\n        - containerPort: 80\n"
        ));
    }
    out
}

async fn get_json(s: &TestServer, v: Option<&str>, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend(["-o", "json", "--show-managed-fields"]);
    serde_json::from_str(&s.ok_v(v, &all).await).expect("json")
}

fn images(d: &Value) -> Vec<(String, String)> {
    d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or("").to_string(),
                c["image"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn managers(d: &Value) -> Vec<(String, String)> {
    d["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["manager"].as_str().unwrap_or("").to_string(),
                e["operation"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn entry<'a>(d: &'a Value, manager: &str) -> &'a Value {
    d["metadata"]["managedFields"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["manager"] == manager))
        .unwrap_or_else(|| panic!("no managedFields entry for {manager}: {d}"))
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_string(), b.to_string())
}

/// Client-side apply: create, then a strategic merge patch that changes image and replicas
/// (containers merged by name, generation bumped), then one that removes a container.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_side_apply_flow() {
    let s = TestServer::start().await;
    for v in VERSIONS {
        let ns = format!("csa{}", tag(v));
        s.ok_v(v, &["create", "ns", &ns]).await;
        let f = s.file(
            &format!("{ns}.yaml"),
            &deployment(
                &ns,
                1,
                &[("app", "nginx:1.25"), ("sidecar", "busybox:1.36")],
            ),
        );
        let out = s.ok_v(v, &["apply", "-f", &f]).await;
        assert!(out.contains("deployment.apps/web created"), "{out}");
        let d = get_json(&s, v, &["deploy", "web", "-n", &ns]).await;
        assert_eq!(d["metadata"]["generation"], 1);
        assert!(
            managers(&d).contains(&pair("kubectl-client-side-apply", "Update")),
            "{d}"
        );
        let fields = &entry(&d, "kubectl-client-side-apply")["fieldsV1"];
        assert_eq!(
            fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"app\"}"]
                ["f:image"],
            json!({}),
            "{fields}"
        );

        // Image and replicas changed in the file: a strategic merge patch.
        s.file(
            &format!("{ns}.yaml"),
            &deployment(
                &ns,
                3,
                &[("app", "nginx:1.26"), ("sidecar", "busybox:1.36")],
            ),
        );
        let out = s.kubectl_v(v, &["apply", "-f", &f, "-v=8"]).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("deployment.apps/web configured"));
        assert!(
            stderr.contains("application/strategic-merge-patch+json"),
            "kubectl sent a strategic merge patch: {stderr}"
        );
        let d = get_json(&s, v, &["deploy", "web", "-n", &ns]).await;
        assert_eq!(d["metadata"]["generation"], 2);
        assert_eq!(d["spec"]["replicas"], 3);
        assert_eq!(
            images(&d),
            [pair("app", "nginx:1.26"), pair("sidecar", "busybox:1.36")]
        );
        // Defaults the server filled in survive the merge by name.
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][1]["imagePullPolicy"],
            "IfNotPresent"
        );

        // A container removed from the file is removed from the object.
        s.file(
            &format!("{ns}.yaml"),
            &deployment(&ns, 3, &[("app", "nginx:1.26")]),
        );
        s.ok_v(v, &["apply", "-f", &f]).await;
        let d = get_json(&s, v, &["deploy", "web", "-n", &ns]).await;
        assert_eq!(images(&d), [pair("app", "nginx:1.26")]);
        assert_eq!(d["metadata"]["generation"], 3);
        // Applying the same file again changes nothing.
        let out = s.ok_v(v, &["apply", "-f", &f]).await;
        assert!(out.contains("unchanged"), "{out}");
        let again = get_json(&s, v, &["deploy", "web", "-n", &ns]).await;
        assert_eq!(
            again["metadata"]["resourceVersion"],
            d["metadata"]["resourceVersion"]
        );

        // Moving on to server-side apply takes over what client-side apply set, without
        // conflicts, and keeps the last-applied annotation in step.
        s.file(
            &format!("{ns}.yaml"),
            &deployment(&ns, 2, &[("app", "nginx:1.27")]),
        );
        let out = s.ok_v(v, &["apply", "--server-side", "-f", &f]).await;
        assert!(out.contains("serverside-applied"), "{out}");
        let d = get_json(&s, v, &["deploy", "web", "-n", &ns]).await;
        assert_eq!(d["spec"]["replicas"], 2);
        assert_eq!(images(&d), [pair("app", "nginx:1.27")]);
        assert!(managers(&d).contains(&pair("kubectl", "Apply")), "{d}");
        let last: Value = serde_json::from_str(
            d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
                .as_str()
                .expect("annotation"),
        )
        .expect("json");
        assert_eq!(last["spec"]["replicas"], 2);
    }
    s.stop().await;
}

/// Server-side apply: the same flow, then a second field manager conflicting, and
/// `--force-conflicts` taking the field over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_flow() {
    let s = TestServer::start().await;
    for v in VERSIONS {
        let ns = format!("ssa{}", tag(v));
        s.ok_v(v, &["create", "ns", &ns]).await;
        let f = s.file(
            &format!("{ns}.yaml"),
            &deployment(
                &ns,
                1,
                &[("app", "nginx:1.25"), ("sidecar", "busybox:1.36")],
            ),
        );
        let out = s.ok_v(v, &["apply", "--server-side", "-f", &f]).await;
        assert!(
            out.contains("deployment.apps/web serverside-applied"),
            "{out}"
        );
        let d = get_json(&s, v, &["deploy", "web", "-n", &ns]).await;
        assert_eq!(d["metadata"]["generation"], 1);
        assert_eq!(managers(&d), [pair("kubectl", "Apply")]);
        let applied = entry(&d, "kubectl");
        assert_eq!(applied["apiVersion"], "apps/v1");
        assert!(applied["time"].is_string());
        let fields = &applied["fieldsV1"];
        assert_eq!(fields["f:spec"]["f:replicas"], json!({}));
        assert_eq!(
            fields["f:spec"]["f:selector"],
            json!({}),
            "LabelSelector is atomic"
        );
        let app = &fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"app\"}"];
        assert_eq!(app["."], json!({}));
        assert_eq!(
            app["f:ports"]["k:{\"containerPort\":80,\"protocol\":\"TCP\"}"],
            json!({".": {}, "f:containerPort": {}})
        );
        assert!(
            app.get("f:imagePullPolicy").is_none(),
            "defaults are nobody's: {app}"
        );

        s.file(
            &format!("{ns}.yaml"),
            &deployment(
                &ns,
                3,
                &[("app", "nginx:1.26"), ("sidecar", "busybox:1.36")],
            ),
        );
        s.ok_v(v, &["apply", "--server-side", "-f", &f]).await;
        let d = get_json(&s, v, &["deploy", "web", "-n", &ns]).await;
        assert_eq!(d["metadata"]["generation"], 2);
        assert_eq!(d["spec"]["replicas"], 3);
        assert_eq!(
            images(&d),
            [pair("app", "nginx:1.26"), pair("sidecar", "busybox:1.36")]
        );

        s.file(
            &format!("{ns}.yaml"),
            &deployment(&ns, 3, &[("app", "nginx:1.26")]),
        );
        s.ok_v(v, &["apply", "--server-side", "-f", &f]).await;
        let d = get_json(&s, v, &["deploy", "web", "-n", &ns]).await;
        assert_eq!(images(&d), [pair("app", "nginx:1.26")]);
        assert_eq!(d["metadata"]["generation"], 3);

        // A second manager wants other replicas: a conflict with kubectl's advice.
        let other = s.file(
            &format!("{ns}-other.yaml"),
            &format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: {ns}\nspec:\n  replicas: 5\n"
            ),
        );
        let out = s
            .kubectl_v(
                v,
                &[
                    "apply",
                    "--server-side",
                    "--field-manager=other",
                    "-f",
                    &other,
                ],
            )
            .await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains(
                "Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas"
            ),
            "{stderr}"
        );
        assert!(stderr.contains("--force-conflicts"), "{stderr}");
        assert_eq!(
            get_json(&s, v, &["deploy", "web", "-n", &ns]).await["spec"]["replicas"],
            3
        );

        let out = s
            .ok_v(
                v,
                &[
                    "apply",
                    "--server-side",
                    "--field-manager=other",
                    "--force-conflicts",
                    "-f",
                    &other,
                ],
            )
            .await;
        assert!(out.contains("serverside-applied"), "{out}");
        let d = get_json(&s, v, &["deploy", "web", "-n", &ns]).await;
        assert_eq!(d["spec"]["replicas"], 5);
        assert_eq!(
            entry(&d, "other")["fieldsV1"],
            json!({"f:spec": {"f:replicas": {}}})
        );
        assert!(entry(&d, "kubectl")["fieldsV1"]["f:spec"]
            .get("f:replicas")
            .is_none());

        // kubectl's own apply of the file now conflicts with "other"; a field only an updater
        // (kubectl patch) set conflicts with it, named with its apiVersion.
        let out = s.kubectl_v(v, &["apply", "--server-side", "-f", &f]).await;
        assert!(String::from_utf8_lossy(&out.stderr)
            .contains("conflict with \"other\": .spec.replicas"));
        s.ok_v(
            v,
            &[
                "patch",
                "deploy",
                "web",
                "-n",
                &ns,
                "--type",
                "merge",
                "-p",
                r#"{"spec":{"minReadySeconds":7}}"#,
            ],
        )
        .await;
        let manifest = deployment(&ns, 5, &[("app", "nginx:1.26")]).replace(
            "spec:\n  replicas: 5\n",
            "spec:\n  minReadySeconds: 9\n  replicas: 5\n",
        );
        let f2 = s.file(&format!("{ns}-ready.yaml"), &manifest);
        let out = s
            .kubectl_v(
                v,
                &["apply", "--server-side", "--field-manager=other", "-f", &f2],
            )
            .await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("conflict with \"kubectl-patch\" using apps/v1: .spec.minReadySeconds"),
            "{stderr}"
        );

        // kubectl scale is recorded on the parent under subresource "scale", taking replicas
        // from the applier that had it.
        s.ok_v(v, &["scale", "deploy", "web", "-n", &ns, "--replicas=6"])
            .await;
        let d = get_json(&s, v, &["deploy", "web", "-n", &ns]).await;
        let entries = d["metadata"]["managedFields"].as_array().unwrap();
        let scale = entries
            .iter()
            .find(|e| e["subresource"] == "scale")
            .unwrap_or_else(|| panic!("no scale entry: {d}"));
        assert_eq!(scale["operation"], "Update");
        assert_eq!(scale["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
        assert!(entries
            .iter()
            .filter(|e| e["subresource"] != "scale")
            .all(|e| e["fieldsV1"]["f:spec"].get("f:replicas").is_none()));
    }
    s.stop().await;
}

/// `kubectl edit` through an editor script, `kubectl patch` of each type, `kubectl diff` (a
/// server-side dry run that changes nothing) and `--dry-run=server` creates and deletes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_patch_diff_and_dry_run() {
    let s = TestServer::start().await;
    for v in VERSIONS {
        let ns = format!("edit{}", tag(v));
        s.ok_v(v, &["create", "ns", &ns]).await;
        let f = s.file(
            &format!("{ns}.yaml"),
            &deployment(&ns, 1, &[("app", "nginx:1.25")]),
        );
        s.ok_v(v, &["apply", "-f", &f]).await;

        // kubectl edit with a sed one-liner as the editor.
        let out = s
            .kubectl_env(
                v,
                &["edit", "deploy", "web", "-n", &ns],
                &[("KUBE_EDITOR", "sed -i -e s/nginx:1.25/nginx:1.27/")],
            )
            .await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("deployment.apps/web edited"));
        let d = get_json(&s, v, &["deploy", "web", "-n", &ns]).await;
        assert_eq!(images(&d), [pair("app", "nginx:1.27")]);
        assert_eq!(d["metadata"]["generation"], 2);
        let edit = &entry(&d, "kubectl-edit")["fieldsV1"];
        assert_eq!(
            edit["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"app\"}"],
            json!({"f:image": {}})
        );

        // kubectl patch, each type.
        s.ok_v(
            v,
            &[
                "patch",
                "deploy",
                "web",
                "-n",
                &ns,
                "--type",
                "json",
                "-p",
                r#"[{"op":"replace","path":"/spec/replicas","value":2}]"#,
            ],
        )
        .await;
        s.ok_v(
            v,
            &[
                "patch",
                "deploy",
                "web",
                "-n",
                &ns,
                "--type",
                "merge",
                "-p",
                r#"{"metadata":{"labels":{"patched":"merge"}}}"#,
            ],
        )
        .await;
        s.ok_v(
            v,
            &["patch", "deploy", "web", "-n", &ns, "--type", "strategic", "-p",
              r#"{"spec":{"template":{"spec":{"containers":[{"name":"extra","image":"busybox"}]}}}}"#],
        )
        .await;
        let d = get_json(&s, v, &["deploy", "web", "-n", &ns]).await;
        assert_eq!(d["spec"]["replicas"], 2);
        assert_eq!(d["metadata"]["labels"]["patched"], "merge");
        assert_eq!(
            images(&d),
            [pair("extra", "busybox"), pair("app", "nginx:1.27")]
        );
        assert!(
            managers(&d).contains(&pair("kubectl-patch", "Update")),
            "{d}"
        );

        // kubectl diff shows the change and changes nothing.
        let before = get_json(&s, v, &["deploy", "web", "-n", &ns]).await;
        s.file(
            &format!("{ns}.yaml"),
            &deployment(&ns, 4, &[("app", "nginx:1.28")]),
        );
        for extra in [&[][..], &["--server-side", "--force-conflicts"][..]] {
            let mut args = vec!["diff", "-f", &f];
            args.extend_from_slice(extra);
            let out = s.kubectl_v(v, &args).await;
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                out.status.code(),
                Some(1),
                "diff {extra:?} exits 1 on changes ({:?}): {stdout} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(stdout.contains("-  replicas: 2"), "{stdout}");
            assert!(stdout.contains("+  replicas: 4"), "{stdout}");
            assert!(
                stdout
                    .lines()
                    .any(|l| l.starts_with('+') && l.ends_with("image: nginx:1.28")),
                "{stdout}"
            );
        }
        let after = get_json(&s, v, &["deploy", "web", "-n", &ns]).await;
        assert_eq!(before, after, "diff changed nothing");

        // Server-side dry runs leave nothing behind.
        let out = s
            .ok_v(
                v,
                &[
                    "create",
                    "configmap",
                    "dry",
                    "-n",
                    &ns,
                    "--from-literal=a=b",
                    "--dry-run=server",
                ],
            )
            .await;
        assert!(out.contains("(server dry run)"), "{out}");
        let cm = s.file(
            &format!("{ns}-cm.yaml"),
            &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dry2\n  namespace: {ns}\ndata:\n  a: b\n"),
        );
        s.ok_v(v, &["create", "-f", &cm, "--dry-run=server"]).await;
        s.ok_v(v, &["apply", "-f", &cm, "--dry-run=server"]).await;
        s.ok_v(
            v,
            &["apply", "--server-side", "-f", &cm, "--dry-run=server"],
        )
        .await;
        let out = s
            .ok_v(v, &["get", "configmaps", "-n", &ns, "-o", "name"])
            .await;
        assert!(!out.contains("dry"), "{out}");
        s.ok_v(v, &["apply", "-f", &f, "--dry-run=server"]).await;
        s.ok_v(
            v,
            &["delete", "deploy", "web", "-n", &ns, "--dry-run=server"],
        )
        .await;
        let still = get_json(&s, v, &["deploy", "web", "-n", &ns]).await;
        assert_eq!(still, after, "dry-run apply and delete changed nothing");
    }
    s.stop().await;
}

/// kube-rs: server-side apply with a field manager creates the object and records its fields;
/// a second manager conflicts (409 Conflict with causes) until it forces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_server_side_apply() {
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::api::{Api, Patch, PatchParams};

    let s = TestServer::start().await;
    let client = s.admin_client().await;
    let api: Api<Deployment> = Api::namespaced(client, "default");
    let config = |replicas: i64| {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "kr", "labels": {"app": "kr"}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "kr"}},
                "template": {"metadata": {"labels": {"app": "kr"}},
                    "spec": {"containers": [{"name": "app", "image": "nginx"}]}},
            },
        })
    };
    let created = api
        .patch("kr", &PatchParams::apply("mgr"), &Patch::Apply(config(1)))
        .await
        .expect("apply creates");
    let mf = created
        .metadata
        .managed_fields
        .clone()
        .expect("managedFields");
    assert_eq!(mf.len(), 1);
    assert_eq!(mf[0].manager.as_deref(), Some("mgr"));
    assert_eq!(mf[0].operation.as_deref(), Some("Apply"));
    let fields = &mf[0].fields_v1.as_ref().expect("fieldsV1").0;
    assert_eq!(fields["f:spec"]["f:replicas"], json!({}));
    assert_eq!(fields["f:metadata"]["f:labels"]["f:app"], json!({}));

    // The same manager again with the same config changes nothing.
    let again = api
        .patch("kr", &PatchParams::apply("mgr"), &Patch::Apply(config(1)))
        .await
        .expect("reapply");
    assert_eq!(
        again.metadata.resource_version,
        created.metadata.resource_version
    );

    let err = api
        .patch("kr", &PatchParams::apply("mgr2"), &Patch::Apply(config(2)))
        .await
        .expect_err("conflict");
    match err {
        kube::Error::Api(e) => {
            assert_eq!(e.code, 409);
            assert_eq!(e.reason, "Conflict");
            assert_eq!(
                e.message,
                "Apply failed with 1 conflict: conflict with \"mgr\": .spec.replicas"
            );
        }
        other => panic!("unexpected error {other:?}"),
    }
    let forced = api
        .patch(
            "kr",
            &PatchParams::apply("mgr2").force(),
            &Patch::Apply(config(2)),
        )
        .await
        .expect("forced apply");
    assert_eq!(forced.spec.as_ref().and_then(|s| s.replicas), Some(2));
    let owners: Vec<String> = forced
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| e.manager)
        .collect();
    assert_eq!(owners, ["mgr", "mgr2"]);

    // An apply without a field manager is refused, as upstream.
    let raw = reqwest_like_patch(&s, "kr").await;
    assert_eq!(raw["code"], 422, "{raw}");
    assert_eq!(
        raw["message"],
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
    );
    s.stop().await;
}

/// A PATCH with `application/apply-patch+yaml` and no fieldManager, through kube-rs' raw request.
async fn reqwest_like_patch(s: &TestServer, name: &str) -> Value {
    let client = s.admin_client().await;
    let req = http::Request::patch(format!(
        "/apis/apps/v1/namespaces/default/deployments/{name}"
    ))
    .header("Content-Type", "application/apply-patch+yaml")
    .body(br#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"kr"}}"#.to_vec())
    .unwrap();
    match client.request::<Value>(req).await {
        Ok(v) => v,
        Err(kube::Error::Api(e)) => json!({"code": e.code, "message": e.message}),
        Err(e) => panic!("{e}"),
    }
}

/// A dry-run update of a Service neither keeps the node port it would take nor frees the one it
/// would give up; dry-run creates and deletes store nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_writes_store_and_allocate_nothing() {
    use k8s_openapi::api::core::v1::{ConfigMap, Service};
    use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};

    let s = TestServer::start().await;
    let client = s.admin_client().await;
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc = |name: &str, port: i64| -> Service {
        serde_json::from_value(
            json!({"metadata": {"name": name}, "spec": {"type": "NodePort",
            "ports": [{"port": 80, "nodePort": port}]}}),
        )
        .unwrap()
    };
    svcs.create(&PostParams::default(), &svc("a", 30100))
        .await
        .expect("a");
    let dry = PatchParams {
        dry_run: true,
        ..Default::default()
    };
    let moved = svcs
        .patch(
            "a",
            &dry,
            &Patch::Merge(json!({"spec": {"ports": [{"port": 80, "nodePort": 30101}]}})),
        )
        .await
        .expect("dry-run patch");
    let port = |s: &Service| s.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].node_port;
    assert_eq!(port(&moved), Some(30101));
    let live = svcs.get("a").await.unwrap();
    assert_eq!(port(&live), Some(30100));
    assert_eq!(
        moved.metadata.resource_version,
        live.metadata.resource_version
    );
    svcs.create(&PostParams::default(), &svc("b", 30101))
        .await
        .expect("30101 was not kept by the dry run");
    assert!(svcs
        .create(&PostParams::default(), &svc("c", 30100))
        .await
        .is_err());

    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "cm"}})).unwrap();
    let post = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let created = cms.create(&post, &cm).await.expect("dry-run create");
    assert!(created.metadata.uid.is_some());
    assert!(cms.get_opt("cm").await.unwrap().is_none());
    let applied = cms
        .patch(
            "cm",
            &PatchParams::apply("mgr").dry_run(),
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}}),
            ),
        )
        .await
        .expect("dry-run apply creates nothing");
    assert_eq!(applied.metadata.name.as_deref(), Some("cm"));
    assert!(cms.get_opt("cm").await.unwrap().is_none());
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let dp = DeleteParams {
        dry_run: true,
        ..Default::default()
    };
    cms.delete("cm", &dp).await.expect("dry-run delete");
    assert!(cms.get_opt("cm").await.unwrap().is_some());

    // dryRun takes no value but All.
    let req = http::Request::post("/api/v1/namespaces/default/configmaps?dryRun=Server")
        .header("Content-Type", "application/json")
        .body(br#"{"metadata":{"name":"cm2"}}"#.to_vec())
        .unwrap();
    match s.admin_client().await.request::<Value>(req).await {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 422);
            assert!(
                e.message.contains("dryRun: Unsupported value"),
                "{}",
                e.message
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    s.stop().await;
}

/// A custom resource's schema supplies its list types: items of a `map` list applied by two
/// managers are owned item by item, and a manager dropping its item removes only that one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_resource_list_types_from_schema() {
    use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};

    let s = TestServer::start().await;
    let crd = s.file(
        "crd.yaml",
        r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget, listKind: GadgetList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              ports:
                type: array
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [name]
                items:
                  type: object
                  required: [name]
                  properties:
                    name: {type: string}
                    port: {type: integer}
              tags:
                type: array
                items: {type: string}
"#,
    );
    s.ok(&["apply", "-f", &crd]).await;
    s.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/gadgets.example.com",
        "--timeout=30s",
    ])
    .await;
    let ar = ApiResource {
        group: "example.com".into(),
        version: "v1".into(),
        api_version: "example.com/v1".into(),
        kind: "Gadget".into(),
        plural: "gadgets".into(),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(s.admin_client().await, "default", &ar);
    let gadget = |ports: Value, tags: Value| {
        json!({"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"},
            "spec": {"ports": ports, "tags": tags}})
    };
    api.patch(
        "g",
        &PatchParams::apply("one"),
        &Patch::Apply(gadget(json!([{"name": "http", "port": 80}]), json!(["a"]))),
    )
    .await
    .expect("one");
    let g = api
        .patch(
            "g",
            &PatchParams::apply("two").force(),
            &Patch::Apply(gadget(
                json!([{"name": "https", "port": 443}]),
                json!(["b"]),
            )),
        )
        .await
        .expect("two");
    let ports = |g: &DynamicObject| -> Vec<String> {
        g.data["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    // The keyed list merges; the untyped list is atomic, so the forced apply replaced it.
    assert_eq!(ports(&g), ["http", "https"]);
    assert_eq!(g.data["spec"]["tags"], json!(["b"]));
    let mf = g.metadata.managed_fields.clone().unwrap();
    let two = mf
        .iter()
        .find(|e| e.manager.as_deref() == Some("two"))
        .unwrap();
    let fields = &two.fields_v1.as_ref().unwrap().0;
    assert_eq!(
        fields["f:spec"]["f:ports"]["k:{\"name\":\"https\"}"],
        json!({".": {}, "f:name": {}, "f:port": {}})
    );
    assert_eq!(fields["f:spec"]["f:tags"], json!({}));
    assert!(fields["f:metadata"].is_null(), "{fields}");

    // "one" drops its port: only that item goes.
    let g = api
        .patch(
            "g",
            &PatchParams::apply("one"),
            &Patch::Apply(gadget(json!([]), json!(["b"]))),
        )
        .await
        .expect("one again");
    assert_eq!(ports(&g), ["https"]);
    s.stop().await;
}
