//! Service defaults (`SetDefaults_Service`) plus what upstream's registry settles on a
//! single-stack IPv4 cluster: IP family fields, and `clusterIP`/`clusterIPs` kept in step.

use crate::kinds::json::{each_obj_mut, obj_mut, set_default, set_default_str};
use serde_json::{json, Map, Value};

type Spec = Map<String, Value>;

fn str_of<'a>(spec: &'a Spec, key: &str) -> &'a str {
    spec.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn non_empty(spec: &Spec, key: &str) -> bool {
    match spec.get(key) {
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(m)) => !m.is_empty(),
        _ => false,
    }
}

pub(super) fn service(obj: &mut Value) {
    let Some(spec) = obj_mut(obj, "spec") else {
        return;
    };
    set_default_str(spec, "type", "ClusterIP");
    session_affinity(spec);
    each_obj_mut(spec, "ports", port);
    let type_ = str_of(spec, "type").to_string();
    let externally_accessible = matches!(type_.as_str(), "LoadBalancer" | "NodePort")
        || (type_ == "ClusterIP" && non_empty(spec, "externalIPs"));
    if externally_accessible {
        set_default_str(spec, "externalTrafficPolicy", "Cluster");
    }
    if type_ == "ExternalName" {
        return;
    }
    set_default_str(spec, "internalTrafficPolicy", "Cluster");
    if type_ == "LoadBalancer" {
        set_default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    ip_families(spec);
    cluster_ips(spec);
}

/// None drops the affinity config; ClientIP gets a three-hour timeout.
fn session_affinity(spec: &mut Spec) {
    set_default_str(spec, "sessionAffinity", "None");
    match str_of(spec, "sessionAffinity") {
        "None" => {
            spec.remove("sessionAffinityConfig");
        }
        "ClientIP" => {
            if let Some(client_ip) = obj_mut(
                spec.entry("sessionAffinityConfig")
                    .or_insert_with(|| json!({})),
                "clientIP",
            ) {
                set_default(client_ip, "timeoutSeconds", json!(10800));
            }
        }
        _ => {}
    }
}

/// TCP, and the target port defaults to the port.
fn port(p: &mut Spec) {
    set_default_str(p, "protocol", "TCP");
    let unset = match p.get("targetPort") {
        None | Some(Value::Null) => true,
        Some(Value::Number(n)) => n.as_i64() == Some(0),
        Some(Value::String(s)) => s.is_empty(),
        Some(_) => false,
    };
    if unset {
        let port = p.get("port").cloned().unwrap_or(Value::Null);
        p.insert("targetPort".into(), port);
    }
}

/// Headless services without a selector may be dual-stack even on a single-stack cluster.
fn ip_families(spec: &mut Spec) {
    if str_of(spec, "clusterIP") == "None" && !non_empty(spec, "selector") {
        set_default_str(spec, "ipFamilyPolicy", "RequireDualStack");
        set_default(spec, "ipFamilies", json!(["IPv4", "IPv6"]));
    } else {
        set_default_str(spec, "ipFamilyPolicy", "SingleStack");
        set_default(spec, "ipFamilies", json!(["IPv4"]));
    }
}

/// clusterIP and clusterIPs[0] describe the same address; fill whichever is missing.
fn cluster_ips(spec: &mut Spec) {
    let single = str_of(spec, "clusterIP").to_string();
    let first = spec
        .get("clusterIPs")
        .and_then(|a| a.get(0))
        .and_then(Value::as_str)
        .map(String::from);
    match first {
        None if !single.is_empty() => spec.insert("clusterIPs".into(), json!([single])),
        Some(ip) if single.is_empty() => spec.insert("clusterIP".into(), json!(ip)),
        _ => None,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `kubectl create service clusterip web --tcp=80:8080` as stored upstream (minus allocation).
    #[test]
    fn services() {
        let mut s = json!({"spec": {"ports": [{"port": 80}, {"port": 443, "targetPort": "https", "protocol": "TCP"}], "clusterIP": "10.152.183.9"}});
        service(&mut s);
        assert_eq!(
            s["spec"],
            json!({"type": "ClusterIP", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster",
            "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"], "clusterIP": "10.152.183.9", "clusterIPs": ["10.152.183.9"],
            "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}, {"port": 443, "targetPort": "https", "protocol": "TCP"}]})
        );
        let mut lb = json!({"spec": {"type": "LoadBalancer", "sessionAffinity": "ClientIP"}});
        service(&mut lb);
        assert_eq!(lb["spec"]["externalTrafficPolicy"], "Cluster");
        assert_eq!(lb["spec"]["allocateLoadBalancerNodePorts"], true);
        assert_eq!(
            lb["spec"]["sessionAffinityConfig"],
            json!({"clientIP": {"timeoutSeconds": 10800}})
        );
        let mut ext = json!({"spec": {"type": "ExternalName", "externalName": "db.example"}});
        service(&mut ext);
        assert!(ext["spec"].get("ipFamilies").is_none());
        assert!(ext["spec"].get("internalTrafficPolicy").is_none());
        let mut headless = json!({"spec": {"clusterIP": "None"}});
        service(&mut headless);
        assert_eq!(headless["spec"]["ipFamilyPolicy"], "RequireDualStack");
        assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));
        let mut from_list = json!({"spec": {"clusterIPs": ["10.0.0.7"], "selector": {"a": "b"}}});
        service(&mut from_list);
        assert_eq!(from_list["spec"]["clusterIP"], "10.0.0.7");
    }
}
