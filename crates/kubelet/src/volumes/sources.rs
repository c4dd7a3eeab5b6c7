//! The payloads of API-backed volumes: configMap and secret volumes, and projected volumes
//! made of configMaps, secrets, downward API items and service-account tokens. Read from the
//! API on every sync, so a changed object reaches the pod at its next sync.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, KeyToPath, Pod, ProjectedVolumeSource, Secret,
    SecretVolumeSource,
};
use kube::api::Api;

use super::atomic_writer::{FileProjection, Payload};
use super::token::Tokens;
use super::{downward, SetUpError};
use crate::context::NodeContext;

/// Upstream's default file mode of configMap, secret, downwardAPI and projected volumes.
pub(crate) const DEFAULT_MODE: i32 = 0o644;

fn namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}

/// A configMap's keys as bytes (`data` and `binaryData`); `None` when it does not exist.
async fn config_map_data(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, SetUpError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let Some(cm) = api.get_opt(name).await? else {
        return Ok(None);
    };
    let mut data: BTreeMap<String, Vec<u8>> = cm
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    for (k, v) in cm.binary_data.unwrap_or_default() {
        data.insert(k, v.0);
    }
    Ok(Some(data))
}

async fn secret_data(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, SetUpError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let Some(secret) = api.get_opt(name).await? else {
        return Ok(None);
    };
    Ok(Some(
        secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect(),
    ))
}

/// What kind of object the keys came from, for upstream's error wording.
#[derive(Clone, Copy)]
enum Kind {
    ConfigMap,
    Secret,
}

impl Kind {
    fn not_found(self, name: &str) -> SetUpError {
        SetUpError::Message(match self {
            Kind::ConfigMap => format!("configmap \"{name}\" not found"),
            Kind::Secret => format!("secret \"{name}\" not found"),
        })
    }

    fn missing_key(self, key: &str) -> SetUpError {
        SetUpError::Message(match self {
            Kind::ConfigMap => format!("configmap references non-existent config key: {key}"),
            Kind::Secret => format!("references non-existent secret key: {key}"),
        })
    }
}

/// Upstream's `MakePayload` for configMaps and secrets: every key (file named after it) or only
/// `items`, with their path and mode.
fn make_payload(
    kind: Kind,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
    optional: bool,
    out: &mut Payload,
) -> Result<(), SetUpError> {
    let file = |content: &Vec<u8>, mode: Option<i32>| FileProjection {
        data: content.clone(),
        mode: mode.unwrap_or(default_mode) as u32 & 0o777,
    };
    match items {
        None | Some([]) => {
            for (key, content) in data {
                out.insert(key.clone(), file(content, None));
            }
        }
        Some(items) => {
            for item in items {
                match data.get(&item.key) {
                    Some(content) => {
                        out.insert(item.path.clone(), file(content, item.mode));
                    }
                    None if optional => continue,
                    None => return Err(kind.missing_key(&item.key)),
                }
            }
        }
    }
    Ok(())
}

pub(crate) async fn config_map_volume(
    client: &kube::Client,
    pod: &Pod,
    src: &ConfigMapVolumeSource,
) -> Result<Payload, SetUpError> {
    let optional = src.optional.unwrap_or(false);
    let mut payload = Payload::new();
    match config_map_data(client, namespace(pod), &src.name).await? {
        Some(data) => make_payload(
            Kind::ConfigMap,
            &data,
            src.items.as_deref(),
            src.default_mode.unwrap_or(DEFAULT_MODE),
            optional,
            &mut payload,
        )?,
        None if optional => {}
        None => return Err(Kind::ConfigMap.not_found(&src.name)),
    }
    Ok(payload)
}

pub(crate) async fn secret_volume(
    client: &kube::Client,
    pod: &Pod,
    src: &SecretVolumeSource,
) -> Result<Payload, SetUpError> {
    let optional = src.optional.unwrap_or(false);
    let name = src.secret_name.clone().unwrap_or_default();
    let mut payload = Payload::new();
    match secret_data(client, namespace(pod), &name).await? {
        Some(data) => make_payload(
            Kind::Secret,
            &data,
            src.items.as_deref(),
            src.default_mode.unwrap_or(DEFAULT_MODE),
            optional,
            &mut payload,
        )?,
        None if optional => {}
        None => return Err(Kind::Secret.not_found(&name)),
    }
    Ok(payload)
}

/// Upstream's projected volume: every source's files in one directory.
pub(crate) async fn projected(
    ctx: &NodeContext,
    tokens: &Tokens,
    pod: &Pod,
    src: &ProjectedVolumeSource,
) -> Result<Payload, SetUpError> {
    let default_mode = src.default_mode.unwrap_or(DEFAULT_MODE);
    let mut payload = Payload::new();
    for source in src.sources.as_deref().unwrap_or_default() {
        if let Some(cm) = &source.config_map {
            let optional = cm.optional.unwrap_or(false);
            match config_map_data(&ctx.client, namespace(pod), &cm.name).await? {
                Some(data) => make_payload(
                    Kind::ConfigMap,
                    &data,
                    cm.items.as_deref(),
                    default_mode,
                    optional,
                    &mut payload,
                )?,
                None if optional => {}
                None => return Err(Kind::ConfigMap.not_found(&cm.name)),
            }
        }
        if let Some(s) = &source.secret {
            let optional = s.optional.unwrap_or(false);
            match secret_data(&ctx.client, namespace(pod), &s.name).await? {
                Some(data) => make_payload(
                    Kind::Secret,
                    &data,
                    s.items.as_deref(),
                    default_mode,
                    optional,
                    &mut payload,
                )?,
                None if optional => {}
                None => return Err(Kind::Secret.not_found(&s.name)),
            }
        }
        if let Some(d) = &source.downward_api {
            let items = d.items.as_deref().unwrap_or_default();
            downward::items(ctx, pod, items, default_mode, &mut payload).await?;
        }
        if let Some(t) = &source.service_account_token {
            let token = tokens.get(&ctx.client, pod, t).await?;
            payload.insert(
                t.path.clone(),
                FileProjection {
                    data: token.into_bytes(),
                    mode: default_mode as u32 & 0o777,
                },
            );
        }
    }
    Ok(payload)
}
