//! The node's heartbeat: the Lease `kube-node-lease/<node>` renewed every 10 s with a 40 s
//! duration (upstream's `nodeLeaseDurationSeconds` and a renew interval of a quarter of it),
//! owned by the Node so it goes with it. The node lifecycle controller reads it.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::Client;

pub const NAMESPACE: &str = "kube-node-lease";

/// Renews (or creates) the node's lease; the lease written last is kept to update without a
/// read, as upstream's controller does, and dropped on failure.
pub struct Heartbeat {
    api: Api<Lease>,
    node: String,
    duration_seconds: i32,
    last: Option<Lease>,
}

impl Heartbeat {
    pub fn new(client: Client, node: &str, duration_seconds: i32) -> Heartbeat {
        Heartbeat {
            api: Api::namespaced(client, NAMESPACE),
            node: node.to_string(),
            duration_seconds,
            last: None,
        }
    }

    pub async fn renew(&mut self, owner: Option<&Node>) -> Result<(), kube::Error> {
        let now = MicroTime(Timestamp::now());
        let current = match self.last.take() {
            Some(lease) => Some(lease),
            None => self.api.get_opt(&self.node).await?,
        };
        let written = match current {
            Some(mut lease) => {
                let spec = lease.spec.get_or_insert_with(Default::default);
                spec.holder_identity = Some(self.node.clone());
                spec.lease_duration_seconds = Some(self.duration_seconds);
                spec.renew_time = Some(now);
                if lease.metadata.owner_references.is_none() {
                    lease.metadata.owner_references =
                        owner.and_then(owner_reference).map(|o| vec![o]);
                }
                self.api
                    .replace(&self.node, &PostParams::default(), &lease)
                    .await?
            }
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.node.clone()),
                        namespace: Some(NAMESPACE.into()),
                        owner_references: owner.and_then(owner_reference).map(|o| vec![o]),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.node.clone()),
                        lease_duration_seconds: Some(self.duration_seconds),
                        renew_time: Some(now),
                        ..Default::default()
                    }),
                };
                self.api.create(&PostParams::default(), &lease).await?
            }
        };
        self.last = Some(written);
        Ok(())
    }
}

/// The Node as the lease's owner (upstream's setNodeOwnerFunc).
fn owner_reference(node: &Node) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node.metadata.name.clone()?,
        uid: node.metadata.uid.clone()?,
        ..Default::default()
    })
}
