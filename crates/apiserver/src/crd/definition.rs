//! The CustomResourceDefinition object itself: upstream's defaults and validation
//! (`apiextensions/validation.ValidateCustomResourceDefinition`): names, group, scope, versions
//! with exactly one storage version, structural schemas, subresources and printer columns.

use serde_json::{json, Value};

use crate::kinds::names::{dns1035_label, dns1123_subdomain};
use crate::kinds::Cause;
use crate::status::cause;

/// Upstream's v1 defaults, plus what its strategy keeps in status (the stored versions).
pub fn apply_defaults(crd: &mut Value) {
    let names = &mut crd["spec"]["names"];
    if let Some(kind) = names["kind"].as_str().map(String::from) {
        if names["singular"].as_str().is_none_or(str::is_empty) {
            names["singular"] = json!(kind.to_lowercase());
        }
        if names["listKind"].as_str().is_none_or(str::is_empty) {
            names["listKind"] = json!(format!("{kind}List"));
        }
    }
    if crd["spec"]["conversion"].is_null() {
        crd["spec"]["conversion"] = json!({"strategy": "None"});
    }
    if crd["status"].is_null() {
        crd["status"] = json!({"acceptedNames": {"kind": "", "plural": ""}, "conditions": [], "storedVersions": []});
    }
    if let Some(storage) = super::storage_version(crd).map(String::from) {
        let stored = &mut crd["status"]["storedVersions"];
        if !stored.is_array() {
            *stored = json!([]);
        }
        if let Some(list) = stored.as_array_mut() {
            if !list.iter().any(|v| v == storage.as_str()) {
                list.push(json!(storage));
            }
        }
    }
}

fn required(field: &str) -> Cause {
    cause("FieldValueRequired", field, "Required value".into())
}

fn required_because(field: &str, detail: &str) -> Cause {
    cause(
        "FieldValueRequired",
        field,
        format!("Required value: {detail}"),
    )
}

fn invalid(field: &str, value: &str, detail: &str) -> Cause {
    cause(
        "FieldValueInvalid",
        field,
        format!("Invalid value: {value}: {detail}"),
    )
}

fn forbidden(field: &str, detail: &str) -> Cause {
    cause("FieldValueForbidden", field, format!("Forbidden: {detail}"))
}

