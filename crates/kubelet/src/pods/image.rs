//! Making sure a container's image is there (upstream's `EnsureImageExists`): the pull policy
//! decides whether to pull, a failed pull is `ErrImagePull` and, while backing off before the
//! next try, `ImagePullBackOff`.

use std::time::SystemTime;

use k8s_openapi::api::core::v1::Container;

use super::backoff::Backoff;
use super::status::Waiting;
use crate::cri::{api, image_spec, Cri};

pub const ERR_IMAGE_PULL: &str = "ErrImagePull";
/// How long a failed pull shows as ErrImagePull before ImagePullBackOff.
const ERR_IMAGE_PULL_SHOWN: std::time::Duration = std::time::Duration::from_secs(3);
pub const IMAGE_PULL_BACKOFF: &str = "ImagePullBackOff";
pub const ERR_IMAGE_NEVER_PULL: &str = "ErrImageNeverPull";
pub const INVALID_IMAGE_NAME: &str = "InvalidImageName";

/// The pull policy, defaulted as the API server does (Always for `:latest` or no tag).
pub fn pull_policy(container: &Container) -> &str {
    if let Some(p) = container
        .image_pull_policy
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        return p;
    }
    let image = container.image.as_deref().unwrap_or("");
    let name = image.split('@').next().unwrap_or(image);
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.split_once(':') {
        Some((_, "latest")) | None if !image.contains('@') => "Always",
        _ => "IfNotPresent",
    }
}

/// What happened to the image.
pub enum Ensured {
    /// Present; says how (upstream's Pulled event message).
    Ready(String),
    /// Not there; the container waits with this reason.
    Waiting(Waiting),
}

/// Ensures `container`'s image is present, pulling it per its policy with back-off keyed by
/// `backoff_key`. `auth` are the credentials from the pod's pull secrets, tried in order.
pub async fn ensure(
    cri: &Cri,
    container: &Container,
    sandbox: &api::PodSandboxConfig,
    auth: &[api::AuthConfig],
    backoff: &mut Backoff,
    backoff_key: &str,
) -> Ensured {
    let image = container.image.as_deref().unwrap_or("").trim();
    if image.is_empty() {
        return Ensured::Waiting(Waiting {
            reason: INVALID_IMAGE_NAME.into(),
            message: "Failed to apply default image tag \"\": couldn't parse image name \"\": invalid reference format".into(),
        });
    }
    let policy = pull_policy(container);
    let present = cri.image_status(image).await.ok().flatten();
    match (policy, &present) {
        ("Never", None) => {
            return Ensured::Waiting(Waiting {
                reason: ERR_IMAGE_NEVER_PULL.into(),
                message: format!(
                    "Container image \"{image}\" is not present with pull policy of Never"
                ),
            })
        }
        ("Never" | "IfNotPresent", Some(_)) => {
            return Ensured::Ready(format!(
                "Container image \"{image}\" already present on machine"
            ))
        }
        _ => {}
    }
    let now = SystemTime::now();
    // The failure stays ErrImagePull for a while (upstream shows it until its next sync), then
    // ImagePullBackOff until the back-off ends.
    let recent = backoff
        .since_update(backoff_key, now)
        .is_some_and(|d| d < ERR_IMAGE_PULL_SHOWN);
    if let (true, Some(note)) = (recent, backoff.note(backoff_key)) {
        return Ensured::Waiting(Waiting {
            reason: ERR_IMAGE_PULL.into(),
            message: note.to_string(),
        });
    }
    if backoff.in_backoff_since_update(backoff_key, now).is_some() {
        return Ensured::Waiting(Waiting {
            reason: IMAGE_PULL_BACKOFF.into(),
            message: format!("Back-off pulling image \"{image}\""),
        });
    }
    let started = std::time::Instant::now();
    match pull(cri, image, sandbox, auth).await {
        Ok(_) => {
            backoff.reset(backoff_key);
            Ensured::Ready(format!(
                "Successfully pulled image \"{image}\" in {:?}",
                started.elapsed()
            ))
        }
        // A node without a registry still runs what it has: an image imported locally is used
        // when pulling it again (policy Always) fails.
        Err(e) if present.is_some() => {
            tracing::debug!(image, error = %e, "pull failed; using the image present on the node");
            Ensured::Ready(format!(
                "Container image \"{image}\" already present on machine"
            ))
        }
        Err(e) => {
            backoff.next(backoff_key, now);
            backoff.set_note(backoff_key, e.clone());
            Ensured::Waiting(Waiting {
                reason: ERR_IMAGE_PULL.into(),
                message: e,
            })
        }
    }
}

/// Pulls `image`: anonymously when no credential matched, else with each credential in turn
/// until one works (upstream's `PullImage` in kuberuntime_image.go). The error is upstream's:
/// the gRPC error as Go prints it, several joined as an aggregate.
async fn pull(
    cri: &Cri,
    image: &str,
    sandbox: &api::PodSandboxConfig,
    auth: &[api::AuthConfig],
) -> Result<String, String> {
    let attempts: Vec<Option<api::AuthConfig>> = if auth.is_empty() {
        vec![None]
    } else {
        auth.iter().cloned().map(Some).collect()
    };
    let mut errors: Vec<String> = Vec::new();
    for auth in attempts {
        let req = api::PullImageRequest {
            image: Some(image_spec(image)),
            auth,
            sandbox_config: Some(sandbox.clone()),
        };
        match cri.images().pull_image(req).await {
            Ok(r) => return Ok(r.into_inner().image_ref),
            Err(status) => {
                let e = grpc_error(&status);
                if !errors.contains(&e) {
                    errors.push(e);
                }
            }
        }
    }
    Err(match errors.as_slice() {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    })
}

/// A gRPC status as grpc-go's `status.Error` prints it (what upstream's kubelet shows).
fn grpc_error(status: &tonic::Status) -> String {
    let code = match status.code() {
        tonic::Code::Cancelled => "Canceled".to_string(),
        other => format!("{other:?}"),
    };
    format!("rpc error: code = {code} desc = {}", status.message())
}
