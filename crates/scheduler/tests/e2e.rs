//! End to end: a real krust API server in process (in-memory datastore, PKI from `pki::ensure`),
//! Node objects with no kubelet behind them, and the scheduler connecting with its own client
//! certificate (`credentials/scheduler.config`, CN=system:kube-scheduler).

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

struct Cluster {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    admin: Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Cluster {
    async fn start() -> Cluster {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().expect("tempdir");
        let pki_cfg = pki::PkiConfig::new(dir.path(), "e2e", "10.152.183.1".parse().unwrap(), 0);
        pki::ensure(&pki_cfg).expect("pki");
        let paths = pki::Paths::new(dir.path());
        let config = apiserver::Config {
            bind: "127.0.0.1:0".parse().unwrap(),
            tls_cert: paths.server_crt.clone(),
            tls_key: paths.server_key.clone(),
            client_ca: Some(paths.ca_crt.clone()),
            token_file: Some(paths.known_tokens.clone()),
            service_account_keys: vec![paths.service_account_pub.clone()],
            service_cidr: "10.152.183.0/24".into(),
            // Upstream's bootstrap policy: the scheduler works with system:kube-scheduler's rights.
            authorization_mode: apiserver::AuthorizationMode::NodeRbac,
            // No serviceaccount controller makes each namespace's `default` account here.
            disable_admission_plugins: vec!["ServiceAccount".into()],
            ..apiserver::Config::default()
        };
        let server = apiserver::Server::bind(config, store::engine::Engine::in_memory())
            .await
            .expect("bind");
        let addr = server.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = server
                .serve(async {
                    let _ = stopped.await;
                })
                .await;
        });
        let admin = client(&paths.client_config, addr).await;
        Cluster {
            addr,
            dir,
            admin,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// A client with the scheduler's own credentials.
    async fn scheduler_client(&self) -> Client {
        client(
            &pki::Paths::new(self.dir.path()).scheduler_config,
            self.addr,
        )
        .await
    }

    /// Starts a scheduler; the returned handle stops it.
    async fn scheduler(&self, config: scheduler::Config) -> Running {
        let client = self.scheduler_client().await;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            scheduler::run(client, config, async {
                let _ = stopped.await;
            })
            .await
            .expect("scheduler");
        });
        Running {
            stop: Some(stop),
            task: Some(task),
        }
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.admin.clone(), "default")
    }

    async fn node(&self, name: &str, cpu: &str, memory: &str, extra: serde_json::Value) {
        let mut node = json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {},
            "status": {
                "capacity": {"cpu": cpu, "memory": memory, "pods": "110"},
                "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]
            }
        });
        merge(&mut node, extra);
        let node: Node = serde_json::from_value(node).expect("node");
        let api: Api<Node> = Api::all(self.admin.clone());
        let created = api
            .create(&PostParams::default(), &node)
            .await
            .expect("create node");
        if created
            .status
            .as_ref()
            .and_then(|s| s.allocatable.as_ref())
            .is_none()
        {
            // The API server may drop status on create: set it through the status subresource.
            let mut with_status = created;
            with_status.status = node.status.clone();
            api.replace_status(name, &PostParams::default(), &with_status)
                .await
                .expect("node status");
        }
    }

    async fn pod(&self, name: &str, cpu: &str, extra: serde_json::Value) {
        let mut pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{
                "name": "c",
                "image": "busybox",
                "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}
            }]}
        });
        merge(&mut pod, extra);
        let pod: Pod = serde_json::from_value(pod).expect("pod");
        self.pods()
            .create(&PostParams::default(), &pod)
            .await
            .expect("create pod");
    }

    async fn node_of(&self, name: &str) -> Option<String> {
        let pod = self.pods().get(name).await.ok()?;
        pod.spec?.node_name.filter(|n| !n.is_empty())
    }

    /// Waits until the pod is bound and returns its node.
    async fn bound(&self, name: &str) -> String {
        eventually(&format!("{name} bound"), || async {
            self.node_of(name).await
        })
        .await
    }

    async fn events_for(&self, pod: &str, reason: &str) -> Vec<Event> {
        let api: Api<Event> = Api::namespaced(self.admin.clone(), "default");
        let list = api.list(&ListParams::default()).await.expect("events");
        list.items
            .into_iter()
            .filter(|e| {
                e.reason.as_deref() == Some(reason)
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(pod)
            })
            .collect()
    }

    /// Waits for a FailedScheduling event and returns its message.
    async fn failed_scheduling(&self, pod: &str) -> String {
        eventually(&format!("FailedScheduling for {pod}"), || async {
            self.events_for(pod, "FailedScheduling")
                .await
                .last()
                .and_then(|e| e.note.clone())
        })
        .await
    }
}

struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Running {
    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .expect("scheduler stops within 10 s")
                .expect("scheduler task");
        }
    }
}

async fn client(kubeconfig: &Path, addr: SocketAddr) -> Client {
    let kc = Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let mut config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("client config");
    config.cluster_url = format!("https://127.0.0.1:{}", addr.port())
        .parse()
        .unwrap();
    Client::try_from(config).expect("client")
}

fn merge(base: &mut serde_json::Value, extra: serde_json::Value) {
    match (base, extra) {
        (serde_json::Value::Object(b), serde_json::Value::Object(e)) => {
            for (k, v) in e {
                merge(b.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (b, e) => *b = e,
    }
}

/// Polls `f` every 100 ms for up to 30 s.
async fn eventually<T, F, Fut>(what: &str, f: F) -> T
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn no_election() -> scheduler::Config {
    scheduler::Config {
        leader_election: false,
        identity: Some("solo".into()),
        ..Default::default()
    }
}

/// Three nodes: n1 small with an ssd label, n2 large but tainted, n3 medium.
async fn three_nodes(c: &Cluster) {
    c.node(
        "n1",
        "2",
        "4Gi",
        json!({"metadata": {"labels": {"disk": "ssd"}}}),
    )
    .await;
    c.node(
        "n2",
        "8",
        "16Gi",
        json!({"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}}),
    )
    .await;
    c.node("n3", "4", "8Gi", json!({})).await;
}

const TOLERATE_GPU: &str = r#"{"spec": {"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}}"#;

fn tolerate_gpu() -> serde_json::Value {
    serde_json::from_str(TOLERATE_GPU).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_place_pods_where_they_fit() {
    let c = Cluster::start().await;
    three_nodes(&c).await;
    let s = c.scheduler(no_election()).await;

    // nodeSelector: only n1 has disk=ssd.
    c.pod(
        "ssd",
        "100m",
        json!({"spec": {"nodeSelector": {"disk": "ssd"}}}),
    )
    .await;
    assert_eq!(c.bound("ssd").await, "n1");
    let scheduled = eventually("Scheduled event", || async {
        c.events_for("ssd", "Scheduled").await.pop()
    })
    .await;
    assert_eq!(
        scheduled.note.as_deref(),
        Some("Successfully assigned default/ssd to n1")
    );
    assert_eq!(
        scheduled.reporting_controller.as_deref(),
        Some("default-scheduler")
    );

    // Resources + taints: 6 cpu fits only n2, which is tainted.
    c.pod("big", "6", json!({})).await;
    let msg = c.failed_scheduling("big").await;
    assert!(
        msg.starts_with(
            "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 Insufficient cpu."
        ),
        "{msg}"
    );
    c.pod("big-tolerant", "6", tolerate_gpu()).await;
    assert_eq!(c.bound("big-tolerant").await, "n2");

    // Required anti-affinity on the hostname: one web pod per node, the fourth waits.
    let web = || {
        let mut v = json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
                "labelSelector": {"matchLabels": {"app": "web"}},
                "topologyKey": "kubernetes.io/hostname"
            }]}}}
        });
        merge(&mut v, tolerate_gpu());
        v
    };
    let mut nodes = Vec::new();
    for i in 0..3 {
        let name = format!("web-{i}");
        c.pod(&name, "100m", web()).await;
        nodes.push(c.bound(&name).await);
    }
    nodes.sort();
    assert_eq!(nodes, vec!["n1", "n2", "n3"]);
    c.pod("web-3", "100m", web()).await;
    let msg = c.failed_scheduling("web-3").await;
    // The placed pods' own anti-affinity (symmetric) is checked first, as upstream.
    assert!(
        msg.starts_with(
            "0/3 nodes are available: 3 node(s) didn't satisfy existing pods anti-affinity rules."
        ),
        "{msg}"
    );
    assert_eq!(c.node_of("web-3").await, None);

    s.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_big_pod_waits_then_lands_on_a_new_node() {
    let c = Cluster::start().await;
    three_nodes(&c).await;
    let s = c.scheduler(no_election()).await;

    c.pod("huge", "16", json!({})).await;
    let msg = c.failed_scheduling("huge").await;
    assert_eq!(
        msg,
        "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 Insufficient cpu. \
         preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.."
    );
    let condition = eventually("PodScheduled=False", || async {
        let pod = c.pods().get("huge").await.ok()?;
        pod.status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False")
    })
    .await;
    assert_eq!(condition.reason.as_deref(), Some("Unschedulable"));
    assert_eq!(condition.message.as_deref(), Some(msg.as_str()));

    // A node big enough appears: the pod is retried after its backoff and bound there.
    c.node("n4", "32", "64Gi", json!({})).await;
    assert_eq!(c.bound("huge").await, "n4");

    s.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_spread_evens_out_replicas() {
    let c = Cluster::start().await;
    for n in ["a", "b", "c"] {
        c.node(n, "8", "16Gi", json!({})).await;
    }
    let s = c.scheduler(no_election()).await;
    let spread = json!({
        "metadata": {"labels": {"app": "api"}},
        "spec": {"topologySpreadConstraints": [{
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": "api"}}
        }]}
    });
    let mut per_node = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..6 {
        let name = format!("api-{i}");
        c.pod(&name, "100m", spread.clone()).await;
        *per_node.entry(c.bound(&name).await).or_default() += 1;
    }
    assert_eq!(
        per_node.values().copied().collect::<Vec<_>>(),
        vec![2, 2, 2]
    );
    s.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preemption_evicts_lower_priority_pods() {
    let c = Cluster::start().await;
    c.node("only", "2", "4Gi", json!({})).await;
    let s = c.scheduler(no_election()).await;
    c.pod("low", "1500m", json!({"spec": {"priority": 1}}))
        .await;
    assert_eq!(c.bound("low").await, "only");
    c.pod("high", "1500m", json!({"spec": {"priority": 1000}}))
        .await;
    // The victim is deleted gracefully; with no kubelet, finish its deletion as one would.
    eventually("victim terminating", || async {
        let low = c.pods().get_opt("low").await.ok()??;
        low.metadata.deletion_timestamp.map(|_| ())
    })
    .await;
    let nominated = eventually("nominatedNodeName", || async {
        c.pods().get("high").await.ok()?.status?.nominated_node_name
    })
    .await;
    assert_eq!(nominated, "only");
    let now = DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    c.pods().delete("low", &now).await.expect("finish deletion");
    assert_eq!(c.bound("high").await, "only");
    let preempted = c.events_for("low", "Preempted").await;
    assert_eq!(preempted.len(), 1, "one preemption, not one per retry");
    s.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_election_lets_one_scheduler_act() {
    let c = Cluster::start().await;
    c.node("n1", "8", "16Gi", json!({})).await;
    let elected = |id: &str| scheduler::Config {
        leader_election: true,
        identity: Some(id.into()),
        ..Default::default()
    };
    let first = c.scheduler(elected("first")).await;
    let leases: Api<Lease> = Api::namespaced(c.admin.clone(), "kube-system");
    eventually("first holds the lease", || async {
        let l = leases.get_opt("kube-scheduler").await.ok()??;
        (l.spec?.holder_identity.as_deref() == Some("first")).then_some(())
    })
    .await;
    let second = c.scheduler(elected("second")).await;

    for i in 0..5 {
        c.pod(&format!("p{i}"), "10m", json!({})).await;
    }
    for i in 0..5 {
        c.bound(&format!("p{i}")).await;
    }
    let instances = |pods: std::ops::Range<usize>| {
        let c = &c;
        async move {
            let mut seen = Vec::new();
            for i in pods {
                let name = format!("p{i}");
                let evs = eventually("Scheduled event", || async {
                    let e = c.events_for(&name, "Scheduled").await;
                    (!e.is_empty()).then_some(e)
                })
                .await;
                seen.extend(evs.into_iter().filter_map(|e| e.reporting_instance));
            }
            seen
        }
    };
    let seen = instances(0..5).await;
    assert_eq!(seen.len(), 5, "one binding per pod: {seen:?}");
    assert!(
        seen.iter().all(|i| i == "default-scheduler-first"),
        "{seen:?}"
    );
    let lease = leases.get("kube-scheduler").await.unwrap().spec.unwrap();
    assert_eq!(lease.holder_identity.as_deref(), Some("first"));
    assert_eq!(lease.lease_duration_seconds, Some(15));

    // The leader stops and releases the lease: the second takes over.
    first.stop().await;
    eventually("second holds the lease", || async {
        let l = leases.get_opt("kube-scheduler").await.ok()??;
        (l.spec?.holder_identity.as_deref() == Some("second")).then_some(())
    })
    .await;
    for i in 5..8 {
        c.pod(&format!("p{i}"), "10m", json!({})).await;
        c.bound(&format!("p{i}")).await;
    }
    let seen = instances(5..8).await;
    assert!(
        seen.iter().all(|i| i == "default-scheduler-second"),
        "{seen:?}"
    );

    second.stop().await;
    let released = leases.get("kube-scheduler").await.unwrap().spec.unwrap();
    assert_eq!(released.holder_identity, None);
    let _ = c
        .pods()
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await;
    c.stop().await;
}
