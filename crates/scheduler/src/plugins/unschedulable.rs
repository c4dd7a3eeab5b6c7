//! NodeUnschedulable: cordoned nodes (`spec.unschedulable`) take only pods that tolerate
//! `node.kubernetes.io/unschedulable:NoSchedule`, as DaemonSet pods do.

use super::{taints, Filtered, Rejection};
use crate::cache::NodeInfo;
use k8s_openapi::api::core::v1::{Pod, Taint};

pub const REASON: &str = "node(s) were unschedulable";
pub const TAINT_KEY: &str = "node.kubernetes.io/unschedulable";

pub fn filter(pod: &Pod, node: &NodeInfo) -> Filtered {
    let cordoned = node
        .node
        .as_ref()
        .and_then(|n| n.spec.as_ref())
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    if !cordoned {
        return Ok(());
    }
    let taint = Taint {
        key: TAINT_KEY.into(),
        effect: "NoSchedule".into(),
        ..Default::default()
    };
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
    if taints::tolerated_by(tolerations, &taint) {
        Ok(())
    } else {
        Err(Rejection::unresolvable(REASON))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{node, pod, PodExt};

    #[test]
    fn cordoned_nodes_need_the_toleration() {
        let mut n = node("n", "1", "1Gi");
        n.spec.get_or_insert_with(Default::default).unschedulable = Some(true);
        let n = NodeInfo::new(n, []);
        assert_eq!(
            filter(&pod("p", "", ""), &n).unwrap_err().reasons,
            vec![REASON]
        );
        let tolerant = pod("p", "", "").tolerate(TAINT_KEY, "Exists", "", "NoSchedule");
        assert!(filter(&tolerant, &n).is_ok());
        assert!(filter(&pod("p", "", ""), &NodeInfo::new(node("m", "1", "1Gi"), [])).is_ok());
    }
}
