//! Watch fan-out: W concurrent watch streams on the ConfigMaps of one namespace, then U updates of
//! one ConfigMap, one at a time. Each watcher stamps every MODIFIED event on arrival; latency is
//! that stamp minus the moment the update's response reached the updater (and, for reference,
//! minus the moment the update was sent, which no event can precede).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{PostParams, WatchEvent, WatchParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::{watch, Semaphore};

use crate::server::{KrustServer, Rss};
use crate::stats::Summary;

const NAMESPACE: &str = "bench-watch";
const NAME: &str = "watched";
/// Pause between updates, so each update's fan-out is measured on its own, not queued behind
/// the previous one.
pub const GAP: Duration = Duration::from_millis(100);
/// Watches opening at once: opening is setup, not the figure, and 1,000 simultaneous TLS
/// handshakes on two cores would only slow everything down.
pub const OPENING: usize = 64;
/// How long the next watch may take to open before the phase fails.
const OPEN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait for stragglers after the last update before counting events as missed.
const DRAIN: Duration = Duration::from_secs(15);

pub struct WatchFigures {
    pub watchers: usize,
    pub updates: usize,
    pub setup: Duration,
    pub delivered: usize,
    /// Events stamped before the updater had the response (the server wrote, then fanned out
    /// faster than the response travelled back); they count as zero latency.
    pub early: usize,
    pub from_response: Summary,
    pub from_request: Summary,
    pub rss_watching: Rss,
}

impl WatchFigures {
    pub fn expected(&self) -> usize {
        self.watchers * self.updates
    }
}

/// When one update was sent and when its response arrived, by the resourceVersion it produced.
struct Update {
    sent: Instant,
    answered: Instant,
}

pub async fn run(
    config: &kube::Config,
    server: &KrustServer,
    watchers: usize,
    updates: usize,
) -> Result<WatchFigures> {
    let client = Client::try_from(config.clone())?;
    let api = setup_configmap(&client).await?;
    let start_rv = resource_version(&api.get(NAME).await?)?;

    let setup_started = Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(watchers.max(1));
    let opening = Arc::new(Semaphore::new(OPENING));
    let tasks: Vec<_> = (0..watchers)
        .map(|_| {
            // One client per watcher: kube-rs speaks HTTP/1.1, so every watch holds its own
            // connection either way; separate clients make that explicit.
            let client = Client::try_from(config.clone());
            let (rv, stop, ready, opening) = (
                start_rv.clone(),
                stop_rx.clone(),
                ready_tx.clone(),
                opening.clone(),
            );
            tokio::spawn(async move {
                let api: Api<ConfigMap> = Api::namespaced(client?, NAMESPACE);
                watcher(api, rv, updates, opening, ready, stop).await
            })
        })
        .collect();
    drop(ready_tx);
    for n in 0..watchers {
        // A server that held back response headers until the first event would park every
        // watcher here; the timeout turns that into an error instead of a hang.
        tokio::time::timeout(OPEN_TIMEOUT, ready_rx.recv())
            .await
            .ok()
            .flatten()
            .ok_or_else(|| anyhow!("only {n} of {watchers} watches opened"))?;
        if (n + 1).is_multiple_of(250) {
            eprintln!("  watch: {} streams open", n + 1);
        }
    }
    let setup = setup_started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_watching = server.rss()?;
    eprintln!("  watch: {watchers} streams open in {setup:.1?}; {updates} updates, {GAP:?} apart");

    let sent = update_loop(&api, updates).await?;
    let mut all = futures::future::join_all(tasks);
    let stamps = match tokio::time::timeout(DRAIN, &mut all).await {
        Ok(stamps) => stamps,
        Err(_) => {
            eprintln!("  watch: stragglers after {DRAIN:?}; closing the streams");
            let _ = stop_tx.send(true);
            all.await
        }
    };
    let mut received = Vec::with_capacity(watchers * updates);
    for stamp in stamps {
        received.extend(stamp.context("a watcher panicked")??);
    }
    Ok(figures(
        watchers,
        updates,
        setup,
        &sent,
        &received,
        rss_watching,
    ))
}

async fn setup_configmap(client: &Client) -> Result<Api<ConfigMap>> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": NAMESPACE}}))?;
    namespaces.create(&PostParams::default(), &ns).await?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": NAME}, "data": {"n": "0"}}))?;
    api.create(&PostParams::default(), &cm).await?;
    Ok(api)
}

fn resource_version(cm: &ConfigMap) -> Result<String> {
    cm.metadata
        .resource_version
        .clone()
        .context("the server returned an object without a resourceVersion")
}

/// Opens one watch from `rv`, reports it open, then stamps each MODIFIED event until it has
/// `want` of them or is told to stop.
async fn watcher(
    api: Api<ConfigMap>,
    rv: String,
    want: usize,
    opening: Arc<Semaphore>,
    ready: tokio::sync::mpsc::Sender<()>,
    mut stop: watch::Receiver<bool>,
) -> Result<Vec<(String, Instant)>> {
    let params = WatchParams::default().timeout(290).disable_bookmarks();
    let permit = opening.acquire_owned().await?;
    let stream = api.watch(&params, &rv).await.context("opening a watch")?;
    drop(permit);
    ready.send(()).await?;
    let mut stream = stream.boxed();
    let mut got = Vec::with_capacity(want);
    while got.len() < want {
        tokio::select! {
            event = stream.try_next() => match event.context("reading a watch")? {
                Some(WatchEvent::Modified(cm)) => got.push((resource_version(&cm)?, Instant::now())),
                Some(WatchEvent::Error(e)) => bail!("watch error event: {e:?}"),
                Some(_) => {}
                None => break,
            },
            _ = stop.changed() => break,
        }
    }
    Ok(got)
}

/// Updates the ConfigMap `updates` times with a replace (PUT carrying the resourceVersion).
async fn update_loop(api: &Api<ConfigMap>, updates: usize) -> Result<HashMap<String, Update>> {
    let mut cm = api.get(NAME).await?;
    let mut sent = HashMap::with_capacity(updates);
    for n in 1..=updates {
        cm.data = Some(BTreeMap::from([("n".to_string(), n.to_string())]));
        let t = Instant::now();
        cm = api
            .replace(NAME, &PostParams::default(), &cm)
            .await
            .with_context(|| format!("update #{n}"))?;
        let update = Update {
            sent: t,
            answered: Instant::now(),
        };
        sent.insert(resource_version(&cm)?, update);
        tokio::time::sleep(GAP).await;
    }
    Ok(sent)
}

fn figures(
    watchers: usize,
    updates: usize,
    setup: Duration,
    sent: &HashMap<String, Update>,
    received: &[(String, Instant)],
    rss_watching: Rss,
) -> WatchFigures {
    let (mut from_response, mut from_request) = (Vec::new(), Vec::new());
    let mut early = 0;
    for (rv, at) in received {
        // An event for a resourceVersion we did not produce is not ours to time.
        let Some(update) = sent.get(rv) else { continue };
        if *at < update.answered {
            early += 1;
        }
        from_response.push(at.saturating_duration_since(update.answered));
        from_request.push(at.saturating_duration_since(update.sent));
    }
    WatchFigures {
        watchers,
        updates,
        setup,
        delivered: from_response.len(),
        early,
        from_response: Summary::of(from_response),
        from_request: Summary::of(from_request),
        rss_watching,
    }
}
