//! Registry credentials from the pod's `imagePullSecrets`: the secrets are read here, matched to
//! the image by [`crate::images::keyring`] (upstream's credential keyring) and handed to CRI
//! PullImage.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

use super::env::Objects;
use crate::cri::api;
use crate::images::keyring::{Keyring, PullSecret};

/// Every credential the pod's pull secrets hold for `image`, in the order to try them. A secret
/// that is missing is skipped, as upstream (the pull may still work anonymously).
pub async fn credentials(
    client: &kube::Client,
    objects: &mut Objects,
    pod: &Pod,
    image: &str,
) -> Vec<api::AuthConfig> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let refs = pod
        .spec
        .as_ref()
        .and_then(|s| s.image_pull_secrets.clone())
        .unwrap_or_default();
    let mut secrets = Vec::new();
    for r in refs {
        match objects.secret(client, ns, &r.name).await {
            Ok(Some(secret)) => secrets.push(secret),
            _ => tracing::debug!(secret = %r.name, "image pull secret not found"),
        }
    }
    let data: Vec<BTreeMap<String, Vec<u8>>> = secrets
        .iter()
        .map(|s| {
            s.data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.0.clone()))
                .collect()
        })
        .collect();
    let pull_secrets: Vec<PullSecret> = secrets
        .iter()
        .zip(&data)
        .map(|(s, data)| PullSecret {
            type_: s.type_.as_deref().unwrap_or(""),
            data,
        })
        .collect();
    match Keyring::from_secrets(&pull_secrets) {
        Ok(keyring) => keyring.lookup(image),
        Err(e) => {
            tracing::warn!(error = %e, image, "image pull secrets unreadable; pulling without them");
            Vec::new()
        }
    }
}
