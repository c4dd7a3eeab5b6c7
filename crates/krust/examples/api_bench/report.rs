//! The markdown table: each figure next to upstream's SLO (or k0s's published memory) and
//! krust's own target, with measured/reference ratios (below 1 is better than the reference).

use std::fmt::Write as _;
use std::time::Duration;

use crate::biglist::BigList;
use crate::load::Phase;
use crate::server::Rss;
use crate::stats::{megabytes, ms, Summary};
use crate::watch::{WatchFigures, OPENING};

/// Upstream SLOs (sig-scalability api_call_latency.md), p99 per cluster-day.
const SLO_SINGLE: Duration = Duration::from_secs(1);
const SLO_LIST: Duration = Duration::from_secs(30);
/// krust's targets (issue 4).
const TARGET_SINGLE: Duration = Duration::from_millis(10);
const TARGET_BIG_LIST: Duration = Duration::from_millis(200);
const TARGET_RSS_MB: f64 = 250.0;
/// k0s's published controller memory: 100–130 KB per pod, 2.3 GB at 10,000 pods.
const K0S_PER_POD_KB: (f64, f64) = (100.0, 130.0);
const K0S_AT_10K_MB: f64 = 2300.0;

pub struct Results {
    pub clients: usize,
    pub pods: usize,
    pub per_namespace: usize,
    pub creates: Phase,
    pub gets: Phase,
    pub lists: Phase,
    /// The same namespace lists from a single client.
    pub lists_alone: Phase,
    pub big_lists: Vec<BigList>,
    pub rss_idle: Rss,
    /// After the creates, gets and namespace lists.
    pub rss_created: Rss,
    /// After the cluster-wide lists too (the allocator keeps some of what they used).
    pub rss_stored: Rss,
    pub concurrent: Concurrent,
    pub watch: WatchFigures,
}

/// Several full lists at once, and the server's peak RSS after them.
pub struct Concurrent {
    pub lists: usize,
    pub slowest: Duration,
    pub peak_kib: u64,
}

struct Row {
    figure: String,
    value: String,
    reference: String,
    ratio: String,
    target: String,
    target_ratio: String,
}

impl Row {
    fn new(figure: impl Into<String>, value: impl Into<String>) -> Row {
        Row {
            figure: figure.into(),
            value: value.into(),
            reference: "—".into(),
            ratio: "—".into(),
            target: "—".into(),
            target_ratio: "—".into(),
        }
    }

    fn reference(mut self, label: impl Into<String>, ratio: f64) -> Row {
        self.reference = label.into();
        self.ratio = times(ratio);
        self
    }

    fn target(mut self, label: impl Into<String>, ratio: f64) -> Row {
        self.target = label.into();
        self.target_ratio = format!("{}{}", times(ratio), if ratio < 1.0 { " ✓" } else { " ✗" });
        self
    }
}

fn times(ratio: f64) -> String {
    if ratio < 0.01 {
        format!("{ratio:.4}×")
    } else {
        format!("{ratio:.2}×")
    }
}

fn ratio(value: Duration, reference: Duration) -> f64 {
    value.as_secs_f64() / reference.as_secs_f64()
}

/// p50 and p99 rows of a latency, the p99 compared with the SLO and the target.
fn latency_rows(rows: &mut Vec<Row>, figure: &str, s: &Summary, slo: Duration, slo_label: &str) {
    rows.push(Row::new(format!("{figure} p50"), ms(s.p50)));
    rows.push(
        Row::new(format!("{figure} p99"), ms(s.p99))
            .reference(slo_label, ratio(s.p99, slo))
            .target("p99 < 10 ms", ratio(s.p99, TARGET_SINGLE)),
    );
}

pub fn markdown(r: &Results) -> String {
    let mut rows = Vec::new();
    let c = r.clients;
    rows.push(Row::new(
        format!("creates/s, {c} clients ({} pods)", r.creates.ops),
        format!("{:.0}/s", r.creates.per_second()),
    ));
    latency_rows(
        &mut rows,
        "create",
        &r.creates.latency,
        SLO_SINGLE,
        "SLO p99 ≤ 1 s",
    );
    rows.push(Row::new(
        format!("gets/s, {c} clients"),
        format!("{:.0}/s", r.gets.per_second()),
    ));
    latency_rows(
        &mut rows,
        "get",
        &r.gets.latency,
        SLO_SINGLE,
        "SLO p99 ≤ 1 s",
    );
    rows.push(Row::new(
        format!(
            "namespace lists/s ({} pods each), {c} clients",
            r.per_namespace
        ),
        format!("{:.0}/s", r.lists.per_second()),
    ));
    latency_rows(
        &mut rows,
        "namespace list",
        &r.lists.latency,
        SLO_LIST,
        "SLO p99 ≤ 30 s",
    );
    latency_rows(
        &mut rows,
        "namespace list, 1 client",
        &r.lists_alone.latency,
        SLO_LIST,
        "SLO p99 ≤ 30 s",
    );
    big_list_rows(&mut rows, r);
    watch_rows(&mut rows, &r.watch);
    memory_rows(&mut rows, r);

    let mut out = String::new();
    out.push_str("| figure | krust | upstream / k0s | ratio | krust target | ratio |\n");
    out.push_str("| --- | ---: | --- | ---: | --- | ---: |\n");
    for row in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            row.figure, row.value, row.reference, row.ratio, row.target, row.target_ratio
        );
    }
    out
}

