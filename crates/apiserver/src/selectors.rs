//! Label and field selectors, with upstream's syntax: `a=b`, `a==b`, `a!=b`, `a in (x,y)`,
//! `a notin (x)`, `a`, `!a` for labels; `f=v`, `f==v`, `f!=v` for fields.

use std::collections::BTreeSet;

use serde_json::Value;
use thiserror::Error;

use crate::kinds;
use crate::resources::Resource;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SelectorError {
    #[error("unable to parse requirement: {0}")]
    Label(String),
    #[error("invalid selector: '{0}'; can't understand '{1}'")]
    Field(String, String),
    #[error("field label not supported: {0}")]
    UnknownField(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    In(BTreeSet<String>),
    NotIn(BTreeSet<String>),
    Exists,
    NotExists,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<(String, Op)>);

impl LabelSelector {
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut reqs = Vec::new();
        for part in split_top_level(s) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            reqs.push(parse_requirement(part)?);
        }
        Ok(LabelSelector(reqs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, labels: &Value) -> bool {
        self.0.iter().all(|(key, op)| {
            let v = labels.get(key).and_then(Value::as_str);
            match op {
                Op::In(set) => v.is_some_and(|v| set.contains(v)),
                // Upstream: `!=` and notin also match objects without the label.
                Op::NotIn(set) => v.is_none_or(|v| !set.contains(v)),
                Op::Exists => v.is_some(),
                Op::NotExists => v.is_none(),
            }
        })
    }
}

/// Splits on commas that are not inside a `( ... )` value set.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn parse_requirement(part: &str) -> Result<(String, Op), SelectorError> {
    let err = || SelectorError::Label(format!("invalid label selector requirement {part:?}"));
    if let Some(key) = part.strip_prefix('!') {
        return Ok((checked_key(key.trim()).ok_or_else(err)?, Op::NotExists));
    }
    for (word, negated) in [(" notin ", true), (" in ", false)] {
        if let Some((key, set)) = part.split_once(word) {
            let set = set.trim();
            let inner = set
                .strip_prefix('(')
                .and_then(|s| s.strip_suffix(')'))
                .ok_or_else(err)?;
            let values: BTreeSet<String> = inner
                .split(',')
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect();
            let key = checked_key(key.trim()).ok_or_else(err)?;
            return Ok((
                key,
                if negated {
                    Op::NotIn(values)
                } else {
                    Op::In(values)
                },
            ));
        }
    }
    for (sep, negated) in [("!=", true), ("==", false), ("=", false)] {
        if let Some((key, value)) = part.split_once(sep) {
            let key = checked_key(key.trim()).ok_or_else(err)?;
            let value = value.trim();
            if !is_label_value(value) {
                return Err(err());
            }
            let set = BTreeSet::from([value.to_string()]);
            return Ok((key, if negated { Op::NotIn(set) } else { Op::In(set) }));
        }
    }
    Ok((checked_key(part).ok_or_else(err)?, Op::Exists))
}

fn checked_key(key: &str) -> Option<String> {
    let ok = !key.is_empty()
        && key.len() <= 317
        && key
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-_./".contains(&c));
    ok.then(|| key.to_string())
}

fn is_label_value(v: &str) -> bool {
    v.len() <= 63
        && v.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c))
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<(String, String, bool)>);

impl FieldSelector {
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut reqs = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, value, negated) = if let Some((f, v)) = part.split_once("!=") {
                (f, v, true)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, v, false)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, v, false)
            } else {
                return Err(SelectorError::Field(s.into(), part.into()));
            };
            reqs.push((field.trim().to_string(), value.trim().to_string(), negated));
        }
        Ok(FieldSelector(reqs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Refuses fields the kind does not index, as upstream does (400 BadRequest).
    pub fn check_fields(&self, res: &Resource) -> Result<(), SelectorError> {
        let known =
            kinds::selectable_fields(res.group, res.kind, &Value::Object(Default::default()));
        match self
            .0
            .iter()
            .find(|(f, _, _)| !known.iter().any(|(k, _)| k == f))
        {
            Some((f, _, _)) => Err(SelectorError::UnknownField(f.clone())),
            None => Ok(()),
        }
    }

    pub fn matches(&self, res: &Resource, obj: &Value) -> bool {
        if self.0.is_empty() {
            return true;
        }
        let fields = kinds::selectable_fields(res.group, res.kind, obj);
        self.0.iter().all(|(f, want, negated)| {
            let have = fields
                .iter()
                .find(|(k, _)| k == f)
                .map_or("", |(_, v)| v.as_str());
            (have == want) != *negated
        })
    }
}

/// Both selectors of a list or watch request.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Selector {
    pub fn matches(&self, res: &Resource, obj: &Value) -> bool {
        self.labels.matches(&obj["metadata"]["labels"]) && self.fields.matches(res, obj)
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_operators() {
        let l = json!({"app": "web", "tier": "front"});
        let m = |s: &str| LabelSelector::parse(s).unwrap().matches(&l);
        assert!(m("app=web"));
        assert!(m("app==web,tier"));
        assert!(!m("app!=web"));
        assert!(m("env!=prod"));
        assert!(m("app in (web, db),tier notin (back)"));
        assert!(!m("app notin (web)"));
        assert!(m("!env"));
        assert!(!m("!app"));
        assert!(m(""));
        assert!(LabelSelector::parse("a in b").is_err());
        assert!(LabelSelector::parse("a=b c").is_err());
    }

    #[test]
    fn field_parse() {
        let f = FieldSelector::parse("metadata.name=x,status.phase!=Running").unwrap();
        assert_eq!(f.0.len(), 2);
        assert!(FieldSelector::parse("nonsense").is_err());
    }
}
