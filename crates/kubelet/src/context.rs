//! What every part of the node agent shares: who the node is, its API client, its runtime and
//! its directories. Built once by [`agent`](crate::agent) and handed around in an `Arc`.

use crate::cri::Cri;
use crate::layout::Layout;

pub struct NodeContext {
    /// The Node object's name (the host name unless configured).
    pub node_name: String,
    /// The kubelet's client, authenticated as `system:node:<node_name>` (group `system:nodes`),
    /// so the Node authorizer and NodeRestriction apply to it.
    pub client: kube::Client,
    pub cri: Cri,
    pub layout: Layout,
}
