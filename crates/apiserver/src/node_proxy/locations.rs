//! Where on which kubelet a request goes: upstream's LogLocation / streamLocation /
//! PortForwardLocation and the node's kubelet address, as pure functions over the objects.

use serde_json::Value;

use crate::status::ApiError;

/// Upstream's default `--kubelet-preferred-address-types` order, InternalIP first as krust's
/// nodes report it.
const ADDRESS_TYPES: [&str; 5] = [
    "InternalIP",
    "Hostname",
    "InternalDNS",
    "ExternalDNS",
    "ExternalIP",
];
const DEFAULT_KUBELET_PORT: u16 = 10250;

/// A kubelet's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
}

impl Target {
    pub fn of_node(node: &Value) -> Result<Target, ApiError> {
        let addresses = node["status"]["addresses"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let host = ADDRESS_TYPES
            .iter()
            .find_map(|t| {
                addresses
                    .iter()
                    .find(|a| a["type"] == *t)
                    .and_then(|a| a["address"].as_str())
                    .filter(|a| !a.is_empty())
            })
            .ok_or_else(|| {
                let known: Vec<String> = addresses
                    .iter()
                    .map(|a| {
                        format!(
                            "{}={}",
                            a["type"].as_str().unwrap_or(""),
                            a["address"].as_str().unwrap_or("")
                        )
                    })
                    .collect();
                ApiError::Internal(format!(
                    "no preferred addresses found; known addresses: [{}]",
                    known.join(" ")
                ))
            })?;
        let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p > 0)
            .unwrap_or(DEFAULT_KUBELET_PORT);
        Ok(Target {
            host: host.to_string(),
            port,
        })
    }
}

/// `/api/v1/nodes/NAME/proxy/REST` → `/REST` (`/` when nothing follows).
pub fn proxy_rest(path: &str, name: &str) -> String {
    let marker = format!("/nodes/{name}/proxy");
    let rest = path
        .find(&marker)
        .map(|i| &path[i + marker.len()..])
        .unwrap_or("");
    if rest.is_empty() {
        "/".to_string()
    } else {
        rest.to_string()
    }
}

/// The query the kubelet gets: the client's, without what the API server consumed
/// (`container` names the path's container; `pretty` is the API server's own).
pub fn forwarded_query(query: &str, proxy: bool) -> String {
    if proxy {
        return query.to_string();
    }
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .filter(|kv| {
            let key = kv.split('=').next().unwrap_or("");
            !matches!(key, "container" | "pretty")
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn query_value(query: &str, key: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).ok()?;
    pairs.into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

fn names(pod: &Value, list: &str) -> Vec<String> {
    pod["spec"][list]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Upstream's validateContainer: the named container must exist; none named is the only
/// container, or an error listing them (init, regular and ephemeral).
pub fn container(pod: &Value, requested: Option<&str>) -> Result<String, ApiError> {
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or("");
    let all: Vec<String> = ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|l| names(pod, l))
        .collect();
    match requested.filter(|c| !c.is_empty()) {
        Some(c) if all.iter().any(|n| n == c) => Ok(c.to_string()),
        Some(c) => Err(ApiError::BadRequest(format!(
            "container {c} is not valid for pod {pod_name}"
        ))),
        None => {
            let regular = names(pod, "containers");
            match regular.len() {
                1 => Ok(regular[0].clone()),
                0 => Err(ApiError::BadRequest(format!(
                    "the pod {pod_name} does not have a pod template"
                ))),
                _ => Err(ApiError::BadRequest(format!(
                    "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                    all.join(" ")
                ))),
            }
        }
    }
}

/// The node and kubelet path of a pod subresource (`log`, `exec`, `attach`, `portforward`).
pub fn pod_location(pod: &Value, sub: &str, query: &str) -> Result<(String, String), ApiError> {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("");
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    let node = pod["spec"]["nodeName"].as_str().unwrap_or("");
    let path = if sub == "portforward" {
        format!("/portForward/{ns}/{name}")
    } else {
        let c = container(pod, query_value(query, "container").as_deref())?;
        let phase = pod["status"]["phase"].as_str().unwrap_or("");
        if sub != "log" && matches!(phase, "Succeeded" | "Failed") {
            return Err(ApiError::BadRequest(format!(
                "cannot {sub} into a container in a completed pod; current phase is {phase}"
            )));
        }
        let prefix = match sub {
            "log" => "containerLogs",
            "exec" => "exec",
            _ => "attach",
        };
        format!("/{prefix}/{ns}/{name}/{c}")
    };
    if node.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    Ok((node.to_string(), path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(containers: &[&str]) -> Value {
        let cs: Vec<Value> = containers.iter().map(|c| json!({"name": c})).collect();
        json!({"metadata": {"name": "p", "namespace": "ns"},
               "spec": {"nodeName": "n1", "containers": cs, "initContainers": [{"name": "init"}]},
               "status": {"phase": "Running"}})
    }

    #[test]
    fn containers_default_as_upstream() {
        assert_eq!(container(&pod(&["a"]), None).unwrap(), "a");
        assert_eq!(container(&pod(&["a", "b"]), Some("b")).unwrap(), "b");
        assert_eq!(container(&pod(&["a", "b"]), Some("init")).unwrap(), "init");
        assert_eq!(
            container(&pod(&["a", "b"]), None).unwrap_err().to_string(),
            "a container name must be specified for pod p, choose one of: [init a b]"
        );
        assert_eq!(
            container(&pod(&["a"]), Some("x")).unwrap_err().to_string(),
            "container x is not valid for pod p"
        );
    }

    #[test]
    fn kubelet_paths() {
        let p = pod(&["a"]);
        assert_eq!(
            pod_location(&p, "log", "container=a&follow=true").unwrap(),
            ("n1".into(), "/containerLogs/ns/p/a".into())
        );
        assert_eq!(
            pod_location(&p, "exec", "command=ls").unwrap().1,
            "/exec/ns/p/a"
        );
        assert_eq!(
            pod_location(&p, "portforward", "").unwrap().1,
            "/portForward/ns/p"
        );
        let mut done = p.clone();
        done["status"]["phase"] = json!("Succeeded");
        assert!(pod_location(&done, "exec", "").is_err());
        assert!(pod_location(&done, "log", "").is_ok());
        let mut unbound = p;
        unbound["spec"]["nodeName"] = json!(null);
        assert_eq!(
            pod_location(&unbound, "log", "").unwrap_err().to_string(),
            "pod p does not have a host assigned"
        );
        assert_eq!(
            forwarded_query("container=a&follow=true&tailLines=2", false),
            "follow=true&tailLines=2"
        );
        assert_eq!(
            proxy_rest("/api/v1/nodes/n1/proxy/healthz", "n1"),
            "/healthz"
        );
        assert_eq!(proxy_rest("/api/v1/nodes/n1/proxy", "n1"), "/");
    }

    #[test]
    fn kubelet_address() {
        let node = json!({"status": {
            "addresses": [{"type": "Hostname", "address": "h"}, {"type": "InternalIP", "address": "10.0.0.2"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10251}}}});
        assert_eq!(
            Target::of_node(&node).unwrap(),
            Target {
                host: "10.0.0.2".into(),
                port: 10251
            }
        );
        let bare = json!({"status": {"addresses": [{"type": "Hostname", "address": "h"}]}});
        assert_eq!(Target::of_node(&bare).unwrap().port, 10250);
        assert!(Target::of_node(&json!({})).is_err());
    }
}
