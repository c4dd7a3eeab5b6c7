//! Renderings of label maps and label selectors shared by printer cells, as upstream's
//! `labels.FormatLabels` and `metav1.FormatLabelSelector` produce them.

use super::json::{arr_at, str_at, string_map};
use serde_json::Value;

/// `labels.Set.String()`: `k=v` pairs sorted by key, comma separated.
pub fn labels_string(map: &Value) -> String {
    string_map(map)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `labels.FormatLabels`: like `labels_string`, `<none>` when empty.
pub fn format_labels(map: &Value) -> String {
    none_if_empty(labels_string(map))
}

/// `metav1.LabelSelectorAsSelector(sel).String()`: requirements sorted by key; `None` when the
/// selector is malformed (unknown operator, In without values...).
pub fn selector_string(sel: &Value) -> Option<String> {
    let mut reqs: Vec<(String, String)> = string_map(&sel["matchLabels"])
        .into_iter()
        .map(|(k, v)| (k.to_string(), format!("{k}={v}")))
        .collect();
    for expr in arr_at(sel, "matchExpressions") {
        let key = str_at(expr, "key");
        let mut values: Vec<&str> = arr_at(expr, "values")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        values.sort_unstable();
        values.dedup();
        let list = values.join(",");
        let text = match str_at(expr, "operator") {
            "In" if !values.is_empty() => format!("{key} in ({list})"),
            "NotIn" if !values.is_empty() => format!("{key} notin ({list})"),
            "Exists" if values.is_empty() => key.to_string(),
            "DoesNotExist" if values.is_empty() => format!("!{key}"),
            _ => return None,
        };
        reqs.push((key.to_string(), text));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    Some(
        reqs.into_iter()
            .map(|(_, t)| t)
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// `metav1.FormatLabelSelector`: `<none>` for an empty or missing selector, `<error>` if malformed.
pub fn format_label_selector(sel: &Value) -> String {
    match selector_string(sel) {
        Some(s) => none_if_empty(s),
        None => "<error>".into(),
    }
}

/// `<none>` for an empty string, which is how upstream's printers show absent values.
pub fn none_if_empty(s: String) -> String {
    if s.is_empty() {
        "<none>".into()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn labels_are_sorted() {
        assert_eq!(format_labels(&json!({"b": "2", "a": "1"})), "a=1,b=2");
        assert_eq!(format_labels(&json!(null)), "<none>");
    }

    #[test]
    fn selectors_render_like_upstream() {
        let sel = json!({"matchLabels": {"app": "web"}, "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["b", "a"]},
            {"key": "env", "operator": "DoesNotExist"},
            {"key": "zone", "operator": "Exists"},
            {"key": "x", "operator": "NotIn", "values": ["1"]}
        ]});
        assert_eq!(
            format_label_selector(&sel),
            "app=web,!env,tier in (a,b),x notin (1),zone"
        );
        assert_eq!(format_label_selector(&json!({})), "<none>");
        assert_eq!(
            format_label_selector(&json!({"matchExpressions": [{"key": "a", "operator": "Bad"}]})),
            "<error>"
        );
    }
}