fn not_supported(field: &str, value: &str, supported: &[&str]) -> Cause {
    let list: Vec<String> = supported.iter().map(|s| format!("\"{s}\"")).collect();
    cause(
        "FieldValueNotSupported",
        field,
        format!(
            "Unsupported value: {}: supported values: {}",
            quote(value),
            list.join(", ")
        ),
    )
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// Validates a CRD (after defaulting); `old` is the stored CRD on update.
pub fn validate(crd: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut out = Vec::new();
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or("");
    let plural = spec["names"]["plural"].as_str().unwrap_or("");
    let name = crd["metadata"]["name"].as_str().unwrap_or("");
    if !name.is_empty() && name != format!("{plural}.{group}") {
        out.push(invalid(
            "metadata.name",
            &quote(name),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    if group.is_empty() {
        out.push(required("spec.group"));
    } else {
        let errs = dns1123_subdomain(group);
        if !errs.is_empty() {
            out.push(invalid("spec.group", &quote(group), &errs.join(",")));
        }
        if group.split('.').count() < 2 {
            out.push(invalid(
                "spec.group",
                &quote(group),
                "should be a domain with at least one dot",
            ));
        }
    }
    match spec["scope"].as_str() {
        None | Some("") => out.push(required("spec.scope")),
        Some("Cluster" | "Namespaced") => {}
        Some(other) => out.push(not_supported(
            "spec.scope",
            other,
            &["Cluster", "Namespaced"],
        )),
    }
    names(&spec["names"], "spec.names", &mut out);
    versions(spec, &mut out);
    if let Some(old) = old {
        for field in ["scope", "group"] {
            if old["spec"][field] != spec[field] && !old["spec"][field].is_null() {
                let v = spec[field].as_str().unwrap_or("");
                out.push(invalid(
                    &format!("spec.{field}"),
                    &quote(v),
                    "field is immutable",
                ));
            }
        }
    }
    if let Some(conv) = spec["conversion"]["strategy"].as_str() {
        if !matches!(conv, "None" | "Webhook") {
            out.push(not_supported(
                "spec.conversion.strategy",
                conv,
                &["None", "Webhook"],
            ));
        }
    }
    out
}

fn names(names: &Value, path: &str, out: &mut Vec<Cause>) {
    for field in ["plural", "singular"] {
        match names[field].as_str() {
            None | Some("") => out.push(required(&format!("{path}.{field}"))),
            Some(v) => {
                let errs = dns1035_label(v);
                if !errs.is_empty() {
                    out.push(invalid(
                        &format!("{path}.{field}"),
                        &quote(v),
                        &errs.join(","),
                    ));
                }
            }
        }
    }
    for field in ["kind", "listKind"] {
        match names[field].as_str() {
            None | Some("") => out.push(required(&format!("{path}.{field}"))),
            Some(v) => {
                let errs = dns1035_label(&v.to_lowercase());
                if !errs.is_empty() {
                    out.push(invalid(
                        &format!("{path}.{field}"),
                        &quote(v),
                        &format!(
                            "may have mixed case, but should otherwise match: {}",
                            errs.join(",")
                        ),
                    ));
                }
            }
        }
    }
    if let (Some(k), Some(l)) = (names["kind"].as_str(), names["listKind"].as_str()) {
        if !k.is_empty() && k == l {
            out.push(invalid(
                &format!("{path}.listKind"),
                &quote(l),
                "kind and listKind may not be the same",
            ));
        }
    }
    for field in ["shortNames", "categories"] {
        for (i, v) in names[field].as_array().into_iter().flatten().enumerate() {
            let s = v.as_str().unwrap_or("");
            let errs = dns1035_label(s);
            if !errs.is_empty() {
                out.push(invalid(
                    &format!("{path}.{field}[{i}]"),
                    &quote(s),
                    &errs.join(","),
                ));
            }
        }
    }
}

/// Go's rendering of the versions slice in a field error, shortened to the names.
fn versions_value(spec: &Value) -> String {
    let names: Vec<String> = spec["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| format!("{{Name:{}}}", quote(v["name"].as_str().unwrap_or(""))))
        .collect();
    format!(
        "[]apiextensions.CustomResourceDefinitionVersion{{{}}}",
        names.join(", ")
    )
}

fn versions(spec: &Value, out: &mut Vec<Cause>) {
    let list = spec["versions"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        out.push(required_because(
            "spec.versions",
            "must have exactly one version marked as storage version",
        ));
        return;
    }
    let storage = list.iter().filter(|v| v["storage"] == true).count();
    if storage != 1 {
        out.push(invalid(
            "spec.versions",
            &versions_value(spec),
            "must have exactly one version marked as storage version",
        ));
    }
    let mut seen = Vec::new();
    for v in &list {
        let n = v["name"].as_str().unwrap_or("");
        if seen.contains(&n) {
            out.push(invalid(
                "spec.versions",
                &versions_value(spec),
                "must contain unique version names",
            ));
            break;
        }
        seen.push(n);
    }
    for (i, v) in list.iter().enumerate() {
        let path = format!("spec.versions[{i}]");
        match v["name"].as_str() {
            None | Some("") => out.push(required(&format!("{path}.name"))),
            Some(n) => {
                let errs = dns1035_label(n);
                if !errs.is_empty() {
                    out.push(invalid(&format!("{path}.name"), &quote(n), &errs.join(",")));
                }
            }
        }
        let schema_path = format!("{path}.schema.openAPIV3Schema");
        match v["schema"]["openAPIV3Schema"].as_object() {
            None => out.push(required_because(&schema_path, "schemas are required")),
            Some(_) => structural(
                &v["schema"]["openAPIV3Schema"],
                &schema_path,
                Level::Root,
                out,
            ),
        }
        scale(
            &v["subresources"]["scale"],
            &format!("{path}.subresources.scale"),
            out,
        );
        columns(
            &v["additionalPrinterColumns"],
            &format!("{path}.additionalPrinterColumns"),
            out,
        );
    }
}

fn scale(scale: &Value, path: &str, out: &mut Vec<Cause>) {
    if !scale.is_object() {
        return;
    }
    let mut under = |field: &str, prefixes: &[&str], what: &str, optional: bool| {
        let p = format!("{path}.{field}");
        match scale[field].as_str() {
            None | Some("") if optional => {}
            None | Some("") => out.push(required(&p)),
            Some(v) => {
                let ok = prefixes
                    .iter()
                    .any(|pre| v.strip_prefix(pre).is_some_and(|r| r.starts_with('.')))
                    && super::jsonpath::Path::parse(v).is_ok();
                if !ok {
                    out.push(invalid(&p, &quote(v), what));
                }
            }
        }
    };
    under(
        "specReplicasPath",
        &[".spec"],
        "should be a json path under .spec",
        false,
    );
    under(
        "statusReplicasPath",
        &[".status"],
        "should be a json path under .status",
        false,
    );
    under(
        "labelSelectorPath",
        &[".spec", ".status"],
        "should be a json path under either .spec or .status",
        true,
    );
}

fn columns(cols: &Value, path: &str, out: &mut Vec<Cause>) {
    for (i, c) in cols.as_array().into_iter().flatten().enumerate() {
        let p = format!("{path}[{i}]");
        if c["name"].as_str().is_none_or(str::is_empty) {
            out.push(required(&format!("{p}.name")));
        }
        match c["type"].as_str() {
            None | Some("") => out.push(required(&format!("{p}.type"))),
            Some("boolean" | "date" | "integer" | "number" | "string") => {}
            Some(t) => out.push(not_supported(
                &format!("{p}.type"),
                t,
                &["boolean", "date", "integer", "number", "string"],
            )),
        }
        if let Some(f) = c["format"].as_str().filter(|f| !f.is_empty()) {
            const FORMATS: &[&str] = &[
                "byte",
                "date",
                "date-time",
                "double",
                "float",
                "int32",
                "int64",
                "password",
            ];
            if !FORMATS.contains(&f) {
                out.push(not_supported(&format!("{p}.format"), f, FORMATS));
            }
        }
        match c["jsonPath"].as_str() {
            None | Some("") => out.push(required(&format!("{p}.jsonPath"))),
            Some(jp) => {
                if super::jsonpath::Path::parse(jp).is_err() {
                    out.push(invalid(
                        &format!("{p}.jsonPath"),
                        &quote(jp),
                        "must be a simple json path starting with .",
                    ));
                }
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Level {
    Root,
    Property,
    Items,
    /// Under allOf/anyOf/oneOf/not: value validations only, no type needed.
    Combinator,
}

/// Upstream's structural-schema rules (`structuralschema.ValidateStructural`) plus the checks
/// of `x-kubernetes-*` extensions and of `default`s.
fn structural(s: &Value, path: &str, level: Level, out: &mut Vec<Cause>) {
    let t = s["type"].as_str().unwrap_or("");
    let int_or_string = s["x-kubernetes-int-or-string"] == true;
    let preserve = s["x-kubernetes-preserve-unknown-fields"] == true;
    let embedded = s["x-kubernetes-embedded-resource"] == true;
    if level != Level::Combinator
        && t.is_empty()
        && !int_or_string
        && !(preserve && level != Level::Root)
    {
        let detail = match level {
            Level::Root => "must not be empty at the root",
            Level::Items => "must not be empty for specified array items",
            _ => "must not be empty for specified object fields",
        };
        out.push(required_because(&format!("{path}.type"), detail));
    }
    if level == Level::Root && !t.is_empty() && t != "object" {
        out.push(invalid(
            &format!("{path}.type"),
            &quote(t),
            "must be object at the root",
        ));
    }
    if !t.is_empty()
        && !matches!(
            t,
            "object" | "array" | "string" | "integer" | "number" | "boolean"
        )
    {
        out.push(not_supported(
            &format!("{path}.type"),
            t,
            &["array", "boolean", "integer", "number", "object", "string"],
        ));
    }
    if s["x-kubernetes-preserve-unknown-fields"] == false {
        out.push(invalid(
            &format!("{path}.x-kubernetes-preserve-unknown-fields"),
            "false",
            "must be true or undefined",
        ));
    }
    if int_or_string && !t.is_empty() {
        out.push(invalid(
            &format!("{path}.type"),
            &quote(t),
            "must be empty if x-kubernetes-int-or-string is true",
        ));
    }
    if embedded {
        if t != "object" {
            out.push(invalid(
                &format!("{path}.type"),
                &quote(t),
                "must be object if x-kubernetes-embedded-resource is true",
            ));
        }
        if !preserve && s["properties"].as_object().is_none_or(|p| p.is_empty()) {
            out.push(required_because(
                &format!("{path}.properties"),
                "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
            ));
        }
    }
    if s["properties"].is_object() && s["additionalProperties"].is_object() {
        out.push(forbidden(
            &format!("{path}.additionalProperties"),
            "additionalProperties and properties are mutual exclusive",
        ));
    }
    if s["uniqueItems"] == true {
        out.push(forbidden(
            &format!("{path}.uniqueItems"),
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        ));
    }
    if let Some(lt) = s["x-kubernetes-list-type"].as_str() {
        if !matches!(lt, "atomic" | "set" | "map") {
            out.push(not_supported(
                &format!("{path}.x-kubernetes-list-type"),
                lt,
                &["atomic", "set", "map"],
            ));
        } else if t != "array" {
            out.push(invalid(
                &format!("{path}.x-kubernetes-list-type"),
                &quote(lt),
                "must only be used if type is array",
            ));
        } else if lt == "map"
            && s["x-kubernetes-list-map-keys"]
                .as_array()
                .is_none_or(|k| k.is_empty())
        {
            out.push(required_because(
                &format!("{path}.x-kubernetes-list-map-keys"),
                "must not be empty if x-kubernetes-list-type is map",
            ));
        }
    }
    if t == "array" && level != Level::Combinator && !s["items"].is_object() {
        out.push(required_because(
            &format!("{path}.items"),
            "must be specified",
        ));
    }
    if level == Level::Root {
        if let Some(meta) = s["properties"]["metadata"].as_object() {
            let only_names = meta.iter().all(|(k, v)| match k.as_str() {
                "type" => v == "object",
                "properties" => v
                    .as_object()
                    .is_some_and(|p| p.keys().all(|k| k == "name" || k == "generateName")),
                _ => false,
            });
            if !only_names {
                out.push(forbidden(
                    &format!("{path}.properties[metadata]"),
                    "must not specify anything other than name and generateName, but metadata is implicitly specified",
                ));
            }
        }
    }
    if let Some(d) = s.get("default") {
        if level == Level::Root {
            out.push(forbidden(
                &format!("{path}.default"),
                "must not be set at the root",
            ));
        } else {
            let mut causes = Vec::new();
            super::schema::validate(s, d, &mut causes);
            for c in causes {
                let field = if c.field.is_empty() {
                    format!("{path}.default")
                } else {
                    format!("{path}.default.{}", c.field)
                };
                out.push(Cause { field, ..c });
            }
        }
    }
    super::cel::check_rules(s, path, out);
    for (k, child) in s["properties"].as_object().into_iter().flatten() {
        if level == Level::Root && k == "metadata" {
            continue;
        }
        structural(
            child,
            &format!("{path}.properties[{k}]"),
            Level::Property,
            out,
        );
    }
    if s["items"].is_object() {
        structural(&s["items"], &format!("{path}.items"), Level::Items, out);
    }
    if s["additionalProperties"].is_object() {
        structural(
            &s["additionalProperties"],
            &format!("{path}.additionalProperties"),
            Level::Property,
            out,
        );
    }
    for comb in ["allOf", "anyOf", "oneOf"] {
        for (i, child) in s[comb].as_array().into_iter().flatten().enumerate() {
            structural(
                child,
                &format!("{path}.{comb}[{i}]"),
                Level::Combinator,
                out,
            );
        }
    }
    if s["not"].is_object() {
        structural(&s["not"], &format!("{path}.not"), Level::Combinator, out);
    }
}

/// Whether a string has the `format` its schema names, for the formats upstream checks
/// (kube-openapi's strfmt registry); unknown formats pass.
pub fn format_ok(format: &str, s: &str) -> bool {
    use base64::Engine as _;
    let re = |p: &str| regex::Regex::new(p).is_ok_and(|r| r.is_match(s));
    match format {
        "date-time" | "datetime" => crate::kinds::parse_rfc3339(s).is_some(),
        "date" => re(r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$"),
        "byte" => base64::engine::general_purpose::STANDARD.decode(s).is_ok(),
        "uuid" => re(r"^(?i)[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
        "uuid3" => re(r"^(?i)[0-9a-f]{8}-[0-9a-f]{4}-3[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$"),
        "uuid4" => re(r"^(?i)[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"),
        "uuid5" => re(r"^(?i)[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"),
        "ipv4" => s.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<std::net::Ipv6Addr>().is_ok(),
        "cidr" => s.split_once('/').is_some_and(|(ip, bits)| {
            let max = match ip.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V4(_)) => 32,
                Ok(std::net::IpAddr::V6(_)) => 128,
                Err(_) => return false,
            };
            bits.parse::<u8>().is_ok_and(|b| b <= max)
        }),
        "mac" => re(r"^([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}$"),
        "hostname" => {
            s.len() <= 253
                && re(
                    r"^[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?)*\.?$",
                )
        }
        "email" => re(r"^[^@\s]+@[^@\s]+\.[^@\s]+$"),
        "uri" => re(r"^[a-zA-Z][a-zA-Z0-9+.-]*:"),
        "duration" => re(r"^-?([0-9]+(\.[0-9]*)?(ns|us|µs|ms|s|m|h))+$") || s == "0",
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd() -> Value {
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}}}]}})
    }

    fn messages(crd: &Value) -> Vec<String> {
        validate(crd, None)
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn valid_after_defaults() {
        let mut c = crd();
        apply_defaults(&mut c);
        assert_eq!(c["spec"]["names"]["listKind"], "WidgetList");
        assert_eq!(c["spec"]["names"]["singular"], "widget");
        assert_eq!(c["status"]["storedVersions"], json!(["v1"]));
        assert_eq!(messages(&c), Vec::<String>::new());
    }

    #[test]
    fn upstream_messages() {
        let mut c = crd();
        apply_defaults(&mut c);
        c["metadata"]["name"] = json!("gadgets.example.com");
        c["spec"]["group"] = json!("example");
        c["spec"]["scope"] = json!("Global");
        c["spec"]["versions"][0]["storage"] = json!(false);
        c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            ["size"] = json!({"minimum": 1});
        let m = messages(&c);
        for want in [
            r#"metadata.name: Invalid value: "gadgets.example.com": must be spec.names.plural+"."+spec.group"#,
            r#"spec.group: Invalid value: "example": should be a domain with at least one dot"#,
            r#"spec.scope: Unsupported value: "Global": supported values: "Cluster", "Namespaced""#,
            r#"spec.versions: Invalid value: []apiextensions.CustomResourceDefinitionVersion{{Name:"v1"}}: must have exactly one version marked as storage version"#,
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[size].type: Required value: must not be empty for specified object fields",
        ] {
            assert!(m.contains(&want.to_string()), "missing {want}\nin {m:#?}");
        }
    }

    #[test]
    fn formats() {
        assert!(format_ok("date-time", "2024-01-02T03:04:05Z"));
        assert!(!format_ok("date-time", "yesterday"));
        assert!(format_ok("ipv4", "10.0.0.1") && !format_ok("ipv4", "10.0.0"));
        assert!(format_ok("cidr", "10.0.0.0/8") && !format_ok("cidr", "10.0.0.0/33"));
        assert!(format_ok("uuid", "123e4567-e89b-12d3-a456-426614174000"));
        assert!(format_ok("duration", "1h30m") && !format_ok("duration", "soon"));
    }
}
