//! Event validation (`ValidateEventCreate`): the legacy rules both APIs share, and the strict
//! ones events.k8s.io/v1 adds. events.k8s.io objects are checked in their core/v1 form, with
//! upstream's internal field names in the causes (`involvedObject`, `firstTimestamp`), which is
//! what upstream reports for both groups.

use super::errors::{invalid, quote, required};
use super::names::qualified_name;
use super::pod::name_errors;
use crate::kinds::events::convert_event;
use crate::kinds::json::{at, int_at, str_at};
use crate::kinds::Cause;
use serde_json::Value;

fn at_most(errs: &mut Vec<Cause>, field: &str, value: &str, limit: usize) {
    if value.len() > limit {
        errs.push(invalid(
            field,
            &quote(""),
            &format!("can have at most {limit} characters"),
        ));
    }
}

/// The rules of both groups, on a core-shaped Event; `controller_field` names the reporting
/// controller as the request's group does.
fn legacy(obj: &Value, controller_field: &str) -> Vec<Cause> {
    let mut errs = Vec::new();
    let ns = str_at(obj, "metadata.namespace");
    let involved_ns = str_at(obj, "involvedObject.namespace");
    let mismatch = || {
        invalid(
            "involvedObject.namespace",
            &quote(involved_ns),
            "does not match event.namespace",
        )
    };
    if str_at(obj, "eventTime").is_empty() {
        let agrees = if involved_ns.is_empty() {
            matches!(ns, "" | "default")
        } else {
            ns == involved_ns
        };
        if !agrees {
            errs.push(mismatch());
        }
        return errs;
    }
    if involved_ns.is_empty() && !matches!(ns, "default" | "kube-system") {
        errs.push(mismatch());
    }
    let controller = str_at(obj, "reportingComponent");
    if controller.is_empty() {
        errs.push(required(controller_field, ""));
    }
    name_errors(&mut errs, controller_field, controller, qualified_name);
    for (field, limit) in [("reportingInstance", 128), ("action", 128), ("reason", 128)] {
        let value = str_at(obj, field);
        if value.is_empty() {
            errs.push(required(field, ""));
        }
        at_most(&mut errs, field, value, limit);
    }
    at_most(&mut errs, "message", str_at(obj, "message"), 1024);
    errs
}

pub fn core_event(obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
    legacy(obj, "reportingComponent")
}

pub fn events_v1_event(obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
    let core = convert_event(obj, "");
    let mut errs = legacy(&core, "reportingController");
    if str_at(&core, "eventTime").is_empty() {
        errs.push(required("eventTime", ""));
    }
    let type_ = str_at(&core, "type");
    if !matches!(type_, "Normal" | "Warning") {
        errs.push(invalid(
            "type",
            &quote(""),
            &format!("has invalid value: {type_}"),
        ));
    }
    let unset = [
        ("firstTimestamp", !at(&core, "firstTimestamp").is_null()),
        ("lastTimestamp", !at(&core, "lastTimestamp").is_null()),
        ("count", int_at(&core, "count") != 0),
        (
            "source",
            !str_at(&core, "source.component").is_empty()
                || !str_at(&core, "source.host").is_empty(),
        ),
    ];
    errs.extend(
        unset
            .iter()
            .filter(|(_, set)| *set)
            .map(|(field, _)| invalid(field, &quote(""), "needs to be unset")),
    );
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::validation::fields_of as fields;
    use serde_json::json;

    #[test]
    fn legacy_events() {
        let ok = json!({"metadata": {"namespace": "default"}, "involvedObject": {"kind": "Pod", "namespace": "default"}});
        assert_eq!(core_event(&ok, None), []);
        let other = json!({"metadata": {"namespace": "a"}, "involvedObject": {"namespace": "b"}});
        assert_eq!(
            core_event(&other, None)[0].message,
            "Invalid value: \"b\": does not match event.namespace"
        );
        let timed = json!({"metadata": {"namespace": "a"}, "eventTime": "2024-01-01T00:00:00.000000Z", "involvedObject": {"namespace": "a"}});
        assert_eq!(
            fields(&core_event(&timed, None)),
            [
                // Upstream checks the qualified-name syntax even when the value is missing.
                "reportingComponent",
                "reportingComponent",
                "reportingComponent",
                "reportingInstance",
                "action",
                "reason"
            ]
        );
    }

    #[test]
    fn events_k8s_io() {
        let ok = json!({"metadata": {"namespace": "a"}, "eventTime": "2024-01-01T00:00:00.000000Z", "regarding": {"namespace": "a"},
            "reportingController": "example.com/ctl", "reportingInstance": "i", "action": "Do", "reason": "Why", "type": "Normal"});
        assert_eq!(events_v1_event(&ok, None), []);
        let bad = json!({"metadata": {"namespace": "a"}, "regarding": {"namespace": "a"}, "type": "Odd", "deprecatedCount": 2});
        assert_eq!(
            fields(&events_v1_event(&bad, None)),
            ["eventTime", "type", "count"]
        );
        assert_eq!(
            events_v1_event(&bad, None)[1].message,
            "Invalid value: \"\": has invalid value: Odd"
        );
    }
}
