//! PATCH bodies: JSON merge patch (RFC 7396), JSON patch (RFC 6902) and strategic merge patch
//! (through [`crate::strategic`], with the kind's patch strategies).

use http::HeaderMap;
use serde_json::Value;

use crate::content::{self, BodyType};
use crate::status::{ApiError, ApiResult};

pub enum Patch {
    Merge(Value),
    Strategic(Value),
    Json(json_patch::Patch),
    /// A server-side apply configuration (`application/apply-patch+yaml`), applied by
    /// [`crate::apply`]; [`Patch::apply`] merges it like a merge patch (for subresources such as
    /// `scale` that do not track fields).
    Apply(Value),
}

impl Patch {
    pub fn from_request(headers: &HeaderMap, body: &[u8]) -> ApiResult<Self> {
        let bad = |e: serde_json::Error| ApiError::BadRequest(format!("error decoding patch: {e}"));
        match content::body_type(headers)? {
            BodyType::MergePatch => Ok(Patch::Merge(serde_json::from_slice(body).map_err(bad)?)),
            BodyType::StrategicMergePatch => Ok(Patch::Strategic(serde_json::from_slice(body).map_err(bad)?)),
            BodyType::JsonPatch => Ok(Patch::Json(serde_json::from_slice(body).map_err(bad)?)),
            BodyType::ApplyPatch => {
                let config: Value = serde_yaml::from_slice(body)
                    .map_err(|e| ApiError::BadRequest(format!("error decoding YAML: {e}")))?;
                if !config.is_object() {
                    return Err(ApiError::BadRequest(
                        "error decoding YAML: the apply configuration must be an object".into(),
                    ));
                }
                Ok(Patch::Apply(config))
            }
            _ => Err(ApiError::UnsupportedMediaType(
                "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml".into(),
            )),
        }
    }

    /// The patched object. A resourceVersion the patch itself sets is kept as the caller's
    /// precondition; the one inherited from `old` is removed so the write can be retried.
    pub fn apply(&self, old: &Value, gvk: (&str, &str, &str)) -> ApiResult<Value> {
        let mut new = old.clone();
        let explicit_rv = match self {
            Patch::Strategic(p) => {
                if !crate::strategic::supports(gvk) {
                    // Upstream's answer for kinds without patch metadata (custom resources).
                    return Err(ApiError::UnsupportedMediaType(
                        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml".into(),
                    ));
                }
                new = crate::strategic::apply(old, p, gvk).map_err(strategic_error)?;
                !p["metadata"]["resourceVersion"].is_null()
            }
            Patch::Merge(p) | Patch::Apply(p) => {
                if !p.is_object() {
                    return Err(ApiError::BadRequest(
                        "the patch must be a JSON object".into(),
                    ));
                }
                json_patch::merge(&mut new, p);
                !p["metadata"]["resourceVersion"].is_null()
            }
            Patch::Json(p) => {
                json_patch::patch(&mut new, &p.0).map_err(|e| {
                    ApiError::Invalid(
                        Default::default(),
                        vec![crate::status::cause("FieldValueInvalid", "", e.to_string())],
                    )
                })?;
                new["metadata"]["resourceVersion"] != old["metadata"]["resourceVersion"]
            }
        };
        if !explicit_rv {
            if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
        }
        if !new.is_object() {
            return Err(ApiError::BadRequest(
                "the patched object is not a JSON object".into(),
            ));
        }
        Ok(new)
    }
}

/// A strategic patch failure with upstream's status: 400 for a malformed patch, 422 for content
/// the format cannot express, 500 otherwise.
fn strategic_error(e: crate::strategic::StrategicPatchError) -> ApiError {
    let message = e.to_string();
    match e.http_status() {
        400 => ApiError::BadRequest(message),
        422 => ApiError::Invalid(
            Default::default(),
            vec![crate::status::cause("FieldValueInvalid", "", message)],
        ),
        _ => ApiError::Internal(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const GVK: (&str, &str, &str) = ("apps", "v1", "Deployment");

    #[test]
    fn merge_keeps_inherited_rv_out() {
        let old =
            json!({"metadata": {"name": "x", "resourceVersion": "5"}, "spec": {"replicas": 1}});
        let p = Patch::Merge(json!({"spec": {"replicas": 3}}));
        let new = p.apply(&old, GVK).unwrap();
        assert_eq!(new["spec"]["replicas"], 3);
        assert!(new["metadata"]["resourceVersion"].is_null());
        let p = Patch::Merge(json!({"metadata": {"resourceVersion": "4"}}));
        assert_eq!(
            p.apply(&old, GVK).unwrap()["metadata"]["resourceVersion"],
            "4"
        );
    }

    #[test]
    fn strategic_merges_containers_by_name() {
        let old = json!({"metadata": {"name": "d"}, "spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}}}});
        let p = Patch::Strategic(
            json!({"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "z"}]}}}}),
        );
        let new = p.apply(&old, GVK).unwrap();
        let c = &new["spec"]["template"]["spec"]["containers"];
        assert_eq!(
            (c[0]["image"].as_str(), c[1]["image"].as_str()),
            (Some("x"), Some("z"))
        );
    }

    #[test]
    fn strategic_refuses_kinds_without_metadata_and_maps_errors() {
        let old = json!({"metadata": {"name": "x"}, "spec": {}});
        let p = Patch::Strategic(json!({"spec": {"a": 1}}));
        let crd = ("example.com", "v1", "Widget");
        assert!(matches!(
            p.apply(&old, crd),
            Err(ApiError::UnsupportedMediaType(_))
        ));
        use crate::strategic::StrategicPatchError as E;
        let code = |e: E| strategic_error(e).code().as_u16();
        assert_eq!(code(E::BadJsonDoc), 400);
        assert_eq!(code(E::ListOfLists), 422);
        assert_eq!(code(E::Table("x".into())), 500);
    }

    #[test]
    fn json_patch() {
        let old = json!({"metadata": {"name": "x", "labels": {}}});
        let p: json_patch::Patch = serde_json::from_value(
            json!([{"op": "add", "path": "/metadata/labels/a", "value": "b"}]),
        )
        .unwrap();
        assert_eq!(
            Patch::Json(p).apply(&old, GVK).unwrap()["metadata"]["labels"]["a"],
            "b"
        );
    }
}
