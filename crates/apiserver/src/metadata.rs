//! Object metadata as upstream's generic registry manages it: the fields the server owns (uid,
//! creationTimestamp, generation, resourceVersion), generateName, and the name and label syntax
//! every kind shares.

use rand::Rng;
use serde_json::{json, Map, Value};

use crate::kinds::Cause;
use crate::resources::Resource;
use crate::status::cause;

/// Now, as upstream serialises `metav1.Time` (RFC 3339, seconds, UTC `Z`).
pub fn now_rfc3339() -> String {
    rfc3339(time::OffsetDateTime::now_utc())
}

pub fn rfc3339(t: time::OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.to_offset(time::UtcOffset::UTC)
        .format(f)
        .unwrap_or_default()
}

/// A random (version 4) UUID.
pub fn new_uid() -> String {
    let mut b: [u8; 16] = rand::rng().random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Upstream's generateName suffix alphabet (no vowels, no confusable characters).
pub fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

pub fn meta(obj: &Value) -> &Value {
    &obj["metadata"]
}

pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    obj["metadata"]
        .as_object_mut()
        .expect("metadata was just made an object")
}

pub fn name(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or_default()
}

pub fn has_finalizers(obj: &Value) -> bool {
    obj["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty())
}

/// Fills in what the server owns on create. `name` must already be final.
pub fn prepare_create(res: &Resource, obj: &mut Value, ns: Option<&str>) {
    let m = meta_mut(obj);
    for owned in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
    ] {
        m.remove(owned);
    }
    match ns {
        Some(ns) if res.namespaced => m.insert("namespace".into(), ns.into()),
        _ => m.remove("namespace"),
    };
    m.insert("uid".into(), new_uid().into());
    m.insert("creationTimestamp".into(), now_rfc3339().into());
    if res.generation {
        m.insert("generation".into(), 1.into());
    } else {
        m.remove("generation");
    }
}

/// Carries the server-owned fields over from `old` and bumps generation when the object changed
/// outside metadata and status (upstream: "spec changes").
pub fn prepare_update(res: &Resource, new: &mut Value, old: &Value) {
    let old_meta = meta(old).clone();
    let m = meta_mut(new);
    for owned in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "namespace",
    ] {
        match old_meta.get(owned) {
            Some(v) => m.insert(owned.into(), v.clone()),
            None => m.remove(owned),
        };
    }
    m.remove("resourceVersion");
    m.remove("selfLink");
    if !res.generation {
        m.remove("generation");
        return;
    }
    let old_gen = old_meta["generation"].as_i64().unwrap_or(1);
    let gen = if spec_of(new) != spec_of(old) {
        old_gen + 1
    } else {
        old_gen
    };
    meta_mut(new).insert("generation".into(), gen.into());
}

fn spec_of(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(o) = v.as_object_mut() {
        for k in ["metadata", "status", "apiVersion", "kind"] {
            o.remove(k);
        }
    }
    v
}

/// Which name syntax a resource's objects use, as upstream's per-kind `ValidateObjectMeta` calls.
enum NameRule {
    Subdomain,
    Label,
    Dns1035,
    PathSegment,
}

fn name_rule(res: &Resource) -> NameRule {
    match (res.group, res.plural) {
        ("", "namespaces") => NameRule::Label,
        ("", "services") => NameRule::Dns1035,
        ("rbac.authorization.k8s.io", _) => NameRule::PathSegment,
        _ => NameRule::Subdomain,
    }
}

