//! The JSONPath subset printer columns and scale paths use: `.spec.replicas`, `.items[0]`,
//! `.metadata.labels['app.kubernetes.io/name']`, `[*]`, and filters such as
//! `.status.conditions[?(@.type=="Ready")].status`. Like upstream's table convertor, a column shows
//! the first value found.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    All,
    /// `[?(@.a.b=="x")]` (or `!=`); a missing value compares as absent.
    Filter {
        path: Vec<String>,
        negate: bool,
        value: Value,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Path(Vec<Step>);

#[derive(Debug, PartialEq, Eq)]
pub struct ParseError(pub String);

impl Path {
    /// Parses `.a.b[0]` (optionally wrapped in `{}` as kubectl's templates are).
    pub fn parse(text: &str) -> Result<Path, ParseError> {
        let t = text.trim();
        let t = t
            .strip_prefix('{')
            .and_then(|r| r.strip_suffix('}'))
            .unwrap_or(t);
        if !t.starts_with('.') && !t.starts_with('[') {
            return Err(ParseError(format!("{text}: must start with .")));
        }
        let chars: Vec<char> = t.chars().collect();
        let mut steps = Vec::new();
        let mut i = 0;
        let bad = || ParseError(format!("unsupported JSONPath {text:?}"));
        while i < chars.len() {
            match chars[i] {
                '.' => {
                    let start = i + 1;
                    let mut j = start;
                    while j < chars.len() && chars[j] != '.' && chars[j] != '[' {
                        j += 1;
                    }
                    let name: String = chars[start..j].iter().collect();
                    if name.is_empty() {
                        return Err(bad());
                    }
                    if name == "*" {
                        steps.push(Step::All);
                    } else {
                        steps.push(Step::Field(name));
                    }
                    i = j;
                }
                '[' => {
                    let close = find_close(&chars, i).ok_or_else(bad)?;
                    let inner: String = chars[i + 1..close].iter().collect();
                    steps.push(bracket(inner.trim()).ok_or_else(bad)?);
                    i = close + 1;
                }
                _ => return Err(bad()),
            }
        }
        Ok(Path(steps))
    }

    /// Every value the path selects in `obj`, in document order.
    pub fn find<'a>(&self, obj: &'a Value) -> Vec<&'a Value> {
        let mut current = vec![obj];
        for step in &self.0 {
            let mut next = Vec::new();
            for v in current {
                match step {
                    Step::Field(name) => {
                        if let Some(c) = v.get(name.as_str()) {
                            next.push(c);
                        }
                    }
                    Step::Index(i) => {
                        if let Some(a) = v.as_array() {
                            let idx = if *i < 0 { a.len() as i64 + i } else { *i };
                            if let Some(c) = usize::try_from(idx).ok().and_then(|i| a.get(i)) {
                                next.push(c);
                            }
                        }
                    }
                    Step::All => match v {
                        Value::Array(a) => next.extend(a.iter()),
                        Value::Object(m) => next.extend(m.values()),
                        _ => {}
                    },
                    Step::Filter {
                        path,
                        negate,
                        value,
                    } => {
                        for item in v.as_array().into_iter().flatten() {
                            let mut at = Some(item);
                            for p in path {
                                at = at.and_then(|x| x.get(p.as_str()));
                            }
                            let equal = at == Some(value);
                            if equal != *negate && at.is_some() {
                                next.push(item);
                            }
                        }
                    }
                }
            }
            current = next;
        }
        current
    }

    /// The first value, when any.
    pub fn first<'a>(&self, obj: &'a Value) -> Option<&'a Value> {
        self.find(obj).into_iter().next()
    }

    /// The path's field names when it is a plain `.a.b.c` (for writing through it).
    pub fn fields(&self) -> Option<Vec<&str>> {
        self.0
            .iter()
            .map(|s| match s {
                Step::Field(f) => Some(f.as_str()),
                _ => None,
            })
            .collect()
    }
}

fn find_close(chars: &[char], open: usize) -> Option<usize> {
    let mut quote = None;
    let mut depth = 0;
    for (j, &c) in chars.iter().enumerate().skip(open) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '[' | '(') => depth += 1,
            (None, ')') => depth -= 1,
            (None, ']') => {
                depth -= 1;
                if depth == 0 {
                    return Some(j);
                }
            }
            _ => {}
        }
    }
    None
}

fn unquote(s: &str) -> Option<String> {
    let s = s.trim();
    for q in ['\'', '"'] {
        if let Some(inner) = s.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return Some(inner.to_string());
        }
    }
    None
}

fn bracket(inner: &str) -> Option<Step> {
    if inner == "*" {
        return Some(Step::All);
    }
    if let Ok(i) = inner.parse::<i64>() {
        return Some(Step::Index(i));
    }
    if let Some(name) = unquote(inner) {
        return Some(Step::Field(name));
    }
    let cond = inner.strip_prefix("?(")?.strip_suffix(')')?.trim();
    let (lhs, rhs, negate) = if let Some((l, r)) = cond.split_once("!=") {
        (l, r, true)
    } else {
        let (l, r) = cond.split_once("==")?;
        (l, r, false)
    };
    let path: Vec<String> = lhs
        .trim()
        .strip_prefix("@.")?
        .split('.')
        .map(String::from)
        .collect();
    let rhs = rhs.trim();
    let value = match unquote(rhs) {
        Some(s) => Value::String(s),
        None => serde_json::from_str(rhs).ok()?,
    };
    Some(Step::Filter {
        path,
        negate,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths() {
        let obj = json!({"spec": {"replicas": 3, "items": ["a", "b"]},
            "metadata": {"labels": {"app.kubernetes.io/name": "w"}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Synced", "status": "False"}]}});
        let first = |p: &str| Path::parse(p).unwrap().first(&obj).cloned();
        assert_eq!(first(".spec.replicas"), Some(json!(3)));
        assert_eq!(first(".spec.items[1]"), Some(json!("b")));
        assert_eq!(
            first(".metadata.labels['app.kubernetes.io/name']"),
            Some(json!("w"))
        );
        assert_eq!(
            first(r#".status.conditions[?(@.type=="Synced")].status"#),
            Some(json!("False"))
        );
        assert_eq!(first(".spec.missing"), None);
        assert!(Path::parse("spec.replicas").is_err());
        assert_eq!(
            Path::parse(".spec.replicas").unwrap().fields(),
            Some(vec!["spec", "replicas"])
        );
    }
}
