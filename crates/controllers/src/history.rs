//! ControllerRevisions: the pod-template history of DaemonSets and StatefulSets (upstream's
//! pkg/controller/history), which `kubectl rollout history/undo` read.
//!
//! A revision holds the owner's template as a strategic-merge patch
//! (`{"spec":{"template":{..., "$patch":"replace"}}}`), is named `<owner>-<hash>` and carries
//! the hash as its `controller-revision-hash` label, which the owner's pods carry too. An owner
//! returning to an earlier template reuses that revision with a new, highest, number.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::ownership;

pub const REVISION_HASH: &str = "controller-revision-hash";

/// The revision data for a pod template.
pub fn data(template: &PodTemplateSpec) -> Value {
    let mut t = serde_json::to_value(template).unwrap_or_default();
    if let Some(map) = t.as_object_mut() {
        map.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

/// Upstream's HashControllerRevision: FNV-32 of the data (and the collision count), as a
/// "safe" string of consonants and digits.
pub fn hash(data: &Value, collision_count: Option<i32>) -> String {
    let mut h: u32 = 2166136261;
    let mut write = |bytes: &[u8]| {
        for b in bytes {
            h = h.wrapping_mul(16777619);
            h ^= u32::from(*b);
        }
    };
    write(serde_json::to_string(data).unwrap_or_default().as_bytes());
    if let Some(c) = collision_count {
        write(c.to_string().as_bytes());
    }
    safe_encode(&h.to_string())
}

/// Upstream's rand.SafeEncodeString: no vowels, no confusable characters.
fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| ALPHANUMS[b as usize % ALPHANUMS.len()] as char)
        .collect()
}

/// The owner's revisions (controlled by it), oldest first.
pub async fn list<K>(api: &Api<ControllerRevision>, owner: &K) -> Result<Vec<ControllerRevision>>
where
    K: Resource,
{
    let uid = owner.meta().uid.clone().unwrap_or_default();
    let mut revisions: Vec<_> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|r| ownership::controller_of(&r.metadata).is_some_and(|o| o.uid == uid))
        .collect();
    revisions.sort_by_key(|r| (r.revision, r.name_any()));
    Ok(revisions)
}

/// Finds or creates the revision of `template` (upstream's constructHistory /
/// getStatefulSetRevisions); returns it and the owner's revisions, oldest first. A hash
/// collision with a different revision bumps `collision_count`.
pub async fn current<K>(
    api: &Api<ControllerRevision>,
    owner: &K,
    template: &PodTemplateSpec,
    collision_count: &mut i32,
) -> Result<(ControllerRevision, Vec<ControllerRevision>)>
where
    K: Resource<DynamicType = ()>,
{
    let mut revisions = list(api, owner).await?;
    let data = data(template);
    let max = revisions.iter().map(|r| r.revision).max().unwrap_or(0);
    if let Some(i) = revisions
        .iter()
        .rposition(|r| r.data.as_ref().map(|d| &d.0) == Some(&data))
    {
        if revisions[i].revision != max {
            let patch = json!({"revision": max + 1});
            let name = revisions[i].name_any();
            revisions[i] = api
                .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await?;
            revisions.sort_by_key(|r| (r.revision, r.name_any()));
        }
        let found = revisions
            .iter()
            .find(|r| r.data.as_ref().map(|d| &d.0) == Some(&data))
            .cloned()
            .ok_or_else(|| Error::Invalid("revision vanished".into()))?;
        return Ok((found, revisions));
    }
    for _ in 0..10 {
        let revision = new_revision(owner, template, &data, max + 1, *collision_count);
        match api.create(&PostParams::default(), &revision).await {
            Ok(created) => {
                revisions.push(created.clone());
                return Ok((created, revisions));
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let existing = api.get(&revision.name_any()).await?;
                if existing.data.as_ref().map(|d| &d.0) == Some(&data)
                    && ownership::controller_of(&existing.metadata)
                        .is_some_and(|o| Some(&o.uid) == owner.meta().uid.as_ref())
                {
                    revisions.push(existing.clone());
                    return Ok((existing, revisions));
                }
                *collision_count += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Invalid(
        "too many ControllerRevision hash collisions".into(),
    ))
}

fn new_revision<K>(
    owner: &K,
    template: &PodTemplateSpec,
    data: &Value,
    number: i64,
    collision_count: i32,
) -> ControllerRevision
where
    K: Resource<DynamicType = ()>,
{
    let hash = hash(data, Some(collision_count));
    let mut labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(REVISION_HASH.into(), hash.clone());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(format!(
                "{}-{hash}",
                owner.meta().name.clone().unwrap_or_default()
            )),
            namespace: owner.meta().namespace.clone(),
            labels: Some(labels),
            // As upstream, the owner's annotations (kubernetes.io/change-cause among them).
            annotations: owner.meta().annotations.clone(),
            owner_references: Some(vec![ownership::controller_ref(owner)]),
            ..Default::default()
        },
        data: Some(RawExtension(data.clone())),
        revision: number,
    }
}

/// The revision's hash label (what the pods of that revision carry).
pub fn hash_of(revision: &ControllerRevision) -> String {
    revision
        .labels()
        .get(REVISION_HASH)
        .cloned()
        .unwrap_or_else(|| {
            let name = revision.name_any();
            name.rsplit('-').next().unwrap_or_default().to_string()
        })
}

/// Deletes the oldest revisions beyond `limit` that no live pod uses and that are not `keep`.
pub async fn truncate(
    api: &Api<ControllerRevision>,
    revisions: &[ControllerRevision],
    live_hashes: &BTreeSet<String>,
    keep: &[&str],
    limit: i32,
) -> Result<()> {
    let removable: Vec<_> = revisions
        .iter()
        .filter(|r| !live_hashes.contains(&hash_of(r)) && !keep.contains(&r.name_any().as_str()))
        .collect();
    let extra = removable.len().saturating_sub(limit.max(0) as usize);
    for r in removable.into_iter().take(extra) {
        match api.delete(&r.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_safe_and_depend_on_the_collision_count() {
        let d = json!({"spec": {"template": {"$patch": "replace"}}});
        let a = hash(&d, Some(0));
        assert!(a.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
        assert_ne!(a, hash(&d, Some(1)));
        assert_eq!(a, hash(&d, Some(0)));
    }
}
