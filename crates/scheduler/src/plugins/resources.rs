//! NodeResourcesFit (filter and LeastAllocated score) and NodeResourcesBalancedAllocation.
//!
//! The filter compares the pod's exact requests with the node's allocatable minus what its pods
//! request. Scores use requests with upstream's non-zero defaults (100m cpu, 200Mi memory per
//! container that requests none) so that request-less pods still spread.

use super::{Code, Filtered, Rejection, MAX_NODE_SCORE};
use crate::cache::NodeInfo;
use crate::requests::Resources;

/// One resource the pod asks more of than the node has left.
struct Insufficient {
    reason: String,
    /// The request exceeds the node's whole allocatable: evicting pods cannot help.
    unresolvable: bool,
}

/// NodeResourcesFit's filter.
pub fn fit(request: &Resources, node: &NodeInfo) -> Filtered {
    let insufficient = insufficient(request, node);
    if insufficient.is_empty() {
        return Ok(());
    }
    let code = if insufficient.iter().any(|i| i.unresolvable) {
        Code::UnschedulableAndUnresolvable
    } else {
        Code::Unschedulable
    };
    Err(Rejection {
        code,
        reasons: insufficient.into_iter().map(|i| i.reason).collect(),
    })
}

fn insufficient(request: &Resources, node: &NodeInfo) -> Vec<Insufficient> {
    let mut out = Vec::new();
    let alloc = &node.allocatable;
    if node.pods.len() as i64 + 1 > alloc.allowed_pods {
        out.push(Insufficient {
            reason: "Too many pods".into(),
            unresolvable: false,
        });
    }
    if request.is_zero() {
        return out;
    }
    let used = &node.requested;
    let mut check = |name: &str, want: i64, have: i64, used: i64| {
        if want > 0 && want > have.saturating_sub(used) {
            out.push(Insufficient {
                reason: format!("Insufficient {name}"),
                unresolvable: want > have,
            });
        }
    };
    check("cpu", request.milli_cpu, alloc.milli_cpu, used.milli_cpu);
    check("memory", request.memory, alloc.memory, used.memory);
    check(
        "ephemeral-storage",
        request.ephemeral_storage,
        alloc.ephemeral_storage,
        used.ephemeral_storage,
    );
    for (name, want) in &request.scalar {
        let have = alloc.scalar.get(name).copied().unwrap_or(0);
        let used = used.scalar.get(name).copied().unwrap_or(0);
        check(name, *want, have, used);
    }
    out
}

/// (requested after placing the pod, allocatable) for cpu and memory, the default score resources.
fn cpu_memory(non_zero_request: &Resources, node: &NodeInfo) -> [(i64, i64); 2] {
    let used = &node.non_zero_requested;
    [
        (
            used.milli_cpu.saturating_add(non_zero_request.milli_cpu),
            node.allocatable.milli_cpu,
        ),
        (
            used.memory.saturating_add(non_zero_request.memory),
            node.allocatable.memory,
        ),
    ]
}

/// LeastAllocated: the share of cpu and memory left free, equally weighted, 0..=100.
pub fn least_allocated(non_zero_request: &Resources, node: &NodeInfo) -> i64 {
    let pairs = cpu_memory(non_zero_request, node);
    let total: i64 = pairs
        .iter()
        .map(|&(requested, capacity)| {
            if capacity <= 0 || requested > capacity {
                0
            } else {
                (capacity - requested) * MAX_NODE_SCORE / capacity
            }
        })
        .sum();
    total / pairs.len() as i64
}

/// BalancedAllocation: 100 × (1 − standard deviation of the cpu and memory fractions).
pub fn balanced_allocation(non_zero_request: &Resources, node: &NodeInfo) -> i64 {
    let fractions: Vec<f64> = cpu_memory(non_zero_request, node)
        .iter()
        .filter(|(_, capacity)| *capacity > 0)
        .map(|&(requested, capacity)| (requested as f64 / capacity as f64).min(1.0))
        .collect();
    let std = match fractions.as_slice() {
        [] | [_] => 0.0,
        [a, b] => (a - b).abs() / 2.0,
        many => {
            let mean = many.iter().sum::<f64>() / many.len() as f64;
            let var = many.iter().map(|f| (f - mean).powi(2)).sum::<f64>() / many.len() as f64;
            var.sqrt()
        }
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::requests::{pod_requests, Mode};
    use crate::testing::{node, pod, PodExt};

    fn req(cpu: &str, mem: &str, mode: Mode) -> Resources {
        pod_requests(pod("p", cpu, mem).spec.as_ref().unwrap(), mode)
    }

    #[test]
    fn fits_when_free_resources_suffice() {
        let n = NodeInfo::new(node("n", "4", "8Gi"), [pod("a", "2", "4Gi").on("n")]);
        assert_eq!(fit(&req("2", "4Gi", Mode::Exact), &n), Ok(()));
    }

    #[test]
    fn insufficient_reasons_as_upstream() {
        let n = NodeInfo::new(node("n", "4", "8Gi"), [pod("a", "3", "7Gi").on("n")]);
        let r = fit(&req("2", "2Gi", Mode::Exact), &n).unwrap_err();
        assert_eq!(r.reasons, vec!["Insufficient cpu", "Insufficient memory"]);
        assert_eq!(r.code, Code::Unschedulable);
        let r = fit(&req("5", "", Mode::Exact), &n).unwrap_err();
        assert_eq!(r.code, Code::UnschedulableAndUnresolvable);
    }

    #[test]
    fn pod_count_is_checked_even_for_empty_requests() {
        let mut n = node("n", "4", "8Gi");
        n.status
            .as_mut()
            .unwrap()
            .allocatable
            .as_mut()
            .unwrap()
            .insert(
                "pods".into(),
                k8s_openapi::apimachinery::pkg::api::resource::Quantity("1".into()),
            );
        let n = NodeInfo::new(n, [pod("a", "", "").on("n")]);
        let r = fit(&req("", "", Mode::Exact), &n).unwrap_err();
        assert_eq!(r.reasons, vec!["Too many pods"]);
    }

    #[test]
    fn least_allocated_prefers_emptier_nodes() {
        // Upstream's example: cpu 10000m/memory 20000 on a node with 4000m/10000 used.
        let empty = NodeInfo::new(node("a", "4", "8Gi"), []);
        let busy = NodeInfo::new(node("b", "4", "8Gi"), [pod("x", "3", "6Gi").on("b")]);
        let r = req("1", "1Gi", Mode::NonZero);
        assert_eq!(least_allocated(&r, &empty), 81); // cpu 75, memory 87
        assert!(least_allocated(&r, &busy) < least_allocated(&r, &empty));
    }

    #[test]
    fn balanced_allocation_prefers_even_use() {
        let n = NodeInfo::new(node("a", "4", "4Gi"), []);
        assert_eq!(
            balanced_allocation(&req("2", "2Gi", Mode::NonZero), &n),
            100
        );
        assert_eq!(balanced_allocation(&req("4", "0", Mode::NonZero), &n), 50);
    }
}
