//! The certificate requests of a joining node, as upstream's kubelet makes them: a key made
//! here, a CertificateSigningRequest created with the bootstrap token, its `status.certificate`
//! awaited; then the serving certificate's request made as the node itself.

use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, ResourceExt};

use super::{write, BootstrapConfig, BootstrapError, Files, Progress};

const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
const SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";
/// How long the controller manager gets to approve and sign a request.
const WAIT: Duration = Duration::from_secs(300);

/// Has the client certificate signed with the token, then the serving certificate as the node;
/// writes both and the kubelet kubeconfig.
pub async fn obtain(
    config: &BootstrapConfig,
    ca_pem: &str,
    progress: Progress<'_>,
) -> Result<(), BootstrapError> {
    let paths = pki::Paths::new(&config.data_dir);
    let files = Files::new(&config.data_dir);
    let user = format!("system:node:{}", config.node_name);
    let bootstrap = client(&kubeconfig_with_token(
        &config.server,
        ca_pem,
        &config.token.token,
    ))
    .await?;
    let (key, cert) = signed(
        &bootstrap,
        &user,
        &[],
        CLIENT_SIGNER,
        "client auth",
        progress,
    )
    .await?;
    write(&files.client_key, key.as_bytes(), 0o600)?;
    write(&files.client_crt, cert.as_bytes(), 0o644)?;
    let kubeconfig = pki::render_kubeconfig(&pki::KubeconfigInput {
        server: &config.server,
        ca_pem,
        user: &user,
        cert_pem: &cert,
        key_pem: &key,
    })
    .map_err(|e| BootstrapError::Key(e.to_string()))?;
    let node = client(&kubeconfig).await?;
    let serving = &config.serving_sans;
    let (key, cert) = signed(
        &node,
        &user,
        serving,
        SERVING_SIGNER,
        "server auth",
        progress,
    )
    .await?;
    write(&paths.kubelet_key, key.as_bytes(), 0o600)?;
    write(&paths.kubelet_crt, cert.as_bytes(), 0o644)?;
    // Last: its presence is what says the node has joined.
    write(&paths.kubelet_config, kubeconfig.as_bytes(), 0o600)?;
    progress(&format!(
        "Wrote {} for {user}",
        paths.kubelet_config.display()
    ));
    Ok(())
}

/// A bootstrap kubeconfig: the pinned CA and the token (upstream's bootstrap-kubelet.conf).
fn kubeconfig_with_token(server: &str, ca_pem: &str, token: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "krust", "cluster": {"server": server, "certificate-authority-data": ca}}],
        "users": [{"name": "kubelet-bootstrap", "user": {"token": token}}],
        "contexts": [{"name": "krust", "context": {"cluster": "krust", "user": "kubelet-bootstrap"}}],
        "current-context": "krust",
    })
    .to_string()
}

async fn client(kubeconfig: &str) -> Result<Client, BootstrapError> {
    let api = |e: &dyn std::fmt::Display| BootstrapError::Api(e.to_string());
    let file = Kubeconfig::from_yaml(kubeconfig).map_err(|e| api(&e))?;
    let config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .map_err(|e| api(&e))?;
    Client::try_from(config).map_err(|e| api(&e))
}

/// A new key and its certificate (both PEM) from `signer`, for `user` in system:nodes.
async fn signed(
    client: &Client,
    user: &str,
    sans: &[pki::San],
    signer: &str,
    usage: &str,
    progress: Progress<'_>,
) -> Result<(String, String), BootstrapError> {
    let (key, request) = pki::new_request(user, "system:nodes", sans)
        .map_err(|e| BootstrapError::Key(e.to_string()))?;
    let csr = CertificateSigningRequest {
        metadata: ObjectMeta {
            generate_name: Some("node-csr-".into()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(request.into_bytes()),
            signer_name: signer.into(),
            usages: Some(vec!["digital signature".into(), usage.into()]),
            ..Default::default()
        },
        status: None,
    };
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let created = match api.create(&PostParams::default(), &csr).await {
        Ok(c) => c,
        Err(kube::Error::Api(e)) if e.code == 401 => return Err(BootstrapError::TokenRefused),
        Err(e) => return Err(BootstrapError::Api(e.to_string())),
    };
    let name = created.name_any();
    progress(&format!(
        "Certificate request {name} ({signer}) created; waiting for approval and signing"
    ));
    let cert = wait_issued(&api, &name).await?;
    progress(&format!("Certificate request {name} approved and issued"));
    Ok((key, cert))
}

/// Polls the request until it has a certificate, is denied or failed, or [`WAIT`] passes.
async fn wait_issued(
    api: &Api<CertificateSigningRequest>,
    name: &str,
) -> Result<String, BootstrapError> {
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        match api.get(name).await {
            Ok(csr) => {
                let status = csr.status.unwrap_or_default();
                for c in status.conditions.iter().flatten() {
                    let state = match c.type_.as_str() {
                        "Denied" => "denied",
                        "Failed" => "failed",
                        _ => continue,
                    };
                    return Err(BootstrapError::Rejected {
                        name: name.to_string(),
                        state,
                        message: c.message.clone().unwrap_or_default(),
                    });
                }
                if let Some(cert) = status.certificate.filter(|c| !c.0.is_empty()) {
                    return String::from_utf8(cert.0)
                        .map_err(|_| BootstrapError::Api("the certificate is not PEM".into()));
                }
            }
            Err(kube::Error::Api(e)) if e.code == 401 => return Err(BootstrapError::TokenRefused),
            Err(e) => tracing::debug!(%name, "cannot read the certificate request yet: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(BootstrapError::Timeout(name.to_string(), WAIT.as_secs()))
}
