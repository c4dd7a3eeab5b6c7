//! The pod lifecycle (owner: pods work in progress): the pods bound to this node, each synced by
//! its own worker against the runtime over CRI — sandbox, init containers in order, containers,
//! restarts with back-off, termination with grace — and their status written back to the API.
//!
//! Contract for the rest of the agent: `pods::spawn(Arc<NodeContext>, ...) -> Pods` starts it;
//! `Pods::stop` stops syncing without touching running containers (a restarted agent adopts
//! them). Sandboxes and containers carry the [`labels`](crate::labels) keys; logs go where
//! [`Layout`](crate::layout::Layout) says.
