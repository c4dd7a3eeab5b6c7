//! Strategic merge patch behaviour: cases ported from upstream's strategicpatch `patch_test.go`
//! (with its test struct's fields mapped onto real fields of the same strategy) and the patches
//! kubectl sends for `apply`, `edit`, `label` and `rollout restart`.
//!
//! Field mapping for the ported cases: `mergingList` (merge by `name`) → `spec.containers`,
//! `nonMergingList` → `spec.tolerations`, `mergingIntList` (merge, primitives) →
//! `metadata.finalizers`, `nonMergingIntList` → `spec.externalIPs` (Service), `simpleMap` →
//! `metadata.labels`.

use apiserver::strategic::{apply, supports, StrategicPatchError};
use serde_json::{json, Value};

const POD: (&str, &str, &str) = ("", "v1", "Pod");
const DEPLOYMENT: (&str, &str, &str) = ("apps", "v1", "Deployment");

fn pod(original: Value, patch: Value) -> Result<Value, StrategicPatchError> {
    apply(&original, &patch, POD)
}

fn containers(names: &[&str]) -> Value {
    names.iter().map(|n| json!({"name": n})).collect()
}

fn pod_spec(spec: Value) -> Value {
    json!({"spec": spec})
}

// ---- ported from patch_test.go: customStrategicMergePatchTestCaseData ----

#[test]
fn unique_scalars_when_merging_lists() {
    let got = pod(
        json!({"metadata": {"finalizers": ["1", "2"]}}),
        json!({"metadata": {"finalizers": ["2", "3"]}}),
    );
    assert_eq!(
        got.unwrap(),
        json!({"metadata": {"finalizers": ["1", "2", "3"]}})
    );
}

#[test]
fn delete_map_from_nested_map() {
    let original = json!({"metadata": {"labels": {"key1": "1", "key2": "1"}}});
    let got = pod(
        original,
        json!({"metadata": {"labels": {"$patch": "delete"}}}),
    );
    assert_eq!(got.unwrap(), json!({"metadata": {"labels": {}}}));
}

#[test]
fn delete_all_items_from_merging_list() {
    let original = pod_spec(json!({"containers": containers(&["1", "2"])}));
    let got = pod(
        original,
        pod_spec(json!({"containers": [{"$patch": "replace"}]})),
    );
    assert_eq!(got.unwrap(), pod_spec(json!({"containers": []})));
}

#[test]
fn merge_empty_merging_lists() {
    let got = pod(
        pod_spec(json!({"containers": []})),
        pod_spec(json!({"containers": []})),
    );
    assert_eq!(got.unwrap(), pod_spec(json!({"containers": []})));
}

#[test]
fn delete_all_keys_from_map() {
    let got = pod(json!({"name": 1, "value": 1}), json!({"$patch": "replace"}));
    assert_eq!(got.unwrap(), json!({}));
}

#[test]
fn add_key_and_delete_all_keys_from_map() {
    let got = pod(
        json!({"name": 1, "value": 1}),
        json!({"other": "a", "$patch": "replace"}),
    );
    assert_eq!(got.unwrap(), json!({"other": "a"}));
}

#[test]
fn delete_all_duplicate_entries_in_a_merging_list() {
    let original = pod_spec(json!({"containers": [
        {"name": "1"}, {"name": "1"}, {"name": "2", "image": "a"}, {"name": "3"}, {"name": "3"}
    ]}));
    let patch = pod_spec(json!({"containers": [
        {"name": "1", "$patch": "delete"}, {"name": "3", "$patch": "delete"}
    ]}));
    assert_eq!(
        pod(original, patch).unwrap(),
        pod_spec(json!({"containers": [{"name": "2", "image": "a"}]}))
    );
}

// ---- ported from patch_test.go: createStrategicMergePatchTestCaseData (three-way patch applied
// to `current`, expecting `result`) ----

#[test]
fn nil_original_adds_fields() {
    let got = pod(json!({"name": 1, "other": "a"}), json!({"value": 1}));
    assert_eq!(got.unwrap(), json!({"name": 1, "value": 1, "other": "a"}));
}

#[test]
fn nil_patch_changes_nothing() {
    assert_eq!(
        pod(json!({"name": 1}), json!({})).unwrap(),
        json!({"name": 1})
    );
    assert_eq!(
        pod(json!({"name": 1}), Value::Null).unwrap(),
        json!({"name": 1})
    );
}

