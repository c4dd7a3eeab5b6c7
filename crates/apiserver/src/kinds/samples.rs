//! Realistic manifests of every built-in kind, as kubectl and controllers send them, run through
//! the whole pipeline (defaults, validation, printing, field selection): none may be refused,
//! and every row must fill its columns. False refusals would break real clients, so this guards
//! validation against being stricter than upstream.

use super::{apply_defaults, selectable_fields, table_columns, table_row, validate};
use serde_json::{json, Value};

const TEMPLATE_LABELS: &str = "web";

fn pod_spec() -> Value {
    json!({"containers": [{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80, "name": "http"}],
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
        "readinessProbe": {"httpGet": {"path": "/", "port": "http"}},
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "volumeMounts": [{"name": "cache", "mountPath": "/cache"}, {"name": "config", "mountPath": "/etc/web"}]}],
        "volumes": [{"name": "cache", "emptyDir": {}}, {"name": "config", "configMap": {"name": "web"}}],
        "tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}]})
}

/// A chart-style pod spec: init container, sidecar, probes of every handler, env from config,
/// security contexts, affinity, topology spread, projected volumes.
fn rich_pod_spec() -> Value {
    json!({
        "serviceAccountName": "web", "priorityClassName": "high", "hostname": "web-0", "subdomain": "web",
        "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "fsGroup": 2000, "seccompProfile": {"type": "RuntimeDefault"}},
        "initContainers": [
            {"name": "migrate", "image": "registry.example.com/app/migrate@sha256:0123456789abcdef", "command": ["sh", "-c", "true"],
             "envFrom": [{"configMapRef": {"name": "web"}}, {"secretRef": {"name": "web", "optional": true}}]},
            {"name": "proxy", "image": "envoyproxy/envoy:v1.30", "restartPolicy": "Always",
             "startupProbe": {"tcpSocket": {"port": 9901}, "failureThreshold": 30, "periodSeconds": 2}}
        ],
        "containers": [{
            "name": "app", "image": "localhost:5000/app:1.0.0", "imagePullPolicy": "IfNotPresent", "args": ["--port=8080"],
            "ports": [{"name": "http", "containerPort": 8080}, {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
                      {"containerPort": 53, "protocol": "UDP", "name": "dns"}],
            "env": [{"name": "MY_ENV.NAME", "value": "x"}, {"name": "LIMIT", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory"}}}],
            "resources": {"requests": {"cpu": 0.25, "memory": "256Mi", "ephemeral-storage": "1Gi"}, "limits": {"cpu": 1, "memory": "512Mi"}},
            "livenessProbe": {"grpc": {"port": 9090}, "initialDelaySeconds": 10},
            "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]}, "successThreshold": 2},
            "lifecycle": {"preStop": {"exec": {"command": ["sleep", "5"]}}},
            "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": true},
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, {"name": "token", "mountPath": "/var/run/token", "readOnly": true},
                             {"name": "data", "mountPath": "/data", "subPath": "app"}]
        }],
        "volumes": [
            {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
            {"name": "token", "projected": {"sources": [{"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}},
                                                     {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]}},
            {"name": "data", "persistentVolumeClaim": {"claimName": "data"}}
        ],
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100,
            "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "web"}}}}]}},
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"app": "web"}}}],
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"operator": "Exists"}, {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]
    })
}

fn template() -> Value {
    json!({"metadata": {"labels": {"app": TEMPLATE_LABELS}}, "spec": pod_spec()})
}

fn selector() -> Value {
    json!({"matchLabels": {"app": TEMPLATE_LABELS}})
}

