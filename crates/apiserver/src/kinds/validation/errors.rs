//! Builders of upstream's field errors (`k8s.io/apimachinery/pkg/util/validation/field`), rendered
//! the way `Error.ErrorBody()` renders them into a `StatusCause`.

use crate::kinds::json::string_map;
use crate::kinds::Cause;
use serde_json::Value;

fn cause(reason: &str, field: &str, message: String) -> Cause {
    Cause {
        reason: reason.into(),
        message,
        field: field.into(),
    }
}

/// "Required value", with an optional detail.
pub fn required(field: &str, detail: &str) -> Cause {
    cause(
        "FieldValueRequired",
        field,
        with_detail("Required value".into(), detail),
    )
}

/// "Invalid value: <value>: <detail>"; `value` is already rendered (see `quote`, `go_value`).
pub fn invalid(field: &str, value: &str, detail: &str) -> Cause {
    cause(
        "FieldValueInvalid",
        field,
        with_detail(format!("Invalid value: {value}"), detail),
    )
}

/// `Duplicate value: "x"`.
pub fn duplicate(field: &str, value: &str) -> Cause {
    cause(
        "FieldValueDuplicate",
        field,
        format!("Duplicate value: {}", quote(value)),
    )
}

/// `Not found: "x"`.
pub fn not_found(field: &str, value: &str) -> Cause {
    cause(
        "FieldValueNotFound",
        field,
        format!("Not found: {}", quote(value)),
    )
}

/// `Unsupported value: "x": supported values: "a", "b"`.
pub fn not_supported(field: &str, value: &str, supported: &[&str]) -> Cause {
    let list = supported
        .iter()
        .map(|s| quote(s))
        .collect::<Vec<_>>()
        .join(", ");
    let detail = if list.is_empty() {
        String::new()
    } else {
        format!("supported values: {list}")
    };
    cause(
        "FieldValueNotSupported",
        field,
        with_detail(format!("Unsupported value: {}", quote(value)), &detail),
    )
}

/// "Forbidden: <detail>".
pub fn forbidden(field: &str, detail: &str) -> Cause {
    cause(
        "FieldValueForbidden",
        field,
        with_detail("Forbidden".into(), detail),
    )
}

/// "Too long: may not be more than N bytes".
pub fn too_long(field: &str, max: usize) -> Cause {
    cause(
        "FieldValueTooLong",
        field,
        format!("Too long: may not be more than {max} bytes"),
    )
}

fn with_detail(s: String, detail: &str) -> String {
    if detail.is_empty() {
        s
    } else {
        format!("{s}: {detail}")
    }
}

/// A string as Go's `%q` prints it.
pub fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// A JSON value roughly as Go prints the typed field upstream: strings quoted, numbers and
/// booleans bare, string maps as `map[string]string{"k":"v"}`, anything else as JSON.
pub fn go_value(v: &Value) -> String {
    match v {
        Value::String(s) => quote(s),
        Value::Null => "null".into(),
        Value::Object(m) if m.values().all(Value::is_string) => go_string_map(v),
        Value::Array(a) if a.iter().all(Value::is_string) => {
            format!(
                "[]string{{{}}}",
                a.iter().map(go_value).collect::<Vec<_>>().join(", ")
            )
        }
        other => other.to_string(),
    }
}

/// `map[string]string{"a":"1", "b":"2"}` (`map[string]string(nil)` when absent).
pub fn go_string_map(v: &Value) -> String {
    if !v.is_object() {
        return "map[string]string(nil)".into();
    }
    let pairs: Vec<String> = string_map(v)
        .iter()
        .map(|(k, v)| format!("{}:{}", quote(k), quote(v)))
        .collect();
    format!("map[string]string{{{}}}", pairs.join(", "))
}

/// A label selector as Go's `%#v` prints `*metav1.LabelSelector`.
pub fn go_selector(sel: &Value) -> String {
    use crate::kinds::json::{arr_at, str_at};
    let exprs = arr_at(sel, "matchExpressions");
    let exprs = if exprs.is_empty() {
        "[]v1.LabelSelectorRequirement(nil)".to_string()
    } else {
        let items: Vec<String> = exprs
            .iter()
            .map(|e| {
                let values: Vec<String> = arr_at(e, "values").iter().map(go_value).collect();
                let values = if values.is_empty() {
                    "[]string(nil)".into()
                } else {
                    format!("[]string{{{}}}", values.join(", "))
                };
                format!(
                    "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{values}}}",
                    quote(str_at(e, "key")),
                    quote(str_at(e, "operator"))
                )
            })
            .collect();
        format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
    };
    format!(
        "&v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{exprs}}}",
        go_string_map(&sel["matchLabels"])
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_like_error_body() {
        assert_eq!(required("spec.containers", "").message, "Required value");
        assert_eq!(
            required("metadata.name", "name or generateName is required").message,
            "Required value: name or generateName is required"
        );
        let c = invalid("metadata.name", &quote("Foo"), "bad");
        assert_eq!(
            (c.reason.as_str(), c.message.as_str(), c.field.as_str()),
            (
                "FieldValueInvalid",
                "Invalid value: \"Foo\": bad",
                "metadata.name"
            )
        );
        assert_eq!(duplicate("f", "x").message, "Duplicate value: \"x\"");
        assert_eq!(
            not_supported("spec.restartPolicy", "Sometimes", &["Always", "OnFailure", "Never"]).message,
            "Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""
        );
        assert_eq!(forbidden("f", "no").message, "Forbidden: no");
        assert_eq!(
            too_long("", 1_048_576).message,
            "Too long: may not be more than 1048576 bytes"
        );
        assert_eq!(not_found("f", "v").reason, "FieldValueNotFound");
    }

    #[test]
    fn go_renderings() {
        assert_eq!(go_value(&json!(5)), "5");
        assert_eq!(
            go_value(&json!(["/healthz", "/livez"])),
            "[]string{\"/healthz\", \"/livez\"}"
        );
        assert_eq!(
            go_value(&json!({"b": "2", "a": "1"})),
            "map[string]string{\"a\":\"1\", \"b\":\"2\"}"
        );
        assert_eq!(go_string_map(&json!(null)), "map[string]string(nil)");
        assert_eq!(
            go_selector(&json!({"matchLabels": {"app": "x"}})),
            "&v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"x\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}"
        );
    }
}
