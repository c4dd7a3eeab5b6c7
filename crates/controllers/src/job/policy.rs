//! The Job's failure and success policies, as upstream's `pod_failure_policy.go`,
//! `success_policy.go` and the backoff-limit-per-index parts of `indexed_job_utils.go`:
//! pure functions over the Job's spec and its pods.

use std::collections::BTreeSet;

use k8s_openapi::api::batch::v1::{Job, PodFailurePolicy, PodFailurePolicyRule, SuccessPolicy};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::ResourceExt;

use super::{completion_index, parse_indexes};

/// Upstream's `JobIndexFailureCountAnnotation`: failures of the index before this pod.
pub const INDEX_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-failure-count";
/// Upstream's `JobIndexIgnoredFailureCountAnnotation`: failures the failure policy ignored.
pub const INDEX_IGNORED_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-ignored-failure-count";

/// What the pod failure policy says about one failed pod.
#[derive(Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The action of the matching rule (`FailJob`, `FailIndex`, `Ignore`, `Count`).
    pub action: Option<String>,
    /// Whether the failure counts against the backoff limits.
    pub counts: bool,
    /// With `FailJob`, upstream's message for the Job's condition.
    pub fail_job: Option<String>,
}

impl Verdict {
    fn counted() -> Verdict {
        Verdict {
            action: None,
            counts: true,
            fail_job: None,
        }
    }
}

/// Upstream's `matchPodFailurePolicy` for a pod in phase Failed: the first rule whose
/// `onExitCodes` match a container that terminated with a non-zero code, or whose
/// `onPodConditions` match a pod condition, decides.
pub fn match_failure_policy(policy: &PodFailurePolicy, pod: &Pod) -> Verdict {
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    for (index, rule) in policy.rules.iter().enumerate() {
        let action = rule.action.as_str();
        let reason = if let Some(c) = exit_code_match(rule, pod) {
            let code = c.state.as_ref().and_then(|s| s.terminated.as_ref());
            let code = code.map_or(0, |t| t.exit_code);
            format!(
                "Container {} for pod {ns}/{name} failed with exit code {code} matching {action} rule at index {index}",
                c.name
            )
        } else if let Some(condition) = condition_match(rule, pod) {
            format!(
                "Pod {ns}/{name} has condition {condition} matching {action} rule at index {index}"
            )
        } else {
            continue;
        };
        return Verdict {
            action: Some(action.to_string()),
            counts: action != "Ignore",
            fail_job: (action == "FailJob").then_some(reason),
        };
    }
    Verdict::counted()
}

fn exit_code_match<'p>(rule: &PodFailurePolicyRule, pod: &'p Pod) -> Option<&'p ContainerStatus> {
    let requirement = rule.on_exit_codes.as_ref()?;
    let status = pod.status.as_ref()?;
    let containers = status.container_statuses.iter().flatten();
    let inits = status.init_container_statuses.iter().flatten();
    containers.chain(inits).find(|c| {
        let Some(terminated) = c.state.as_ref().and_then(|s| s.terminated.as_ref()) else {
            return false;
        };
        let named = requirement
            .container_name
            .as_ref()
            .is_none_or(|n| *n == c.name);
        let listed = requirement.values.contains(&terminated.exit_code);
        let operator = match requirement.operator.as_str() {
            "In" => listed,
            "NotIn" => !listed,
            _ => false,
        };
        named && terminated.exit_code != 0 && operator
    })
}

fn condition_match(rule: &PodFailurePolicyRule, pod: &Pod) -> Option<String> {
    let patterns = rule.on_pod_conditions.as_ref()?;
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    patterns.iter().find_map(|p| {
        let wanted = match p.status.as_str() {
            "" => "True",
            other => other,
        };
        conditions
            .iter()
            .find(|c| c.type_ == p.type_ && c.status == wanted)
            .map(|c| c.type_.clone())
    })
}

/// The verdict for a failed pod: the policy's, or a plain counted failure without one.
pub fn verdict(job: &Job, pod: &Pod) -> Verdict {
    match job
        .spec
        .as_ref()
        .and_then(|s| s.pod_failure_policy.as_ref())
    {
        Some(policy) => match_failure_policy(policy, pod),
        None => Verdict::counted(),
    }
}

/// Upstream's `matchSuccessPolicy`: the message of the first rule the succeeded indexes meet.
pub fn match_success_policy(
    policy: &SuccessPolicy,
    completions: i32,
    succeeded: &BTreeSet<i32>,
) -> Option<String> {
    if succeeded.is_empty() {
        return None;
    }
    for (index, rule) in policy.rules.iter().enumerate() {
        let met = match (&rule.succeeded_indexes, rule.succeeded_count) {
            (Some(text), count) => {
                let required: BTreeSet<i32> = parse_indexes(text)
                    .into_iter()
                    .filter(|i| *i < completions)
                    .collect();
                if required.is_empty() {
                    continue;
                }
                let done = required.intersection(succeeded).count();
                match count {
                    Some(n) => done >= n.max(0) as usize,
                    None => done == required.len(),
                }
            }
            (None, Some(n)) => succeeded.len() >= n.max(0) as usize,
            (None, None) => false,
        };
        if met {
            return Some(format!("Matched rules at index {index}"));
        }
    }
    None
}

