//! Merging a patch map into an original map (upstream's `mergeMap`): `$patch` on the map itself,
//! `$retainKeys`, `$setElementOrder`, `$deleteFromPrimitiveList`, `null` deleting a field, and
//! recursion into nested maps and lists by the field's patch strategy.

use serde_json::{Map, Value};

use super::directives::{self, Directive, DELETE_FROM_PRIMITIVE_LIST, PATCH};
use super::error::{Result, StrategicPatchError};
use super::list;
use super::order;
use super::schema::{Field, Node};
use super::value::render_map;
use super::verbatim::{new_value, raw_map, raw_value};

/// Merges `patch` into `original`, both objects of type `node`.
pub(crate) fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    node: Node,
) -> Result<Map<String, Value>> {
    if let Some(directive) = patch.remove(PATCH) {
        return map_directive(&directive, patch);
    }
    directives::apply_retain_keys(&mut original, &mut patch)?;
    order::apply_set_element_order(&mut original, &mut patch, node)?;
    for (key, value) in patch {
        match directives::directive_target(&key, DELETE_FROM_PRIMITIVE_LIST)? {
            Some(field) => list::delete_from_primitive_list(&mut original, field, value)?,
            None => merge_field(&mut original, &key, value, node)?,
        }
    }
    Ok(original)
}

/// `$patch` on a map: `replace` makes the patch (minus the directive) the whole value, `delete`
/// empties it. Upstream rejects `merge` here too; it only means something for whole lists.
fn map_directive(directive: &Value, patch: Map<String, Value>) -> Result<Map<String, Value>> {
    match Directive::parse(directive, &patch)? {
        Directive::Replace => Ok(raw_map(patch)),
        Directive::Delete => Ok(Map::new()),
        Directive::Merge => Err(StrategicPatchError::BadPatchType {
            directive: "merge".to_string(),
            map: render_map(&patch),
        }),
    }
}

fn merge_field(
    original: &mut Map<String, Value>,
    key: &str,
    value: Value,
    node: Node,
) -> Result<()> {
    if value.is_null() {
        original.remove(key);
        return Ok(());
    }
    let field = node.field(key);
    let current = original.get_mut(key).map(Value::take);
    match merge_value(current, value, &field)? {
        Some(merged) => original.insert(key.to_string(), merged),
        None => original.remove(key),
    };
    Ok(())
}

/// Merges a field's patch value into its current value: maps recurse unless the field's strategy
/// is `replace`, lists merge only with strategy `merge`; otherwise the patch value is taken
/// (`None`: the field goes away, as for a new value that is only a `$patch` directive).
fn merge_value(current: Option<Value>, patch: Value, field: &Field) -> Result<Option<Value>> {
    let merged = match (current, patch) {
        (Some(Value::Object(_)), Value::Object(p)) if field.strategy.replace => {
            Value::Object(raw_map(p))
        }
        (Some(Value::Object(o)), Value::Object(p)) => Value::Object(merge_map(o, p, field.node)?),
        (Some(Value::Array(o)), Value::Array(p)) if field.strategy.merge => {
            Value::Array(list::merge_list(o, p, field)?)
        }
        (Some(Value::Array(_)), Value::Array(p)) => raw_value(Value::Array(p)),
        (_, patch) => return Ok(new_value(patch)),
    };
    Ok(Some(merged))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn merge(original: Value, patch: Value) -> Result<Value> {
        let (Value::Object(o), Value::Object(p)) = (original, patch) else {
            panic!("objects")
        };
        merge_map(o, p, Node::untyped()).map(Value::Object)
    }

    #[test]
    fn null_deletes_and_maps_recurse() {
        let got = merge(
            json!({"a": 1, "m": {"x": 1, "y": 2}}),
            json!({"a": null, "m": {"y": null, "z": 3}}),
        );
        assert_eq!(got, Ok(json!({"m": {"x": 1, "z": 3}})));
    }

    #[test]
    fn replace_and_delete_directives_on_maps() {
        let original = json!({"m": {"x": 1, "y": 2}});
        assert_eq!(
            merge(original.clone(), json!({"m": {"$patch": "delete"}})),
            Ok(json!({"m": {}}))
        );
        let got = merge(
            original.clone(),
            json!({"m": {"$patch": "replace", "z": 1}}),
        );
        assert_eq!(got, Ok(json!({"m": {"z": 1}})));
        assert_eq!(merge(original, json!({"$patch": "replace"})), Ok(json!({})));
    }

    #[test]
    fn merge_directive_on_a_map_is_rejected() {
        let err = merge(json!({"m": {}}), json!({"m": {"$patch": "merge"}})).unwrap_err();
        assert!(
            err.to_string().starts_with("unknown patch type: merge"),
            "{err}"
        );
    }

    #[test]
    fn new_values_drop_nulls_and_directive_maps() {
        let got = merge(
            json!({}),
            json!({"m": {"a": null, "b": {"$patch": "replace", "c": 1}}}),
        );
        assert_eq!(got, Ok(json!({"m": {}})));
    }

    #[test]
    fn untyped_lists_and_type_changes_are_replaced() {
        let got = merge(
            json!({"l": [1, 2], "s": "x"}),
            json!({"l": [3], "s": {"k": 1}}),
        );
        assert_eq!(got, Ok(json!({"l": [3], "s": {"k": 1}})));
    }
}
