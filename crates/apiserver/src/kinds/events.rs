//! Conversion between core/v1 Events and events.k8s.io/v1 Events. Upstream stores one object and
//! serves it through both APIs, so `kubectl get events` (core) also lists what the scheduler
//! reports through events.k8s.io; a registry keeping one store can convert on the way out.

use serde_json::{Map, Value};

/// (core/v1 field, events.k8s.io/v1 field) for every field whose name differs.
const RENAMED: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

/// `obj` (an Event of either group) as an Event of `to_group` ("" or "events.k8s.io"); fields
/// named alike (metadata, reason, type, action, eventTime, series, related, reportingInstance)
/// carry over unchanged. Anything that is not an object is returned as it is.
pub fn convert_event(obj: &Value, to_group: &str) -> Value {
    let Value::Object(map) = obj else {
        return obj.clone();
    };
    let to_events_v1 = to_group == "events.k8s.io";
    let rename = |key: &str| -> String {
        RENAMED
            .iter()
            .find_map(|(core, v1)| match to_events_v1 {
                true if key == *core => Some(v1.to_string()),
                false if key == *v1 => Some(core.to_string()),
                _ => None,
            })
            .unwrap_or_else(|| key.to_string())
    };
    let mut out: Map<String, Value> = map.iter().map(|(k, v)| (rename(k), v.clone())).collect();
    let api_version = if to_events_v1 {
        "events.k8s.io/v1"
    } else {
        "v1"
    };
    out.insert("apiVersion".into(), Value::from(api_version));
    out.insert("kind".into(), Value::from("Event"));
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_between_groups() {
        let v1 = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e", "namespace": "default"},
            "eventTime": "2024-01-01T00:00:00.000000Z", "reportingController": "default-scheduler", "reportingInstance": "s-1",
            "action": "Binding", "reason": "Scheduled", "type": "Normal", "regarding": {"kind": "Pod", "name": "web"}, "note": "assigned",
            "deprecatedCount": 2});
        let core = convert_event(&v1, "");
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(
            core["involvedObject"],
            json!({"kind": "Pod", "name": "web"})
        );
        assert_eq!(
            (
                core["message"].clone(),
                core["reportingComponent"].clone(),
                core["count"].clone()
            ),
            (json!("assigned"), json!("default-scheduler"), json!(2))
        );
        assert!(core.get("regarding").is_none());
        assert_eq!(convert_event(&core, "events.k8s.io"), v1);
        assert_eq!(convert_event(&json!(3), ""), json!(3));
    }
}
