//! Pod spec validation (`ValidatePodSpec` and the container checks) for pods and every pod
//! template, and the pod update rule (the spec is immutable but for images and a few fields).

use super::errors::{duplicate, forbidden, invalid, not_found, not_supported, quote, required};
use super::meta::{annotations, labels};
use super::names::{dns1123_label, dns1123_subdomain, env_var_name, port_name, port_number};
use crate::kinds::json::{arr_at, at, int_at, str_at, without};
use crate::kinds::Cause;
use serde_json::Value;
use std::collections::HashSet;

const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const DNS_POLICIES: &[&str] = &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
pub const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];

/// A string field that must be one of `supported` (Required when empty).
pub fn one_of(errs: &mut Vec<Cause>, field: &str, value: &str, supported: &[&str]) {
    if value.is_empty() {
        errs.push(required(field, ""));
    } else if !supported.contains(&value) {
        errs.push(not_supported(field, value, supported));
    }
}

/// A protocol field that may be left empty but must otherwise be a supported protocol.
pub fn optional_protocol(errs: &mut Vec<Cause>, field: &str, value: &str) {
    if !value.is_empty() && !PROTOCOLS.contains(&value) {
        errs.push(not_supported(field, value, PROTOCOLS));
    }
}

/// A `port` number and a required `protocol`, as service and endpoint ports have them.
pub fn port_and_protocol(errs: &mut Vec<Cause>, p: &Value, path: &str) {
    let port = int_at(p, "port");
    errs.extend(
        port_number(port)
            .iter()
            .map(|m| invalid(&format!("{path}.port"), &port.to_string(), m)),
    );
    one_of(
        errs,
        &format!("{path}.protocol"),
        str_at(p, "protocol"),
        PROTOCOLS,
    );
}

/// An IP address field.
pub fn ip_address(errs: &mut Vec<Cause>, field: &str, ip: &str) {
    if ip.parse::<std::net::IpAddr>().is_err() {
        errs.push(invalid(
            field,
            &quote(ip),
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        ));
    }
}

/// Each message of a name rule as an Invalid cause at `field`.
pub fn name_errors(errs: &mut Vec<Cause>, field: &str, value: &str, rule: fn(&str) -> Vec<String>) {
    errs.extend(rule(value).iter().map(|m| invalid(field, &quote(value), m)));
}

/// Validates a pod spec at `path`; `claim_volumes` are volume names provided elsewhere (a stateful
/// set's volumeClaimTemplates).
pub fn pod_spec(spec: &Value, path: &str, claim_volumes: &[&str]) -> Vec<Cause> {
    let mut errs = Vec::new();
    let volumes = volumes(&mut errs, spec, path, claim_volumes);
    if arr_at(spec, "containers").is_empty() {
        errs.push(required(&format!("{path}.containers"), ""));
    }
    // Names are unique across init and regular containers.
    let mut names = HashSet::new();
    for key in ["initContainers", "containers"] {
        for (i, c) in arr_at(spec, key).iter().enumerate() {
            container(
                &mut errs,
                c,
                &format!("{path}.{key}[{i}]"),
                &mut names,
                &volumes,
            );
        }
    }
    one_of(
        &mut errs,
        &format!("{path}.restartPolicy"),
        str_at(spec, "restartPolicy"),
        RESTART_POLICIES,
    );
    one_of(
        &mut errs,
        &format!("{path}.dnsPolicy"),
        str_at(spec, "dnsPolicy"),
        DNS_POLICIES,
    );
    super::scheduling::tolerations(&mut errs, spec, path);
    for key in ["serviceAccountName", "nodeName"] {
        let value = str_at(spec, key);
        if !value.is_empty() {
            name_errors(
                &mut errs,
                &format!("{path}.{key}"),
                value,
                dns1123_subdomain,
            );
        }
    }
    if let Some(secs) = at(spec, "activeDeadlineSeconds")
        .as_i64()
        .filter(|s| !(1..=i64::from(i32::MAX)).contains(s))
    {
        let field = format!("{path}.activeDeadlineSeconds");
        errs.push(invalid(
            &field,
            &secs.to_string(),
            "must be between 1 and 2147483647, inclusive",
        ));
    }
    errs
}

/// The pod's volumes: named, unique, one source each. Returns the names mounts may use.
fn volumes<'a>(
    errs: &mut Vec<Cause>,
    spec: &'a Value,
    path: &str,
    claim_volumes: &[&'a str],
) -> HashSet<&'a str> {
    let mut names: HashSet<&str> = claim_volumes.iter().copied().collect();
    for (i, v) in arr_at(spec, "volumes").iter().enumerate() {
        super::unions::volume(errs, v, &format!("{path}.volumes[{i}]"));
        let (field, name) = (format!("{path}.volumes[{i}].name"), str_at(v, "name"));
        if name.is_empty() {
            errs.push(required(&field, ""));
            continue;
        }
        name_errors(errs, &field, name, dns1123_label);
        if !names.insert(name) {
            errs.push(duplicate(&field, name));
        }
    }
    names
}