#[test]
fn add_field_and_delete_field_from_map() {
    let got = pod(
        json!({"name": 1, "other": "a"}),
        json!({"name": null, "value": 1}),
    );
    assert_eq!(got.unwrap(), json!({"value": 1, "other": "a"}));
}

#[test]
fn delete_field_from_nested_map() {
    let current = json!({"metadata": {"labels": {"key1": "1", "key2": "1", "other": "a"}}});
    let got = pod(current, json!({"metadata": {"labels": {"key2": null}}}));
    assert_eq!(
        got.unwrap(),
        json!({"metadata": {"labels": {"key1": "1", "other": "a"}}})
    );
}

#[test]
fn delete_all_fields_from_map() {
    let got = pod(
        json!({"name": 1, "value": 1, "other": "a"}),
        json!({"name": null, "value": null}),
    );
    assert_eq!(got.unwrap(), json!({"other": "a"}));
}

#[test]
fn replace_list_of_scalars() {
    let service = ("", "v1", "Service");
    let current = json!({"spec": {"externalIPs": ["1", "4"]}});
    let got = apply(
        &current,
        &json!({"spec": {"externalIPs": ["2", "3"]}}),
        service,
    );
    assert_eq!(got.unwrap(), json!({"spec": {"externalIPs": ["2", "3"]}}));
}

#[test]
fn merge_lists_of_scalars_puts_new_values_first() {
    // Without $setElementOrder, upstream's order normalisation places values new to the list
    // before the server-only values that are not anchored in the patch.
    let current = json!({"metadata": {"finalizers": ["1", "2", "4"]}});
    let got = pod(current, json!({"metadata": {"finalizers": ["3"]}}));
    assert_eq!(
        got.unwrap(),
        json!({"metadata": {"finalizers": ["3", "1", "2", "4"]}})
    );
}

#[test]
fn merge_lists_of_maps() {
    let current = pod_spec(json!({"containers": [
        {"name": "1", "other": "a"}, {"name": "2", "value": "2", "other": "b"}
    ]}));
    let patch =
        pod_spec(json!({"containers": [{"name": "3", "value": "3"}, {"name": "4", "value": "4"}]}));
    let expected = pod_spec(json!({"containers": [
        {"name": "3", "value": "3"}, {"name": "4", "value": "4"},
        {"name": "1", "other": "a"}, {"name": "2", "value": "2", "other": "b"}
    ]}));
    assert_eq!(pod(current, patch).unwrap(), expected);
}

#[test]
fn merge_lists_of_maps_with_conflict() {
    let current = pod_spec(json!({"containers": [
        {"name": "1", "other": "a"}, {"name": "2", "value": "3", "other": "b"}
    ]}));
    let patch =
        pod_spec(json!({"containers": [{"name": "2", "value": "2"}, {"name": "3", "value": "3"}]}));
    let expected = pod_spec(json!({"containers": [
        {"name": "1", "other": "a"}, {"name": "2", "value": "2", "other": "b"}, {"name": "3", "value": "3"}
    ]}));
    assert_eq!(pod(current, patch).unwrap(), expected);
}

#[test]
fn delete_field_from_map_in_merging_list() {
    let current =
        pod_spec(json!({"containers": [{"name": "1", "value": "1", "other": "a"}, {"name": "2"}]}));
    let patch = pod_spec(json!({"containers": [{"name": "1", "value": null}]}));
    let expected = pod_spec(json!({"containers": [{"name": "1", "other": "a"}, {"name": "2"}]}));
    assert_eq!(pod(current, patch).unwrap(), expected);
}

#[test]
fn non_merging_lists_of_maps_are_replaced_whole() {
    // tolerations and readinessGates have no patch strategy; nulls inside the new elements are
    // dropped as decoding into upstream's Go types would.
    for field in ["tolerations", "readinessGates"] {
        let current =
            pod_spec(json!({field: [{"key": "a"}, {"key": "b", "effect": "NoSchedule"}]}));
        let patch = pod_spec(json!({field: [{"key": "b", "effect": null}]}));
        let got = pod(current, patch).unwrap();
        assert_eq!(got, pod_spec(json!({field: [{"key": "b"}]})), "{field}");
    }
}

