//! A pod's CRI sandbox config, as upstream's `generatePodSandboxConfig`: metadata, hostname, log
//! directory, DNS, hostPort mappings, host namespaces, labels and annotations.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;

use crate::cri::api;
use crate::labels;
use crate::layout::Layout;

/// Names of a pod, with upstream's defaults.
pub fn ids(pod: &Pod) -> (&str, &str, &str) {
    let m = &pod.metadata;
    (
        m.namespace.as_deref().unwrap_or("default"),
        m.name.as_deref().unwrap_or(""),
        m.uid.as_deref().unwrap_or(""),
    )
}

pub fn host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

/// The labels every sandbox and container of the pod carries.
pub fn pod_labels(pod: &Pod) -> HashMap<String, String> {
    let (ns, name, uid) = ids(pod);
    HashMap::from([
        (labels::POD_NAME.to_string(), name.to_string()),
        (labels::POD_NAMESPACE.to_string(), ns.to_string()),
        (labels::POD_UID.to_string(), uid.to_string()),
    ])
}

pub fn namespace_options(pod: &Pod) -> api::NamespaceOption {
    let spec = pod.spec.as_ref();
    let flag = |f: fn(&k8s_openapi::api::core::v1::PodSpec) -> Option<bool>| {
        spec.and_then(f).unwrap_or(false)
    };
    let mode = |host: bool, otherwise: api::NamespaceMode| {
        if host {
            api::NamespaceMode::Node as i32
        } else {
            otherwise as i32
        }
    };
    let share_pid = flag(|s| s.share_process_namespace);
    api::NamespaceOption {
        network: mode(flag(|s| s.host_network), api::NamespaceMode::Pod),
        pid: mode(
            flag(|s| s.host_pid),
            if share_pid {
                api::NamespaceMode::Pod
            } else {
                api::NamespaceMode::Container
            },
        ),
        ipc: mode(flag(|s| s.host_ipc), api::NamespaceMode::Pod),
        ..Default::default()
    }
}

pub fn config(pod: &Pod, layout: &Layout, attempt: u32) -> api::PodSandboxConfig {
    let (ns, name, uid) = ids(pod);
    let spec = pod.spec.as_ref();
    // A pod on the node's network shares the node's UTS namespace: no hostname of its own.
    let hostname = if host_network(pod) {
        String::new()
    } else {
        let base = spec
            .and_then(|s| s.hostname.clone())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| name.to_string());
        // Upstream truncates to 63 characters and trims trailing '-' and '.'.
        base.chars()
            .take(63)
            .collect::<String>()
            .trim_end_matches(['-', '.'])
            .to_string()
    };
    let mut labels = pod_labels(pod);
    for (k, v) in pod.metadata.labels.iter().flatten() {
        labels.entry(k.clone()).or_insert_with(|| v.clone());
    }
    let annotations: HashMap<String, String> = pod
        .metadata
        .annotations
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let security = spec.and_then(|s| s.security_context.as_ref());
    api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: name.into(),
            uid: uid.into(),
            namespace: ns.into(),
            attempt,
        }),
        hostname,
        log_directory: layout.pod_log_dir(ns, name, uid).to_string_lossy().into(),
        dns_config: Some(dns_config(pod)),
        port_mappings: port_mappings(pod),
        labels,
        annotations,
        linux: Some(api::LinuxPodSandboxConfig {
            cgroup_parent: String::new(),
            security_context: Some(api::LinuxSandboxSecurityContext {
                namespace_options: Some(namespace_options(pod)),
                run_as_user: security
                    .and_then(|s| s.run_as_user)
                    .map(|value| api::Int64Value { value }),
                run_as_group: security
                    .and_then(|s| s.run_as_group)
                    .map(|value| api::Int64Value { value }),
                supplemental_groups: security
                    .and_then(|s| s.supplemental_groups.clone())
                    .unwrap_or_default(),
                ..Default::default()
            }),
            sysctls: security
                .and_then(|s| s.sysctls.as_ref())
                .into_iter()
                .flatten()
                .map(|s| (s.name.clone(), s.value.clone()))
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// DNS from the host's /etc/resolv.conf (no cluster DNS yet), plus the pod's `dnsConfig`.
fn dns_config(pod: &Pod) -> api::DnsConfig {
    let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut dns = parse_resolv_conf(&resolv);
    if let Some(extra) = pod.spec.as_ref().and_then(|s| s.dns_config.as_ref()) {
        let none = pod.spec.as_ref().and_then(|s| s.dns_policy.as_deref()) == Some("None");
        if none {
            dns = api::DnsConfig::default();
        }
        dns.servers
            .extend(extra.nameservers.iter().flatten().cloned());
        dns.searches
            .extend(extra.searches.iter().flatten().cloned());
        for o in extra.options.iter().flatten() {
            let Some(name) = &o.name else { continue };
            dns.options
                .retain(|existing| existing.split(':').next() != Some(name));
            dns.options.push(match &o.value {
                Some(v) => format!("{name}:{v}"),
                None => name.clone(),
            });
        }
    }
    dns
}

pub fn parse_resolv_conf(text: &str) -> api::DnsConfig {
    let mut dns = api::DnsConfig::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => dns.servers.extend(words.next().map(str::to_string)),
            Some("search") => dns.searches = words.map(str::to_string).collect(),
            Some("options") => dns.options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    dns
}

fn port_mappings(pod: &Pod) -> Vec<api::PortMapping> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    spec.containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.unwrap_or(0) > 0)
        .map(|p| api::PortMapping {
            protocol: match p.protocol.as_deref() {
                Some("UDP") => api::Protocol::Udp as i32,
                Some("SCTP") => api::Protocol::Sctp as i32,
                _ => api::Protocol::Tcp as i32,
            },
            container_port: p.container_port,
            host_port: p.host_port.unwrap_or(0),
            host_ip: p.host_ip.clone().unwrap_or_default(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf() {
        let dns = parse_resolv_conf(
            "# comment\nnameserver 10.0.0.1\nnameserver 10.0.0.2 # x\nsearch a.b c.d\noptions ndots:2 edns0\n",
        );
        assert_eq!(dns.servers, ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(dns.searches, ["a.b", "c.d"]);
        assert_eq!(dns.options, ["ndots:2", "edns0"]);
    }
}