/// Metadata checks every kind shares: name, generateName, labels, annotations.
pub fn validate(res: &Resource, obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let m = meta(obj);
    match m["name"].as_str() {
        None | Some("") => causes.push(cause(
            "FieldValueRequired",
            "metadata.name",
            "Required value: name or generateName is required".into(),
        )),
        Some(n) => causes.extend(name_errors(name_rule(res), n).into_iter().map(|msg| {
            cause(
                "FieldValueInvalid",
                "metadata.name",
                format!("Invalid value: {}: {msg}", quote(n)),
            )
        })),
    }
    causes.extend(validate_labels(&m["labels"]));
    causes.extend(validate_annotations(&m["annotations"]));
    causes
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

fn name_errors(rule: NameRule, n: &str) -> Vec<String> {
    match rule {
        NameRule::Subdomain => subdomain_errors(n),
        NameRule::Label => label_errors(n, LABEL_MSG, false),
        NameRule::Dns1035 => label_errors(n, DNS1035_MSG, true),
        NameRule::PathSegment => path_segment_errors(n),
    }
}

fn is_label(s: &str, alpha_first: bool) -> bool {
    let b = s.as_bytes();
    let inner = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-';
    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.iter().all(inner)
        && (if alpha_first {
            b[0].is_ascii_lowercase()
        } else {
            edge(&b[0])
        })
        && edge(&b[b.len() - 1])
}

pub fn subdomain_errors(n: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if n.len() > 253 {
        errs.push("must be no more than 253 characters".into());
    }
    if !n.split('.').all(|part| is_label(part, false)) {
        errs.push(SUBDOMAIN_MSG.into());
    }
    errs
}

fn label_errors(n: &str, msg: &str, alpha_first: bool) -> Vec<String> {
    let mut errs = Vec::new();
    if n.len() > 63 {
        errs.push("must be no more than 63 characters".into());
    }
    if !is_label(n, alpha_first) {
        errs.push(msg.into());
    }
    errs
}

fn path_segment_errors(n: &str) -> Vec<String> {
    if n == "." || n == ".." {
        return vec![format!("may not be '{n}'")];
    }
    ["/", "%"]
        .iter()
        .filter(|s| n.contains(**s))
        .map(|s| format!("may not contain '{s}'"))
        .collect()
}

/// `prefix/name` keys: an optional DNS subdomain prefix and a 63-character name part.
fn qualified_name_ok(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c))
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    name_ok && prefix.is_none_or(|p| subdomain_errors(p).is_empty())
}

fn label_value_ok(v: &str) -> bool {
    v.is_empty() || qualified_name_ok(v) && !v.contains('/')
}

fn validate_labels(labels: &Value) -> Vec<Cause> {
    let Some(map) = labels.as_object() else {
        return Vec::new();
    };
    let mut causes = Vec::new();
    for (k, v) in map {
        if !qualified_name_ok(k) {
            causes.push(cause("FieldValueInvalid", "metadata.labels", format!("Invalid value: {}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')", quote(k))));
        }
        match v.as_str() {
            Some(s) if label_value_ok(s) => {}
            _ => causes.push(cause("FieldValueInvalid", "metadata.labels", format!("Invalid value: {}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')", v))),
        }
    }
    causes
}

fn validate_annotations(annotations: &Value) -> Vec<Cause> {
    let Some(map) = annotations.as_object() else {
        return Vec::new();
    };
    let mut causes: Vec<Cause> = map
        .keys()
        .filter(|k| !qualified_name_ok(&k.to_ascii_lowercase()))
        .map(|k| cause("FieldValueInvalid", "metadata.annotations", format!("Invalid value: {}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character", quote(k))))
        .collect();
    let total: usize = map
        .iter()
        .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
        .sum();
    if total > 256 * 1024 {
        causes.push(cause(
            "FieldValueTooLong",
            "metadata.annotations",
            "Too long: must have at most 262144 bytes".into(),
        ));
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::find;

    #[test]
    fn names() {
        let cm = find("", "v1", "configmaps").unwrap();
        let ok = json!({"metadata": {"name": "a.b-c"}});
        assert!(validate(cm, &ok).is_empty());
        let bad = json!({"metadata": {"name": "Bad_Name"}});
        let c = validate(cm, &bad);
        assert_eq!(c[0].field, "metadata.name");
        assert!(c[0]
            .message
            .starts_with("Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"));
        let svc = find("", "v1", "services").unwrap();
        assert!(!validate(svc, &json!({"metadata": {"name": "1abc"}})).is_empty());
    }

    #[test]
    fn labels() {
        assert!(qualified_name_ok("app.kubernetes.io/name"));
        assert!(!qualified_name_ok("-x"));
        assert!(label_value_ok(""));
        assert!(!label_value_ok("a b"));
    }

    #[test]
    fn generation_bumps_on_spec_only() {
        let deploy = find("apps", "v1", "deployments").unwrap();
        let old = json!({"metadata": {"name": "d", "generation": 3}, "spec": {"replicas": 1}});
        let mut same = json!({"metadata": {"name": "d", "labels": {"a": "b"}}, "spec": {"replicas": 1}, "status": {"x": 1}});
        prepare_update(deploy, &mut same, &old);
        assert_eq!(same["metadata"]["generation"], 3);
        let mut changed = json!({"metadata": {"name": "d"}, "spec": {"replicas": 2}});
        prepare_update(deploy, &mut changed, &old);
        assert_eq!(changed["metadata"]["generation"], 4);
    }

    #[test]
    fn uid_shape() {
        let u = new_uid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_eq!(random_suffix().len(), 5);
    }
}
