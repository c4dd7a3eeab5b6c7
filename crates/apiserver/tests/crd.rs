//! CustomResourceDefinitions with the real kubectl (1.33 and 1.27): a CRD is applied, becomes
//! Established, and its objects are served, validated, pruned, defaulted, printed with the CRD's
//! columns, scaled and deleted with it.

mod common;

use common::TestServer;

const WIDGET_SCHEMA: &str = r#"
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [replicas]
            x-kubernetes-validations:
            - rule: "self.replicas <= self.maxReplicas"
              message: "replicas must not exceed maxReplicas"
            properties:
              replicas: {type: integer, minimum: 0}
              maxReplicas: {type: integer, default: 10}
              color: {type: string, enum: [red, blue], default: red}
              tags:
                type: array
                x-kubernetes-list-type: set
                items: {type: string}
          status:
            type: object
            properties:
              replicas: {type: integer}
              selector: {type: string}
"#;

fn widget_crd() -> String {
    let version = |name: &str, storage: bool| {
        format!(
            r#"  - name: {name}
    served: true
    storage: {storage}
    subresources:
      status: {{}}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
        labelSelectorPath: .status.selector
    additionalPrinterColumns:
    - {{name: Size, type: integer, jsonPath: .spec.replicas}}
    - {{name: Color, type: string, jsonPath: .spec.color}}
    - {{name: Age, type: date, jsonPath: .metadata.creationTimestamp}}
    schema:{WIDGET_SCHEMA}"#
        )
    };
    format!(
        r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
    shortNames: [wd]
    categories: [all]
  versions:
{}{}"#,
        version("v1", true),
        version("v1beta1", false)
    )
}

const GIZMO_CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gizmos.example.com
spec:
  group: example.com
  scope: Cluster
  names: {plural: gizmos, kind: Gizmo}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"#;

fn widget(name: &str, spec: &str) -> String {
    format!("apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: {name}\n  labels: {{app: demo}}\nspec: {spec}\n")
}