/// A pod template (`ValidatePodTemplateSpec`): its labels and annotations (reported at
/// `<path>.labels` like upstream) and its spec.
pub fn template(t: &Value, path: &str, claim_volumes: &[&str]) -> Vec<Cause> {
    let mut errs = labels(at(t, "metadata.labels"), &format!("{path}.labels"));
    errs.extend(annotations(
        at(t, "metadata.annotations"),
        &format!("{path}.annotations"),
    ));
    errs.extend(pod_spec(
        at(t, "spec"),
        &format!("{path}.spec"),
        claim_volumes,
    ));
    errs
}

fn container(
    errs: &mut Vec<Cause>,
    c: &Value,
    path: &str,
    names: &mut HashSet<String>,
    volumes: &HashSet<&str>,
) {
    let (name_field, name) = (format!("{path}.name"), str_at(c, "name"));
    if name.is_empty() {
        errs.push(required(&name_field, ""));
    } else {
        name_errors(errs, &name_field, name, dns1123_label);
    }
    if !name.is_empty() && !names.insert(name.to_string()) {
        errs.push(duplicate(&name_field, name));
    }
    super::resources::requirements(errs, at(c, "resources"), &format!("{path}.resources"));
    super::unions::handlers(errs, c, path);
    if str_at(c, "image").trim().is_empty() {
        errs.push(required(&format!("{path}.image"), ""));
    }
    one_of(
        errs,
        &format!("{path}.imagePullPolicy"),
        str_at(c, "imagePullPolicy"),
        PULL_POLICIES,
    );
    ports(errs, arr_at(c, "ports"), &format!("{path}.ports"));
    for (i, e) in arr_at(c, "env").iter().enumerate() {
        let (field, name) = (format!("{path}.env[{i}].name"), str_at(e, "name"));
        if name.is_empty() {
            errs.push(required(&field, ""));
        } else {
            name_errors(errs, &field, name, env_var_name);
        }
    }
    for (i, m) in arr_at(c, "volumeMounts").iter().enumerate() {
        let name = str_at(m, "name");
        if name.is_empty() {
            errs.push(required(&format!("{path}.volumeMounts[{i}].name"), ""));
        } else if !volumes.contains(name) {
            errs.push(not_found(&format!("{path}.volumeMounts[{i}].name"), name));
        }
        if str_at(m, "mountPath").is_empty() {
            errs.push(required(&format!("{path}.volumeMounts[{i}].mountPath"), ""));
        }
    }
}

fn ports(errs: &mut Vec<Cause>, ports: &[Value], path: &str) {
    let mut names = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let at_ = |key: &str| format!("{path}[{i}].{key}");
        let name = str_at(p, "name");
        if !name.is_empty() {
            let msgs = port_name(name);
            if !msgs.is_empty() {
                errs.extend(msgs.iter().map(|m| invalid(&at_("name"), &quote(name), m)));
            } else if !names.insert(name) {
                errs.push(duplicate(&at_("name"), name));
            }
        }
        match int_at(p, "containerPort") {
            0 => errs.push(required(&at_("containerPort"), "")),
            n => errs.extend(
                port_number(n)
                    .iter()
                    .map(|m| invalid(&at_("containerPort"), &n.to_string(), m)),
            ),
        }
        match int_at(p, "hostPort") {
            0 => {}
            n => errs.extend(
                port_number(n)
                    .iter()
                    .map(|m| invalid(&at_("hostPort"), &n.to_string(), m)),
            ),
        }
        one_of(errs, &at_("protocol"), str_at(p, "protocol"), PROTOCOLS);
    }
}

/// What a pod update may change: container images, activeDeadlineSeconds, added tolerations, a
/// negative grace period set to 1, and removed scheduling gates.
const POD_UPDATE_FORBIDDEN: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// `ValidatePodUpdate`'s spec rule.
pub fn pod_update(new: &Value, old: &Value) -> Vec<Cause> {
    if mutable_stripped(at(new, "spec")) == mutable_stripped(at(old, "spec")) {
        Vec::new()
    } else {
        vec![forbidden("spec", POD_UPDATE_FORBIDDEN)]
    }
}