/// With a handful of rounds p99 is the maximum, so the max is what is compared.
fn big_list_rows(rows: &mut Vec<Row>, r: &Results) {
    for list in &r.big_lists {
        let l = &list.latency;
        let bytes = list
            .bytes
            .map(|b| {
                format!(
                    ", {:.1} MB ({:.0} B/pod)",
                    b as f64 / 1e6,
                    b as f64 / r.pods as f64
                )
            })
            .unwrap_or_default();
        // Headers arrive once the server has built the response, unless it streams.
        let first = list
            .first_byte
            .map(|f| format!("; headers after {}", ms(f.p50)))
            .unwrap_or_default();
        rows.push(
            Row::new(
                format!("list {} pods: {}", r.pods, list.variant.label()),
                format!(
                    "p50 {} / max {} ({} rounds){first}{bytes}",
                    ms(l.p50),
                    ms(l.max),
                    l.count
                ),
            )
            .reference("SLO p99 ≤ 30 s", ratio(l.max, SLO_LIST))
            .target("< 200 ms", ratio(l.max, TARGET_BIG_LIST)),
        );
    }
}

fn watch_rows(rows: &mut Vec<Row>, w: &WatchFigures) {
    let s = &w.from_response;
    rows.push(Row::new(
        format!(
            "watch delivery, {} watchers × {} updates, after the update's response",
            w.watchers, w.updates
        ),
        format!("p50 {} / p99 {} / max {}", ms(s.p50), ms(s.p99), ms(s.max)),
    ));
    let q = &w.from_request;
    rows.push(Row::new(
        "watch delivery, after the update was sent",
        format!("p50 {} / p99 {} / max {}", ms(q.p50), ms(q.p99), ms(q.max)),
    ));
    rows.push(Row::new(
        "watch events delivered / expected",
        format!(
            "{} / {} ({} before the response)",
            w.delivered,
            w.expected(),
            w.early
        ),
    ));
    rows.push(Row::new(
        format!("time to open {} watches ({OPENING} at a time)", w.watchers),
        format!("{:.2} s", w.setup.as_secs_f64()),
    ));
}

fn memory_rows(rows: &mut Vec<Row>, r: &Results) {
    let idle = megabytes(r.rss_idle.current_kib);
    let created = megabytes(r.rss_created.current_kib);
    // The higher of the two steady readings is the one compared: the conservative choice.
    let stored = created.max(megabytes(r.rss_stored.current_kib));
    let peak = megabytes(r.rss_stored.peak_kib);
    rows.push(Row::new("server RSS, idle", format!("{idle:.1} MB")));
    rows.push(Row::new(
        format!("server RSS, {} pods stored, after the creates", r.pods),
        format!("{created:.1} MB"),
    ));
    rows.push(
        Row::new(
            format!(
                "server RSS, {} pods stored, after the cluster-wide lists",
                r.pods
            ),
            format!("{:.1} MB", megabytes(r.rss_stored.current_kib)),
        )
        .reference("k0s 2.3 GB at 10,000 pods", stored / K0S_AT_10K_MB)
        .target("< 250 MB", stored / TARGET_RSS_MB),
    );
    rows.push(
        Row::new("server peak RSS (VmHWM) so far", format!("{peak:.1} MB"))
            .reference("k0s 2.3 GB at 10,000 pods", peak / K0S_AT_10K_MB)
            .target("< 250 MB", peak / TARGET_RSS_MB),
    );
    let c = &r.concurrent;
    let peak = megabytes(c.peak_kib);
    rows.push(
        Row::new(
            format!(
                "server peak RSS after {} concurrent cluster-wide JSON lists",
                c.lists
            ),
            format!("{peak:.1} MB (slowest list {})", ms(c.slowest)),
        )
        .reference("k0s 2.3 GB at 10,000 pods", peak / K0S_AT_10K_MB)
        .target("< 250 MB", peak / TARGET_RSS_MB),
    );
    let per_pod_kb = (stored - idle) * 1e3 / r.pods.max(1) as f64;
    let (lo, hi) = K0S_PER_POD_KB;
    rows.push(Row {
        ratio: format!("{}–{}", times(per_pod_kb / hi), times(per_pod_kb / lo)),
        reference: "k0s 100–130 KB/pod".into(),
        ..Row::new("RSS growth per stored pod", format!("{per_pod_kb:.1} KB"))
    });
    rows.push(Row::new(
        format!(
            "server RSS, {} pods + {} open watches",
            r.pods, r.watch.watchers
        ),
        format!("{:.1} MB", megabytes(r.watch.rss_watching.current_kib)),
    ));
}
