//! Merging lists whose patch strategy is `merge` (upstream's `mergeSlice`): lists of maps merge
//! element-wise by the merge key, honouring `$patch: delete | replace` elements; lists of
//! primitives are unioned, and `$deleteFromPrimitiveList/<field>` removes values from them.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::directives::{Directive, PATCH};
use super::error::{Result, StrategicPatchError};
use super::map::merge_map;
use super::order::{self, Identity};
use super::schema::{Field, Node};
use super::value::{canonical, merge_key_value, render_list};
use super::verbatim::raw_value;

/// What a list holds; upstream requires one element type per list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Maps,
    Primitives,
}

/// A merged list, plus how upstream sees the live list afterwards when it orders the result by
/// `$setElementOrder` (see [`order`]); `None` means the live list as it was.
pub(crate) struct Merged {
    pub items: Vec<Value>,
    pub server_view: Option<Vec<Value>>,
}

/// Merges a patch list into an original list of a field with strategy `merge`.
pub(crate) fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    field: &Field,
) -> Result<Vec<Value>> {
    merge_list_viewed(original, patch, field).map(|m| m.items)
}

/// [`merge_list`], also returning upstream's view of the live list.
pub(crate) fn merge_list_viewed(
    original: Vec<Value>,
    patch: Vec<Value>,
    field: &Field,
) -> Result<Merged> {
    if original.is_empty() && patch.is_empty() {
        return Ok(Merged {
            items: original,
            server_view: None,
        });
    }
    match element_kind(&original, &patch)? {
        Kind::Maps => merge_maps_by_key(original, patch, field),
        Kind::Primitives => Ok(Merged {
            items: union_primitives(original, patch)?,
            server_view: None,
        }),
    }
}

/// The common element type of both lists; lists of lists and mixed lists are errors.
fn element_kind(original: &[Value], patch: &[Value]) -> Result<Kind> {
    let mut seen: Option<std::mem::Discriminant<Value>> = None;
    for item in original.iter().chain(patch) {
        if item.is_array() {
            return Err(StrategicPatchError::ListOfLists);
        }
        let d = std::mem::discriminant(item);
        if seen.is_some_and(|s| s != d) {
            return Err(StrategicPatchError::MixedListTypes(format!(
                "{} and {}",
                render_list(original),
                render_list(patch)
            )));
        }
        seen = Some(d);
    }
    Ok(if original.iter().chain(patch).any(Value::is_object) {
        Kind::Maps
    } else {
        Kind::Primitives
    })
}

/// Union of two primitive lists, keeping the patch's values in patch order among the original's.
fn union_primitives(original: Vec<Value>, patch: Vec<Value>) -> Result<Vec<Value>> {
    let mut seen = HashSet::new();
    let merged: Vec<Value> = original
        .iter()
        .chain(&patch)
        .filter(|item| seen.insert(canonical(item)))
        .cloned()
        .collect();
    order::normalize(merged, Identity::Value, &patch, &original)
}

fn merge_maps_by_key(original: Vec<Value>, patch: Vec<Value>, field: &Field) -> Result<Merged> {
    let key = field
        .merge_key
        .ok_or_else(|| StrategicPatchError::NoMergeKeyDeclared(field.name.to_string()))?;
    let identity = Identity::MergeKey(key);
    let (survivors, plain, deleted) = match apply_element_directives(original, patch, key)? {
        Elements::Merge {
            survivors,
            plain,
            deleted,
        } => (survivors, plain, deleted),
        Elements::Replace(plain) => {
            // Upstream still requires the merge key on every element of the new list.
            identity.of_all(&plain)?;
            return Ok(Merged {
                items: plain.into_iter().map(raw_value).collect(),
                server_view: None,
            });
        }
    };
    let server_order = identity.of_all(&survivors)?;
    let patch_order = identity.of_all(&plain)?;
    let server_view = server_view(&server_order, &patch_order, deleted);
    let merged = merge_by_key(survivors, plain, key, field.node)?;
    let items = order::normalize(merged, identity, &patch_order, &server_order)?;
    Ok(Merged {
        items,
        server_view: Some(server_view),
    })
}