#[test]
fn nested_merging_lists_merge_recursively() {
    let current = pod_spec(json!({"containers": [{"name": "app", "ports": [
        {"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443, "protocol": "TCP"}
    ]}]}));
    let patch = pod_spec(
        json!({"containers": [{"name": "app", "ports": [{"containerPort": 443, "name": "https"}]}]}),
    );
    let expected = pod_spec(json!({"containers": [{"name": "app", "ports": [
        {"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443, "protocol": "TCP", "name": "https"}
    ]}]}));
    assert_eq!(pod(current, patch).unwrap(), expected);
}

#[test]
fn merge_key_numbers_compare_by_value() {
    let current =
        pod_spec(json!({"containers": [{"name": "app", "ports": [{"containerPort": 80}]}]}));
    let patch = pod_spec(
        json!({"containers": [{"name": "app", "ports": [{"containerPort": 80.0, "name": "http"}]}]}),
    );
    let got = pod(current, patch).unwrap();
    assert_eq!(
        got["spec"]["containers"][0]["ports"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

// ---- $setElementOrder (upstream's "preserve order" cases) ----

#[test]
fn set_element_order_adds_in_the_middle() {
    let current = pod_spec(json!({"containers": containers(&["1", "3"])}));
    let patch = pod_spec(json!({
        "$setElementOrder/containers": containers(&["1", "2", "3"]),
        "containers": [{"name": "2", "image": "x"}]
    }));
    let expected = pod_spec(
        json!({"containers": [{"name": "1"}, {"name": "2", "image": "x"}, {"name": "3"}]}),
    );
    assert_eq!(pod(current, patch).unwrap(), expected);
}

#[test]
fn set_element_order_reorders_and_keeps_server_only_items_in_place() {
    let current = pod_spec(json!({"containers": containers(&["1", "server", "3"])}));
    let patch = pod_spec(json!({"$setElementOrder/containers": containers(&["3", "1"])}));
    let got = pod(current, patch).unwrap();
    assert_eq!(
        got,
        pod_spec(json!({"containers": containers(&["server", "3", "1"])}))
    );
}

#[test]
fn set_element_order_for_primitives() {
    let current = json!({"metadata": {"finalizers": ["a", "b", "c"]}});
    let patch = json!({"metadata": {"$setElementOrder/finalizers": ["c", "d", "a", "b"], "finalizers": ["d"]}});
    let got = pod(current, patch).unwrap();
    assert_eq!(
        got,
        json!({"metadata": {"finalizers": ["c", "d", "a", "b"]}})
    );
}

#[test]
fn set_element_order_for_a_list_the_server_lacks() {
    let patch = pod_spec(json!({
        "$setElementOrder/containers": containers(&["b", "a"]),
        "containers": [{"name": "b"}, {"name": "a", "image": "x"}]
    }));
    let got = pod(json!({}), patch).unwrap();
    assert_eq!(
        got,
        pod_spec(json!({"containers": [{"name": "b"}, {"name": "a", "image": "x"}]}))
    );
}

#[test]
fn set_element_order_must_agree_with_the_patch_list() {
    let patch = pod_spec(json!({
        "$setElementOrder/containers": containers(&["a", "b"]),
        "containers": containers(&["b", "a"])
    }));
    let err = pod(pod_spec(json!({"containers": []})), patch).unwrap_err();
    assert!(
        matches!(err, StrategicPatchError::OrderMismatch { .. }),
        "{err}"
    );
}

// ---- kubectl flows ----

/// A Deployment as the API server stores it: defaulted fields kubectl never sent.
fn live_deployment(containers: Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "generation": 1, "labels": {"app": "web"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": containers, "restartPolicy": "Always", "dnsPolicy": "ClusterFirst"}
            }
        }
    })
}

fn live_container(name: &str, image: &str) -> Value {
    json!({
        "name": name, "image": image, "imagePullPolicy": "IfNotPresent",
        "terminationMessagePath": "/dev/termination-log", "resources": {},
        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    })
}

fn template_spec(spec: Value) -> Value {
    json!({"spec": {"template": {"spec": spec}}})
}

fn deployment(original: &Value, patch: Value) -> Value {
    apply(original, &patch, DEPLOYMENT).expect("patch applies")
}

fn container_names(obj: &Value) -> Vec<&str> {
    let list = obj["spec"]["template"]["spec"]["containers"].as_array();
    list.into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect()
}

#[test]
fn kubectl_apply_changes_one_image_and_adds_a_container() {
    let live = live_deployment(json!([live_container("app", "nginx:1.25")]));
    // What `kubectl apply` sends after the file changed app's image, the replicas and added a
    // sidecar (three-way patch: last-applied, file, live).
    let patch = json!({
        "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}"}},
        "spec": {"replicas": 3, "template": {"spec": {
            "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
            "containers": [{"image": "nginx:1.26", "name": "app"}, {"image": "busybox", "name": "sidecar"}]
        }}}
    });
    let got = deployment(&live, patch);
    assert_eq!(container_names(&got), vec!["app", "sidecar"]);
    let app = &got["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(app["image"], "nginx:1.26");
    assert_eq!(
        app["imagePullPolicy"], "IfNotPresent",
        "server-defaulted fields are kept"
    );
    assert_eq!(app["env"].as_array().map(Vec::len), Some(2));
    assert_eq!(got["spec"]["replicas"], 3);
    assert_eq!(got["spec"]["template"]["spec"]["restartPolicy"], "Always");
    assert_eq!(got["metadata"]["labels"], json!({"app": "web"}));
    assert!(
        got["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string()
    );
}

#[test]
fn kubectl_apply_removes_a_container_dropped_from_the_file() {
    let live = live_deployment(json!([
        live_container("app", "nginx"),
        live_container("sidecar", "busybox")
    ]));
    let patch = template_spec(json!({
        "$setElementOrder/containers": [{"name": "app"}],
        "containers": [{"$patch": "delete", "name": "sidecar"}]
    }));
    let got = deployment(&live, patch);
    assert_eq!(container_names(&got), vec!["app"]);
    assert_eq!(
        got["spec"]["template"]["spec"]["containers"][0],
        live_container("app", "nginx")
    );
}

#[test]
fn patch_delete_directive_removes_a_container() {
    let live = live_deployment(json!([
        live_container("app", "nginx"),
        live_container("sidecar", "busybox")
    ]));
    let got = deployment(
        &live,
        template_spec(json!({"containers": [{"name": "app", "$patch": "delete"}]})),
    );
    assert_eq!(container_names(&got), vec!["sidecar"]);
}

#[test]
fn kubectl_apply_reorders_containers() {
    let live = live_deployment(json!([live_container("a", "x"), live_container("b", "y")]));
    let patch =
        template_spec(json!({"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}));
    assert_eq!(container_names(&deployment(&live, patch)), vec!["b", "a"]);
}

#[test]
fn kubectl_rollout_restart_sets_a_template_annotation() {
    let live = live_deployment(json!([live_container("app", "nginx")]));
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": "2026-11-23T03:00:00Z"
    }}}}});
    let got = deployment(&live, patch);
    let template = &got["spec"]["template"];
    assert_eq!(
        template["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"],
        "2026-11-23T03:00:00Z"
    );
    assert_eq!(template["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(template["spec"], live["spec"]["template"]["spec"]);
}

#[test]
fn kubectl_label_merges_and_removes_labels() {
    let live = live_deployment(json!([live_container("app", "nginx")]));
    let got = deployment(&live, json!({"metadata": {"labels": {"tier": "frontend"}}}));
    assert_eq!(
        got["metadata"]["labels"],
        json!({"app": "web", "tier": "frontend"})
    );
    // `kubectl label deployment web app-`
    let got = deployment(&got, json!({"metadata": {"labels": {"app": null}}}));
    assert_eq!(got["metadata"]["labels"], json!({"tier": "frontend"}));
}

#[test]
fn env_merges_by_name() {
    let live = live_deployment(json!([live_container("app", "nginx")]));
    let patch = template_spec(
        json!({"containers": [{"name": "app", "env": [{"name": "B", "value": "20"}, {"name": "C", "value": "3"}]}]}),
    );
    let got = deployment(&live, patch);
    let env = &got["spec"]["template"]["spec"]["containers"][0]["env"];
    assert_eq!(
        env,
        &json!([{"name": "A", "value": "1"}, {"name": "B", "value": "20"}, {"name": "C", "value": "3"}])
    );
}

#[test]
fn env_replaced_with_patch_replace() {
    let live = live_deployment(json!([live_container("app", "nginx")]));
    let patch = template_spec(json!({"containers": [{"name": "app", "env": [
        {"name": "C", "value": "3"}, {"$patch": "replace"}
    ]}]}));
    let got = deployment(&live, patch);
    let env = &got["spec"]["template"]["spec"]["containers"][0]["env"];
    assert_eq!(env, &json!([{"name": "C", "value": "3"}]));
}

#[test]
fn env_var_removed_by_kubectl_apply() {
    let live = live_deployment(json!([live_container("app", "nginx")]));
    let patch = template_spec(json!({
        "$setElementOrder/containers": [{"name": "app"}],
        "containers": [{"name": "app", "$setElementOrder/env": [{"name": "B"}], "env": [{"$patch": "delete", "name": "A"}]}]
    }));
    let got = deployment(&live, patch);
    let env = &got["spec"]["template"]["spec"]["containers"][0]["env"];
    assert_eq!(env, &json!([{"name": "B", "value": "2"}]));
}

#[test]
fn retain_keys_switches_deployment_strategy_to_recreate() {
    let live = live_deployment(json!([live_container("app", "nginx")]));
    let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": null, "type": "Recreate"}}});
    let got = deployment(&live, patch);
    assert_eq!(got["spec"]["strategy"], json!({"type": "Recreate"}));
    // Without the null (an older kubectl or a hand-written patch), $retainKeys alone clears it.
    let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
    assert_eq!(
        deployment(&live, patch)["spec"]["strategy"],
        json!({"type": "Recreate"})
    );
}

#[test]
fn retain_keys_switches_a_volume_source() {
    let live = json!({"spec": {"volumes": [
        {"name": "data", "emptyDir": {}}, {"name": "keep", "secret": {"secretName": "s"}}
    ]}});
    let patch = json!({"spec": {
        "$setElementOrder/volumes": [{"name": "data"}, {"name": "keep"}],
        "volumes": [{"$retainKeys": ["configMap", "name"], "configMap": {"name": "cfg"}, "name": "data"}]
    }});
    let got = pod(live, patch).unwrap();
    assert_eq!(
        got["spec"]["volumes"],
        json!([
            {"name": "data", "configMap": {"name": "cfg"}}, {"name": "keep", "secret": {"secretName": "s"}}
        ])
    );
}

#[test]
fn delete_from_primitive_list_removes_finalizers() {
    let live = json!({"metadata": {"name": "x", "finalizers": ["a", "b", "c"]}});
    let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"], "$setElementOrder/finalizers": ["a", "c"]}});
    assert_eq!(
        pod(live.clone(), patch).unwrap()["metadata"]["finalizers"],
        json!(["a", "c"])
    );
    let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a", "c", "zz"]}});
    assert_eq!(
        pod(live, patch).unwrap()["metadata"]["finalizers"],
        json!(["b"])
    );
}

#[test]
fn status_conditions_merge_by_type() {
    let live = json!({"status": {"conditions": [
        {"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}
    ]}});
    let patch = json!({"status": {
        "$setElementOrder/conditions": [{"type": "Ready"}, {"type": "PodScheduled"}],
        "conditions": [{"type": "Ready", "status": "True"}]
    }});
    let got = pod(live, patch).unwrap();
    assert_eq!(
        got["status"]["conditions"],
        json!([
            {"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}
        ])
    );
}

#[test]
fn host_ips_merge_by_ip_as_in_1_33() {
    let live = json!({"status": {"hostIPs": [{"ip": "10.0.0.1"}]}});
    let got = pod(live, json!({"status": {"hostIPs": [{"ip": "fd00::1"}]}})).unwrap();
    assert_eq!(got["status"]["hostIPs"].as_array().map(Vec::len), Some(2));
}

#[test]
fn service_ports_merge_by_port() {
    let service = ("", "v1", "Service");
    let live = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}});
    let got = apply(
        &live,
        &json!({"spec": {"ports": [{"port": 80, "name": "http"}]}}),
        service,
    )
    .unwrap();
    assert_eq!(
        got["spec"]["ports"],
        json!([{"port": 80, "targetPort": 8080, "name": "http"}, {"port": 443}])
    );
}

