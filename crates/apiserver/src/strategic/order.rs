//! Element order of merged lists (upstream's "preserve order in strategic merge patch").
//!
//! Patch elements come in patch order (or `$setElementOrder/<field>` order, which kubectl sends
//! with every changed merge list), and elements only the server has keep their relative order,
//! interleaved by their position in the live list. Without `$setElementOrder`, elements new to
//! the list land before the server-only elements that follow them, exactly as upstream does.

use serde_json::{Map, Value};

use super::directives::{self, SET_ELEMENT_ORDER};
use super::error::{Result, StrategicPatchError};
use super::list::{is_directive, merge_list_viewed, Merged};
use super::schema::{Field, Node};
use super::value::{
    canonical, expect_list, expect_map, merge_key_value, render_list, same, Positions,
};
use super::verbatim::{new_value, raw_value};

/// How list elements are identified: by merge-key value (lists of maps) or by value.
#[derive(Clone, Copy)]
pub(crate) enum Identity<'a> {
    MergeKey(&'a str),
    Value,
}

impl Identity<'_> {
    pub(crate) fn of(self, item: &Value) -> Result<Value> {
        match self {
            Identity::MergeKey(key) => merge_key_value(item, key).cloned(),
            Identity::Value => Ok(item.clone()),
        }
    }

    pub(crate) fn of_all(self, items: &[Value]) -> Result<Vec<Value>> {
        items.iter().map(|i| self.of(i)).collect()
    }

    fn equal(self, a: &Value, b: &Value) -> Result<bool> {
        Ok(same(&self.of(a)?, &self.of(b)?))
    }
}

/// A list element with its positions in the patch (or `$setElementOrder`) and live lists.
struct Placed {
    patch: Option<usize>,
    server: Option<usize>,
    item: Value,
}

/// Orders `merged`: elements named in `patch_order` in that order, the others in `server_order`
/// order, interleaved by their positions in `server_order`.
pub(crate) fn normalize(
    merged: Vec<Value>,
    identity: Identity,
    patch_order: &[Value],
    server_order: &[Value],
) -> Result<Vec<Value>> {
    let (in_patch, in_server) = (Positions::of(patch_order), Positions::of(server_order));
    let mut from_patch = Vec::new();
    let mut server_only = Vec::new();
    for item in merged {
        let id = canonical(&identity.of(&item)?);
        let placed = Placed {
            patch: in_patch.get(&id),
            server: in_server.get(&id),
            item,
        };
        match placed.patch {
            Some(_) => from_patch.push(placed),
            None => server_only.push(placed),
        }
    }
    // Stable sorts; elements missing from the order list go last.
    from_patch.sort_by_key(|p| p.patch.unwrap_or(usize::MAX));
    server_only.sort_by_key(|p| p.server.unwrap_or(usize::MAX));
    Ok(interleave(server_only, from_patch))
}

/// Upstream's `mergeSortedSlice`: a server-only element goes first only when both it and the next
/// patch element are in the live list and it was in front there.
fn interleave(server_only: Vec<Placed>, from_patch: Vec<Placed>) -> Vec<Value> {
    let mut out = Vec::with_capacity(server_only.len() + from_patch.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = from_patch.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => matches!((l.server, r.server), (Some(li), Some(ri)) if li < ri),
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next.map(|p| p.item));
    }
    out
}

/// Processes every `$setElementOrder/<field>` of `patch`: merges that field's patch list into the
/// original list and orders the result as the directive says. Both entries leave `patch`.
pub(crate) fn apply_set_element_order(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    node: Node,
) -> Result<()> {
    let keys: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
        .cloned()
        .collect();
    for key in keys {
        let order = expect_list(patch.remove(&key).unwrap_or_default())?;
        let Some(name) = directives::directive_target(&key, SET_ELEMENT_ORDER)? else {
            continue;
        };
        let field = node.field(name);
        // Taken in place, so the field keeps its position among the object's keys.
        let current = original.get_mut(name).map(Value::take);
        let current = current.map(expect_list).transpose()?;
        let patch_list = patch.remove(name).map(expect_list).transpose()?;
        if let Some(ordered) = ordered_list(current, patch_list, &order, &field)? {
            original.insert(name.to_string(), Value::Array(ordered));
        }
    }
    Ok(())
}

