//! Versions of one stored object. Objects are stored in one form per storage path; resources that
//! share storage (core/v1 and events.k8s.io/v1 Events, as upstream) see it through a field mapping.

use serde_json::{Map, Value};

use crate::resources::Resource;

/// events.k8s.io/v1 field ↔ core/v1 field.
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

fn is_events_group(res: &Resource) -> bool {
    res.group == "events.k8s.io"
}

fn rename(obj: &mut Value, pairs: impl Iterator<Item = (&'static str, &'static str)>) {
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    let mut renamed = Map::new();
    for (from, to) in pairs {
        if let Some(v) = map.remove(from) {
            renamed.insert(to.to_string(), v);
        }
    }
    map.extend(renamed);
}

/// The object as `res` presents it, with its kind and apiVersion set.
pub fn from_storage(res: &Resource, mut obj: Value) -> Value {
    if is_events_group(res) {
        rename(&mut obj, EVENT_FIELDS.iter().map(|(ev, core)| (*core, *ev)));
    }
    set_type(res, &mut obj);
    if let Some(custom) = &res.custom {
        custom.default_on_read(&mut obj);
    }
    obj
}

/// The object in its stored form.
pub fn to_storage(res: &Resource, mut obj: Value) -> Value {
    if is_events_group(res) {
        rename(&mut obj, EVENT_FIELDS.iter().copied());
        if let Some(m) = obj.as_object_mut() {
            m.insert("apiVersion".into(), "v1".into());
            m.insert("kind".into(), "Event".into());
        }
        return obj;
    }
    set_type(res, &mut obj);
    if let (Some(custom), Some(m)) = (&res.custom, obj.as_object_mut()) {
        // Conversion strategy None: every version stores as the storage version.
        m.insert(
            "apiVersion".into(),
            format!("{}/{}", res.group, custom.storage_version).into(),
        );
    }
    obj
}

pub fn set_type(res: &Resource, obj: &mut Value) {
    if let Some(m) = obj.as_object_mut() {
        // Keep apiVersion and kind first in output, as upstream's encoder writes them.
        let rest = std::mem::take(m);
        m.insert("kind".into(), res.kind.into());
        m.insert("apiVersion".into(), res.api_version().into());
        m.extend(
            rest.into_iter()
                .filter(|(k, _)| k != "kind" && k != "apiVersion"),
        );
    }
}

/// Items of a typed list carry no kind/apiVersion in upstream's JSON.
pub fn strip_type(obj: &mut Value) {
    if let Some(m) = obj.as_object_mut() {
        m.remove("kind");
        m.remove("apiVersion");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::find;
    use serde_json::json;

    #[test]
    fn events_round_trip() {
        let ev = find("events.k8s.io", "v1", "events").unwrap();
        let obj = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "note": "hi", "regarding": {"kind": "Pod"}});
        let stored = to_storage(ev, obj.clone());
        assert_eq!(stored["message"], "hi");
        assert_eq!(stored["apiVersion"], "v1");
        let back = from_storage(ev, stored);
        assert_eq!(back["note"], "hi");
        assert_eq!(back["apiVersion"], "events.k8s.io/v1");
    }
}
