//! Upstream's default-profile plugins as plain functions over typed pods and nodes.
//!
//! Each filter answers "can this pod go on this node" with [`Filtered`] (reasons worded as
//! upstream's, because they end up in `FailedScheduling` events users search for); each score
//! gives a raw number per node that the plugin's normaliser maps to 0..=[`MAX_NODE_SCORE`].

pub mod interpod;
pub mod node_affinity;
pub mod node_name;
pub mod ports;
pub mod resources;
pub mod spread;
pub mod taints;
pub mod unschedulable;

/// Highest score a plugin gives a node (upstream's `framework.MaxNodeScore`).
pub const MAX_NODE_SCORE: i64 = 100;

/// Why a node was rejected, and whether evicting pods could change that (upstream's status codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// Preemption might help (e.g. not enough cpu).
    Unschedulable,
    /// Nothing on the node can change it (e.g. a taint, a selector).
    UnschedulableAndUnresolvable,
}

/// A filter's rejection of a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub code: Code,
    pub reasons: Vec<String>,
}

impl Rejection {
    pub fn unschedulable(reason: impl Into<String>) -> Rejection {
        Rejection {
            code: Code::Unschedulable,
            reasons: vec![reason.into()],
        }
    }

    pub fn unresolvable(reason: impl Into<String>) -> Rejection {
        Rejection {
            code: Code::UnschedulableAndUnresolvable,
            reasons: vec![reason.into()],
        }
    }
}

/// The result of a filter for one node.
pub type Filtered = Result<(), Rejection>;

/// Upstream's `DefaultNormalizeScore`: scales scores so the highest is [`MAX_NODE_SCORE`];
/// `reverse` makes the lowest raw score the best.
pub fn normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        let scaled = MAX_NODE_SCORE * *s / max;
        *s = if reverse {
            MAX_NODE_SCORE - scaled
        } else {
            scaled
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_as_upstream() {
        let mut s = vec![0, 5, 10];
        normalize(&mut s, false);
        assert_eq!(s, vec![0, 50, 100]);
        let mut s = vec![0, 5, 10];
        normalize(&mut s, true);
        assert_eq!(s, vec![100, 50, 0]);
        let mut s = vec![0, 0];
        normalize(&mut s, true);
        assert_eq!(s, vec![100, 100]);
    }
}
