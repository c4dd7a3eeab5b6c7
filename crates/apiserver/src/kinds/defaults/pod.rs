//! Pod and pod-template defaults (`SetDefaults_PodSpec`, `SetDefaults_Container`, probes,
//! volumes), plus what only materialises on Pod objects (`SetDefaults_Pod` and the Priority
//! admission plugin's priority 0).

use crate::kinds::json::{each_obj_mut, obj_mut, set_default, set_default_str};
use crate::kinds::quantity::{canonicalize, canonicalize_list, canonicalize_lists, nanos};
use serde_json::{json, Map, Value};

/// Defaults of a `PodSpec`, wherever it is embedded (pods and every pod template).
pub(super) fn pod_spec(spec: &mut Map<String, Value>) {
    set_default_str(spec, "dnsPolicy", "ClusterFirst");
    set_default_str(spec, "restartPolicy", "Always");
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default_str(spec, "schedulerName", "default-scheduler");
    for key in ["initContainers", "containers", "ephemeralContainers"] {
        each_obj_mut(spec, key, container);
    }
    each_obj_mut(spec, "volumes", volume);
    mirror(spec, "serviceAccountName", "serviceAccount");
    canonicalize_list(spec.get_mut("overhead"));
}

/// Keeps a field and its deprecated twin equal, as upstream's v1 conversion does: the current
/// field wins, the old one fills it when only it is set.
fn mirror(map: &mut Map<String, Value>, current: &str, deprecated: &str) {
    let get = |m: &Map<String, Value>, k: &str| {
        m.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(String::from)
    };
    match (get(map, current), get(map, deprecated)) {
        (Some(v), _) => map.insert(deprecated.into(), json!(v)),
        (None, Some(v)) => map.insert(current.into(), json!(v)),
        (None, None) => None,
    };
}

/// `status.podIP`/`hostIP` and their plural lists describe the same addresses.
fn status_ips(status: &mut Map<String, Value>) {
    for (single, plural) in [("podIP", "podIPs"), ("hostIP", "hostIPs")] {
        let first = status
            .get(plural)
            .and_then(|l| l.get(0))
            .and_then(|e| e.get("ip"))
            .and_then(Value::as_str)
            .map(String::from);
        let one = status
            .get(single)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(String::from);
        match (first, one) {
            (Some(ip), _) => {
                status.insert(single.into(), json!(ip));
            }
            (None, Some(ip)) => {
                status.insert(plural.into(), json!([{"ip": ip}]));
            }
            (None, None) => {}
        }
    }
}

/// Defaults of a pod template (`spec.template` of the workload kinds).
pub(super) fn template(template: &mut Value) {
    if let Some(spec) = obj_mut(template, "spec") {
        pod_spec(spec);
    }
}

/// A Pod object: its spec's defaults plus the pod-only ones.
pub(super) fn pod(obj: &mut Value) {
    let Some(spec) = obj_mut(obj, "spec") else {
        return;
    };
    pod_spec(spec);
    set_default(spec, "enableServiceLinks", json!(true));
    // The Priority admission plugin resolves a pod without a class to priority 0.
    if spec
        .get("priorityClassName")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        set_default(spec, "priority", json!(0));
    }
    set_default_str(spec, "preemptionPolicy", "PreemptLowerPriority");
    let qos = qos_class(spec);
    let host_network = spec.get("hostNetwork").and_then(Value::as_bool) == Some(true);
    for key in ["initContainers", "containers"] {
        each_obj_mut(spec, key, |c| {
            requests_from_limits(c);
            if host_network {
                each_obj_mut(c, "ports", |p| {
                    if p.get("hostPort").and_then(Value::as_i64).unwrap_or(0) == 0 {
                        let port = p.get("containerPort").cloned().unwrap_or(Value::Null);
                        p.insert("hostPort".into(), port);
                    }
                });
            }
        });
    }
    if let Some(status) = obj_mut(obj, "status") {
        set_default_str(status, "qosClass", qos);
        status_ips(status);
    }
}

