//! Creating the benchmark's pods and seeing them Running through a watch, as upstream's pod
//! startup SLI does: from the create request to the first watch event with `phase: Running`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, ServiceAccount};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio::task::JoinHandle;

pub const NAMESPACE: &str = "default";
const LABEL: &str = "krust-bench=kubelet";
const BUSYBOX: &str = "localhost/krust/busybox:1.35.0";

pub fn pod(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"krust-bench": "kubelet"}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main",
                "image": BUSYBOX,
                "imagePullPolicy": "IfNotPresent",
                "command": ["sleep", "3600"],
            }],
        },
    }))
    .expect("a valid pod")
}

/// When each pod of the benchmark was first seen Running, by name.
#[derive(Clone, Default)]
pub struct Seen(Arc<Mutex<HashMap<String, Instant>>>);

impl Seen {
    pub fn get(&self, name: &str) -> Option<Instant> {
        self.0.lock().ok()?.get(name).copied()
    }

    pub fn count(&self) -> usize {
        self.0.lock().map_or(0, |m| m.len())
    }
}

/// Watches the benchmark's pods and records when each is first Running.
pub fn watch_running(client: Client) -> (Seen, JoinHandle<()>) {
    let seen = Seen::default();
    let out = seen.clone();
    let api: Api<Pod> = Api::namespaced(client, NAMESPACE);
    let task = tokio::spawn(async move {
        let config = watcher::Config::default().labels(LABEL);
        let mut events = watcher::watcher(api, config).boxed();
        while let Some(event) = events.next().await {
            let now = Instant::now();
            let pod = match event {
                Ok(Event::Apply(pod) | Event::InitApply(pod)) => pod,
                Ok(_) => continue,
                Err(e) => {
                    eprintln!("  watch error (retrying): {e}");
                    continue;
                }
            };
            let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            if let (true, Some(name), Ok(mut map)) = (running, pod.metadata.name, seen.0.lock()) {
                map.entry(name).or_insert(now);
            }
        }
    });
    (out, task)
}

/// Creates `count` pods named `{prefix}-{i}`, `rate` per second (all at once when `None`), each
/// create sent without waiting for the previous one; returns when each create was sent.
pub async fn create(
    client: &Client,
    prefix: &str,
    count: usize,
    rate: Option<f64>,
) -> Result<Vec<(String, Instant)>> {
    let api: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let mut ticker = rate.map(|r| {
        let mut t = tokio::time::interval(Duration::from_secs_f64(1.0 / r));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        t
    });
    let mut sent = Vec::with_capacity(count);
    let mut creates = Vec::with_capacity(count);
    for i in 0..count {
        if let Some(t) = ticker.as_mut() {
            t.tick().await;
        }
        let name = format!("{prefix}-{i}");
        let api = api.clone();
        let body = pod(&name);
        sent.push((name, Instant::now()));
        creates.push(tokio::spawn(async move {
            api.create(&PostParams::default(), &body).await
        }));
    }
    for (c, (name, _)) in creates.into_iter().zip(&sent) {
        c.await?.with_context(|| format!("creating pod {name}"))?;
    }
    Ok(sent)
}

/// Waits until every named pod was seen Running; the latency of each from its create.
pub async fn wait_running(
    seen: &Seen,
    sent: &[(String, Instant)],
    timeout: Duration,
) -> Result<Vec<Duration>> {
    let deadline = Instant::now() + timeout;
    loop {
        let latencies: Vec<Duration> = sent
            .iter()
            .filter_map(|(name, at)| Some(seen.get(name)?.saturating_duration_since(*at)))
            .collect();
        if latencies.len() == sent.len() {
            return Ok(latencies);
        }
        if Instant::now() > deadline {
            bail!(
                "only {} of {} pods Running after {timeout:?}",
                latencies.len(),
                sent.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Deletes the benchmark's pods and waits until the kubelet has stopped them and removed the
/// objects (it deletes each object once its containers are gone).
pub async fn delete_all(client: &Client, timeout: Duration) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let lp = ListParams::default().labels(LABEL);
    let dp = DeleteParams {
        grace_period_seconds: Some(1),
        ..Default::default()
    };
    api.delete_collection(&dp, &lp).await?;
    let deadline = Instant::now() + timeout;
    loop {
        let left = api.list(&lp).await?.items.len();
        if left == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{left} pods still there {timeout:?} after their deletion");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits for a Ready node and the default ServiceAccount (admission refuses pods before it).
pub async fn wait_node_ready(client: &Client, timeout: Duration) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), NAMESPACE);
    let deadline = Instant::now() + timeout;
    loop {
        let ready = nodes
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .any(|n| {
                let conditions = n.status.as_ref().and_then(|s| s.conditions.as_ref());
                conditions
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            });
        if ready && accounts.get_opt("default").await?.is_some() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("no Ready node (and default ServiceAccount) after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits for the default ServiceAccount only (the reference server has no node).
pub async fn wait_service_account(client: &Client, timeout: Duration) -> Result<()> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), NAMESPACE);
    let deadline = Instant::now() + timeout;
    while accounts.get_opt("default").await?.is_none() {
        if Instant::now() > deadline {
            bail!("no default ServiceAccount after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

/// The pods' `phase` counts, for progress lines.
pub async fn phases(client: &Client) -> Result<String> {
    let api: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let mut counts: HashMap<String, usize> = HashMap::new();
    for p in api.list(&ListParams::default().labels(LABEL)).await?.items {
        let phase = p.status.and_then(|s| s.phase).unwrap_or_default();
        *counts.entry(phase).or_default() += 1;
    }
    let mut parts: Vec<String> = counts
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    parts.sort();
    Ok(parts.join(" "))
}
