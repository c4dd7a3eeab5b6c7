//! Registry credentials from the pod's `imagePullSecrets` (`kubernetes.io/dockerconfigjson` and
//! the older `kubernetes.io/dockercfg`), matched to the image's registry as upstream's credential
//! keyring does for plain host names, and handed to CRI PullImage.

use base64::Engine;
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use super::env::Objects;
use crate::cri::api;

/// The registry host of an image reference (`docker.io` for short names, as the runtime
/// resolves them).
pub fn registry(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first,
        _ => "docker.io",
    }
}

/// A docker config key (`https://index.docker.io/v1/`, `registry:5000`, `https://r.io/path`) as
/// a host.
fn key_host(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = key.split('/').next().unwrap_or(key);
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        other => other,
    }
}

/// The credentials of one docker config for `host`.
fn from_config(config: &Value, host: &str) -> Vec<api::AuthConfig> {
    let auths = config.get("auths").unwrap_or(config);
    let Some(auths) = auths.as_object() else {
        return Vec::new();
    };
    auths
        .iter()
        .filter(|(key, _)| key_host(key) == host)
        .map(|(_, entry)| {
            let text = |k: &str| entry[k].as_str().unwrap_or("").to_string();
            let (mut username, mut password) = (text("username"), text("password"));
            let auth = text("auth");
            if username.is_empty() && !auth.is_empty() {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(auth.as_bytes())
                    .unwrap_or_default();
                let decoded = String::from_utf8_lossy(&decoded).into_owned();
                if let Some((u, p)) = decoded.split_once(':') {
                    username = u.to_string();
                    password = p.to_string();
                }
            }
            api::AuthConfig {
                username,
                password,
                auth,
                // Left empty as upstream does: containerd compares a set address with the
                // registry as a URL's host, which a bare `host:port` key never is.
                server_address: String::new(),
                identity_token: text("identitytoken"),
                registry_token: text("registrytoken"),
            }
        })
        .collect()
}

/// Every credential the pod's pull secrets hold for `image`'s registry, in the secrets' order.
/// A secret that is missing or unreadable is skipped, as upstream (the pull may still work).
pub async fn credentials(
    client: &kube::Client,
    objects: &mut Objects,
    pod: &Pod,
    image: &str,
) -> Vec<api::AuthConfig> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let host = registry(image);
    let mut out = Vec::new();
    let refs = pod
        .spec
        .as_ref()
        .and_then(|s| s.image_pull_secrets.clone())
        .unwrap_or_default();
    for r in refs {
        let Ok(Some(secret)) = objects.secret(client, ns, &r.name).await else {
            tracing::debug!(secret = %r.name, "image pull secret not found");
            continue;
        };
        for key in [".dockerconfigjson", ".dockercfg"] {
            let Some(bytes) = secret.data.as_ref().and_then(|d| d.get(key)) else {
                continue;
            };
            if let Ok(config) = serde_json::from_slice::<Value>(&bytes.0) {
                out.extend(from_config(&config, host));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn registries_and_matching() {
        assert_eq!(registry("busybox"), "docker.io");
        assert_eq!(registry("library/busybox:1"), "docker.io");
        assert_eq!(registry("localhost/krust/busybox"), "localhost");
        assert_eq!(registry("reg.example.com:5000/a/b"), "reg.example.com:5000");
        let config = json!({"auths": {
            "https://index.docker.io/v1/": {"auth": "dTpw"},
            "reg.example.com:5000": {"username": "a", "password": "b"}
        }});
        let docker = from_config(&config, "docker.io");
        assert_eq!(docker.len(), 1);
        assert_eq!(
            (docker[0].username.as_str(), docker[0].password.as_str()),
            ("u", "p")
        );
        let other = from_config(&config, "reg.example.com:5000");
        assert_eq!(other[0].username, "a");
        assert!(from_config(&config, "quay.io").is_empty());
        // .dockercfg has no "auths" level.
        let old = json!({"quay.io": {"username": "q", "password": "w"}});
        assert_eq!(from_config(&old, "quay.io")[0].password, "w");
    }
}
