//! The pod's `/etc/hosts`, managed as upstream's kubelet does (`ensureHostsFile`): for a pod on
//! its own network, localhost entries and the pod's IPs under its hostname (and FQDN when it has a
//! subdomain); for a pod on the node's network, the node's own file; hostAliases appended to both.

use std::path::Path;

use k8s_openapi::api::core::v1::Pod;

/// The cluster domain for pod FQDNs (upstream's default `--cluster-domain`).
const CLUSTER_DOMAIN: &str = "cluster.local";

pub fn content(pod: &Pod, pod_ips: &[String], host_network: bool) -> String {
    let mut out = if host_network {
        std::fs::read_to_string("/etc/hosts").unwrap_or_default()
    } else {
        own_network(pod, pod_ips)
    };
    let aliases = pod.spec.as_ref().and_then(|s| s.host_aliases.as_ref());
    if let Some(aliases) = aliases.filter(|a| !a.is_empty()) {
        if !out.ends_with('\n') && !out.is_empty() {
            out.push('\n');
        }
        out.push_str("\n# Entries added by HostAliases.\n");
        for a in aliases {
            let names = a.hostnames.clone().unwrap_or_default().join("\t");
            out.push_str(&format!("{}\t{names}\n", a.ip));
        }
    }
    out
}

fn own_network(pod: &Pod, pod_ips: &[String]) -> String {
    let spec = pod.spec.as_ref();
    let name = pod.metadata.name.as_deref().unwrap_or("");
    let hostname = spec
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| name.to_string());
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    let subdomain = spec
        .and_then(|s| s.subdomain.clone())
        .filter(|s| !s.is_empty());
    for ip in pod_ips {
        match &subdomain {
            Some(sub) => {
                let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
                out.push_str(&format!(
                    "{ip}\t{hostname}.{sub}.{ns}.svc.{CLUSTER_DOMAIN}\t{hostname}\n"
                ));
            }
            None => out.push_str(&format!("{ip}\t{hostname}\n")),
        }
    }
    out
}

/// Writes the file when its content changed (containers see it through a bind mount of the file,
/// so it is rewritten in place rather than replaced).
pub fn write(path: &Path, content: &str) -> std::io::Result<()> {
    if std::fs::read_to_string(path).ok().as_deref() == Some(content) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_network_hosts() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {
                "containers": [],
                "subdomain": "sub",
                "hostAliases": [{"ip": "1.2.3.4", "hostnames": ["a", "b"]}]
            }
        }))
        .unwrap();
        let text = content(&pod, &["10.1.0.5".into()], false);
        assert!(text.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"));
        assert!(
            text.contains("10.1.0.5\tweb.sub.ns.svc.cluster.local\tweb\n"),
            "{text}"
        );
        assert!(
            text.ends_with("\n# Entries added by HostAliases.\n1.2.3.4\ta\tb\n"),
            "{text}"
        );
    }
}
