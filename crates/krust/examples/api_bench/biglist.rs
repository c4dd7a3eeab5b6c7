//! Cluster-wide lists of every pod, the way three kinds of client ask for them: plain JSON in one
//! response (client-go informers' initial list), a Table in one response, and kubectl's default
//! `get pods -A` (a Table in pages of 500). Each is timed to the last byte received.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client};
use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::stats::Summary;

const JSON: &str = "application/json";
/// What kubectl 1.33 sends for `get`: a Table, falling back to JSON.
const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
/// kubectl's default `--chunk-size`.
const KUBECTL_PAGE: usize = 500;

#[derive(Clone, Copy, Debug)]
pub enum Variant {
    Json,
    Table,
    TablePaged,
    /// JSON decoded into `k8s_openapi` Pods by `Api::list`: what a kube-rs program waits for.
    KubeTyped,
}

impl Variant {
    pub const ALL: [Variant; 4] = [
        Variant::Json,
        Variant::Table,
        Variant::TablePaged,
        Variant::KubeTyped,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Variant::Json => "JSON, one response",
            Variant::Table => "Table, one response",
            Variant::TablePaged => "Table, pages of 500 (kubectl get pods -A)",
            Variant::KubeTyped => "JSON decoded by kube-rs Api::list",
        }
    }
}

pub struct BigList {
    pub variant: Variant,
    /// To the last byte (single responses), or to the last page decoded (paged, typed).
    pub latency: Summary,
    /// To the response headers of the (first) request: the server's work before it streams.
    pub first_byte: Option<Summary>,
    /// Response bytes of one full list (all pages); None when the client hides them.
    pub bytes: Option<usize>,
}

/// One list, as measured.
struct Listed {
    elapsed: Duration,
    first_byte: Option<Duration>,
    bytes: Option<usize>,
    items: usize,
}

/// One warm-up, then `rounds` timed lists; checks the item count so a truncated list cannot pass.
pub async fn measure(
    client: &Client,
    variant: Variant,
    rounds: usize,
    expected: usize,
) -> Result<BigList> {
    let (mut samples, mut first_bytes) = (Vec::new(), Vec::new());
    let mut bytes = None;
    for round in 0..=rounds {
        let listed = list_once(client, variant).await?;
        if listed.items < expected {
            bail!(
                "{}: {} items, expected {expected}",
                variant.label(),
                listed.items
            );
        }
        if round > 0 {
            samples.push(listed.elapsed);
            first_bytes.extend(listed.first_byte);
        }
        bytes = listed.bytes;
    }
    Ok(BigList {
        variant,
        latency: Summary::of(samples),
        first_byte: (!first_bytes.is_empty()).then(|| Summary::of(first_bytes)),
        bytes,
    })
}

async fn list_once(client: &Client, variant: Variant) -> Result<Listed> {
    match variant {
        Variant::Json => one_response::<JsonList>(client, JSON).await,
        Variant::Table => one_response::<TablePage>(client, TABLE).await,
        Variant::TablePaged => table_pages(client).await,
        Variant::KubeTyped => {
            let t = Instant::now();
            let api: Api<Pod> = Api::all(client.clone());
            let list = api.list(&ListParams::default()).await?;
            Ok(Listed {
                elapsed: t.elapsed(),
                first_byte: None,
                bytes: None,
                items: list.items.len(),
            })
        }
    }
}

/// `clients.len()` full JSON lists at once, as when several controllers' informers start
/// together; returns the slowest one's time. Run it to see the server's peak memory.
pub async fn concurrent_json(clients: &[Client], expected: usize) -> Result<Duration> {
    let lists = clients
        .iter()
        .map(|client| one_response::<JsonList>(client, JSON));
    let mut slowest = Duration::ZERO;
    for listed in futures::future::join_all(lists).await {
        let listed = listed?;
        if listed.items < expected {
            bail!(
                "concurrent list: {} items, expected {expected}",
                listed.items
            );
        }
        slowest = slowest.max(listed.elapsed);
    }
    Ok(slowest)
}

/// The whole list in one response, timed to its last byte; counted after the clock stops.
async fn one_response<T: Items>(client: &Client, accept: &str) -> Result<Listed> {
    let t = Instant::now();
    let fetched = fetch(client, "/api/v1/pods", accept, t).await?;
    let elapsed = t.elapsed();
    let items = decode::<T>(fetched.body.as_ref())?.len();
    Ok(Listed {
        elapsed,
        first_byte: Some(fetched.first_byte),
        bytes: Some(fetched.body.as_ref().len()),
        items,
    })
}

/// Follows `continue` tokens as kubectl does, decoding each page (kubectl must too).
async fn table_pages(client: &Client) -> Result<Listed> {
    let t = Instant::now();
    let (mut bytes, mut rows, mut first_byte) = (0, 0, None);
    let mut token = String::new();
    loop {
        let mut uri = format!("/api/v1/pods?limit={KUBECTL_PAGE}");
        if !token.is_empty() {
            uri.push_str("&continue=");
            uri.push_str(&token);
        }
        let fetched = fetch(client, &uri, TABLE, t).await?;
        first_byte.get_or_insert(fetched.first_byte);
        let page: TablePage = decode(fetched.body.as_ref())?;
        bytes += fetched.body.as_ref().len();
        rows += page.len();
        match page.metadata.cont {
            Some(next) if !next.is_empty() => token = next,
            _ => {
                return Ok(Listed {
                    elapsed: t.elapsed(),
                    first_byte,
                    bytes: Some(bytes),
                    items: rows,
                })
            }
        }
    }
}

/// `B` is the HTTP stack's byte buffer, kept as is: copying 7 MB would be timed too.
struct Fetched<B> {
    body: B,
    /// From `since` to the response headers.
    first_byte: Duration,
}

async fn fetch(
    client: &Client,
    uri: &str,
    accept: &str,
    since: Instant,
) -> Result<Fetched<impl AsRef<[u8]>>> {
    let req = http::Request::get(uri)
        .header(http::header::ACCEPT, accept)
        .body(kube::client::Body::empty())?;
    let resp = client
        .send(req)
        .await
        .with_context(|| format!("GET {uri}"))?;
    let first_byte = since.elapsed();
    let status = resp.status();
    let body = resp.into_body().collect_bytes().await?;
    if !status.is_success() {
        bail!("GET {uri}: {status}: {}", String::from_utf8_lossy(&body));
    }
    Ok(Fetched { body, first_byte })
}

fn decode<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).context("decoding a list response")
}

/// A decoded list response that knows how many objects or rows it held.
trait Items: for<'de> Deserialize<'de> {
    fn len(&self) -> usize;
}

impl Items for JsonList {
    fn len(&self) -> usize {
        self.items.len()
    }
}

impl Items for TablePage {
    fn len(&self) -> usize {
        self.rows.len()
    }
}

/// Only what the benchmark checks; serde skips the rest without building it.
#[derive(Deserialize)]
struct JsonList {
    items: Vec<IgnoredAny>,
}

#[derive(Deserialize)]
struct TablePage {
    #[serde(default)]
    metadata: PageMeta,
    #[serde(default)]
    rows: Vec<IgnoredAny>,
}

#[derive(Deserialize, Default)]
struct PageMeta {
    #[serde(rename = "continue")]
    cont: Option<String>,
}
