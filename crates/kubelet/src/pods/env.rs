//! A container's environment as upstream's `makeEnvironmentVariables` builds it: `envFrom`
//! sources first (configMaps and secrets, with their prefix), then `env` in order, each value
//! `$(VAR)`-expanded against what came before; values from configMap and secret keys, the
//! downward API (`fieldRef`) and the container's resources (`resourceFieldRef`).

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::Api;

use super::expand::expand;

/// Why a container's config cannot be made (upstream's `CreateContainerConfigError` message).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// What the environment may refer to besides the pod itself.
pub struct EnvInputs<'a> {
    pub client: &'a kube::Client,
    pub pod_ip: &'a str,
    pub host_ip: &'a str,
    /// The node's allocatable cpu (millicores) and memory (bytes), for limits not set.
    pub node_cpu_millis: i64,
    pub node_memory: i64,
}

/// The objects one sync read, so a pod naming a configMap twice reads it once.
#[derive(Default)]
pub struct Objects {
    config_maps: HashMap<String, Option<ConfigMap>>,
    secrets: HashMap<String, Option<Secret>>,
}

/// An ordered environment: later definitions replace earlier ones in place.
#[derive(Default, Debug)]
pub struct Env {
    vars: Vec<(String, String)>,
}

impl Env {
    fn set(&mut self, name: &str, value: String) {
        match self.vars.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.vars.push((name.to_string(), value)),
        }
    }

    pub fn get(&self, name: &str) -> Option<String> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    pub fn vars(&self) -> &[(String, String)] {
        &self.vars
    }

    /// `$(VAR)` expansion against this environment.
    pub fn expand(&self, s: &str) -> String {
        expand(s, |name| self.get(name))
    }
}

pub async fn container_env(
    inputs: &EnvInputs<'_>,
    objects: &mut Objects,
    pod: &Pod,
    container: &Container,
    service_env: &[(String, String)],
) -> Result<Env, ConfigError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut env = Env::default();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or("");
        if let Some(r) = &from.config_map_ref {
            let optional = r.optional.unwrap_or(false);
            match objects.config_map(inputs.client, ns, &r.name).await? {
                Some(cm) => {
                    for (k, v) in cm.data.iter().flatten() {
                        env.set(&format!("{prefix}{k}"), v.clone());
                    }
                }
                None if optional => {}
                None => return Err(ConfigError(format!("configmap \"{}\" not found", r.name))),
            }
        }
        if let Some(r) = &from.secret_ref {
            let optional = r.optional.unwrap_or(false);
            match objects.secret(inputs.client, ns, &r.name).await? {
                Some(s) => {
                    for (k, v) in secret_data(&s) {
                        env.set(&format!("{prefix}{k}"), v);
                    }
                }
                None if optional => {}
                None => return Err(ConfigError(format!("secret \"{}\" not found", r.name))),
            }
        }
    }
    // Service links come before the container's own env, which may refer to them.
    let mut lookup = Env::default();
    for (k, v) in service_env {
        lookup.set(k, v.clone());
    }
    for (k, v) in &env.vars {
        lookup.set(k, v.clone());
    }
    for var in container.env.iter().flatten() {
        let value = match &var.value_from {
            None => lookup.expand(var.value.as_deref().unwrap_or("")),
            Some(from) => {
                if let Some(r) = &from.config_map_key_ref {
                    let cm = objects.config_map(inputs.client, ns, &r.name).await?;
                    let optional = r.optional.unwrap_or(false);
                    match cm {
                        None if optional => continue,
                        None => {
                            return Err(ConfigError(format!("configmap \"{}\" not found", r.name)))
                        }
                        Some(cm) => match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                            Some(v) => v.clone(),
                            None if optional => continue,
                            None => {
                                return Err(ConfigError(format!(
                                    "couldn't find key {} in ConfigMap {ns}/{}",
                                    r.key, r.name
                                )))
                            }
                        },
                    }
                } else if let Some(r) = &from.secret_key_ref {
                    let secret = objects.secret(inputs.client, ns, &r.name).await?;
                    let optional = r.optional.unwrap_or(false);
                    match secret {
                        None if optional => continue,
                        None => {
                            return Err(ConfigError(format!("secret \"{}\" not found", r.name)))
                        }
                        Some(s) => match secret_data(&s).remove(&r.key) {
                            Some(v) => v,
                            None if optional => continue,
                            None => {
                                return Err(ConfigError(format!(
                                    "couldn't find key {} in Secret {ns}/{}",
                                    r.key, r.name
                                )))
                            }
                        },
                    }
                } else if let Some(f) = &from.field_ref {
                    field_value(pod, &f.field_path, inputs)?
                } else if let Some(r) = &from.resource_field_ref {
                    let target = match r.container_name.as_deref() {
                        Some(name) if !name.is_empty() => all_containers(pod)
                            .find(|c| c.name == name)
                            .ok_or_else(|| {
                                ConfigError(format!("container {name} not found in pod"))
                            })?,
                        _ => container,
                    };
                    resource_value(target, &r.resource, r.divisor.as_ref(), inputs)?
                } else {
                    String::new()
                }
            }
        };
        env.set(&var.name, value.clone());
        lookup.set(&var.name, value);
    }
    // Service links are in the environment too, unless the container set the same names.
    let mut all = Env::default();
    for (k, v) in service_env {
        all.set(k, v.clone());
    }
    for (k, v) in env.vars {
        all.set(&k, v);
    }
    Ok(all)
}

