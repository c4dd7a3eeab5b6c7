//! API server benchmark: creates/s and p99 latency of create/get/list with 16 concurrent clients,
//! a list of 10,000 pods (latency and bytes), watch delivery latency with 1,000 watchers, and the
//! process RSS with 10,000 pods stored. In process, over TLS, on the in-memory engine:
//! `cargo bench -p apiserver --bench api`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;

const CLIENTS: usize = 16;
const PER_CLIENT: usize = 250;
const PODS: usize = 10_000;
const WATCHERS: usize = 1_000;

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

fn report(name: &str, mut samples: Vec<Duration>, wall: Duration) {
    let n = samples.len();
    let p50 = percentile(&mut samples, 0.50);
    let p99 = percentile(&mut samples, 0.99);
    println!(
        "{name:<28} n={n:<6} {:>8.0}/s  p50 {p50:>9.2?}  p99 {p99:>9.2?}",
        n as f64 / wall.as_secs_f64()
    );
}

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

/// Runs `op(client, i)` PER_CLIENT times on each of CLIENTS clients at once; returns latencies.
async fn concurrent<F, Fut>(clients: &[kube::Client], op: F) -> (Vec<Duration>, Duration)
where
    F: Fn(kube::Client, usize, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let start = Instant::now();
    let tasks: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(c, client)| {
            let (client, op) = (client.clone(), op.clone());
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(PER_CLIENT);
                for i in 0..PER_CLIENT {
                    let t = Instant::now();
                    op(client.clone(), c, i).await;
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    (all, start.elapsed())
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10", "resources": {"requests": {"cpu": "10m"}}}]}}))
    .unwrap()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let s = common::TestServer::start().await;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(s.admin_client().await);
    }
    println!("krust API server, {CLIENTS} concurrent clients, in-memory engine, TLS");

    let (lat, wall) = concurrent(&clients, |client, c, i| async move {
        let api: Api<ConfigMap> = Api::namespaced(client, "default");
        let cm: ConfigMap = serde_json::from_value(
            json!({"metadata": {"name": format!("cm-{c}-{i}")}, "data": {"k": "v"}}),
        )
        .unwrap();
        api.create(&PostParams::default(), &cm)
            .await
            .expect("create");
    })
    .await;
    report("create configmap", lat, wall);

    let (lat, wall) = concurrent(&clients, |client, c, i| async move {
        let api: Api<ConfigMap> = Api::namespaced(client, "default");
        api.get(&format!("cm-{c}-{i}")).await.expect("get");
    })
    .await;
    report("get configmap", lat, wall);

    let (lat, wall) = concurrent(&clients, |client, _, _| async move {
        let api: Api<ConfigMap> = Api::namespaced(client, "kube-system");
        api.list(&ListParams::default()).await.expect("list");
    })
    .await;
    report("list (small namespace)", lat, wall);

    let start = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let api: Api<Pod> = Api::namespaced(clients[c].clone(), "default");
            tokio::spawn(async move {
                for i in (c..PODS).step_by(CLIENTS) {
                    api.create(&PostParams::default(), &pod(&format!("pod-{i:05}")))
                        .await
                        .expect("create pod");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let wall = start.elapsed();
    println!(
        "create {PODS} pods            {:>8.0}/s  ({wall:.2?})",
        PODS as f64 / wall.as_secs_f64()
    );

    let mut lat = Vec::new();
    let mut bytes = 0;
    for _ in 0..5 {
        let req = http::Request::get("/api/v1/pods").body(vec![]).unwrap();
        let t = Instant::now();
        let body = clients[0].request_text(req).await.expect("list pods");
        lat.push(t.elapsed());
        bytes = body.len();
    }
    let p50 = percentile(&mut lat, 0.5);
    println!(
        "list {PODS} pods (JSON)       p50 {p50:.2?}  max {:.2?}  {:.1} MB",
        lat[lat.len() - 1],
        bytes as f64 / 1e6
    );
    println!(
        "RSS with {PODS} pods stored    {:.0} MB (server and clients in one process)",
        rss_mb()
    );

    let rv = Api::<ConfigMap>::namespaced(clients[0].clone(), "default")
        .list(&ListParams::default().limit(1))
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for w in 0..WATCHERS {
        let api: Api<ConfigMap> = Api::namespaced(clients[w % CLIENTS].clone(), "bench-watch");
        let (rv, tx) = (rv.clone(), tx.clone());
        tokio::spawn(async move {
            let mut stream = api
                .watch(&WatchParams::default().timeout(290), &rv)
                .await
                .expect("watch")
                .boxed();
            while let Some(Ok(ev)) = stream.next().await {
                if let WatchEvent::Added(_) = ev {
                    let _ = tx.send(Instant::now());
                }
            }
        });
    }
    let ns: k8s_openapi::api::core::v1::Namespace =
        serde_json::from_value(json!({"metadata": {"name": "bench-watch"}})).unwrap();
    Api::all(clients[0].clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let api: Api<ConfigMap> = Api::namespaced(clients[0].clone(), "bench-watch");
    for round in 0..3 {
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": format!("w{round}")}})).unwrap();
        let t = Instant::now();
        api.create(&PostParams::default(), &cm).await.unwrap();
        let mut lat = Vec::with_capacity(WATCHERS);
        while lat.len() < WATCHERS {
            match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
                Ok(Some(at)) => lat.push(at.saturating_duration_since(t)),
                _ => break,
            }
        }
        let got = lat.len();
        let p50 = percentile(&mut lat, 0.5);
        let p99 = percentile(&mut lat, 0.99);
        println!("watch delivery, {WATCHERS} watchers round {round}: {got} delivered, p50 {p50:.2?}  p99 {p99:.2?}  last {:.2?}", lat[got - 1]);
    }
    s.stop().await;
}
