//! Cases ported from upstream's `strategicpatch/patch_test.go`, run against the same test type
//! upstream uses (`MergeItem`, whose fields cover every strategy), so the expected results carry
//! over exactly, element order included. Each case applies a patch (upstream's `twoWay` to
//! `original`, or `threeWay` to `current`) and expects upstream's result.

use std::sync::OnceLock;

use serde_json::{json, Value};

use super::error::StrategicPatchError;
use super::map::merge_map;
use super::schema::Schema;

/// Upstream's `MergeItem` and `RetainKeysMergeItem` test structs as patch metadata.
const MERGE_ITEM: &str = r#"{
  "kinds": {"test/v1/MergeItem": "MergeItem"},
  "definitions": {
    "MergeItem": {
      "mergingList": {"type": "MergeItem", "strategy": "merge", "key": "name"},
      "nonMergingList": {"type": "MergeItem"},
      "mergingIntList": {"strategy": "merge"},
      "mergeItemPtr": {"type": "MergeItem", "strategy": "merge", "key": "name"},
      "replacingItem": {"strategy": "replace"},
      "retainKeysMap": {"type": "RetainKeysMergeItem", "strategy": "retainKeys"},
      "retainKeysMergingList": {"type": "MergeItem", "strategy": "merge,retainKeys", "key": "name"}
    },
    "RetainKeysMergeItem": {
      "mergingIntList": {"strategy": "merge"},
      "mergingList": {"type": "MergeItem", "strategy": "merge", "key": "name"},
      "nonMergingList": {"type": "MergeItem"}
    }
  }
}"#;

fn apply(original: &Value, patch: &Value) -> Result<Value, StrategicPatchError> {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    let schema = SCHEMA.get_or_init(|| Schema::parse(MERGE_ITEM, &[]).expect("test table"));
    let root = schema.kind(("test", "v1", "MergeItem")).expect("root");
    let (Some(o), Some(p)) = (original.as_object(), patch.as_object()) else {
        return Err(StrategicPatchError::BadJsonDoc);
    };
    merge_map(o.clone(), p.clone(), root).map(Value::Object)
}

/// Runs `(description, original, patch, expected)` cases.
fn check(cases: &[(&str, Value, Value, Value)]) {
    for (description, original, patch, expected) in cases {
        match apply(original, patch) {
            Ok(got) => assert_eq!(&got, expected, "{description}"),
            Err(e) => panic!("{description}: {e}"),
        }
    }
}

fn names(ns: &[i64]) -> Value {
    ns.iter().map(|n| json!({"name": n})).collect()
}

#[test]
fn custom_cases() {
    check(&[
        (
            "unique scalars when merging lists",
            json!({"mergingIntList": [1, 2]}),
            json!({"mergingIntList": [2, 3]}),
            json!({"mergingIntList": [1, 2, 3]}),
        ),
        (
            "delete map from nested map",
            json!({"simpleMap": {"key1": 1, "key2": 1}}),
            json!({"simpleMap": {"$patch": "delete"}}),
            json!({"simpleMap": {}}),
        ),
        (
            "delete all items from merging list",
            json!({"mergingList": names(&[1, 2])}),
            json!({"mergingList": [{"$patch": "replace"}]}),
            json!({"mergingList": []}),
        ),
        (
            "retainKeys map can add a field when no retainKeys directive present",
            json!({"retainKeysMap": {"name": "foo"}}),
            json!({"retainKeysMap": {"value": "bar"}}),
            json!({"retainKeysMap": {"name": "foo", "value": "bar"}}),
        ),
        (
            "retainKeys map can delete a field when no retainKeys directive present",
            json!({"retainKeysMap": {"name": "foo", "value": "a"}}),
            json!({"retainKeysMap": {"value": null}}),
            json!({"retainKeysMap": {"name": "foo"}}),
        ),
        (
            "retainKeys map merge an empty map",
            json!({"retainKeysMap": {"name": "foo", "value": "a"}}),
            json!({"retainKeysMap": {}}),
            json!({"retainKeysMap": {"name": "foo", "value": "a"}}),
        ),
        (
            "retainKeys list can change a field when no retainKeys directive present",
            json!({"retainKeysMergingList": [{"name": "bar"}, {"name": "foo", "value": "a"}]}),
            json!({"retainKeysMergingList": [{"name": "foo", "value": "b"}]}),
            json!({"retainKeysMergingList": [{"name": "bar"}, {"name": "foo", "value": "b"}]}),
        ),
        (
            "preserve the order from the patch in a merging list",
            json!({"mergingList": [{"name": 1}, {"name": 2, "value": "b"}, {"name": 3}]}),
            json!({"mergingList": [{"name": 3, "value": "c"}, {"name": 1, "value": "a"}, {"name": 2, "other": "x"}]}),
            json!({"mergingList": [{"name": 3, "value": "c"}, {"name": 1, "value": "a"}, {"name": 2, "value": "b", "other": "x"}]}),
        ),
        (
            "preserve the order from the patch in a merging list 2",
            json!({"mergingList": [{"name": 1}, {"name": 2, "value": "b"}, {"name": 3}]}),
            json!({"mergingList": [{"name": 3, "value": "c"}, {"name": 1, "value": "a"}]}),
            json!({"mergingList": [{"name": 2, "value": "b"}, {"name": 3, "value": "c"}, {"name": 1, "value": "a"}]}),
        ),
        (
            "preserve the order from the patch in a merging int list",
            json!({"mergingIntList": [1, 2, 3]}),
            json!({"mergingIntList": [3, 1, 2]}),
            json!({"mergingIntList": [3, 1, 2]}),
        ),
        (
            "preserve the order from the patch in a merging int list, server-only first",
            json!({"mergingIntList": [1, 2, 3]}),
            json!({"mergingIntList": [3, 1]}),
            json!({"mergingIntList": [2, 3, 1]}),
        ),
        (
            "$setElementOrder contains item that is not present in the list to be merged",
            json!({"mergingList": names(&[1, 3])}),
            json!({"$setElementOrder/mergingList": names(&[3, 2, 1]),
                   "mergingList": [{"name": 3, "value": 3}, {"name": 1, "value": 1}]}),
            json!({"mergingList": [{"name": 3, "value": 3}, {"name": 1, "value": 1}]}),
        ),
        (
            "$setElementOrder contains item that is not present in the int list to be merged",
            json!({"mergingIntList": [1, 3]}),
            json!({"$setElementOrder/mergingIntList": [3, 2, 1]}),
            json!({"mergingIntList": [3, 1]}),
        ),
    ]);
}