fn all_containers(pod: &Pod) -> impl Iterator<Item = &Container> {
    let spec = pod.spec.as_ref();
    spec.into_iter().flat_map(|s| {
        s.init_containers
            .iter()
            .flatten()
            .chain(s.containers.iter())
    })
}

fn secret_data(secret: &Secret) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
        .collect();
    for (k, v) in secret.string_data.iter().flatten() {
        out.insert(k.clone(), v.clone());
    }
    out
}

impl Objects {
    async fn config_map(
        &mut self,
        client: &kube::Client,
        ns: &str,
        name: &str,
    ) -> Result<Option<ConfigMap>, ConfigError> {
        if let Some(found) = self.config_maps.get(name) {
            return Ok(found.clone());
        }
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        let found = api
            .get_opt(name)
            .await
            .map_err(|e| ConfigError(format!("failed to get configmap {ns}/{name}: {e}")))?;
        self.config_maps.insert(name.to_string(), found.clone());
        Ok(found)
    }

    pub async fn secret(
        &mut self,
        client: &kube::Client,
        ns: &str,
        name: &str,
    ) -> Result<Option<Secret>, ConfigError> {
        if let Some(found) = self.secrets.get(name) {
            return Ok(found.clone());
        }
        let api: Api<Secret> = Api::namespaced(client.clone(), ns);
        let found = api
            .get_opt(name)
            .await
            .map_err(|e| ConfigError(format!("failed to get secret {ns}/{name}: {e}")))?;
        self.secrets.insert(name.to_string(), found.clone());
        Ok(found)
    }
}

/// A downward API field (upstream's `podFieldSelectorRuntimeValue`).
pub fn field_value(pod: &Pod, path: &str, inputs: &EnvInputs<'_>) -> Result<String, ConfigError> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let bracket = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|r| r.strip_prefix("['").or_else(|| r.strip_prefix("[\"")))
            .and_then(|r| r.strip_suffix("']").or_else(|| r.strip_suffix("\"]")))
            .map(str::to_string)
    };
    if let Some(key) = bracket("metadata.labels") {
        return Ok(meta
            .labels
            .as_ref()
            .and_then(|l| l.get(&key).cloned())
            .unwrap_or_default());
    }
    if let Some(key) = bracket("metadata.annotations") {
        return Ok(meta
            .annotations
            .as_ref()
            .and_then(|l| l.get(&key).cloned())
            .unwrap_or_default());
    }
    let value = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => inputs.host_ip.to_string(),
        "status.podIP" | "status.podIPs" => inputs.pod_ip.to_string(),
        other => return Err(ConfigError(format!("unsupported fieldPath: {other}"))),
    };
    Ok(value)
}