/// Upstream deletes and appends in the live list's own backing array, so when it later orders by
/// `$setElementOrder` it sees the live list with deleted elements gone and the first appended
/// elements in their slots. That decides where server-only elements land (e.g. a sidecar after a
/// container that kubectl replaced), so krust reproduces the view: the survivors, then as many new
/// merge keys as elements were deleted.
fn server_view(survivors: &[Value], patch_keys: &[Value], deleted: usize) -> Vec<Value> {
    let mut view = survivors.to_vec();
    let mut present: HashSet<String> = survivors.iter().map(canonical).collect();
    for key in patch_keys {
        if view.len() - survivors.len() == deleted {
            break;
        }
        if present.insert(canonical(key)) {
            view.push(key.clone());
        }
    }
    view
}

/// A merge list's patch once its `$patch` elements are applied.
enum Elements {
    /// Merge the plain patch elements into the original elements that were not deleted.
    Merge {
        survivors: Vec<Value>,
        plain: Vec<Value>,
        deleted: usize,
    },
    /// `$patch: replace`: the plain patch elements are the whole list.
    Replace(Vec<Value>),
}

/// Applies `$patch` elements: `delete` removes every original element with that merge-key value,
/// `replace` discards the original list.
fn apply_element_directives(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    key: &str,
) -> Result<Elements> {
    let before = original.len();
    let mut plain = Vec::with_capacity(patch.len());
    let mut doomed = HashSet::new();
    let mut replace = false;
    for element in patch {
        match Directive::of_element(&element)? {
            None => plain.push(element),
            Some(Directive::Delete) => {
                doomed.insert(canonical(merge_key_value(&element, key)?));
            }
            Some(Directive::Replace) => replace = true,
            Some(Directive::Merge) => return Err(StrategicPatchError::MergeDirectiveInList),
        }
    }
    if replace {
        return Ok(Elements::Replace(plain));
    }
    original.retain(|o| !o.get(key).is_some_and(|v| doomed.contains(&canonical(v))));
    Ok(Elements::Merge {
        deleted: before - original.len(),
        survivors: original,
        plain,
    })
}

/// Merges each patch element into the original element with the same merge-key value, or appends
/// it.
fn merge_by_key(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    key: &str,
    node: Node,
) -> Result<Vec<Value>> {
    let mut index: HashMap<String, usize> = HashMap::with_capacity(original.len());
    for (i, o) in original.iter().enumerate() {
        if let Some(v) = o.get(key) {
            index.entry(canonical(v)).or_insert(i);
        }
    }
    for element in patch {
        let wanted = canonical(merge_key_value(&element, key)?);
        let Value::Object(element) = element else {
            continue;
        };
        match index.get(&wanted) {
            Some(&i) => {
                let Value::Object(current) = original[i].take() else {
                    continue;
                };
                original[i] = Value::Object(merge_map(current, element, node)?);
            }
            // A new element is appended as sent, as upstream does.
            None => {
                index.insert(wanted, original.len());
                original.push(raw_value(Value::Object(element)));
            }
        }
    }
    Ok(original)
}

/// `$deleteFromPrimitiveList/<field>: [values]` removes those values from a primitive list,
/// whatever the field's strategy; `null` removes the field, as upstream does. Deleting from an
/// absent list is a no-op (as current upstream; older versions added the values).
pub(crate) fn delete_from_primitive_list(
    original: &mut Map<String, Value>,
    field: &str,
    values: Value,
) -> Result<()> {
    let doomed = match values {
        Value::Null => {
            original.remove(field);
            return Ok(());
        }
        Value::Array(doomed) if doomed.iter().all(|v| !v.is_object() && !v.is_array()) => doomed,
        _ => return Err(StrategicPatchError::BadPrimitiveListFormat),
    };
    let doomed: HashSet<String> = doomed.iter().map(canonical).collect();
    if let Some(Value::Array(items)) = original.get_mut(field) {
        items.retain(|item| !doomed.contains(&canonical(item)));
    }
    Ok(())
}