/// The spec without the fields a pod update may change.
fn mutable_stripped(spec: &Value) -> Value {
    let mut spec = without(
        spec,
        &[
            "activeDeadlineSeconds",
            "tolerations",
            "terminationGracePeriodSeconds",
            "schedulingGates",
        ],
    );
    for key in ["containers", "initContainers"] {
        if let Some(Value::Array(cs)) = spec.get_mut(key) {
            cs.iter_mut().for_each(|c| *c = without(c, &["image"]));
        }
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::defaults;
    use serde_json::json;

    fn defaulted(spec: Value) -> Value {
        let mut pod = json!({"spec": spec});
        defaults::apply("", "Pod", &mut pod);
        pod
    }

    fn causes(spec: Value) -> Vec<(String, String)> {
        let pod = defaulted(spec);
        pod_spec(&pod["spec"], "spec", &[])
            .into_iter()
            .map(|c| (c.field, c.message))
            .collect()
    }

    #[test]
    fn valid_pod_passes() {
        let spec = json!({"containers": [{"name": "web", "image": "nginx", "ports": [{"name": "http", "containerPort": 80}],
            "env": [{"name": "A", "value": "1"}], "volumeMounts": [{"name": "data", "mountPath": "/d"}]}],
            "volumes": [{"name": "data"}]});
        assert_eq!(causes(spec), []);
    }

    #[test]
    fn required_and_duplicate() {
        assert_eq!(
            causes(json!({})),
            [("spec.containers".to_string(), "Required value".to_string())]
        );
        let spec = json!({"initContainers": [{"name": "a", "image": "x"}], "containers": [{"name": "a", "image": "x"}, {"image": "y"}, {"name": "c"}]});
        assert_eq!(
            causes(spec),
            [
                (
                    "spec.containers[0].name".to_string(),
                    "Duplicate value: \"a\"".to_string()
                ),
                (
                    "spec.containers[1].name".to_string(),
                    "Required value".to_string()
                ),
                (
                    "spec.containers[2].image".to_string(),
                    "Required value".to_string()
                ),
            ]
        );
    }

    #[test]
    fn bad_values() {
        let spec = json!({"restartPolicy": "Sometimes", "containers": [{"name": "Web_1", "image": "x", "imagePullPolicy": "Maybe",
            "ports": [{"containerPort": 70000, "protocol": "tcp", "name": "HTTP"}], "env": [{"name": "1A"}],
            "volumeMounts": [{"name": "missing", "mountPath": "/m"}]}]});
        let got = causes(spec);
        let fields: Vec<&str> = got.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.containers[0].name",
                "spec.containers[0].imagePullPolicy",
                "spec.containers[0].ports[0].name",
                "spec.containers[0].ports[0].name",
                "spec.containers[0].ports[0].containerPort",
                "spec.containers[0].ports[0].protocol",
                "spec.containers[0].env[0].name",
                "spec.containers[0].volumeMounts[0].name",
                "spec.restartPolicy",
            ]
        );
        assert_eq!(got[1].1, "Unsupported value: \"Maybe\": supported values: \"Always\", \"IfNotPresent\", \"Never\"");
        assert_eq!(
            got[4].1,
            "Invalid value: 70000: must be between 1 and 65535, inclusive"
        );
        assert_eq!(
            got[5].1,
            "Unsupported value: \"tcp\": supported values: \"SCTP\", \"TCP\", \"UDP\""
        );
        assert_eq!(got[7].1, "Not found: \"missing\"");
        assert_eq!(got[8].1, "Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"");
    }

    #[test]
    fn templates_report_labels_at_template_path() {
        let t = json!({"metadata": {"labels": {"a": "-"}}, "spec": {"containers": [{"name": "a", "image": "x"}]}});
        let mut d = json!({"spec": {"template": t}});
        defaults::apply("apps", "ReplicaSet", &mut d);
        let errs = template(&d["spec"]["template"], "spec.template", &[]);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "spec.template.labels");
    }

    #[test]
    fn pod_updates() {
        let old = defaulted(json!({"containers": [{"name": "a", "image": "nginx:1"}]}));
        let mut new = old.clone();
        new["spec"]["containers"][0]["image"] = json!("nginx:2");
        new["spec"]["activeDeadlineSeconds"] = json!(30);
        assert!(pod_update(&new, &old).is_empty());
        new["spec"]["restartPolicy"] = json!("Never");
        let errs = pod_update(&new, &old);
        assert_eq!(
            (errs[0].field.as_str(), errs[0].reason.as_str()),
            ("spec", "FieldValueForbidden")
        );
        assert!(errs[0].message.starts_with(
            "Forbidden: pod updates may not change fields other than `spec.containers[*].image`"
        ));
    }
}