#[test]
fn custom_error_cases() {
    let order_mismatch = apply(
        &json!({"mergingList": names(&[1, 3, 2])}),
        &json!({"$setElementOrder/mergingList": names(&[1, 2, 3]),
                "mergingList": [{"name": 3, "value": 3}, {"name": 1, "value": 1}]}),
    );
    assert!(order_mismatch
        .unwrap_err()
        .to_string()
        .contains("doesn't match"));
    let int_mismatch = apply(
        &json!({"mergingIntList": [1, 3, 2]}),
        &json!({"$setElementOrder/mergingIntList": [1, 2, 3], "mergingIntList": [3, 1]}),
    );
    assert!(int_mismatch
        .unwrap_err()
        .to_string()
        .contains("doesn't match"));
    let no_key = apply(
        &json!({"mergingList": [{"name": 1, "value": "a"}]}),
        &json!({"mergingList": [{"value": "b"}]}),
    );
    assert!(no_key
        .unwrap_err()
        .to_string()
        .contains("does not contain declared merge key"));
}

#[test]
fn three_way_results() {
    check(&[
        (
            "add field and delete all fields from map with conflict",
            json!({"name": 1, "value": 1, "other": "b"}),
            json!({"name": null, "value": null, "other": "a"}),
            json!({"other": "a"}),
        ),
        (
            "replace list of scalars with conflict",
            json!({"nonMergingIntList": [1, 4]}),
            json!({"nonMergingIntList": [2, 3]}),
            json!({"nonMergingIntList": [2, 3]}),
        ),
        (
            "delete all maps from merging list with conflict",
            json!({"mergingList": [{"name": 1, "other": "a"}, {"name": 2, "other": "b"}]}),
            json!({"mergingList": [{"name": 1, "$patch": "delete"}, {"name": 2, "$patch": "delete"}]}),
            json!({"mergingList": []}),
        ),
        (
            "delete all maps from empty merging list",
            json!({"mergingList": []}),
            json!({"mergingList": [{"name": 1, "$patch": "delete"}, {"name": 2, "$patch": "delete"}]}),
            json!({"mergingList": []}),
        ),
        (
            "defined null values should propagate overwrite current fields (with conflict)",
            json!({"name": "a", "other": "a"}),
            json!({"name": 1, "value": 1, "other": null}),
            json!({"name": 1, "value": 1}),
        ),
        (
            "retainKeys map with no change should not be present",
            json!({"name": "a", "other": "c", "retainKeysMap": {"name": "foo"}}),
            json!({"value": "b"}),
            json!({"name": "a", "value": "b", "other": "c", "retainKeysMap": {"name": "foo"}}),
        ),
        (
            "delete items in lists of scalars",
            json!({"mergingIntList": [1, 2, 3, 4]}),
            json!({"$setElementOrder/mergingIntList": [1, 2], "$deleteFromPrimitiveList/mergingIntList": [3]}),
            json!({"mergingIntList": [1, 2, 4]}),
        ),
        (
            "delete all duplicate items in lists of scalars",
            json!({"mergingIntList": [1, 2, 3, 3, 4]}),
            json!({"$setElementOrder/mergingIntList": [1, 2], "$deleteFromPrimitiveList/mergingIntList": [3]}),
            json!({"mergingIntList": [1, 2, 4]}),
        ),
        (
            "add and delete items in lists of scalars (two-way)",
            json!({"mergingIntList": [1, 2, 3]}),
            json!({"$setElementOrder/mergingIntList": [1, 2, 4],
                   "$deleteFromPrimitiveList/mergingIntList": [3], "mergingIntList": [4]}),
            json!({"mergingIntList": [1, 2, 4]}),
        ),
        (
            "merge lists of maps",
            json!({"mergingList": [{"name": 1, "other": "a"}, {"name": 2, "value": 2, "other": "b"}]}),
            json!({"$setElementOrder/mergingList": names(&[4, 1, 2, 3]),
                   "mergingList": [{"name": 4, "value": 4}, {"name": 3, "value": 3}]}),
            json!({"mergingList": [{"name": 4, "value": 4}, {"name": 1, "other": "a"},
                                   {"name": 2, "value": 2, "other": "b"}, {"name": 3, "value": 3}]}),
        ),
        (
            "add field to map in merging list with conflict",
            json!({"mergingList": [{"name": 1, "other": "a"}, {"name": 3, "value": 2, "other": "b"}]}),
            json!({"$setElementOrder/mergingList": names(&[1, 2]),
                   "mergingList": [{"name": 1, "value": 1}, {"name": 2, "value": 2}]}),
            json!({"mergingList": [{"name": 1, "value": 1, "other": "a"}, {"name": 2, "value": 2},
                                   {"name": 3, "value": 2, "other": "b"}]}),
        ),
        (
            "add map and delete map from merging list with conflict",
            json!({"mergingList": [{"name": 1, "other": "a"}, {"name": 4, "other": "c"}]}),
            json!({"$setElementOrder/mergingList": names(&[2, 3]),
                   "mergingList": [{"name": 2}, {"name": 3}, {"name": 1, "$patch": "delete"}]}),
            json!({"mergingList": [{"name": 4, "other": "c"}, {"name": 2}, {"name": 3}]}),
        ),
        (
            "replace non merging list nested in merging list with deletion conflict",
            json!({"mergingList": [{"name": 1, "other": "a", "nonMergingList": [{"name": 2, "value": 2}]},
                                   {"name": 2, "other": "b"}]}),
            json!({"$setElementOrder/mergingList": names(&[1, 2]),
                   "mergingList": [{"name": 1, "nonMergingList": [{"name": 1, "value": 1}]}]}),
            json!({"mergingList": [{"name": 1, "other": "a", "nonMergingList": [{"name": 1, "value": 1}]},
                                   {"name": 2, "other": "b"}]}),
        ),
        (
            "add field to map in merging list nested in merging list with deletion conflict",
            json!({"mergingList": [{"name": 1, "other": "a", "mergingList": [{"name": 2, "value": 2, "other": "d"}]},
                                   {"name": 2, "other": "b"}]}),
            json!({"$setElementOrder/mergingList": names(&[1, 2]),
                   "mergingList": [{"$setElementOrder/mergingList": names(&[2, 1]), "name": 1,
                                    "mergingList": [{"name": 1, "value": 1}]}]}),
            json!({"mergingList": [{"name": 1, "other": "a", "mergingList": [
                                       {"name": 2, "value": 2, "other": "d"}, {"name": 1, "value": 1}]},
                                   {"name": 2, "other": "b"}]}),
        ),
        (
            "add map to merging list by pointer",
            json!({"mergeItemPtr": [{"name": 1, "other": "a"}, {"name": 3}]}),
            json!({"$setElementOrder/mergeItemPtr": names(&[1, 2]), "mergeItemPtr": [{"name": 2}]}),
            json!({"mergeItemPtr": [{"name": 1, "other": "a"}, {"name": 2}, {"name": 3}]}),
        ),
        (
            "add map to merging list by pointer with conflict",
            json!({"mergeItemPtr": [{"name": 3}]}),
            json!({"$setElementOrder/mergeItemPtr": names(&[1, 2]), "mergeItemPtr": names(&[1, 2])}),
            json!({"mergeItemPtr": names(&[1, 2, 3])}),
        ),
        (
            "nested patch merge with empty list",
            json!({"name": "hi", "mergingList": [{"name": "hello2"}]}),
            json!({"$setElementOrder/mergingList": [{"name": "hello"}, {"name": "doesntexist"}],
                   "mergingList": [{"name": "hello"}]}),
            json!({"name": "hi", "mergingList": [{"name": "hello"}, {"name": "hello2"}]}),
        ),
        (
            "nested patch merge with empty list (two-way, delete of a missing element)",
            json!({"name": "hi"}),
            json!({"mergingList": [{"name": "hello"}, {"$patch": "delete", "name": "doesntexist"}]}),
            json!({"name": "hi", "mergingList": [{"name": "hello"}]}),
        ),
        (
            "behavior of set element order for a merging list with duplicate",
            json!({"mergingList": [{"name": 1}, {"name": 2, "value": "dup1"}, {"name": 3},
                                   {"name": 2, "value": "dup2"}, {"name": 4}]}),
            json!({"$setElementOrder/mergingList": names(&[2, 1, 4, 3, 2])}),
            json!({"mergingList": [{"name": 2, "value": "dup1"}, {"name": 2, "value": "dup2"},
                                   {"name": 1}, {"name": 4}, {"name": 3}]}),
        ),
        (
            "delete and reorder in one list, reorder in another",
            json!({"mergingList": [{"name": "a", "value": "a"}, {"name": "b", "value": "b"}],
                   "mergeItemPtr": [{"name": "c", "value": "c"}, {"name": "d", "value": "d"}]}),
            json!({"$setElementOrder/mergingList": [{"name": "b"}],
                   "$setElementOrder/mergeItemPtr": [{"name": "d"}, {"name": "c"}],
                   "mergingList": [{"$patch": "delete", "name": "a"}]}),
            json!({"mergingList": [{"name": "b", "value": "b"}],
                   "mergeItemPtr": [{"name": "d", "value": "d"}, {"name": "c", "value": "c"}]}),
        ),
    ]);
}