fn ordered_list(
    current: Option<Vec<Value>>,
    patch: Option<Vec<Value>>,
    order: &[Value],
    field: &Field,
) -> Result<Option<Vec<Value>>> {
    let identity = field.merge_key.map_or(Identity::Value, Identity::MergeKey);
    validate_order(patch.as_deref().unwrap_or_default(), order, identity)?;
    let no_elements = |list: &Option<Vec<Value>>| list.as_ref().is_none_or(Vec::is_empty);
    if (current.is_some() || patch.is_some()) && no_elements(&current) && no_elements(&patch) {
        // Upstream cannot tell the element type of two empty lists and fails the patch.
        return Err(StrategicPatchError::NoElements);
    }
    let live_order = identity.of_all(current.as_deref().unwrap_or_default())?;
    let Merged { items, server_view } = match (current, patch) {
        (None, None) => return Ok(None),
        (Some(current), None) => Merged {
            items: current,
            server_view: None,
        },
        (Some(current), Some(patch)) if field.strategy.merge => {
            merge_list_viewed(current, patch, field)?
        }
        // A list the live object lacks loses `$patch` elements; a non-merge list is taken as sent.
        (None, Some(patch)) => Merged {
            items: patch.into_iter().filter_map(new_value).collect(),
            server_view: None,
        },
        (Some(_), Some(patch)) => Merged {
            items: patch.into_iter().map(raw_value).collect(),
            server_view: None,
        },
    };
    let patch_order = identity.of_all(order)?;
    let server_order = server_view.unwrap_or(live_order);
    normalize(items, identity, &patch_order, &server_order).map(Some)
}

/// The patch list's elements (deletions and directives aside) must appear in the
/// `$setElementOrder` list, in the same relative order.
fn validate_order(patch: &[Value], order: &[Value], identity: Identity) -> Result<()> {
    if patch.is_empty() || order.is_empty() {
        return Ok(());
    }
    if let Identity::MergeKey(_) = identity {
        for item in patch {
            expect_map(item)?;
        }
    }
    let content: Vec<&Value> = patch.iter().filter(|i| !is_directive(i)).collect();
    let mut next = 0;
    for wanted in order {
        if next < content.len() && identity.equal(content[next], wanted)? {
            next += 1;
        }
    }
    if next < content.len() {
        return Err(StrategicPatchError::OrderMismatch {
            patch: render_list(patch),
            order: render_list(order),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names(items: &[Value]) -> Vec<Value> {
        items.iter().map(|i| i["name"].clone()).collect()
    }

    #[test]
    fn set_element_order_wins_and_server_only_items_interleave() {
        let merged: Vec<Value> = [1, 2, 3, 4].iter().map(|n| json!({"name": n})).collect();
        let got = normalize(
            merged,
            Identity::MergeKey("name"),
            &[json!(3), json!(1)],
            &[json!(1), json!(2), json!(4)],
        )
        .unwrap();
        assert_eq!(names(&got), vec![json!(3), json!(1), json!(2), json!(4)]);
    }

    #[test]
    fn mismatched_order_is_rejected() {
        let patch = [json!({"name": "b"}), json!({"name": "a"})];
        let order = [json!({"name": "a"}), json!({"name": "b"})];
        let err = validate_order(&patch, &order, Identity::MergeKey("name")).unwrap_err();
        assert!(matches!(err, StrategicPatchError::OrderMismatch { .. }));
        let patch = [
            json!({"name": "a", "$patch": "delete"}),
            json!({"name": "b"}),
        ];
        assert!(validate_order(&patch, &order, Identity::MergeKey("name")).is_ok());
    }
}
