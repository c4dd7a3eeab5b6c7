//! Upstream's `DefaultStorageClass` admission plugin (`plugin/pkg/admission/storage/
//! storageclass/setdefault`): a PersistentVolumeClaim created without a class (no
//! `spec.storageClassName` and no legacy `volume.beta.kubernetes.io/storage-class` annotation)
//! gets the default StorageClass, the one annotated
//! `storageclass.kubernetes.io/is-default-class: "true"`; with several, the newest, as upstream
//! since 1.28. An explicit `storageClassName: ""` asks for no class and is left alone.

use async_trait::async_trait;
use serde_json::Value;

use super::{Attributes, Operation, Plugin};
use crate::registry::{ListOptions, Registry};
use crate::resources;
use crate::status::{ApiError, ApiResult};

pub const IS_DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
const BETA_IS_DEFAULT_CLASS: &str = "storageclass.beta.kubernetes.io/is-default-class";
const BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

pub struct DefaultStorageClass;

#[async_trait]
impl Plugin for DefaultStorageClass {
    fn name(&self) -> &'static str {
        "DefaultStorageClass"
    }

    async fn admit(
        &self,
        attrs: &Attributes<'_>,
        object: Option<&mut Value>,
        reg: &Registry,
    ) -> ApiResult<()> {
        if attrs.operation != Operation::Create
            || !attrs.is("", "persistentvolumeclaims")
            || !attrs.subresource.is_empty()
        {
            return Ok(());
        }
        let Some(claim) = object else {
            return Ok(());
        };
        if has_class(claim) {
            return Ok(());
        }
        let Some(class) = default_class(reg).await? else {
            return Ok(());
        };
        if let Some(spec) = claim.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("storageClassName".into(), Value::String(class));
        }
        Ok(())
    }
}

/// Upstream's `PersistentVolumeClaimHasClass`.
fn has_class(claim: &Value) -> bool {
    !claim["spec"]["storageClassName"].is_null()
        || claim["metadata"]["annotations"]
            .get(BETA_STORAGE_CLASS)
            .is_some()
}

/// Upstream's `GetDefaultClass`: the newest class marked default (by name on a tie).
async fn default_class(reg: &Registry) -> ApiResult<Option<String>> {
    let res = resources::find("storage.k8s.io", "v1", "storageclasses")
        .ok_or(ApiError::NoSuchResource)?;
    let listed = reg.list(res, None, &ListOptions::default()).await?;
    Ok(pick_default(&listed.items))
}

fn pick_default(classes: &[Value]) -> Option<String> {
    let is_default = |c: &&Value| {
        let a = &c["metadata"]["annotations"];
        a[IS_DEFAULT_CLASS] == "true" || a[BETA_IS_DEFAULT_CLASS] == "true"
    };
    let key = |c: &Value| {
        let created = c["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let name = c["metadata"]["name"].as_str().unwrap_or("").to_string();
        (created, std::cmp::Reverse(name))
    };
    classes
        .iter()
        .filter(is_default)
        .max_by_key(|c| key(c))
        .and_then(|c| c["metadata"]["name"].as_str().map(String::from))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn class(name: &str, created: &str, default: bool) -> Value {
        json!({"metadata": {"name": name, "creationTimestamp": created,
            "annotations": {IS_DEFAULT_CLASS: if default { "true" } else { "false" }}}})
    }

    #[test]
    fn newest_default_wins() {
        let classes = [
            class("old", "2024-01-01T00:00:00Z", true),
            class("new", "2025-01-01T00:00:00Z", true),
            class("newest-but-not-default", "2026-01-01T00:00:00Z", false),
        ];
        assert_eq!(pick_default(&classes).as_deref(), Some("new"));
        assert_eq!(pick_default(&classes[2..]), None);
    }

    #[test]
    fn an_explicit_empty_class_is_a_class() {
        assert!(has_class(&json!({"spec": {"storageClassName": ""}})));
        assert!(!has_class(&json!({"spec": {}})));
        assert!(has_class(
            &json!({"metadata": {"annotations": {BETA_STORAGE_CLASS: "x"}}, "spec": {}})
        ));
    }
}