#[test]
fn retain_keys_cases() {
    check(&[
        (
            "retainKeys map keeps a listed nested merging list",
            json!({"retainKeysMap": {"name": "foo", "mergingList": names(&[1, 2])}}),
            json!({"retainKeysMap": {"$retainKeys": ["mergingList", "name", "value"], "value": "bar"}}),
            json!({"retainKeysMap": {"name": "foo", "value": "bar", "mergingList": names(&[1, 2])}}),
        ),
        (
            "retainKeys map clears fields not listed",
            json!({"retainKeysMap": {"name": "foo", "value": "a", "other": "x"}}),
            json!({"retainKeysMap": {"$retainKeys": ["name", "simpleMap"], "simpleMap": {"k": "v"}}}),
            json!({"retainKeysMap": {"name": "foo", "simpleMap": {"k": "v"}}}),
        ),
        (
            "retainKeys list of maps adds a field",
            json!({"retainKeysMergingList": [{"name": "bar"}, {"name": "foo"}]}),
            json!({"$setElementOrder/retainKeysMergingList": [{"name": "bar"}, {"name": "foo"}],
                   "retainKeysMergingList": [{"$retainKeys": ["name", "value"], "name": "foo", "value": "a"}]}),
            json!({"retainKeysMergingList": [{"name": "bar"}, {"name": "foo", "value": "a"}]}),
        ),
        (
            "retainKeys list of maps deletes a field and clear a field",
            json!({"retainKeysMergingList": [{"name": "bar"}, {"name": "foo", "value": "a", "other": "x"}]}),
            json!({"$setElementOrder/retainKeysMergingList": [{"name": "bar"}, {"name": "foo"}],
                   "retainKeysMergingList": [{"$retainKeys": ["name"], "name": "foo", "value": null}]}),
            json!({"retainKeysMergingList": [{"name": "bar"}, {"name": "foo"}]}),
        ),
    ]);
    let unlisted = apply(
        &json!({"retainKeysMap": {"name": "foo"}}),
        &json!({"retainKeysMap": {"$retainKeys": ["name"], "value": "bar"}}),
    );
    assert_eq!(unlisted, Err(StrategicPatchError::BadRetainKeysFormat));
}

#[test]
fn replace_strategy_replaces_maps() {
    check(&[(
        "replacingItem is replaced, not merged",
        json!({"replacingItem": {"Some": "Generic", "Yaml": "Inside", "Field": "Period"}}),
        json!({"replacingItem": {"Newly": "Modified", "Yaml": "Inside"}}),
        json!({"replacingItem": {"Newly": "Modified", "Yaml": "Inside"}}),
    )]);
}