#[test]
fn pdb_selector_is_replaced_not_merged() {
    let pdb = ("policy", "v1", "PodDisruptionBudget");
    let live = json!({"spec": {"selector": {"matchLabels": {"a": "1"}}}});
    let got = apply(
        &live,
        &json!({"spec": {"selector": {"matchLabels": {"b": "2"}}}}),
        pdb,
    )
    .unwrap();
    assert_eq!(got["spec"]["selector"], json!({"matchLabels": {"b": "2"}}));
}

#[test]
fn scale_subresource_and_crds_accept_strategic_merge_patch() {
    let scale = ("autoscaling", "v1", "Scale");
    let crd = ("apiextensions.k8s.io", "v1", "CustomResourceDefinition");
    assert!(supports(scale) && supports(crd));
    let live = json!({"spec": {"replicas": 1}, "status": {"replicas": 1}});
    let got = apply(&live, &json!({"spec": {"replicas": 3}}), scale).unwrap();
    assert_eq!(got["spec"]["replicas"], 3);
    // CRD versions have no patch strategy upstream: a re-applied CRD replaces the list.
    let live = json!({"metadata": {"finalizers": ["customresourcecleanup.apiextensions.k8s.io"]},
                      "spec": {"versions": [{"name": "v1", "served": true}]}});
    let patch = json!({"spec": {"versions": [{"name": "v2", "served": true}]}});
    let got = apply(&live, &patch, crd).unwrap();
    assert_eq!(
        got["spec"]["versions"],
        json!([{"name": "v2", "served": true}])
    );
    assert_eq!(got["metadata"], live["metadata"]);
}