/// Whether a list element is a `$patch` directive rather than content.
pub(crate) fn is_directive(element: &Value) -> bool {
    element.as_object().is_some_and(|m| m.contains_key(PATCH))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn merging_list(key: Option<&'static str>) -> Field<'static> {
        let mut field = Node::untyped().field("mergingList");
        field.strategy.merge = true;
        field.merge_key = key;
        field
    }

    fn merge(original: Value, patch: Value) -> Result<Value> {
        let (Value::Array(o), Value::Array(p)) = (original, patch) else {
            panic!("lists")
        };
        merge_list(o, p, &merging_list(Some("name"))).map(Value::Array)
    }

    #[test]
    fn primitives_are_unioned() {
        let got = merge(json!([1, 2]), json!([2, 3]));
        assert_eq!(got, Ok(json!([1, 2, 3])));
    }

    #[test]
    fn new_elements_go_before_server_only_ones_without_set_element_order() {
        let got = merge(
            json!([{"name": 1}, {"name": 2, "value": 2}]),
            json!([{"name": 3, "value": 3}]),
        );
        assert_eq!(
            got,
            Ok(json!([{"name": 3, "value": 3}, {"name": 1}, {"name": 2, "value": 2}]))
        );
    }

    #[test]
    fn delete_removes_all_duplicates() {
        let original =
            json!([{"name": 1}, {"name": 1}, {"name": 2, "value": "a"}, {"name": 3}, {"name": 3}]);
        let got = merge(
            original,
            json!([{"name": 1, "$patch": "delete"}, {"name": 3, "$patch": "delete"}]),
        );
        assert_eq!(got, Ok(json!([{"name": 2, "value": "a"}])));
    }

    #[test]
    fn replace_discards_the_original() {
        let got = merge(
            json!([{"name": 1}, {"name": 2}]),
            json!([{"$patch": "replace"}]),
        );
        assert_eq!(got, Ok(json!([])));
        let got = merge(
            json!([{"name": 1}]),
            json!([{"name": 2, "v": null}, {"$patch": "replace"}]),
        );
        assert_eq!(got, Ok(json!([{"name": 2}])));
    }

    #[test]
    fn malformed_lists_are_errors() {
        let err = merge(json!([{"name": 1}]), json!([{"$patch": "delete"}])).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"map: {"$patch":"delete"} does not contain declared merge key: name"#
        );
        assert_eq!(
            merge(json!([[1]]), json!([])),
            Err(StrategicPatchError::ListOfLists)
        );
        assert!(matches!(
            merge(json!([1]), json!(["a"])),
            Err(StrategicPatchError::MixedListTypes(_))
        ));
        assert_eq!(
            merge(json!([]), json!([{"name": 1, "$patch": "merge"}])),
            Err(StrategicPatchError::MergeDirectiveInList)
        );
        let field = merging_list(None);
        let err = merge_list(vec![json!({"a": 1})], vec![json!({"a": 2})], &field).unwrap_err();
        assert_eq!(
            err,
            StrategicPatchError::NoMergeKeyDeclared("mergingList".into())
        );
    }

    #[test]
    fn deletes_from_primitive_lists() {
        let mut original = json!({"finalizers": ["a", "b", "c"]});
        let map = original.as_object_mut().unwrap();
        delete_from_primitive_list(map, "finalizers", json!(["b"])).unwrap();
        delete_from_primitive_list(map, "absent", json!(["b"])).unwrap();
        assert_eq!(original, json!({"finalizers": ["a", "c"]}));
        let map = original.as_object_mut().unwrap();
        delete_from_primitive_list(map, "finalizers", Value::Null).unwrap();
        assert_eq!(original, json!({}));
        let mut map = Map::new();
        let err = delete_from_primitive_list(&mut map, "x", json!("b"));
        assert_eq!(err, Err(StrategicPatchError::BadPrimitiveListFormat));
    }
}
