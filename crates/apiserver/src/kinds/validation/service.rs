//! Service validation (`ValidateService`, `ValidateServiceUpdate`): type, ports, addresses, session
//! affinity, selector, and a cluster IP that never changes once allocated.

use super::errors::{duplicate, forbidden, invalid, quote, required};
use super::meta::labels;
use super::names::{dns1123_label, dns1123_subdomain, port_name, port_number};
use super::pod::{ip_address, name_errors, one_of, port_and_protocol};
use crate::kinds::json::{arr_at, at, int_at, str_at};
use crate::kinds::Cause;
use serde_json::Value;
use std::collections::HashSet;

const SERVICE_TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];

pub fn service(obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut errs = Vec::new();
    let spec = at(obj, "spec");
    let type_ = str_at(spec, "type");
    one_of(&mut errs, "spec.type", type_, SERVICE_TYPES);
    ports(&mut errs, spec, type_);
    addresses(&mut errs, spec, type_);
    one_of(
        &mut errs,
        "spec.sessionAffinity",
        str_at(spec, "sessionAffinity"),
        &["ClientIP", "None"],
    );
    errs.extend(labels(at(spec, "selector"), "spec.selector"));
    if let Some(old) = old {
        errs.extend(cluster_ip_unchanged(obj, old));
    }
    errs
}

/// Ports are required unless headless or ExternalName; several ports need unique names.
fn ports(errs: &mut Vec<Cause>, spec: &Value, type_: &str) {
    let ports = arr_at(spec, "ports");
    if ports.is_empty() && str_at(spec, "clusterIP") != "None" && type_ != "ExternalName" {
        errs.push(required("spec.ports", ""));
    }
    let mut names = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let path = format!("spec.ports[{i}]");
        port(errs, p, &path, ports.len() > 1, &mut names);
        if type_ == "ClusterIP" && int_at(p, "nodePort") != 0 {
            errs.push(forbidden(
                &format!("{path}.nodePort"),
                "may not be used when `type` is 'ClusterIP'",
            ));
        }
    }
}

fn port(
    errs: &mut Vec<Cause>,
    p: &Value,
    path: &str,
    require_name: bool,
    names: &mut HashSet<String>,
) {
    let (name, name_field) = (str_at(p, "name"), format!("{path}.name"));
    if require_name && name.is_empty() {
        errs.push(required(&name_field, ""));
    } else if !name.is_empty() {
        name_errors(errs, &name_field, name, dns1123_label);
        if !names.insert(name.to_string()) {
            errs.push(duplicate(&name_field, name));
        }
    }
    port_and_protocol(errs, p, path);
    let target = format!("{path}.targetPort");
    match at(p, "targetPort") {
        Value::Number(n) => {
            let n = n.as_i64().unwrap_or(-1);
            errs.extend(
                port_number(n)
                    .iter()
                    .map(|m| invalid(&target, &n.to_string(), m)),
            );
        }
        Value::String(s) => name_errors(errs, &target, s, port_name),
        _ => {}
    }
}

/// ExternalName services name a host and have no cluster IP; the others' cluster IPs are IPs.
fn addresses(errs: &mut Vec<Cause>, spec: &Value, type_: &str) {
    if type_ != "ExternalName" {
        for (i, ip) in arr_at(spec, "clusterIPs").iter().enumerate() {
            let ip = ip.as_str().unwrap_or_default();
            if ip != "None" {
                ip_address(errs, &format!("spec.clusterIPs[{i}]"), ip);
            }
        }
        return;
    }
    if !str_at(spec, "clusterIP").is_empty() {
        errs.push(forbidden(
            "spec.clusterIPs",
            "may not be set for ExternalName services",
        ));
    }
    match str_at(spec, "externalName") {
        "" => errs.push(required("spec.externalName", "")),
        name => name_errors(
            errs,
            "spec.externalName",
            name.trim_end_matches('.'),
            dns1123_subdomain,
        ),
    }
}

/// An allocated cluster IP stays (unless the service turns into or from ExternalName).
fn cluster_ip_unchanged(obj: &Value, old: &Value) -> Option<Cause> {
    let (new_ip, old_ip) = (str_at(obj, "spec.clusterIP"), str_at(old, "spec.clusterIP"));
    let external = |v: &Value| str_at(v, "spec.type") == "ExternalName";
    let changed = !new_ip.is_empty() && !old_ip.is_empty() && new_ip != old_ip;
    (changed && !external(obj) && !external(old)).then(|| {
        invalid(
            "spec.clusterIPs[0]",
            &quote(new_ip),
            "may not change once set",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::defaults;
    use crate::kinds::validation::fields_of as fields;
    use serde_json::json;

    fn defaulted(obj: Value) -> Value {
        let mut obj = obj;
        defaults::apply("", "Service", &mut obj);
        obj
    }

    #[test]
    fn services() {
        let ok = defaulted(json!({"spec": {"ports": [{"port": 80}], "selector": {"app": "w"}}}));
        assert_eq!(service(&ok, None), []);
        assert_eq!(
            fields(&service(&defaulted(json!({"spec": {}})), None)),
            ["spec.ports"]
        );
        let bad = defaulted(
            json!({"spec": {"type": "Magic", "ports": [{"port": 0, "name": "a"}, {"port": 80, "name": "a", "targetPort": "Bad_Name"}]}}),
        );
        let errs = service(&bad, None);
        // Defaulting copied the bad port into targetPort, as upstream does.
        assert_eq!(
            fields(&errs),
            [
                "spec.type",
                "spec.ports[0].port",
                "spec.ports[0].targetPort",
                "spec.ports[1].name",
                "spec.ports[1].targetPort"
            ]
        );
        assert_eq!(errs[0].message, "Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"");
        let unnamed = defaulted(json!({"spec": {"ports": [{"port": 80}, {"port": 81}]}}));
        assert_eq!(
            fields(&service(&unnamed, None)),
            ["spec.ports[0].name", "spec.ports[1].name"]
        );
        assert_eq!(
            fields(&service(
                &defaulted(json!({"spec": {"type": "ExternalName"}})),
                None
            )),
            ["spec.externalName"]
        );
        let node_port = defaulted(json!({"spec": {"ports": [{"port": 80, "nodePort": 30000}]}}));
        assert_eq!(
            fields(&service(&node_port, None)),
            ["spec.ports[0].nodePort"]
        );
        let bad_ip =
            defaulted(json!({"spec": {"ports": [{"port": 80}], "clusterIP": "10.0.0.300"}}));
        assert_eq!(fields(&service(&bad_ip, None)), ["spec.clusterIPs[0]"]);
    }

    #[test]
    fn cluster_ip_is_sticky() {
        let a = defaulted(json!({"spec": {"ports": [{"port": 80}], "clusterIP": "10.0.0.1"}}));
        let b = defaulted(json!({"spec": {"ports": [{"port": 80}], "clusterIP": "10.0.0.2"}}));
        assert_eq!(
            service(&b, Some(&a))[0].message,
            "Invalid value: \"10.0.0.2\": may not change once set"
        );
        assert_eq!(service(&a, Some(&a)), []);
    }
}
