//! Deletion propagation (upstream's `propagationPolicy` and legacy `orphanDependents`): which
//! garbage-collection finalizer a DELETE leaves on the object. `Foreground` adds
//! `foregroundDeletion` (the garbage collector deletes the blocking dependents first), `Orphan`
//! adds `orphan` (it removes the owner's references from the dependents first), `Background`
//! adds neither (the object goes at once and the dependents after it). Either finalizer keeps
//! the object, with its deletionTimestamp, until the garbage collector removes it.

use serde_json::Value;

use crate::status::ApiError;

pub const ORPHAN: &str = "orphan";
pub const FOREGROUND: &str = "foregroundDeletion";

/// What one DELETE asked for; nothing asked leaves the object's own finalizers deciding.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Propagation {
    orphan_dependents: Option<bool>,
    policy: Option<Policy>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    Orphan,
    Background,
    Foreground,
}

impl Propagation {
    /// From the query (`propagationPolicy`, `orphanDependents`) and the DeleteOptions body; the
    /// query wins, as upstream's parameter codec fills the body's fields from it.
    pub fn from_request(raw_query: Option<&str>, body: &Value) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(raw_query.unwrap_or("")).unwrap_or_default();
        let query = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let policy = query("propagationPolicy")
            .or_else(|| body["propagationPolicy"].as_str().map(String::from))
            .filter(|p| !p.is_empty());
        let orphan_dependents = match query("orphanDependents") {
            Some(v) => Some(v == "true"),
            None => body["orphanDependents"].as_bool(),
        };
        let policy = match policy.as_deref() {
            None => None,
            Some("Orphan") => Some(Policy::Orphan),
            Some("Background") => Some(Policy::Background),
            Some("Foreground") => Some(Policy::Foreground),
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "propagationPolicy: Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
                )))
            }
        };
        if policy.is_some() && orphan_dependents.is_some() {
            return Err(ApiError::BadRequest(
                "orphanDependents: Invalid value: \"\": orphanDependents and deletionPropagation cannot be both set".into(),
            ));
        }
        Ok(Propagation {
            orphan_dependents,
            policy,
        })
    }

    /// Upstream's shouldOrphanDependents: the request decides, else an `orphan` finalizer
    /// already there.
    fn orphan(&self, finalizers: &[&str]) -> bool {
        if let Some(o) = self.orphan_dependents {
            return o;
        }
        match self.policy {
            Some(p) => p == Policy::Orphan,
            None => finalizers.contains(&ORPHAN),
        }
    }

    /// Upstream's shouldDeleteDependents.
    fn foreground(&self, finalizers: &[&str]) -> bool {
        if self.orphan_dependents.is_some() {
            return false;
        }
        match self.policy {
            Some(p) => p == Policy::Foreground,
            None => finalizers.contains(&FOREGROUND),
        }
    }

    /// The object's finalizers after this delete, when they change (upstream's
    /// deletionFinalizersForGarbageCollection): both GC finalizers removed, the asked one added.
    pub fn finalizers(&self, obj: &Value) -> Option<Vec<Value>> {
        let old: Vec<&str> = obj["metadata"]["finalizers"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut new: Vec<&str> = old
            .iter()
            .copied()
            .filter(|f| *f != ORPHAN && *f != FOREGROUND)
            .collect();
        if self.orphan(&old) {
            new.push(ORPHAN);
        }
        if self.foreground(&old) {
            new.push(FOREGROUND);
        }
        let same = new.len() == old.len() && new.iter().all(|f| old.contains(f));
        (!same).then(|| new.into_iter().map(Value::from).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn asked(q: &str, body: Value) -> Propagation {
        Propagation::from_request(Some(q), &body).unwrap()
    }

    #[test]
    fn finalizers_follow_the_request_then_the_object() {
        let plain = json!({"metadata": {}});
        let fg = asked("propagationPolicy=Foreground", json!({}));
        assert_eq!(fg.finalizers(&plain), Some(vec![json!(FOREGROUND)]));
        let orphan = asked("", json!({"orphanDependents": true}));
        assert_eq!(orphan.finalizers(&plain), Some(vec![json!(ORPHAN)]));
        let bg = asked("", json!({"propagationPolicy": "Background"}));
        assert_eq!(bg.finalizers(&plain), None);
        let orphaning = json!({"metadata": {"finalizers": ["a", ORPHAN]}});
        assert_eq!(
            bg.finalizers(&orphaning),
            Some(vec![json!("a")]),
            "Background drops an orphan finalizer"
        );
        assert_eq!(
            fg.finalizers(&orphaning),
            Some(vec![json!("a"), json!(FOREGROUND)])
        );
        assert_eq!(Propagation::default().finalizers(&orphaning), None);
    }

    #[test]
    fn bad_requests_are_refused() {
        assert!(Propagation::from_request(Some("propagationPolicy=Sideways"), &json!({})).is_err());
        assert!(Propagation::from_request(
            Some("propagationPolicy=Orphan&orphanDependents=true"),
            &json!({})
        )
        .is_err());
    }
}