/// `key="value"` lines, sorted, as the downward API volume writes maps.
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A container resource (upstream's `ExtractContainerResourceValue`): limits fall back to the
/// node's allocatable, values are divided by the divisor and rounded up.
pub fn resource_value(
    container: &Container,
    resource: &str,
    divisor: Option<&Quantity>,
    inputs: &EnvInputs<'_>,
) -> Result<String, ConfigError> {
    use component_base::quantity::{milli_value, value};
    let res = container.resources.as_ref();
    let get = |kind: &str, name: &str| {
        let map = match kind {
            "limits" => res.and_then(|r| r.limits.as_ref()),
            _ => res.and_then(|r| r.requests.as_ref()),
        };
        map.and_then(|m| m.get(name)).cloned()
    };
    let (kind, name) = resource
        .split_once('.')
        .ok_or_else(|| ConfigError(format!("unsupported container resource : {resource}")))?;
    let q = get(kind, name);
    match name {
        "cpu" => {
            let millis = match q {
                Some(q) => milli_value(&q),
                None if kind == "limits" => inputs.node_cpu_millis,
                None => 0,
            };
            let div = divisor.map(milli_value).filter(|d| *d > 0).unwrap_or(1000);
            Ok(((millis + div - 1) / div).to_string())
        }
        "memory" | "ephemeral-storage" => {
            let bytes = match q {
                Some(q) => value(&q),
                None if kind == "limits" && name == "memory" => inputs.node_memory,
                None => 0,
            };
            let div = divisor.map(value).filter(|d| *d > 0).unwrap_or(1);
            Ok(((bytes + div - 1) / div).to_string())
        }
        _ => Err(ConfigError(format!(
            "unsupported container resource : {resource}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn inputs(client: &kube::Client) -> EnvInputs<'_> {
        EnvInputs {
            client,
            pod_ip: "10.1.0.5",
            host_ip: "192.168.1.2",
            node_cpu_millis: 4000,
            node_memory: 8 << 30,
        }
    }

    fn container(resources: serde_json::Value) -> Container {
        serde_json::from_value(json!({"name": "c", "resources": resources})).unwrap()
    }

    #[tokio::test]
    async fn downward_api_fields_and_resources() {
        // The client is never used by these lookups.
        let config = kube::Config::new("http://127.0.0.1:1".parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let inputs = inputs(&client);
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"a": "1", "b": "2"}},
            "spec": {"nodeName": "n1", "serviceAccountName": "sa", "containers": []}
        }))
        .unwrap();
        let field = |path: &str| field_value(&pod, path, &inputs).unwrap();
        assert_eq!(field("metadata.name"), "p");
        assert_eq!(field("metadata.namespace"), "ns");
        assert_eq!(field("metadata.uid"), "u1");
        assert_eq!(field("metadata.labels['a']"), "1");
        assert_eq!(field("metadata.labels"), "a=\"1\"\nb=\"2\"");
        assert_eq!(field("spec.nodeName"), "n1");
        assert_eq!(field("spec.serviceAccountName"), "sa");
        assert_eq!(field("status.podIP"), "10.1.0.5");
        assert_eq!(field("status.hostIP"), "192.168.1.2");
        assert!(field_value(&pod, "spec.nope", &inputs).is_err());

        let c = container(
            json!({"limits": {"cpu": "250m", "memory": "64Mi"}, "requests": {"cpu": "100m"}}),
        );
        let res = |r: &str, d: Option<&str>| {
            let d = d.map(|d| Quantity(d.to_string()));
            resource_value(&c, r, d.as_ref(), &inputs).unwrap()
        };
        assert_eq!(res("limits.cpu", None), "1");
        assert_eq!(res("limits.cpu", Some("1m")), "250");
        assert_eq!(res("requests.cpu", Some("1m")), "100");
        assert_eq!(res("limits.memory", Some("1Mi")), "64");
        assert_eq!(res("requests.memory", None), "0");
        let unlimited = container(json!({}));
        let node = resource_value(&unlimited, "limits.memory", None, &inputs).unwrap();
        assert_eq!(node, (8i64 << 30).to_string());
    }
}
