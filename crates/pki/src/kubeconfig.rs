//! Kubeconfig files with everything embedded (`certificate-authority-data`,
//! `client-certificate-data`, `client-key-data`), so each is a single self-contained file that
//! kubectl, client-go and kube-rs read as is.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Serialize;

use crate::PkiError;

/// The cluster and context name written into every kubeconfig.
pub const CLUSTER_NAME: &str = "krust";

/// What goes into one kubeconfig.
pub struct KubeconfigInput<'a> {
    /// `https://host:port` of the API server.
    pub server: &'a str,
    pub ca_pem: &'a str,
    /// User name inside the file (`admin`, `system:kube-scheduler`, ...).
    pub user: &'a str,
    pub cert_pem: &'a str,
    pub key_pem: &'a str,
}

#[derive(Serialize)]
struct Kubeconfig<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    clusters: [Named<'a, Cluster<'a>>; 1],
    contexts: [Named<'a, Context<'a>>; 1],
    #[serde(rename = "current-context")]
    current_context: &'a str,
    users: [Named<'a, User>; 1],
}

#[derive(Serialize)]
struct Named<'a, T> {
    name: &'a str,
    #[serde(flatten)]
    value: T,
}

#[derive(Serialize)]
struct Cluster<'a> {
    cluster: ClusterBody<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct ClusterBody<'a> {
    certificate_authority_data: String,
    server: &'a str,
}

#[derive(Serialize)]
struct Context<'a> {
    context: ContextBody<'a>,
}

#[derive(Serialize)]
struct ContextBody<'a> {
    cluster: &'a str,
    user: &'a str,
}

#[derive(Serialize)]
struct User {
    user: UserBody,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct UserBody {
    client_certificate_data: String,
    client_key_data: String,
}

/// Renders the kubeconfig YAML for `input`.
pub fn render(input: &KubeconfigInput<'_>) -> Result<String, PkiError> {
    let doc = Kubeconfig {
        api_version: "v1",
        kind: "Config",
        clusters: [Named {
            name: CLUSTER_NAME,
            value: Cluster {
                cluster: ClusterBody {
                    certificate_authority_data: STANDARD.encode(input.ca_pem),
                    server: input.server,
                },
            },
        }],
        contexts: [Named {
            name: CLUSTER_NAME,
            value: Context {
                context: ContextBody {
                    cluster: CLUSTER_NAME,
                    user: input.user,
                },
            },
        }],
        current_context: CLUSTER_NAME,
        users: [Named {
            name: input.user,
            value: User {
                user: UserBody {
                    client_certificate_data: STANDARD.encode(input.cert_pem),
                    client_key_data: STANDARD.encode(input.key_pem),
                },
            },
        }],
    };
    serde_yaml::to_string(&doc).map_err(|source| PkiError::Kubeconfig {
        name: input.user.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_kubectl_field_names() {
        let yaml = render(&KubeconfigInput {
            server: "https://127.0.0.1:6443",
            ca_pem: "CA",
            user: "admin",
            cert_pem: "C",
            key_pem: "K",
        })
        .expect("render");
        for field in [
            "apiVersion: v1",
            "kind: Config",
            "certificate-authority-data: Q0E=",
            "server: https://127.0.0.1:6443",
            "current-context: krust",
            "client-certificate-data: Qw==",
            "client-key-data: Sw==",
            "- name: admin",
        ] {
            assert!(yaml.contains(field), "{field} missing from\n{yaml}");
        }
    }
}
