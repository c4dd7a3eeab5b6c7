//! Upstream's `DefaultTolerationSeconds` admission plugin
//! (`plugin/pkg/admission/defaulttolerationseconds`): a pod that does not already tolerate the
//! `node.kubernetes.io/not-ready` or `node.kubernetes.io/unreachable` NoExecute taints gets a
//! toleration for each with `tolerationSeconds: 300`, so the node lifecycle controller evicts it
//! five minutes after its node went away rather than at once. Upstream's
//! `--default-not-ready-toleration-seconds` / `--default-unreachable-toleration-seconds` are
//! both 300; krust has no flag for them.

use async_trait::async_trait;
use serde_json::{json, Value};

use super::{Attributes, Operation, Plugin};
use crate::registry::Registry;
use crate::status::ApiResult;

/// Upstream's `v1.TaintNodeNotReady`.
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
/// Upstream's `v1.TaintNodeUnreachable`.
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// Upstream's default for both flags.
pub const DEFAULT_SECONDS: i64 = 300;

pub struct DefaultTolerationSeconds;

#[async_trait]
impl Plugin for DefaultTolerationSeconds {
    fn name(&self) -> &'static str {
        "DefaultTolerationSeconds"
    }

    async fn admit(
        &self,
        attrs: &Attributes<'_>,
        object: Option<&mut Value>,
        _reg: &Registry,
    ) -> ApiResult<()> {
        // Upstream's handler answers Create and Update of pods proper, not subresources.
        if !attrs.is("", "pods") || !attrs.subresource.is_empty() {
            return Ok(());
        }
        if !matches!(attrs.operation, Operation::Create | Operation::Update) {
            return Ok(());
        }
        if let Some(pod) = object {
            add_default_tolerations(pod);
        }
        Ok(())
    }
}

/// Appends the two tolerations the pod lacks; an existing toleration counts when its key is the
/// taint's or empty and its effect is NoExecute or empty (upstream's test, which ignores the
/// operator and the value).
pub fn add_default_tolerations(pod: &mut Value) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let existing = spec
        .get("tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut added = existing.clone();
    for key in [NOT_READY, UNREACHABLE] {
        if !existing.iter().any(|t| tolerates(t, key)) {
            added.push(json!({
                "key": key,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": DEFAULT_SECONDS,
            }));
        }
    }
    if added.len() != existing.len() {
        spec.insert("tolerations".into(), Value::Array(added));
    }
}

fn tolerates(toleration: &Value, key: &str) -> bool {
    let field = |name: &str| toleration[name].as_str().unwrap_or("");
    (field("key") == key || field("key").is_empty())
        && (field("effect") == "NoExecute" || field("effect").is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(pod: &Value) -> Vec<(String, Option<i64>)> {
        pod["spec"]["tolerations"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                (
                    t["key"].as_str().unwrap_or("").to_string(),
                    t["tolerationSeconds"].as_i64(),
                )
            })
            .collect()
    }

    #[test]
    fn adds_both_to_a_pod_without_tolerations() {
        let mut pod = json!({"spec": {"containers": []}});
        add_default_tolerations(&mut pod);
        assert_eq!(
            keys(&pod),
            vec![
                (NOT_READY.to_string(), Some(300)),
                (UNREACHABLE.to_string(), Some(300))
            ]
        );
        assert_eq!(pod["spec"]["tolerations"][0]["operator"], "Exists");
        assert_eq!(pod["spec"]["tolerations"][0]["effect"], "NoExecute");
    }

    #[test]
    fn keeps_what_the_pod_already_tolerates() {
        let mut pod = json!({"spec": {"tolerations": [
            {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 6},
            {"key": "gpu", "operator": "Exists", "effect": "NoSchedule"},
        ]}});
        add_default_tolerations(&mut pod);
        assert_eq!(
            keys(&pod),
            vec![
                (UNREACHABLE.to_string(), Some(6)),
                ("gpu".to_string(), None),
                (NOT_READY.to_string(), Some(300))
            ]
        );
        // An empty key with an empty effect tolerates everything: nothing is added.
        let mut all = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        add_default_tolerations(&mut all);
        assert_eq!(all["spec"]["tolerations"].as_array().unwrap().len(), 1);
        // A NoSchedule toleration of the same key does not count.
        let mut no_schedule = json!({"spec": {"tolerations": [
            {"key": NOT_READY, "operator": "Exists", "effect": "NoSchedule"}]}});
        add_default_tolerations(&mut no_schedule);
        assert_eq!(
            no_schedule["spec"]["tolerations"].as_array().unwrap().len(),
            3
        );
    }
}