/// Upstream's `GetPodQOS` over cpu and memory, comparing each container's request with its
/// limit (upstream compares pod-wide sums; the same for well-formed pods).
fn qos_class(spec: &Map<String, Value>) -> &'static str {
    let containers = ["initContainers", "containers"]
        .iter()
        .filter_map(|k| spec.get(*k).and_then(Value::as_array))
        .flatten();
    // A quantity's value when above zero (upstream ignores zero and unparseable ones).
    let positive = |c: &Value, kind: &str, res: &str| {
        let q = c
            .pointer(&format!("/resources/{kind}/{res}"))
            .and_then(Value::as_str);
        q.and_then(nanos).filter(|n| *n > 0)
    };
    let (mut any, mut guaranteed) = (false, true);
    for c in containers {
        for res in ["cpu", "memory"] {
            let (request, limit) = (positive(c, "requests", res), positive(c, "limits", res));
            any |= request.is_some() || limit.is_some();
            guaranteed &= limit.is_some() && request.is_none_or(|r| Some(r) == limit);
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

/// A container without requests gets its limits as requests.
fn requests_from_limits(c: &mut Map<String, Value>) {
    let Some(Value::Object(res)) = c.get_mut("resources") else {
        return;
    };
    let Some(Value::Object(limits)) = res.get("limits").cloned() else {
        return;
    };
    if limits.is_empty() {
        return;
    }
    let requests = res.entry("requests").or_insert_with(|| json!({}));
    if let Some(requests) = requests.as_object_mut() {
        for (k, v) in limits {
            requests.entry(k).or_insert(v);
        }
    }
}

fn container(c: &mut Map<String, Value>) {
    if let Some(resources) = c.get_mut("resources") {
        canonicalize_lists(resources, &["/limits", "/requests"]);
    }
    if c.get("imagePullPolicy")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
        let policy = if image_tag(image) == "latest" {
            "Always"
        } else {
            "IfNotPresent"
        };
        c.insert("imagePullPolicy".into(), json!(policy));
    }
    set_default_str(c, "terminationMessagePath", "/dev/termination-log");
    set_default_str(c, "terminationMessagePolicy", "File");
    each_obj_mut(c, "ports", |p| set_default_str(p, "protocol", "TCP"));
    for key in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(Value::Object(probe)) = c.get_mut(key) {
            for (field, value) in [
                ("timeoutSeconds", 1),
                ("periodSeconds", 10),
                ("successThreshold", 1),
                ("failureThreshold", 3),
            ] {
                set_default(probe, field, json!(value));
            }
            http_get(probe);
        }
    }
    for key in ["postStart", "preStop"] {
        if let Some(Value::Object(handler)) = c.get_mut("lifecycle").and_then(|l| l.get_mut(key)) {
            http_get(handler);
        }
    }
    each_obj_mut(c, "env", |e| {
        if let Some(Value::Object(field_ref)) =
            e.get_mut("valueFrom").and_then(|v| v.get_mut("fieldRef"))
        {
            set_default_str(field_ref, "apiVersion", "v1");
        }
    });
}

/// `SetDefaults_HTTPGetAction` on a probe or lifecycle handler.
fn http_get(handler: &mut Map<String, Value>) {
    if let Some(Value::Object(get)) = handler.get_mut("httpGet") {
        set_default_str(get, "path", "/");
        set_default_str(get, "scheme", "HTTP");
    }
}

/// The tag image pull policy defaulting sees: "latest" when neither tag nor digest is given.
fn image_tag(image: &str) -> &str {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.split_once(':') {
        Some((_, tag)) => tag,
        None if digest.is_none() => "latest",
        None => "",
    }
}

