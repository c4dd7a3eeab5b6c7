//! NodeName: a pod that names its node (`spec.nodeName` set by its creator before scheduling
//! would bypass the scheduler, so this matters for pods that request it through affinity
//! tooling) fits only that node.

use super::{Filtered, Rejection};
use crate::cache::NodeInfo;
use k8s_openapi::api::core::v1::Pod;

pub const REASON: &str = "node(s) didn't match the requested node name";

pub fn filter(pod: &Pod, node: &NodeInfo) -> Filtered {
    match pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
        Some(name) if !name.is_empty() && name != node.name() => {
            Err(Rejection::unresolvable(REASON))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{node, pod, PodExt};

    #[test]
    fn only_the_named_node_fits() {
        let n = NodeInfo::new(node("n1", "1", "1Gi"), []);
        assert!(filter(&pod("p", "", ""), &n).is_ok());
        assert!(filter(&pod("p", "", "").on("n1"), &n).is_ok());
        let err = filter(&pod("p", "", "").on("n2"), &n).unwrap_err();
        assert_eq!(err.reasons, vec![REASON]);
    }
}