/// (group, kind, namespaced, object without metadata.name/namespace).
fn samples() -> Vec<(&'static str, &'static str, bool, Value)> {
    let mut job_template = template();
    job_template["spec"]["restartPolicy"] = json!("Never");
    vec![
        ("", "Namespace", false, json!({})),
        (
            "",
            "Pod",
            true,
            json!({"metadata": {"labels": {"run": "web"}}, "spec": pod_spec()}),
        ),
        (
            "",
            "Service",
            true,
            json!({"spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}, {"name": "https", "port": 443, "targetPort": 8443}]}}),
        ),
        (
            "",
            "Service",
            true,
            json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}], "selector": {"app": "web"}}}),
        ),
        (
            "",
            "Service",
            true,
            json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 443, "protocol": "TCP"}], "selector": {"app": "web"}}}),
        ),
        (
            "",
            "Service",
            true,
            json!({"spec": {"clusterIP": "None", "selector": {"app": "web"}}}),
        ),
        (
            "",
            "Service",
            true,
            json!({"spec": {"type": "ExternalName", "externalName": "db.example.com."}}),
        ),
        (
            "",
            "Service",
            true,
            json!({"spec": {"clusterIP": "10.152.183.1", "ports": [{"name": "https", "port": 443, "targetPort": 16443}]}}),
        ),
        (
            "",
            "Endpoints",
            true,
            json!({"subsets": [{"addresses": [{"ip": "10.1.0.4"}], "ports": [{"name": "http", "port": 80}]}]}),
        ),
        (
            "",
            "ConfigMap",
            true,
            json!({"data": {"nginx.conf": "events {}", "MODE": "prod"}, "binaryData": {"logo.png": "iVBORw0KGgo="}}),
        ),
        (
            "",
            "Secret",
            true,
            json!({"stringData": {"password": "hunter2"}}),
        ),
        (
            "",
            "Secret",
            true,
            json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "Y2VydA==", "tls.key": "a2V5"}}),
        ),
        (
            "",
            "Secret",
            true,
            json!({"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "e30="}}),
        ),
        (
            "",
            "ServiceAccount",
            true,
            json!({"automountServiceAccountToken": false}),
        ),
        (
            "",
            "Node",
            false,
            json!({"metadata": {"labels": {"node-role.kubernetes.io/control-plane": ""}}, "spec": {"podCIDR": "10.1.0.0/24"},
            "status": {"capacity": {"cpu": "2", "memory": "4028776Ki", "pods": "110"}, "conditions": [{"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}, {"type": "Hostname", "address": "node-1"}],
                "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Ubuntu 24.04", "kernelVersion": "6.8.0", "containerRuntimeVersion": "containerd://2.0.0"}}}),
        ),
        (
            "",
            "Event",
            true,
            json!({"involvedObject": {"kind": "Pod", "name": "web", "namespace": "default"}, "reason": "Scheduled",
            "message": "Successfully assigned default/web to node-1", "source": {"component": "default-scheduler"}, "type": "Normal",
            "firstTimestamp": "2024-01-01T00:00:00Z", "lastTimestamp": "2024-01-01T00:00:00Z", "count": 1}),
        ),
        (
            "events.k8s.io",
            "Event",
            true,
            json!({"eventTime": "2024-01-01T00:00:00.000000Z", "reportingController": "default-scheduler",
            "reportingInstance": "default-scheduler-node-1", "action": "Binding", "reason": "Scheduled", "type": "Normal",
            "regarding": {"kind": "Pod", "name": "web", "namespace": "default"}, "note": "Successfully assigned"}),
        ),
        (
            "",
            "LimitRange",
            true,
            json!({"spec": {"limits": [{"type": "Container", "default": {"cpu": "500m"}, "defaultRequest": {"cpu": "250m"}}]}}),
        ),
        (
            "",
            "ResourceQuota",
            true,
            json!({"spec": {"hard": {"pods": "10", "requests.cpu": "4", "limits.memory": "8Gi"}}}),
        ),
        (
            "",
            "PersistentVolume",
            false,
            json!({"spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/data"},
            "storageClassName": "manual"}}),
        ),
        (
            "",
            "PersistentVolumeClaim",
            true,
            json!({"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
        ),
        (
            "apps",
            "Deployment",
            true,
            json!({"spec": {"replicas": 3, "selector": selector(), "template": template()}}),
        ),
        (
            "apps",
            "Deployment",
            true,
            json!({"spec": {"selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "api"]}]},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}, "minReadySeconds": 5,
            "template": {"metadata": {"labels": {"app": "web", "app.kubernetes.io/version": "1.0.0"}, "annotations": {"prometheus.io/scrape": "true"}},
                "spec": rich_pod_spec()}}}),
        ),
        (
            "apps",
            "Deployment",
            true,
            json!({"spec": {"selector": selector(), "strategy": {"type": "Recreate"}, "template": template()}}),
        ),
        (
            "batch",
            "Job",
            true,
            json!({"spec": {"completionMode": "Indexed", "completions": 5, "parallelism": 2, "backoffLimitPerIndex": 1,
            "podFailurePolicy": {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]},
            "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "work", "image": "busybox"}]}}}}),
        ),
        (
            "batch",
            "CronJob",
            true,
            json!({"spec": {"schedule": "@hourly", "timeZone": "Etc/UTC", "concurrencyPolicy": "Forbid",
            "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "busybox"}]}}}}}}),
        ),
        (
            "apps",
            "ReplicaSet",
            true,
            json!({"spec": {"replicas": 1, "selector": selector(), "template": template()}}),
        ),
        (
            "apps",
            "DaemonSet",
            true,
            json!({"spec": {"selector": selector(), "template": template()}}),
        ),
        (
            "apps",
            "StatefulSet",
            true,
            json!({"spec": {"serviceName": "web", "replicas": 2, "selector": selector(), "template": template(),
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}}),
        ),
        (
            "apps",
            "ControllerRevision",
            true,
            json!({"revision": 1, "data": {"spec": {"template": template()}},
            "metadata": {"ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "u", "controller": true}]}}),
        ),
        (
            "batch",
            "Job",
            true,
            json!({"spec": {"template": job_template.clone(), "backoffLimit": 4}}),
        ),
        (
            "batch",
            "CronJob",
            true,
            json!({"spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": job_template}}}}),
        ),
        (
            "coordination.k8s.io",
            "Lease",
            true,
            json!({"spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40, "renewTime": "2024-01-01T00:00:00.000000Z"}}),
        ),
        (
            "discovery.k8s.io",
            "EndpointSlice",
            true,
            json!({"addressType": "IPv4", "ports": [{"name": "http", "port": 80}],
            "endpoints": [{"addresses": ["10.1.0.4"], "conditions": {"ready": true}}]}),
        ),
        (
            "networking.k8s.io",
            "Ingress",
            true,
            json!({"spec": {"ingressClassName": "nginx", "tls": [{"hosts": ["web.example.com"], "secretName": "web-tls"}],
            "rules": [{"host": "web.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}),
        ),
        (
            "networking.k8s.io",
            "IngressClass",
            false,
            json!({"spec": {"controller": "k8s.io/ingress-nginx"}}),
        ),
        (
            "networking.k8s.io",
            "NetworkPolicy",
            true,
            json!({"spec": {"podSelector": {"matchLabels": {"app": "db"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": 5432}]}]}}),
        ),
        (
            "policy",
            "PodDisruptionBudget",
            true,
            json!({"spec": {"minAvailable": "50%", "selector": selector()}}),
        ),
        (
            "rbac.authorization.k8s.io",
            "Role",
            true,
            json!({"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]}),
        ),
        (
            "rbac.authorization.k8s.io",
            "RoleBinding",
            true,
            json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "default"}, {"kind": "User", "name": "alice"}]}),
        ),
        (
            "rbac.authorization.k8s.io",
            "ClusterRole",
            false,
            json!({"rules": [{"nonResourceURLs": ["/healthz"], "verbs": ["get"]},
            {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["*"]}]}),
        ),
        (
            "rbac.authorization.k8s.io",
            "ClusterRoleBinding",
            false,
            json!({"roleRef": {"kind": "ClusterRole", "name": "cluster-admin", "apiGroup": "rbac.authorization.k8s.io"},
            "subjects": [{"kind": "Group", "name": "system:masters"}]}),
        ),
        (
            "storage.k8s.io",
            "StorageClass",
            false,
            json!({"provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer",
            "metadata": {"annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}}),
        ),
        (
            "scheduling.k8s.io",
            "PriorityClass",
            false,
            json!({"value": 1000000, "globalDefault": false, "description": "high"}),
        ),
    ]
}

/// What the registry does before calling in: name, namespace, uid, creation time.
fn as_created(kind: &str, namespaced: bool, mut obj: Value) -> Value {
    let name = if kind.contains("Role") {
        "system:reader".to_string()
    } else {
        format!("{}-1", kind.to_lowercase())
    };
    let meta = &mut obj["metadata"];
    meta["name"] = json!(name);
    if namespaced {
        meta["namespace"] = json!("default");
    }
    meta["uid"] = json!("6f1c2d3e-0000-4000-8000-000000000001");
    meta["creationTimestamp"] = json!("2024-01-01T00:00:00Z");
    obj
}

#[test]
fn every_sample_is_accepted_printed_and_selectable() {
    for (group, kind, namespaced, obj) in samples() {
        let mut obj = as_created(kind, namespaced, obj);
        apply_defaults(group, kind, &mut obj);
        let causes = validate(group, kind, &obj, None);
        assert!(
            causes.is_empty(),
            "{group}/{kind} refused: {causes:#?}\n{obj:#}"
        );
        // Re-applying defaults and validating the stored object as an unchanged update passes too.
        let stored = obj.clone();
        apply_defaults(group, kind, &mut obj);
        assert_eq!(obj, stored, "{group}/{kind} defaults not idempotent");
        let causes = validate(group, kind, &obj, Some(&stored));
        assert!(
            causes.is_empty(),
            "{group}/{kind} update refused: {causes:#?}"
        );
        let row = table_row(group, kind, &obj, 1_704_067_500);
        assert_eq!(
            row.len(),
            table_columns(group, kind).len(),
            "{group}/{kind}"
        );
        let fields = selectable_fields(group, kind, &obj);
        assert!(
            fields
                .iter()
                .any(|(f, v)| f == "metadata.name" && !v.is_empty()),
            "{group}/{kind}"
        );
    }
}

#[test]
fn deployment_row_after_defaults_reads_like_kubectl() {
    let (group, kind, namespaced, obj) = (
        "apps",
        "Deployment",
        true,
        json!({"spec": {"selector": selector(), "template": template()}}),
    );
    let mut obj = as_created(kind, namespaced, obj);
    apply_defaults(group, kind, &mut obj);
    // 2024-01-01T00:05:00Z: five minutes after creation, no status yet.
    let row = table_row(group, kind, &obj, 1_704_067_500);
    assert_eq!(
        row,
        [
            json!("deployment-1"),
            json!("0/1"),
            json!(0),
            json!(0),
            json!("5m"),
            json!("web"),
            json!("nginx:1.27"),
            json!("app=web")
        ]
    );
}

/// A tiny deterministic generator of odd JSON built from the field names the code reads, so that
/// wrong types and missing pieces reach every accessor.
struct Chaos(u64);

const KEYS: &[&str] = &[
    "metadata",
    "name",
    "namespace",
    "generateName",
    "labels",
    "annotations",
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "spec",
    "status",
    "template",
    "selector",
    "matchLabels",
    "matchExpressions",
    "containers",
    "initContainers",
    "ports",
    "port",
    "targetPort",
    "nodePort",
    "protocol",
    "image",
    "resources",
    "limits",
    "requests",
    "cpu",
    "memory",
    "volumes",
    "volumeMounts",
    "env",
    "replicas",
    "strategy",
    "rollingUpdate",
    "type",
    "clusterIP",
    "clusterIPs",
    "data",
    "binaryData",
    "stringData",
    "subsets",
    "addresses",
    "ip",
    "conditions",
    "containerStatuses",
    "state",
    "terminated",
    "waiting",
    "reason",
    "phase",
    "jobTemplate",
    "schedule",
    "rules",
    "subjects",
    "roleRef",
    "kind",
    "apiVersion",
    "involvedObject",
    "regarding",
    "eventTime",
    "series",
    "capacity",
    "accessModes",
    "taints",
    "tolerations",
    "effect",
    "operator",
    "values",
    "key",
    "value",
    "hard",
    "used",
    "tls",
    "http",
    "paths",
    "backend",
    "endpoints",
    "livenessProbe",
    "httpGet",
    "exec",
    "emptyDir",
    "immutable",
    "podIPs",
    "restartPolicy",
    "hostNetwork",
    "limits",
    "max",
    "default",
    "ownerReferences",
    "controller",
];

impl Chaos {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }

    fn value(&mut self, depth: u32) -> Value {
        match self.next() % if depth == 0 { 6 } else { 9 } {
            0 => Value::Null,
            1 => json!(self.next().is_multiple_of(3)),
            2 => json!((self.next() % 70_000) as i64 - 100),
            3 => json!(*self.pick(&[
                "",
                "a",
                "Always",
                "1Gi",
                "-",
                "None",
                "2024-01-01T00:00:00Z",
                "../x",
                "é",
                "10.0.0.1",
                "*/5 * * * *"
            ])),
            4 => json!(0.5),
            5 => json!(*self.pick(KEYS)),
            6 | 7 => {
                let n = self.next() % 5;
                Value::Object(
                    (0..n)
                        .map(|_| (self.pick(KEYS).to_string(), self.value(depth - 1)))
                        .collect(),
                )
            }
            _ => Value::Array(
                (0..self.next() % 4)
                    .map(|_| self.value(depth - 1))
                    .collect(),
            ),
        }
    }

    /// Replaces one random subtree of `v` with a random value.
    fn mutate(&mut self, v: &mut Value) {
        let children = match v {
            Value::Object(m) => m.len(),
            Value::Array(a) => a.len(),
            _ => 0,
        };
        if children == 0 || self.next().is_multiple_of(4) {
            *v = self.value(2);
            return;
        }
        let i = (self.next() % children as u64) as usize;
        match v {
            Value::Object(m) => m
                .values_mut()
                .nth(i)
                .into_iter()
                .for_each(|c| self.mutate(c)),
            Value::Array(a) => self.mutate(&mut a[i]),
            _ => {}
        }
    }
}

/// Runs every function of the interface on `obj`, as create and as update of `old`.
fn exercise(group: &str, kind: &str, mut obj: Value, old: &Value) {
    apply_defaults(group, kind, &mut obj);
    let _ = validate(group, kind, &obj, None);
    let _ = validate(group, kind, &obj, Some(old));
    assert_eq!(
        table_row(group, kind, &obj, 0).len(),
        table_columns(group, kind).len()
    );
    let _ = selectable_fields(group, kind, &obj);
}

#[test]
fn no_input_makes_any_function_panic() {
    let mut chaos = Chaos(0x9e37_79b9_7f4a_7c15);
    let kinds: Vec<(&str, &str)> = samples()
        .iter()
        .map(|(g, k, _, _)| (*g, *k))
        .chain([("example.com", "Widget")])
        .collect();
    let mutated = samples().into_iter().flat_map(|(g, k, ns, obj)| {
        let obj = as_created(k, ns, obj);
        (0..60).map(move |_| (g, k, obj.clone()))
    });
    for (group, kind, mut obj) in mutated {
        chaos.mutate(&mut obj);
        let old = obj.clone();
        chaos.mutate(&mut obj);
        exercise(group, kind, obj, &old);
    }
    for _ in 0..400 {
        let obj = chaos.value(5);
        let old = chaos.value(4);
        for (group, kind) in &kinds {
            exercise(group, kind, obj.clone(), &old);
        }
    }
}
