//! The `$`-prefixed directives a strategic merge patch may carry, and the ones that act on a
//! single map: `$patch` parsing, `$retainKeys`, and the `$setElementOrder/<field>` and
//! `$deleteFromPrimitiveList/<field>` key forms.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::error::{Result, StrategicPatchError};
use super::value::render_map;

/// `$patch: delete | replace | merge`, in a map or a list element.
pub(crate) const PATCH: &str = "$patch";
pub(crate) const RETAIN_KEYS: &str = "$retainKeys";
pub(crate) const SET_ELEMENT_ORDER: &str = "$setElementOrder";
pub(crate) const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";

/// The value of a `$patch` directive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Directive {
    Delete,
    Replace,
    Merge,
}

impl Directive {
    /// Parses `$patch`'s value; `map` (the object it appeared in) is only for the error message.
    pub(crate) fn parse(value: &Value, map: &Map<String, Value>) -> Result<Self> {
        match value.as_str() {
            Some("delete") => Ok(Directive::Delete),
            Some("replace") => Ok(Directive::Replace),
            Some("merge") => Ok(Directive::Merge),
            _ => Err(StrategicPatchError::BadPatchType {
                directive: value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_string),
                map: render_map(map),
            }),
        }
    }

    /// The directive of a list element, if it has one.
    pub(crate) fn of_element(element: &Value) -> Result<Option<Self>> {
        let Some(map) = element.as_object() else {
            return Ok(None);
        };
        map.get(PATCH).map(|d| Directive::parse(d, map)).transpose()
    }
}

/// The field a `<prefix>/<field>` directive key refers to, `None` if `key` is not that directive.
/// A key with the prefix but not the `/<field>` form is malformed, as upstream reports it.
pub(crate) fn directive_target<'k>(key: &'k str, prefix: &str) -> Result<Option<&'k str>> {
    if !key.starts_with(prefix) {
        return Ok(None);
    }
    match key.split_once('/') {
        Some((head, field)) if head == prefix => Ok(Some(field)),
        _ if prefix == SET_ELEMENT_ORDER => Err(StrategicPatchError::BadSetElementOrderFormat),
        _ => Err(StrategicPatchError::BadPrimitiveListFormat),
    }
}

/// True for keys that only steer how other fields merge, which `$retainKeys` does not list.
fn is_parallel_list_key(key: &str) -> bool {
    key.starts_with(SET_ELEMENT_ORDER) || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
}

/// Applies `$retainKeys`: every field of `original` not in the list is cleared, which is how
/// kubectl switches a union (e.g. a Deployment strategy from RollingUpdate to Recreate) without
/// knowing which member the server has. Every field the patch sets must be listed.
pub(crate) fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<()> {
    let Some(retain) = patch.remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(StrategicPatchError::BadRetainKeysFormat);
    };
    let retain: HashSet<&str> = retain.iter().filter_map(Value::as_str).collect();
    let listed = |key: &str| retain.contains(key);
    let unlisted = patch
        .iter()
        .any(|(k, v)| !v.is_null() && !is_parallel_list_key(k) && !listed(k));
    if unlisted {
        return Err(StrategicPatchError::BadRetainKeysFormat);
    }
    original.retain(|k, _| listed(k));
    Ok(())
}

/// Keys that only steer the merge and never belong in a stored object.
pub(crate) fn is_directive_key(key: &str) -> bool {
    key == PATCH || key == RETAIN_KEYS || is_parallel_list_key(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_directive_keys() {
        assert_eq!(
            directive_target("$setElementOrder/containers", SET_ELEMENT_ORDER),
            Ok(Some("containers"))
        );
        assert_eq!(directive_target("containers", SET_ELEMENT_ORDER), Ok(None));
        assert_eq!(
            directive_target("$setElementOrderX/containers", SET_ELEMENT_ORDER),
            Err(StrategicPatchError::BadSetElementOrderFormat)
        );
        assert_eq!(
            directive_target("$deleteFromPrimitiveList", DELETE_FROM_PRIMITIVE_LIST),
            Err(StrategicPatchError::BadPrimitiveListFormat)
        );
    }

    #[test]
    fn unknown_patch_directive_is_rejected() {
        let map = json!({"$patch": "explode"});
        let err = Directive::of_element(&map).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"unknown patch type: explode in map: {"$patch":"explode"}"#
        );
    }

    #[test]
    fn retain_keys_clears_unlisted_fields() {
        let mut original = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}});
        let mut patch = json!({"type": "Recreate", "$retainKeys": ["type"]});
        let (o, p) = (
            original.as_object_mut().unwrap(),
            patch.as_object_mut().unwrap(),
        );
        apply_retain_keys(o, p).unwrap();
        assert_eq!(original, json!({"type": "RollingUpdate"}));
        assert_eq!(patch, json!({"type": "Recreate"}));
    }

    #[test]
    fn retain_keys_must_list_patched_fields() {
        let mut original = Map::new();
        let mut patch =
            json!({"type": "Recreate", "other": 1, "gone": null, "$retainKeys": ["type"]});
        let err = apply_retain_keys(&mut original, patch.as_object_mut().unwrap());
        assert_eq!(err, Err(StrategicPatchError::BadRetainKeysFormat));
        let mut patch = json!({"$retainKeys": "type"});
        let err = apply_retain_keys(&mut original, patch.as_object_mut().unwrap());
        assert_eq!(err, Err(StrategicPatchError::BadRetainKeysFormat));
    }
}
