//! Single-object and small-list calls from N concurrent clients: each client has its own kube-rs
//! `Client` (its own connection, as N separate programs would) and takes the next operation from
//! a shared counter, so a slow call delays only its own client.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use crate::stats::Summary;

/// Where the benchmark's pods live: pod `i` is `pod-i` in namespace `i % namespaces`, so every
/// namespace holds the same number of pods and a namespace list returns `per_namespace` items.
pub struct Layout {
    pub namespaces: Vec<String>,
    pub pods: usize,
}

impl Layout {
    pub fn new(pods: usize, per_namespace: usize) -> Layout {
        let count = pods.div_ceil(per_namespace.max(1)).max(1);
        Layout {
            namespaces: (0..count).map(|n| format!("bench-{n:03}")).collect(),
            pods,
        }
    }

    pub fn pod(&self, i: usize) -> (&str, String) {
        let ns = &self.namespaces[i % self.namespaces.len()];
        (ns.as_str(), format!("pod-{i:05}"))
    }

    /// The pod the `k`-th get reads: a stride through all pods, so gets do not hit one hot key.
    fn pod_for_get(&self, k: usize) -> (&str, String) {
        self.pod(k.wrapping_mul(7919) % self.pods)
    }
}

/// What one phase measured.
pub struct Phase {
    pub ops: usize,
    pub wall: Duration,
    pub latency: Summary,
}

impl Phase {
    pub fn per_second(&self) -> f64 {
        self.ops as f64 / self.wall.as_secs_f64().max(f64::EPSILON)
    }
}

/// The smallest valid pod: one container. No kubelet exists, so it stays Pending.
fn pod(name: &str) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "api-bench"}},
        "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]}
    }))?)
}

pub async fn create_namespaces(client: &Client, layout: &Layout) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    for name in &layout.namespaces {
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
        api.create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("creating namespace {name}"))?;
    }
    Ok(())
}

pub async fn creates(clients: &[Client], layout: &Arc<Layout>) -> Result<Phase> {
    let layout = layout.clone();
    run("create", clients, layout.pods, move |client, i| {
        let layout = layout.clone();
        async move {
            let (ns, name) = layout.pod(i);
            let api: Api<Pod> = Api::namespaced(client, ns);
            api.create(&PostParams::default(), &pod(&name)?).await?;
            Ok(())
        }
    })
    .await
}

pub async fn gets(clients: &[Client], layout: &Arc<Layout>, total: usize) -> Result<Phase> {
    let layout = layout.clone();
    run("get", clients, total, move |client, k| {
        let layout = layout.clone();
        async move {
            let (ns, name) = layout.pod_for_get(k);
            let api: Api<Pod> = Api::namespaced(client, ns);
            api.get(&name).await?;
            Ok(())
        }
    })
    .await
}

/// Lists of one namespace (`per_namespace` pods), decoded by kube-rs as a real client would.
pub async fn lists(clients: &[Client], layout: &Arc<Layout>, total: usize) -> Result<Phase> {
    let layout = layout.clone();
    let expected = layout.pods / layout.namespaces.len();
    run("namespace list", clients, total, move |client, k| {
        let layout = layout.clone();
        async move {
            let ns = &layout.namespaces[k % layout.namespaces.len()];
            let api: Api<Pod> = Api::namespaced(client, ns);
            let list = api.list(&ListParams::default()).await?;
            // A short list would make the figure look better than it is.
            if list.items.len() < expected {
                bail!("{ns} listed {} pods, expected {expected}", list.items.len());
            }
            Ok(())
        }
    })
    .await
}

/// Runs `total` operations over `clients` concurrently and times each one; the first error
/// aborts the phase (a benchmark of failing calls would measure nothing useful).
async fn run<F, Fut>(name: &str, clients: &[Client], total: usize, op: F) -> Result<Phase>
where
    F: Fn(Client, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = clients
        .iter()
        .map(|client| {
            let (op, next, client) = (op.clone(), next.clone(), client.clone());
            let name = name.to_string();
            tokio::spawn(async move {
                let mut samples = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return Ok::<_, anyhow::Error>(samples);
                    }
                    progress(&name, i, total, started);
                    let t = Instant::now();
                    op(client.clone(), i)
                        .await
                        .with_context(|| format!("{name} #{i}"))?;
                    samples.push(t.elapsed());
                }
            })
        })
        .collect();
    let mut samples = Vec::with_capacity(total);
    for task in tasks {
        samples.extend(task.await.context("a client task panicked")??);
    }
    Ok(Phase {
        ops: samples.len(),
        wall: started.elapsed(),
        latency: Summary::of(samples),
    })
}

/// A progress line every tenth of the phase, so a slow server shows where it is.
fn progress(name: &str, i: usize, total: usize, started: Instant) {
    let step = (total / 10).max(1);
    if i > 0 && i.is_multiple_of(step) {
        let rate = i as f64 / started.elapsed().as_secs_f64().max(f64::EPSILON);
        eprintln!("  {name}: {i}/{total} ({rate:.0}/s)");
    }
}
