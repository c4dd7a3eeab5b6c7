//! Taint-based eviction, as upstream's pkg/controller/tainteviction: a pod on a node with
//! NoExecute taints it does not all tolerate is deleted at once; one that tolerates them for
//! `tolerationSeconds` is deleted that long after the taint reached it; one that tolerates them
//! forever stays. Upstream runs it as the node-controller account too.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tokio::time::Instant;

use crate::context::Context;
use crate::error::Result;
use crate::informer;

const NAME: &str = "taint-eviction-controller";

/// A pod's namespace and name.
type PodKey = (String, String);

pub async fn run(ctx: Context) -> Result<()> {
    let client = ctx.client_for("node-controller").await?;
    let (nodes, node_changes) =
        informer::start(Api::<Node>::all(ctx.client.clone()), Default::default());
    let (pods, pod_changes) =
        informer::start(Api::<Pod>::all(ctx.client.clone()), Default::default());
    let mut changes = futures::stream::select(
        node_changes.map(|n| Change::Node(n.name_any())),
        pod_changes.map(|p| Change::Pod(key_of(&p))),
    );
    let mut evictor = Evictor {
        recorder: ctx.recorder(client.clone(), NAME),
        client,
        nodes,
        pods,
        tainted: HashMap::new(),
        scheduled: HashMap::new(),
        seen: HashMap::new(),
        ctx,
    };
    loop {
        let next = evictor.next_due();
        tokio::select! {
            change = changes.next() => match change {
                Some(Change::Node(name)) => evictor.node_changed(&name),
                Some(Change::Pod(key)) => evictor.pod_changed(key),
                None => return Ok(()),
            },
            _ = sleep_until(next) => evictor.evict_due().await,
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What changed: a node by name, a pod by key; the stores hold their current state.
enum Change {
    Node(String),
    Pod(PodKey),
}

struct Evictor {
    ctx: Context,
    client: Client,
    recorder: Recorder,
    nodes: Store<Node>,
    pods: Store<Pod>,
    /// The NoExecute taints of each node that has some.
    tainted: HashMap<String, Vec<Taint>>,
    /// Pending deletions: when the eviction was decided and when it fires.
    scheduled: HashMap<PodKey, Scheduled>,
    /// Each pod's node and tolerations when last looked at.
    seen: HashMap<PodKey, (String, Vec<Toleration>)>,
}

struct Scheduled {
    fire: Instant,
}

impl Evictor {
    fn next_due(&self) -> Option<Instant> {
        self.scheduled.values().map(|s| s.fire).min()
    }

    /// Upstream's handleNodeUpdate: a node's NoExecute taints changed, so each of its pods is
    /// looked at again.
    fn node_changed(&mut self, name: &str) {
        let taints: Vec<Taint> = self
            .nodes
            .get(&ObjectRef::new(name))
            .and_then(|n| n.spec.clone())
            .and_then(|s| s.taints)
            .unwrap_or_default()
            .into_iter()
            .filter(|t| t.effect == "NoExecute")
            .collect();
        let before = if taints.is_empty() {
            self.tainted.remove(name)
        } else {
            self.tainted.insert(name.to_string(), taints.clone())
        };
        if before.is_none() && taints.is_empty() {
            return;
        }
        tracing::debug!(node = %name, ?taints, "looking at the pods of a NoExecute-tainted node");
        let on_node = self
            .pods
            .state_filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name));
        for pod in on_node {
            self.process(&pod, &taints);
        }
    }

    /// Upstream's PodUpdated + handlePodUpdate: only a pod that is new, gone, or moved or
    /// changed its tolerations, on a tainted node, is looked at again (its status updates,
    /// including the eviction's own, are not).
    fn pod_changed(&mut self, key: PodKey) {
        let current = self.pods.get(&ObjectRef::new(&key.1).within(&key.0));
        let Some(pod) = current else {
            self.seen.remove(&key);
            self.cancel(&key, false);
            return;
        };
        let spec = pod.spec.as_ref();
        let node = spec.and_then(|s| s.node_name.clone()).unwrap_or_default();
        let seen = (
            node.clone(),
            spec.and_then(|s| s.tolerations.clone()).unwrap_or_default(),
        );
        if self.seen.get(&key) == Some(&seen) {
            return;
        }
        self.seen.insert(key, seen);
        if let Some(taints) = self.tainted.get(&node).cloned() {
            self.process(&pod, &taints);
        }
    }

    /// Upstream's processPodOnNode.
    fn process(&mut self, pod: &Pod, taints: &[Taint]) {
        let key = key_of(pod);
        if pod.metadata.deletion_timestamp.is_some() {
            self.cancel(&key, false);
            return;
        }
        if taints.is_empty() {
            self.cancel(&key, true);
            return;
        }
        let tolerations = pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.as_deref())
            .unwrap_or_default();
        let now = Instant::now();
        match toleration_time(taints, tolerations) {
            Tolerated::Not => {
                tracing::debug!(pod = %format!("{}/{}", key.0, key.1), "pod does not tolerate the node's taints");
                self.scheduled.insert(key, Scheduled { fire: now });
            }
            Tolerated::Forever => self.cancel(&key, true),
            // An eviction already scheduled keeps its start: taints do not restart the clock.
            Tolerated::For(time) => {
                self.scheduled
                    .entry(key)
                    .or_insert(Scheduled { fire: now + time });
            }
        }
    }

    fn cancel(&mut self, key: &PodKey, announce: bool) {
        if self.scheduled.remove(key).is_some() && announce {
            if let Some(pod) = self.pods.get(&ObjectRef::new(&key.1).within(&key.0)) {
                let note = format!("Cancelling deletion of Pod {}/{}", key.0, key.1);
                let recorder = self.recorder.clone();
                let reference = pod.object_ref(&());
                tokio::spawn(async move { publish(&recorder, note, &reference).await });
            }
        }
    }

    async fn evict_due(&mut self) {
        let now = Instant::now();
        let due: Vec<PodKey> = self
            .scheduled
            .iter()
            .filter(|(_, s)| s.fire <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.scheduled.remove(&key);
            match self.delete(&key).await {
                Ok(()) => self.ctx.metrics.synced(NAME),
                Err(e) => {
                    tracing::warn!(pod = %format!("{}/{}", key.0, key.1), error = %e, "cannot evict pod; retrying");
                    self.ctx.metrics.sync_failed(NAME);
                    let retry = Instant::now() + Duration::from_secs(1);
                    self.scheduled.insert(key, Scheduled { fire: retry });
                }
            }
        }
    }

    /// Upstream's addConditionAndDeletePod: the DisruptionTarget condition says why, then the
    /// pod goes.
    async fn delete(&self, (ns, name): &PodKey) -> Result<()> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let Some(pod) = api.get_opt(name).await? else {
            return Ok(());
        };
        let note = format!("Marking for deletion Pod {ns}/{name}");
        publish(&self.recorder, note, &pod.object_ref(&())).await;
        let condition = json!({"status": {"conditions": [{
            "type": "DisruptionTarget", "status": "True",
            "reason": "DeletionByTaintManager",
            "message": "Taint manager: deleting due to NoExecute taint",
            "lastTransitionTime": k8s_openapi::jiff::Timestamp::now().to_string(),
        }]}});
        let patched = api
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(condition))
            .await;
        match patched {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        match api.delete(name, &Default::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

async fn publish(
    recorder: &Recorder,
    note: String,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
) {
    let event = Event {
        type_: EventType::Normal,
        reason: "TaintManagerEviction".into(),
        note: Some(note),
        action: "Evict".into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, reference).await {
        tracing::debug!(error = %e, "cannot record eviction event");
    }
}

fn key_of(pod: &Pod) -> PodKey {
    (pod.namespace().unwrap_or_default(), pod.name_any())
}

#[derive(Debug, PartialEq)]
enum Tolerated {
    Not,
    Forever,
    For(Duration),
}

/// Upstream's GetMatchingTolerations + getMinTolerationTime: the shortest `tolerationSeconds`
/// among the tolerations used (≤ 0 means now), or forever if none of them has one.
fn toleration_time(taints: &[Taint], tolerations: &[Toleration]) -> Tolerated {
    let mut used = Vec::new();
    for taint in taints {
        match tolerations
            .iter()
            .find(|t| component_base::taints::tolerates(t, taint))
        {
            Some(t) => used.push(t),
            None => return Tolerated::Not,
        }
    }
    let seconds = used.iter().filter_map(|t| t.toleration_seconds).min();
    match seconds {
        None => Tolerated::Forever,
        Some(s) => Tolerated::For(Duration::from_secs(s.max(0) as u64)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toleration(key: &str, seconds: Option<i64>) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: seconds,
            value: None,
        }
    }

    fn taint(key: &str) -> Taint {
        Taint {
            key: key.into(),
            effect: "NoExecute".into(),
            value: None,
            time_added: None,
        }
    }

    #[test]
    fn shortest_toleration_of_those_used_wins() {
        let taints = [taint("unreachable"), taint("other")];
        assert_eq!(toleration_time(&taints[..1], &[]), Tolerated::Not);
        let forever = toleration("unreachable", None);
        assert_eq!(
            toleration_time(&taints[..1], &[forever]),
            Tolerated::Forever
        );
        let long = toleration("unreachable", Some(300));
        let short = toleration("other", Some(5));
        assert_eq!(
            toleration_time(&taints, &[long.clone(), short]),
            Tolerated::For(Duration::from_secs(5))
        );
        assert_eq!(toleration_time(&taints, &[long]), Tolerated::Not);
    }
}