async fn establish(s: &TestServer, file: &str, name: &str) {
    s.ok(&["apply", "-f", file]).await;
    s.ok(&[
        "wait",
        "--for",
        "condition=established",
        "--timeout=30s",
        &format!("crd/{name}"),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crd_lifecycle_with_kubectl() {
    let s = TestServer::start().await;
    let crd = s.file("crd.yaml", &widget_crd());
    let out = s.ok(&["apply", "-f", &crd]).await;
    assert!(
        out.contains("customresourcedefinition.apiextensions.k8s.io/widgets.example.com created"),
        "{out}"
    );
    s.ok(&[
        "wait",
        "--for",
        "condition=established",
        "--timeout=30s",
        "crd/widgets.example.com",
    ])
    .await;
    let conds = s
        .ok(&[
            "get",
            "crd",
            "widgets.example.com",
            "-o",
            "jsonpath={range .status.conditions[*]}{.type}={.status}:{.reason};{end}",
        ])
        .await;
    assert!(conds.contains("NamesAccepted=True:NoConflicts"), "{conds}");
    assert!(
        conds.contains("Established=True:InitialNamesAccepted"),
        "{conds}"
    );
    let crds = s.ok(&["get", "crds"]).await;
    assert!(
        crds.starts_with("NAME")
            && crds.contains("CREATED AT")
            && crds.contains("widgets.example.com"),
        "{crds}"
    );

    // Discovery: group, versions (v1 preferred), short names, categories.
    let resources = s.ok(&["api-resources", "--api-group=example.com"]).await;
    assert!(
        resources.contains("widgets") && resources.contains("wd") && resources.contains("Widget"),
        "{resources}"
    );
    let group = s.ok(&["get", "--raw", "/apis/example.com"]).await;
    assert!(
        group.contains(r#""preferredVersion":{"groupVersion":"example.com/v1","version":"v1"}"#),
        "{group}"
    );
    let list = s.ok(&["get", "--raw", "/apis/example.com/v1"]).await;
    assert!(
        list.contains(r#""name":"widgets/scale""#) && list.contains(r#""name":"widgets/status""#),
        "{list}"
    );

    // Create: defaults filled, columns printed by both kubectls.
    let w1 = s.file("w1.yaml", &widget("w1", "{replicas: 2}"));
    s.ok(&["apply", "-f", &w1]).await;
    for v in [None, Some("1.27")] {
        let table = s.ok_v(v, &["get", "widgets"]).await;
        let mut lines = table.lines();
        let header: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
        assert_eq!(header, ["NAME", "SIZE", "COLOR", "AGE"], "{v:?}: {table}");
        let row: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
        assert_eq!(&row[..3], ["w1", "2", "red"], "{v:?}: {table}");
        let short = s
            .ok_v(
                v,
                &[
                    "get",
                    "wd",
                    "w1",
                    "-o",
                    "jsonpath={.spec.maxReplicas}/{.spec.color}/{.metadata.generation}",
                ],
            )
            .await;
        assert_eq!(short, "10/red/1");
        let all = s.ok_v(v, &["get", "all"]).await;
        assert!(all.contains("widget.example.com/w1"), "{v:?}: {all}");
    }

    // Invalid objects: one cause per field, in upstream's words.
    let bad = s.file("bad.yaml", &widget("bad", "{replicas: two, color: green}"));
    let err = s.fails(&["create", "-f", &bad]).await;
    assert!(err.contains(r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#), "{err}");
    assert!(
        err.contains(r#"spec.color: Unsupported value: "green": supported values: "red", "blue""#),
        "{err}"
    );
    let dup = s.file("dup.yaml", &widget("dup", "{replicas: 1, tags: [a, a]}"));
    let err = s.fails(&["create", "-f", &dup]).await;
    assert!(
        err.contains(r#"spec.tags[1]: Duplicate value: "a""#),
        "{err}"
    );
    let missing = s.file("missing.yaml", &widget("missing", "{color: blue}"));
    let err = s.fails(&["create", "-f", &missing]).await;
    assert!(err.contains("spec.replicas: Required value"), "{err}");

    // CEL rule with its message.
    let cel = s.file("cel.yaml", &widget("cel", "{replicas: 20}"));
    let err = s.fails(&["create", "-f", &cel]).await;
    assert!(
        err.contains(r#"spec: Invalid value: "object": replicas must not exceed maxReplicas"#),
        "{err}"
    );

    // Unknown fields: pruned when allowed, refused with --validate=strict.
    let extra = s.file("extra.yaml", &widget("extra", "{replicas: 1, extra: yes}"));
    for v in [None, Some("1.27")] {
        let err = s
            .fails_v(v, &["create", "--validate=strict", "-f", &extra])
            .await;
        assert!(
            err.contains(r#"unknown field "spec.extra""#),
            "{v:?}: {err}"
        );
    }
    let warned = s
        .kubectl(&["create", "--validate=warn", "-f", &extra])
        .await;
    assert!(warned.status.success());
    assert!(String::from_utf8_lossy(&warned.stderr).contains(r#"unknown field "spec.extra""#));
    let spec = s
        .ok(&["get", "widget", "extra", "-o", "jsonpath={.spec}"])
        .await;
    assert!(
        !spec.contains("extra") && spec.contains("replicas"),
        "{spec}"
    );

    // Status subresource: spec and status written separately; generation follows spec only.
    s.ok(&[
        "patch",
        "widget",
        "w1",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":2,"selector":"app=demo"},"spec":{"replicas":7}}"#,
    ])
    .await;
    let got = s
        .ok(&[
            "get",
            "widget",
            "w1",
            "-o",
            "jsonpath={.spec.replicas}/{.status.replicas}/{.metadata.generation}",
        ])
        .await;
    assert_eq!(got, "2/2/1");
    s.ok(&[
        "patch",
        "widget",
        "w1",
        "--type=merge",
        "-p",
        r#"{"spec":{"color":"blue"},"status":{"replicas":9}}"#,
    ])
    .await;
    let got = s
        .ok(&[
            "get",
            "widget",
            "w1",
            "-o",
            "jsonpath={.spec.color}/{.status.replicas}/{.metadata.generation}",
        ])
        .await;
    assert_eq!(got, "blue/2/2");

    // Scale subresource.
    let out = s.ok(&["scale", "widget", "w1", "--replicas=5"]).await;
    assert!(out.contains("widget.example.com/w1 scaled"), "{out}");
    let scale = s
        .ok(&[
            "get",
            "--raw",
            "/apis/example.com/v1/namespaces/default/widgets/w1/scale",
        ])
        .await;
    assert!(
        scale.contains(r#""spec":{"replicas":5}"#) && scale.contains(r#""selector":"app=demo""#),
        "{scale}"
    );
    s.ok_v(Some("1.27"), &["scale", "widget", "w1", "--replicas=4"])
        .await;
    assert_eq!(
        s.ok(&["get", "wd", "w1", "-o", "jsonpath={.spec.replicas}"])
            .await,
        "4"
    );

    // Both versions serve the object; it is stored once, in the storage version.
    let beta = s
        .ok(&[
            "get",
            "widgets.v1beta1.example.com",
            "w1",
            "-o",
            "jsonpath={.apiVersion}/{.spec.replicas}",
        ])
        .await;
    assert_eq!(beta, "example.com/v1beta1/4");
    let b2 = s.file(
        "b2.yaml",
        &widget("b2", "{replicas: 1}").replace("example.com/v1", "example.com/v1beta1"),
    );
    s.ok(&["create", "-f", &b2]).await;
    assert_eq!(
        s.ok(&[
            "get",
            "widgets.v1.example.com",
            "b2",
            "-o",
            "jsonpath={.apiVersion}"
        ])
        .await,
        "example.com/v1"
    );

    // Selectors and watch.
    let names = s
        .ok(&[
            "get",
            "widgets",
            "-l",
            "app=demo",
            "--field-selector",
            "metadata.name=w1",
            "-o",
            "name",
        ])
        .await;
    assert_eq!(names.trim(), "widget.example.com/w1");
    assert_eq!(
        s.ok(&["get", "widgets", "-l", "app=other", "-o", "name"])
            .await
            .trim(),
        ""
    );
    let watch = s.ok(&["get", "--raw", "/apis/example.com/v1/namespaces/default/widgets?watch=1&timeoutSeconds=1&fieldSelector=metadata.name%3Dw1"]).await;
    assert!(
        watch.contains(r#""type":"ADDED""#) && watch.contains(r#""name":"w1""#),
        "{watch}"
    );

    // kubectl explain reads the schema from /openapi/v3.
    for v in [None, Some("1.27")] {
        let explain = s.ok_v(v, &["explain", "widgets.spec"]).await;
        assert!(
            explain.contains("replicas") && explain.contains("maxReplicas"),
            "{v:?}: {explain}"
        );
    }

    // Server-side apply of a custom resource; strategic merge patch is refused as upstream.
    let ssa = s.file("ssa.yaml", &widget("ssa", "{replicas: 1, color: blue}"));
    let out = s.ok(&["apply", "--server-side", "-f", &ssa]).await;
    assert!(
        out.contains("widget.example.com/ssa serverside-applied"),
        "{out}"
    );
    assert_eq!(
        s.ok(&[
            "get",
            "wd",
            "ssa",
            "-o",
            "jsonpath={.spec.color}/{.spec.maxReplicas}"
        ])
        .await,
        "blue/10"
    );
    let err = s
        .fails(&[
            "patch",
            "wd",
            "ssa",
            "--type=strategic",
            "-p",
            r#"{"spec":{"replicas":2}}"#,
        ])
        .await;
    assert!(
        err.contains("application/strategic-merge-patch+json is not supported"),
        "{err}"
    );

    // A second CRD claiming the same kind in the group is not accepted.
    let clash = s.file(
        "clash.yaml",
        &widget_crd()
            .replace("widgets.example.com", "gadgets.example.com")
            .replace("plural: widgets", "plural: gadgets")
            .replace("singular: widget", "singular: gadget")
            .replace("shortNames: [wd]", "shortNames: [gd]"),
    );
    s.ok(&["apply", "-f", &clash]).await;
    let mut reason = String::new();
    for _ in 0..50 {
        reason = s
            .ok(&[
                "get",
                "crd",
                "gadgets.example.com",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"NamesAccepted\")].reason}",
            ])
            .await;
        if !reason.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(reason, "ListKindConflict");
    s.fails(&["get", "--raw", "/apis/example.com/v1/gadgets"])
        .await;
    s.ok(&["delete", "crd", "gadgets.example.com"]).await;

    // Deleting the CRD deletes its objects, then the CRD, and the resource goes away.
    let out = s
        .ok(&["delete", "crd", "widgets.example.com", "--timeout=60s"])
        .await;
    assert!(out.contains("deleted"), "{out}");
    let err = s
        .fails(&[
            "get",
            "--raw",
            "/apis/example.com/v1/namespaces/default/widgets",
        ])
        .await;
    assert!(
        err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );
    let err = s.fails(&["get", "crd", "widgets.example.com"]).await;
    assert!(err.contains("NotFound"), "{err}");
    let left = store_keys(&s, "/registry/example.com/widgets/").await;
    assert!(left.is_empty(), "objects left: {left:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_scoped_crd_survives_restart() {
    let s = TestServer::start().await;
    let crd = s.file("gizmo.yaml", GIZMO_CRD);
    establish(&s, &crd, "gizmos.example.com").await;
    let g = s.file("g.yaml", "apiVersion: example.com/v1\nkind: Gizmo\nmetadata:\n  name: g1\nspec:\n  anything: [1, 2]\n");
    for v in [None, Some("1.27")] {
        s.ok_v(v, &["apply", "-f", &g]).await;
        let table = s.ok_v(v, &["get", "gizmos"]).await;
        let header: Vec<&str> = table
            .lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        assert_eq!(header, ["NAME", "AGE"], "{table}");
        assert!(table.contains("g1"), "{table}");
    }
    assert_eq!(
        s.ok(&["get", "gizmo", "g1", "-o", "jsonpath={.spec.anything}"])
            .await,
        "[1,2]"
    );
    s.fails(&[
        "get",
        "--raw",
        "/apis/example.com/v1/namespaces/default/gizmos",
    ])
    .await;
    let (store, dir) = s.shutdown().await;
    let s = TestServer::start_on(store, dir, |_| {}).await;
    assert_eq!(
        s.ok(&["get", "gizmo", "g1", "-o", "name"]).await.trim(),
        "gizmo.example.com/g1"
    );
    s.ok(&["delete", "crd", "gizmos.example.com"]).await;
    s.fails(&["get", "--raw", "/apis/example.com/v1/gizmos"])
        .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_crds_are_refused() {
    let s = TestServer::start().await;
    let bad = widget_crd()
        .replace("name: widgets.example.com", "name: things.example.com")
        .replace("    storage: false", "    storage: true")
        .replace("self.replicas <= self.maxReplicas", "self.replicas <=");
    let file = s.file("bad-crd.yaml", &bad);
    let err = s.fails(&["apply", "-f", &file]).await;
    assert!(err.contains(r#"metadata.name: Invalid value: "things.example.com": must be spec.names.plural+"."+spec.group"#), "{err}");
    assert!(
        err.contains("must have exactly one version marked as storage version"),
        "{err}"
    );
    assert!(err.contains("compilation failed"), "{err}");
    s.stop().await;
}

async fn store_keys(s: &TestServer, prefix: &str) -> Vec<String> {
    use store::Store as _;
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    let resp = s
        .store
        .range(store::proto::etcdserverpb::RangeRequest {
            key: prefix.as_bytes().to_vec(),
            range_end: end,
            keys_only: true,
            ..Default::default()
        })
        .await
        .expect("range");
    resp.kvs
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}
