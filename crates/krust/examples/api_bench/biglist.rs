//! Cluster-wide lists of every pod, the way three kinds of client ask for them: plain JSON in one
//! response (client-go informers' initial list), a Table in one response, and kubectl's default
//! `get pods -A` (a Table in pages of 500). Each is timed to the last byte received.

use std::time::Instant;

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
    pub latency: Summary,
    /// Response bytes of one full list (all pages); None when the client hides them.
    pub bytes: Option<usize>,
}

/// One warm-up, then `rounds` timed lists; checks the item count so a truncated list cannot pass.
pub async fn measure(
    client: &Client,
    variant: Variant,
    rounds: usize,
    expected: usize,
) -> Result<BigList> {
    let mut samples = Vec::with_capacity(rounds);
    let mut bytes = None;
    for round in 0..=rounds {
        let t = Instant::now();
        let (size, items) = list_once(client, variant).await?;
        let elapsed = t.elapsed();
        if items < expected {
            bail!("{}: {items} items, expected {expected}", variant.label());
        }
        if round > 0 {
            samples.push(elapsed);
        }
        bytes = size;
    }
    Ok(BigList {
        variant,
        latency: Summary::of(samples),
        bytes,
    })
}

/// Lists once; returns the response bytes (when known) and the number of items or rows.
async fn list_once(client: &Client, variant: Variant) -> Result<(Option<usize>, usize)> {
    match variant {
        Variant::Json => {
            let body = get(client, "/api/v1/pods", JSON).await?;
            let items = count::<JsonList>(&body)?.items.len();
            Ok((Some(body.len()), items))
        }
        Variant::Table => {
            let body = get(client, "/api/v1/pods", TABLE).await?;
            let rows = count::<TablePage>(&body)?.rows.len();
            Ok((Some(body.len()), rows))
        }
        Variant::TablePaged => table_pages(client).await,
        Variant::KubeTyped => {
            let api: Api<Pod> = Api::all(client.clone());
            let list = api.list(&ListParams::default()).await?;
            Ok((None, list.items.len()))
        }
    }
}

/// Follows `continue` tokens as kubectl does, decoding each page (kubectl must too).
async fn table_pages(client: &Client) -> Result<(Option<usize>, usize)> {
    let (mut bytes, mut rows) = (0, 0);
    let mut token = String::new();
    loop {
        let mut uri = format!("/api/v1/pods?limit={KUBECTL_PAGE}");
        if !token.is_empty() {
            uri.push_str("&continue=");
            uri.push_str(&token);
        }
        let body = get(client, &uri, TABLE).await?;
        let page: TablePage = count(&body)?;
        bytes += body.len();
        rows += page.rows.len();
        match page.metadata.cont {
            Some(next) if !next.is_empty() => token = next,
            _ => return Ok((Some(bytes), rows)),
        }
    }
}

async fn get(client: &Client, uri: &str, accept: &str) -> Result<String> {
    let req = http::Request::get(uri)
        .header(http::header::ACCEPT, accept)
        .body(Vec::new())?;
    client
        .request_text(req)
        .await
        .with_context(|| format!("GET {uri}"))
}

fn count<T: for<'de> Deserialize<'de>>(body: &str) -> Result<T> {
    serde_json::from_str(body).context("decoding a list response")
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