// ---- kinds without schema ----

#[test]
fn custom_resources_are_not_supported_and_fall_back_to_merge_patch() {
    let widget = ("example.com", "v1", "Widget");
    assert!(!supports(widget));
    assert!(
        supports(POD)
            && supports(DEPLOYMENT)
            && supports(("rbac.authorization.k8s.io", "v1", "ClusterRole"))
    );
    let live = json!({"spec": {"items": [{"name": "a"}], "m": {"x": 1, "y": 2}}});
    let got = apply(
        &live,
        &json!({"spec": {"items": [{"name": "b"}], "m": {"x": null}}}),
        widget,
    )
    .unwrap();
    assert_eq!(
        got,
        json!({"spec": {"items": [{"name": "b"}], "m": {"y": 2}}})
    );
}

// ---- malformed patches ----

#[test]
fn malformed_patches_are_rejected_with_upstream_messages() {
    let err = pod(json!({}), json!([1])).unwrap_err();
    assert_eq!(err.to_string(), "invalid JSON document");
    assert_eq!(err.http_status(), 400);
    assert_eq!(StrategicPatchError::ListOfLists.http_status(), 422);
    let live = pod_spec(json!({"containers": containers(&["a"])}));
    let err = pod(
        live.clone(),
        pod_spec(json!({"containers": [{"$patch": "delete", "image": "x"}]})),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"map: {"$patch":"delete","image":"x"} does not contain declared merge key: name"#
    );
    let err = pod(
        live.clone(),
        pod_spec(json!({"containers": [{"name": "a", "$patch": "explode"}]})),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("unknown patch type: explode in map"),
        "{err}"
    );
    let err = pod(
        live.clone(),
        pod_spec(json!({"$setElementOrder/containers": "a"})),
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "expected a list, but received a string");
    let err = pod(
        live.clone(),
        pod_spec(json!({"containers": [{"name": "b"}, "c"]})),
    )
    .unwrap_err();
    assert!(
        matches!(err, StrategicPatchError::MixedListTypes(_)),
        "{err}"
    );
    let err = pod(
        live,
        json!({"spec": {"$retainKeys": ["x"], "containers": []}}),
    )
    .unwrap_err();
    assert_eq!(err, StrategicPatchError::BadRetainKeysFormat);
    let err = pod(
        json!({"metadata": {}}),
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}),
    )
    .unwrap_err();
    assert_eq!(err, StrategicPatchError::BadPrimitiveListFormat);
}

#[test]
fn long_lists_merge_in_linear_time() {
    // Patch bodies come from clients; quadratic matching would let one request pin a CPU.
    let n = 20_000;
    let named = |i: usize| json!({"name": format!("c{i}")});
    let live: Vec<Value> = (0..n).map(named).collect();
    let order: Vec<Value> = (0..n).rev().map(named).collect();
    let patch: Vec<Value> = (0..n)
        .rev()
        .map(|i| json!({"name": format!("c{i}"), "image": "x"}))
        .collect();
    let finalizers: Vec<String> = (0..n).map(|i| format!("f{i}")).collect();
    let started = std::time::Instant::now();
    let got = pod(
        json!({"metadata": {"finalizers": finalizers}, "spec": {"containers": live}}),
        json!({
            "metadata": {"finalizers": ["new"], "$deleteFromPrimitiveList/finalizers": finalizers},
            "spec": {"$setElementOrder/containers": order, "containers": patch}
        }),
    )
    .unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert_eq!(
        got["spec"]["containers"][0],
        json!({"name": format!("c{}", n - 1), "image": "x"})
    );
    assert_eq!(got["metadata"]["finalizers"], json!(["new"]));
}
