//! TaintToleration: NoSchedule and NoExecute taints a pod does not tolerate keep it off a node;
//! PreferNoSchedule taints only lower the node's score.

use super::{normalize, Filtered, Rejection};
use crate::cache::NodeInfo;
use k8s_openapi::api::core::v1::{Pod, Taint, Toleration};

pub use component_base::taints::{tolerated_by, tolerates};

fn tolerations(pod: &Pod) -> &[Toleration] {
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default()
}

fn taints(node: &NodeInfo) -> &[Taint] {
    node.node
        .as_ref()
        .and_then(|n| n.spec.as_ref())
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default()
}

pub fn filter(pod: &Pod, node: &NodeInfo) -> Filtered {
    let tolerations = tolerations(pod);
    let untolerated = taints(node).iter().find(|t| {
        matches!(t.effect.as_str(), "NoSchedule" | "NoExecute") && !tolerated_by(tolerations, t)
    });
    match untolerated {
        None => Ok(()),
        Some(t) => Err(Rejection::unresolvable(format!(
            "node(s) had untolerated taint {{{}: {}}}",
            t.key,
            t.value.as_deref().unwrap_or_default()
        ))),
    }
}

/// Raw score: how many PreferNoSchedule taints the pod does not tolerate (fewer is better).
pub fn score(pod: &Pod, node: &NodeInfo) -> i64 {
    let taints = taints(node);
    if !taints.iter().any(|t| t.effect == "PreferNoSchedule") {
        return 0;
    }
    // Only tolerations that apply to PreferNoSchedule count, as upstream's getAllTolerationPreferNoSchedule.
    let prefer: Vec<Toleration> = tolerations(pod)
        .iter()
        .filter(|t| {
            matches!(
                t.effect.as_deref(),
                None | Some("") | Some("PreferNoSchedule")
            )
        })
        .cloned()
        .collect();
    taints
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule" && !tolerated_by(&prefer, t))
        .count() as i64
}

pub fn normalize_scores(scores: &mut [i64]) {
    normalize(scores, true);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{node, pod, NodeExt, PodExt};

    #[test]
    fn untolerated_no_schedule_taint_rejects_with_upstream_message() {
        let n = NodeInfo::new(
            node("n", "1", "1Gi").taint("dedicated", "gpu", "NoSchedule"),
            [],
        );
        let err = filter(&pod("p", "", ""), &n).unwrap_err();
        assert_eq!(
            err.reasons,
            vec!["node(s) had untolerated taint {dedicated: gpu}"]
        );
        assert!(filter(
            &pod("p", "", "").tolerate("dedicated", "Equal", "gpu", "NoSchedule"),
            &n
        )
        .is_ok());
        assert!(filter(
            &pod("p", "", "").tolerate("dedicated", "Exists", "", ""),
            &n
        )
        .is_ok());
        assert!(filter(&pod("p", "", "").tolerate("", "Exists", "", ""), &n).is_ok());
        assert!(filter(
            &pod("p", "", "").tolerate("dedicated", "Equal", "cpu", ""),
            &n
        )
        .is_err());
        assert!(filter(
            &pod("p", "", "").tolerate("dedicated", "Exists", "", "NoExecute"),
            &n
        )
        .is_err());
    }

    #[test]
    fn prefer_no_schedule_only_scores() {
        let n = NodeInfo::new(
            node("n", "1", "1Gi").taint("k", "v", "PreferNoSchedule"),
            [],
        );
        assert!(filter(&pod("p", "", ""), &n).is_ok());
        assert_eq!(score(&pod("p", "", ""), &n), 1);
        assert_eq!(
            score(
                &pod("p", "", "").tolerate("k", "Exists", "", "PreferNoSchedule"),
                &n
            ),
            0
        );
        assert_eq!(
            score(
                &pod("p", "", "").tolerate("k", "Exists", "", "NoSchedule"),
                &n
            ),
            1
        );
        let mut s = vec![1, 0];
        normalize_scores(&mut s);
        assert_eq!(s, vec![0, 100]);
    }
}