fn annotation_count(pod: &Pod, key: &str) -> i32 {
    pod.annotations()
        .get(key)
        .and_then(|v| v.parse::<i32>().ok())
        .filter(|v| *v >= 0)
        .unwrap_or(0)
}

/// Upstream's `isIndexFailed`: a failed pod fails its index when the policy says `FailIndex`,
/// or when its failure counts and the index had already failed `backoffLimitPerIndex` times.
pub fn is_index_failed(job: &Job, pod: &Pod) -> bool {
    let Some(limit) = job.spec.as_ref().and_then(|s| s.backoff_limit_per_index) else {
        return false;
    };
    let v = verdict(job, pod);
    if v.action.as_deref() == Some("FailIndex") {
        return true;
    }
    v.counts && annotation_count(pod, INDEX_FAILURE_COUNT) >= limit
}

/// Upstream's `getNewIndexFailureCounts`: the annotations of the pod replacing `replaced`
/// (the index's latest failed pod), or zeros for an index's first pod.
pub fn new_failure_counts(job: &Job, replaced: Option<&Pod>) -> (i32, i32) {
    let Some(pod) = replaced else {
        return (0, 0);
    };
    let failures = annotation_count(pod, INDEX_FAILURE_COUNT);
    let ignored = annotation_count(pod, INDEX_IGNORED_FAILURE_COUNT);
    match verdict(job, pod).counts {
        true => (failures + 1, ignored),
        false => (failures, ignored + 1),
    }
}

/// The failed pod of `index` with the most failures behind it: the one a new pod replaces.
pub fn latest_failed<'p>(
    pods: impl Iterator<Item = &'p Pod>,
    index: i32,
    completions: i32,
) -> Option<&'p Pod> {
    pods.filter(|p| crate::pods::phase(p) == "Failed")
        .filter(|p| completion_index(p, completions) == Some(index))
        .max_by_key(|p| {
            annotation_count(p, INDEX_FAILURE_COUNT)
                + annotation_count(p, INDEX_IGNORED_FAILURE_COUNT)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn failed_pod(exit_code: i32, conditions: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "status": {"phase": "Failed", "conditions": conditions, "containerStatuses": [
                {"name": "main", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                 "state": {"terminated": {"exitCode": exit_code}}}]}
        }))
        .unwrap()
    }

    fn policy(rules: serde_json::Value) -> PodFailurePolicy {
        serde_json::from_value(json!({ "rules": rules })).unwrap()
    }

    #[test]
    fn first_matching_rule_decides() {
        let p = policy(json!([
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
            {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [1]}},
        ]));
        let v = match_failure_policy(&p, &failed_pod(42, json!([])));
        assert_eq!(v.action.as_deref(), Some("FailJob"));
        assert_eq!(
            v.fail_job.as_deref(),
            Some("Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 1")
        );
        let disrupted = failed_pod(42, json!([{"type": "DisruptionTarget", "status": "True"}]));
        let v = match_failure_policy(&p, &disrupted);
        assert_eq!((v.action.as_deref(), v.counts), (Some("Ignore"), false));
        let v = match_failure_policy(&p, &failed_pod(1, json!([])));
        assert_eq!((v.action, v.counts), (None, true));
        let v = match_failure_policy(&p, &failed_pod(3, json!([])));
        assert_eq!((v.action.as_deref(), v.counts), (Some("Count"), true));
    }

    #[test]
    fn success_rules_match_indexes_and_counts() {
        let rules = |r: serde_json::Value| -> SuccessPolicy {
            serde_json::from_value(json!({ "rules": r })).unwrap()
        };
        let done: BTreeSet<i32> = [0, 1, 2, 4].into();
        assert_eq!(
            match_success_policy(&rules(json!([{"succeededIndexes": "0-2"}])), 10, &done),
            Some("Matched rules at index 0".into())
        );
        assert_eq!(
            match_success_policy(&rules(json!([{"succeededIndexes": "3"}])), 10, &done),
            None
        );
        let r =
            rules(json!([{"succeededIndexes": "3-5", "succeededCount": 1}, {"succeededCount": 4}]));
        assert_eq!(
            match_success_policy(&r, 10, &done),
            Some("Matched rules at index 0".into())
        );
        let r = rules(json!([{"succeededCount": 5}, {"succeededCount": 4}]));
        assert_eq!(
            match_success_policy(&r, 10, &done),
            Some("Matched rules at index 1".into())
        );
    }
}
