//! PATCH bodies: JSON merge patch (RFC 7396) and JSON patch (RFC 6902). Strategic merge patch is
//! applied as a merge patch with its `$` directives dropped until the real SMP lands; that is exact
//! for what kubectl label, annotate and scale send, not for list merges by key.

use http::HeaderMap;
use serde_json::Value;

use crate::content::{self, BodyType};
use crate::status::{ApiError, ApiResult};

pub enum Patch {
    Merge(Value),
    Json(json_patch::Patch),
}

impl Patch {
    pub fn from_request(headers: &HeaderMap, body: &[u8]) -> ApiResult<Self> {
        let bad = |e: serde_json::Error| ApiError::BadRequest(format!("error decoding patch: {e}"));
        match content::body_type(headers)? {
            BodyType::MergePatch => Ok(Patch::Merge(serde_json::from_slice(body).map_err(bad)?)),
            BodyType::StrategicMergePatch => {
                let mut v: Value = serde_json::from_slice(body).map_err(bad)?;
                drop_directives(&mut v);
                Ok(Patch::Merge(v))
            }
            BodyType::JsonPatch => Ok(Patch::Json(serde_json::from_slice(body).map_err(bad)?)),
            _ => Err(ApiError::UnsupportedMediaType(
                "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json".into(),
            )),
        }
    }

    /// The patched object. A resourceVersion the patch itself sets is kept as the caller's
    /// precondition; the one inherited from `old` is removed so the write can be retried.
    pub fn apply(&self, old: &Value) -> ApiResult<Value> {
        let mut new = old.clone();
        let explicit_rv = match self {
            Patch::Merge(p) => {
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

/// Removes strategic-merge-patch directives (`$patch`, `$setElementOrder/...`, `$retainKeys`,
/// `$deleteFromPrimitiveList/...`) that a plain merge would otherwise store as fields.
fn drop_directives(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| !k.starts_with('$'));
            m.values_mut().for_each(drop_directives);
        }
        Value::Array(a) => a.iter_mut().for_each(drop_directives),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_keeps_inherited_rv_out() {
        let old =
            json!({"metadata": {"name": "x", "resourceVersion": "5"}, "spec": {"replicas": 1}});
        let p = Patch::Merge(json!({"spec": {"replicas": 3}, "$setElementOrder/x": []}));
        let new = p.apply(&old).unwrap();
        assert_eq!(new["spec"]["replicas"], 3);
        assert!(new["metadata"]["resourceVersion"].is_null());
        let p = Patch::Merge(json!({"metadata": {"resourceVersion": "4"}}));
        assert_eq!(p.apply(&old).unwrap()["metadata"]["resourceVersion"], "4");
    }

    #[test]
    fn json_patch() {
        let old = json!({"metadata": {"name": "x", "labels": {}}});
        let p: json_patch::Patch = serde_json::from_value(
            json!([{"op": "add", "path": "/metadata/labels/a", "value": "b"}]),
        )
        .unwrap();
        assert_eq!(
            Patch::Json(p).apply(&old).unwrap()["metadata"]["labels"]["a"],
            "b"
        );
    }
}
