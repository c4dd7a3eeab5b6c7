//! OpenAPI generated from the API types, with the real kubectl (1.33 and 1.27): `kubectl explain`
//! of built-in kinds, the documents' names and extensions, and that publishing schemas changes
//! nothing about validation and `apply`.

mod common;

use common::TestServer;
use serde_json::Value;

const KUBECTLS: [Option<&str>; 2] = [None, Some("1.27")];

fn deployment(name: &str, containers: &str, extra: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n{extra}      containers:\n{containers}"
    )
}

fn container(name: &str, image: &str) -> String {
    format!("      - name: {name}\n        image: {image}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_built_in_kinds() {
    let s = TestServer::start().await;
    for v in KUBECTLS {
        let out = s
            .ok_v(v, &["explain", "deployment.spec.template.spec.containers"])
            .await;
        for want in [
            "Deployment",
            "List of containers belonging to the pod",
            "image",
            "Container image name",
            "livenessProbe",
            "resources",
        ] {
            assert!(out.contains(want), "{v:?} lacks {want:?}:\n{out}");
        }
        let out = s.ok_v(v, &["explain", "pods.spec", "--recursive"]).await;
        let head: String = out.lines().take(40).collect::<Vec<_>>().join("\n");
        for want in [
            "Pod",
            "PodSpec is a description of a pod",
            "affinity",
            "nodeAffinity",
        ] {
            assert!(head.contains(want), "{v:?} lacks {want:?}:\n{head}");
        }
        assert!(
            out.contains("containers") && out.contains("nodeSelector"),
            "{v:?}:\n{out}"
        );
        // A type referenced from several kinds, and IntOrString shown as a type.
        let out = s
            .ok_v(
                v,
                &["explain", "deployment.spec.strategy.rollingUpdate.maxSurge"],
            )
            .await;
        assert!(out.contains("maximum number of pods"), "{v:?}:\n{out}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_carry_upstream_names_and_extensions() {
    let s = TestServer::start().await;
    let root: Value = serde_json::from_str(&s.ok(&["get", "--raw", "/openapi/v3"]).await).unwrap();
    let url = root["paths"]["apis/apps/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap()
        .to_string();
    let apps: Value = serde_json::from_str(&s.ok(&["get", "--raw", &url]).await).unwrap();
    let schemas = &apps["components"]["schemas"];
    assert_eq!(
        schemas["io.k8s.api.apps.v1.Deployment"]["x-kubernetes-group-version-kind"],
        serde_json::json!([{"group": "apps", "version": "v1", "kind": "Deployment"}])
    );
    let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(
        schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["volumes"]
            ["x-kubernetes-patch-strategy"],
        "merge,retainKeys"
    );
    assert_eq!(
        schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]["ownerReferences"]
            ["x-kubernetes-patch-merge-key"],
        "uid"
    );
    assert_eq!(
        schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["format"],
        "int-or-string"
    );
    assert_eq!(
        schemas["io.k8s.apimachinery.pkg.apis.meta.v1.Time"]["format"],
        "date-time"
    );

    // Names and patch extensions agree with upstream's own document wherever both have a field.
    let upstream: Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../../shared/reference/kubernetes-1.26-swagger.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let v2: Value = serde_json::from_str(&s.ok(&["get", "--raw", "/openapi/v2"]).await).unwrap();
    let defs = v2["definitions"].as_object().unwrap();
    assert!(defs.contains_key("io.k8s.api.apps.v1.Deployment"));
    let mut compared = 0;
    for (name, def) in defs {
        let Some(up) = upstream["definitions"].get(name) else {
            continue;
        };
        for (field, p) in def["properties"].as_object().into_iter().flatten() {
            let Some(up_p) = up["properties"].get(field) else {
                continue;
            };
            for ext in [
                "x-kubernetes-patch-strategy",
                "x-kubernetes-patch-merge-key",
            ] {
                assert_eq!(p.get(ext), up_p.get(ext), "{name}.{field} {ext}");
            }
            compared += 1;
        }
        assert_eq!(
            def.get("x-kubernetes-group-version-kind").is_some(),
            up.get("x-kubernetes-group-version-kind").is_some(),
            "{name}"
        );
    }
    assert!(compared > 1000, "compared {compared} fields");
    assert_eq!(
        defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["type"],
        "string"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_and_apply_are_unchanged() {
    let s = TestServer::start().await;
    for (i, v) in KUBECTLS.into_iter().enumerate() {
        let name = format!("web{i}");
        // Unknown fields are still refused by the server under --validate=strict.
        let bad = s.file(
            &format!("bad{i}.yaml"),
            &deployment(&name, &container("app", "nginx:1"), "      bogusField: 1\n"),
        );
        let err = s
            .fails_v(v, &["apply", "--validate=strict", "-f", &bad])
            .await;
        assert!(err.contains("bogusField"), "{v:?}: {err}");

        // apply, change the image and add a container, then remove one: merged by name.
        let two = container("app", "nginx:1") + &container("side", "busybox:1");
        let file = s.file(&format!("d{i}.yaml"), &deployment(&name, &two, ""));
        s.ok_v(v, &["apply", "-f", &file]).await;
        let changed = container("app", "nginx:2") + &container("side", "busybox:1");
        std::fs::write(&file, deployment(&name, &changed, "")).unwrap();
        // kubectl 1.33 computes this patch from the v3 schemas (the PATCH operation accepts
        // strategic merge patches); neither kubectl may fall back or complain.
        let out = s.kubectl_v(v, &["apply", "-v=5", "-f", &file]).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{v:?}: {stderr}");
        for unwanted in ["error calculating patch", "OpenAPI V3 path does not"] {
            assert!(!stderr.contains(unwanted), "{v:?}: {stderr}");
        }
        let images = s
            .ok(&[
                "get",
                "deploy",
                &name,
                "-o",
                "jsonpath={.spec.template.spec.containers[*].image}",
            ])
            .await;
        assert_eq!(images, "nginx:2 busybox:1", "{v:?}");
        std::fs::write(&file, deployment(&name, &container("app", "nginx:2"), "")).unwrap();
        s.ok_v(v, &["apply", "-f", &file]).await;
        let names = s
            .ok(&[
                "get",
                "deploy",
                &name,
                "-o",
                "jsonpath={.spec.template.spec.containers[*].name}",
            ])
            .await;
        assert_eq!(names, "app", "{v:?}");
        let cm = format!("cm{i}");
        s.ok_v(v, &["create", "configmap", &cm, "--from-literal=a=b"])
            .await;
    }
    s.stop().await;
}
