//! Controller references: which controller owns an object, adopting orphans that match a
//! selector and releasing owned objects that no longer match (upstream's ControllerRefManager).

use std::collections::BTreeMap;

use component_base::label_selector;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams};
use kube::Resource;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::error::Result;

/// The reference a controller puts on what it creates: `controller` and
/// `blockOwnerDeletion` set, so foreground deletion waits for the dependent.
pub fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The owner reference marked `controller: true`, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// What a controller should do about one candidate object.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// Owned and matching: it is the controller's.
    Owned,
    /// Matching, without a controller: adopt it.
    Adopt,
    /// Owned but no longer matching: release it.
    Release,
    /// Someone else's, or neither owned nor matching.
    Ignore,
}

/// Upstream's ClaimObject decision. A controller being deleted adopts nothing; a selector that
/// is empty matches nothing here, as upstream refuses to adopt with one.
pub fn claim(
    owner_uid: &str,
    owner_deleting: bool,
    selector: &LabelSelector,
    meta: &ObjectMeta,
) -> Claim {
    let empty = selector
        .match_labels
        .as_ref()
        .is_none_or(BTreeMap::is_empty)
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(Vec::is_empty);
    let matching = !empty && label_selector::matches(selector, meta.labels.as_ref());
    match controller_of(meta) {
        Some(r) if r.uid == owner_uid => {
            if matching || owner_deleting {
                Claim::Owned
            } else {
                Claim::Release
            }
        }
        Some(_) => Claim::Ignore,
        None if matching && !owner_deleting && meta.deletion_timestamp.is_none() => Claim::Adopt,
        None => Claim::Ignore,
    }
}

/// Adds `owner` as the controller of the object (guarded by its uid, so a recreated object of
/// the same name is not adopted by mistake).
pub async fn adopt<K>(api: &Api<K>, meta: &ObjectMeta, owner: OwnerReference) -> Result<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut refs = meta.owner_references.clone().unwrap_or_default();
    refs.push(owner);
    patch_refs(api, meta, refs).await
}

/// Removes the controller reference of `owner_uid` from the object.
pub async fn release<K>(api: &Api<K>, meta: &ObjectMeta, owner_uid: &str) -> Result<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let refs: Vec<_> = meta
        .owner_references
        .iter()
        .flatten()
        .filter(|r| r.uid != owner_uid)
        .cloned()
        .collect();
    patch_refs(api, meta, refs).await
}

async fn patch_refs<K>(api: &Api<K>, meta: &ObjectMeta, refs: Vec<OwnerReference>) -> Result<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({"metadata": {"uid": meta.uid, "ownerReferences": refs}});
    let name = meta.name.as_deref().unwrap_or_default();
    Ok(api
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(labels: &[(&str, &str)], owner: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            owner_references: owner.map(|uid| {
                vec![OwnerReference {
                    uid: uid.into(),
                    controller: Some(true),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }
    }

    #[test]
    fn claims_as_upstream() {
        let sel = LabelSelector {
            match_labels: Some([("app".to_string(), "web".to_string())].into()),
            ..Default::default()
        };
        assert_eq!(
            claim("me", false, &sel, &meta(&[("app", "web")], Some("me"))),
            Claim::Owned
        );
        assert_eq!(
            claim("me", false, &sel, &meta(&[("app", "web")], None)),
            Claim::Adopt
        );
        assert_eq!(
            claim("me", false, &sel, &meta(&[("app", "db")], Some("me"))),
            Claim::Release
        );
        assert_eq!(
            claim("me", false, &sel, &meta(&[("app", "web")], Some("other"))),
            Claim::Ignore
        );
        assert_eq!(
            claim("me", true, &sel, &meta(&[("app", "web")], None)),
            Claim::Ignore
        );
        let empty = LabelSelector::default();
        assert_eq!(
            claim("me", false, &empty, &meta(&[("app", "web")], None)),
            Claim::Ignore
        );
    }
}
