//! A container's volumeMounts as CRI mounts: the volume's host path (and subPath or expanded
//! subPathExpr within it), read-only as asked or as the volume forces (API data volumes and
//! read-only claims), and the mount propagation mode.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod, VolumeMount};

use super::{downward, Mounted, VolumeError};
use crate::cri::api::{Mount, MountPropagation};

/// The set-up volumes of one pod, by volume name.
#[derive(Debug, Clone)]
pub struct PodVolumes {
    pod: Pod,
    volumes: BTreeMap<String, Mounted>,
}

impl PodVolumes {
    pub(crate) fn new(pod: Pod, volumes: BTreeMap<String, Mounted>) -> PodVolumes {
        PodVolumes { pod, volumes }
    }

    /// Where a volume is on the host.
    pub fn host_path(&self, volume: &str) -> Option<&Path> {
        self.volumes.get(volume).map(|m| m.host_path.as_path())
    }

    /// The CRI mounts of `container`'s volumeMounts, in their order.
    pub fn mounts(&self, container: &Container) -> Result<Vec<Mount>, VolumeError> {
        let privileged = container
            .security_context
            .as_ref()
            .and_then(|s| s.privileged)
            .unwrap_or(false);
        container
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| self.mount(container, m, privileged))
            .collect()
    }

    fn mount(
        &self,
        container: &Container,
        m: &VolumeMount,
        privileged: bool,
    ) -> Result<Mount, VolumeError> {
        let volume = self.volumes.get(&m.name).ok_or_else(|| {
            VolumeError::Mount(format!(
                "cannot find volume {:?} to mount into container {:?}",
                m.name, container.name
            ))
        })?;
        let sub_path = match (m.sub_path.as_deref(), m.sub_path_expr.as_deref()) {
            (Some(p), _) if !p.is_empty() => Some(p.to_string()),
            (_, Some(expr)) if !expr.is_empty() => {
                let env = container_env(&self.pod, container);
                Some(expand(expr, &env).map_err(|missing| {
                    VolumeError::Mount(format!(
                        "failed to prepare subPath for volumeMount {:?} of container {:?}: missing value for {missing}",
                        m.name, container.name
                    ))
                })?)
            }
            _ => None,
        };
        let host_path = match sub_path {
            Some(sub) => sub_path_on_host(&volume.host_path, &sub).map_err(|why| {
                VolumeError::Mount(format!(
                    "failed to prepare subPath for volumeMount {:?} of container {:?}: {why}",
                    m.name, container.name
                ))
            })?,
            None => volume.host_path.clone(),
        };
        Ok(Mount {
            container_path: m.mount_path.clone(),
            host_path: host_path.to_string_lossy().into_owned(),
            readonly: m.read_only.unwrap_or(false) || volume.read_only,
            propagation: propagation(m, container, privileged)? as i32,
            ..Default::default()
        })
    }
}

fn propagation(
    m: &VolumeMount,
    container: &Container,
    privileged: bool,
) -> Result<MountPropagation, VolumeError> {
    Ok(match m.mount_propagation.as_deref() {
        None | Some("") | Some("None") => MountPropagation::PropagationPrivate,
        Some("HostToContainer") => MountPropagation::PropagationHostToContainer,
        Some("Bidirectional") if privileged => MountPropagation::PropagationBidirectional,
        Some("Bidirectional") => {
            return Err(VolumeError::Mount(format!(
                "Bidirectional mount propagation is available only to privileged containers (container {:?})",
                container.name
            )))
        }
        Some(other) => {
            return Err(VolumeError::Mount(format!(
                "invalid MountPropagation mode: {other:?}"
            )))
        }
    })
}

/// The environment subPathExpr sees: literal values and downward-API fields, as upstream's
/// (variables from configMaps and secrets are the pod worker's and not expanded here).
fn container_env(pod: &Pod, container: &Container) -> HashMap<String, String> {
    let mut env = HashMap::new();
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(v), _) => Some(expand(v, &env).unwrap_or_else(|_| v.clone())),
            (None, Some(from)) => from
                .field_ref
                .as_ref()
                .and_then(|f| downward::field_value(pod, &f.field_path)),
            _ => None,
        };
        if let Some(value) = value {
            env.insert(var.name.clone(), value);
        }
    }
    env
}

/// Upstream's `$(VAR)` expansion (`$$` escapes a `$`); a variable without a (non-empty)
/// value is an error naming the missing ones, as upstream's subPathExpr expansion.
fn expand(input: &str, env: &HashMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut missing = BTreeSet::new();
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some((name, tail)) = after
            .strip_prefix('(')
            .and_then(|s| s.find(')').map(|end| (&s[..end], &s[end + 1..])))
        {
            match env.get(name).filter(|v| !v.is_empty()) {
                Some(v) => out.push_str(v),
                None => {
                    missing.insert(name.to_string());
                }
            }
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    match missing.is_empty() {
        true => Ok(out),
        false => Err(missing.into_iter().collect::<Vec<_>>().join(", ")),
    }
}

/// The subPath inside the volume: relative, without `..`, created (as a directory) if missing,
/// and still inside the volume once symlinks are resolved, so a symlink planted by a container
/// cannot reach the host.
fn sub_path_on_host(volume: &Path, sub: &str) -> Result<PathBuf, String> {
    let p = Path::new(sub);
    if p.is_absolute() {
        return Err(format!(
            "error SubPath `{sub}` must not be an absolute path"
        ));
    }
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!("error SubPath `{sub}` must not contain '..'"));
    }
    let full = volume.join(p);
    if std::fs::symlink_metadata(&full).is_err() {
        std::fs::create_dir_all(&full).map_err(|e| format!("mkdir {}: {e}", full.display()))?;
    }
    let root = volume
        .canonicalize()
        .map_err(|e| format!("{}: {e}", volume.display()))?;
    let resolved = full
        .canonicalize()
        .map_err(|e| format!("{}: {e}", full.display()))?;
    if !resolved.starts_with(&root) {
        return Err(format!(
            "subpath {:?} not within volume path {:?}",
            resolved.display().to_string(),
            root.display().to_string()
        ));
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_like_upstream() {
        let mut env = HashMap::new();
        env.insert("POD".to_string(), "p1".to_string());
        assert_eq!(expand("logs/$(POD)/x", &env).unwrap(), "logs/p1/x");
        assert_eq!(expand("a$$(POD)", &env).unwrap(), "a$(POD)");
        assert_eq!(expand("$(NOPE)-$(B)", &env).unwrap_err(), "B, NOPE");
    }

    #[test]
    fn sub_paths_stay_inside() {
        let dir = tempfile::tempdir().unwrap();
        let vol = dir.path().join("v");
        std::fs::create_dir(&vol).unwrap();
        std::os::unix::fs::symlink("/etc", vol.join("escape")).unwrap();
        assert!(sub_path_on_host(&vol, "escape").is_err());
        assert!(sub_path_on_host(&vol, "../x").is_err());
        assert!(sub_path_on_host(&vol, "/x").is_err());
        let made = sub_path_on_host(&vol, "a/b").unwrap();
        assert!(made.is_dir() && made.ends_with("v/a/b"));
    }
}