/// A volume without a source is an emptyDir; file modes default to 0644.
fn volume(v: &mut Map<String, Value>) {
    if let Some(size) = v.get_mut("emptyDir").and_then(|e| e.get_mut("sizeLimit")) {
        canonicalize(size);
    }
    if v.keys().all(|k| k == "name") {
        v.insert("emptyDir".into(), json!({}));
    }
    for source in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(Value::Object(s)) = v.get_mut(source) {
            set_default(s, "defaultMode", json!(420));
        }
    }
    if let Some(Value::Object(host_path)) = v.get_mut("hostPath") {
        set_default(host_path, "type", json!(""));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_tags() {
        for (image, tag) in [
            ("nginx", "latest"),
            ("nginx:latest", "latest"),
            ("nginx:1.27", "1.27"),
            ("localhost:5000/nginx", "latest"),
            ("localhost:5000/nginx:v1", "v1"),
            ("nginx@sha256:abc", ""),
            ("", "latest"),
        ] {
            assert_eq!(image_tag(image), tag, "{image}");
        }
    }

    /// What `kubectl run web --image=nginx -o yaml` shows against upstream (minus admission's
    /// service account).
    #[test]
    fn pod_defaults_like_upstream() {
        let mut p = json!({"spec": {"containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}],
            "resources": {"limits": {"cpu": 1, "memory": "1024Mi"}}, "readinessProbe": {"httpGet": {"port": 80}},
            "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}],
            "volumes": [{"name": "scratch"}, {"name": "cfg", "configMap": {"name": "c"}}]}});
        pod(&mut p);
        assert_eq!(
            p,
            json!({"spec": {
            "containers": [{"name": "web", "image": "nginx", "imagePullPolicy": "Always",
                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}},
                "readinessProbe": {"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
                    "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3},
                "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name", "apiVersion": "v1"}}}],
                "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}],
            "volumes": [{"name": "scratch", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "c", "defaultMode": 420}}],
            "dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "securityContext": {},
            "terminationGracePeriodSeconds": 30, "schedulerName": "default-scheduler",
            "enableServiceLinks": true, "priority": 0, "preemptionPolicy": "PreemptLowerPriority"},
            "status": {"qosClass": "Guaranteed"}})
        );
    }

    #[test]
    fn deprecated_twins_follow_current_fields() {
        let mut p = json!({"spec": {"serviceAccount": "old"}, "status": {"podIP": "10.0.0.1", "hostIPs": [{"ip": "192.168.0.2"}]}});
        pod(&mut p);
        assert_eq!(p["spec"]["serviceAccountName"], "old");
        assert_eq!(p["status"]["podIPs"], json!([{"ip": "10.0.0.1"}]));
        assert_eq!(p["status"]["hostIP"], "192.168.0.2");
        let mut t = json!({"spec": {"serviceAccountName": "new", "serviceAccount": "old"}});
        template(&mut t);
        assert_eq!(t["spec"]["serviceAccount"], "new");
    }

    #[test]
    fn qos_classes() {
        let class = |resources: Value| {
            let mut p = json!({"spec": {"containers": [{"name": "a", "resources": resources}]}});
            pod(&mut p);
            p["status"]["qosClass"].clone()
        };
        assert_eq!(class(json!({})), "BestEffort");
        assert_eq!(class(json!({"requests": {"cpu": "0"}})), "BestEffort");
        assert_eq!(
            class(
                json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1000m", "memory": "1073741824"}})
            ),
            "Guaranteed"
        );
        assert_eq!(
            class(json!({"limits": {"cpu": "1", "memory": "1Gi"}})),
            "Guaranteed"
        );
        assert_eq!(
            class(json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}})),
            "Burstable"
        );
        assert_eq!(class(json!({"requests": {"memory": "1Gi"}})), "Burstable");
    }

    #[test]
    fn explicit_values_and_host_network() {
        let mut p = json!({"spec": {"hostNetwork": true, "restartPolicy": "Never", "priorityClassName": "high",
            "containers": [{"name": "a", "image": "busybox:1.36", "imagePullPolicy": "Never", "ports": [{"containerPort": 53, "protocol": "UDP"}]}]}});
        pod(&mut p);
        assert_eq!(p["spec"]["restartPolicy"], "Never");
        assert_eq!(p["spec"]["containers"][0]["imagePullPolicy"], "Never");
        assert_eq!(
            p["spec"]["containers"][0]["ports"][0],
            json!({"containerPort": 53, "protocol": "UDP", "hostPort": 53})
        );
        assert!(p["spec"].get("priority").is_none());
        let mut odd = json!({"spec": {"containers": "nope", "volumes": [3]}});
        pod(&mut odd);
        assert_eq!(odd["spec"]["containers"], "nope");
        let mut t = json!({"spec": {"containers": [{"image": "x:1"}]}});
        template(&mut t);
        assert_eq!(
            t["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
        assert!(t["spec"].get("enableServiceLinks").is_none());
    }
}
