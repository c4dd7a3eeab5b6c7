//! `/metrics/resource` as upstream's kubelet renders it (pkg/kubelet/metrics/collectors/
//! resource_metrics.go) from the summary: what metrics-server scrapes. Samples carry the time
//! they were measured at, in milliseconds, as upstream's do.

use std::fmt::Write;

use super::types::*;

struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    samples: Vec<String>,
}

impl Family {
    fn new(name: &'static str, kind: &'static str, help: &'static str) -> Family {
        Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    fn add(&mut self, labels: &[(&str, &str)], value: f64, time: Option<Time>) {
        let mut line = self.name.to_string();
        if !labels.is_empty() {
            let rendered: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let _ = write!(line, "{{{}}}", rendered.join(","));
        }
        let _ = write!(line, " {}", go_float(value));
        if let Some(t) = time {
            let _ = write!(line, " {}", t.as_millis());
        }
        self.samples.push(line);
    }

    fn render(&self, out: &mut String) {
        if self.samples.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {} [STABLE] {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind);
        for s in &self.samples {
            out.push_str(s);
            out.push('\n');
        }
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A float as Go's strconv 'g' with the shortest precision writes it (Prometheus' text format
/// from Go): exponent form from 1e+06 up and below 1e-04.
pub fn go_float(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    if !v.is_finite() {
        return if v.is_nan() {
            "NaN".into()
        } else if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        format!("{v}")
    }
}

/// The text of /metrics/resource; `summary` None (the runtime did not answer) gives only
/// `resource_scrape_error 1`, as upstream.
pub fn render(summary: Option<&Summary>) -> String {
    let mut container_cpu = Family::new(
        "container_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the container in core-seconds",
    );
    let mut container_mem = Family::new(
        "container_memory_working_set_bytes",
        "gauge",
        "Current working set of the container in bytes",
    );
    let mut container_start = Family::new(
        "container_start_time_seconds",
        "gauge",
        "Start time of the container since unix epoch in seconds",
    );
    let mut node_cpu = Family::new(
        "node_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the node in core-seconds",
    );
    let mut node_mem = Family::new(
        "node_memory_working_set_bytes",
        "gauge",
        "Current working set of the node in bytes",
    );
    let mut pod_cpu = Family::new(
        "pod_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the pod in core-seconds",
    );
    let mut pod_mem = Family::new(
        "pod_memory_working_set_bytes",
        "gauge",
        "Current working set of the pod in bytes",
    );
    let mut scrape_error = Family::new(
        "resource_scrape_error",
        "gauge",
        "1 if there was an error while getting container metrics, 0 otherwise",
    );
    scrape_error.add(&[], if summary.is_some() { 0.0 } else { 1.0 }, None);

    if let Some(summary) = summary {
        if let Some((v, t)) = cpu_seconds(summary.node.cpu.as_ref()) {
            node_cpu.add(&[], v, Some(t));
        }
        if let Some((v, t)) = working_set(summary.node.memory.as_ref()) {
            node_mem.add(&[], v, Some(t));
        }
        for pod in &summary.pods {
            let (ns, name) = (pod.pod_ref.namespace.as_str(), pod.pod_ref.name.as_str());
            let pod_labels = [("namespace", ns), ("pod", name)];
            if let Some((v, t)) = cpu_seconds(pod.cpu.as_ref()) {
                pod_cpu.add(&pod_labels, v, Some(t));
            }
            if let Some((v, t)) = working_set(pod.memory.as_ref()) {
                pod_mem.add(&pod_labels, v, Some(t));
            }
            for c in &pod.containers {
                let labels = [
                    ("container", c.name.as_str()),
                    ("namespace", ns),
                    ("pod", name),
                ];
                if let Some((v, t)) = cpu_seconds(c.cpu.as_ref()) {
                    container_cpu.add(&labels, v, Some(t));
                }
                if let Some((v, t)) = working_set(c.memory.as_ref()) {
                    container_mem.add(&labels, v, Some(t));
                }
                container_start.add(&labels, c.start_time.as_secs_f64(), Some(c.start_time));
            }
        }
    }
    let mut out = String::new();
    for family in [
        &container_cpu,
        &container_mem,
        &container_start,
        &node_cpu,
        &node_mem,
        &pod_cpu,
        &pod_mem,
        &scrape_error,
    ] {
        family.render(&mut out);
    }
    out
}

fn cpu_seconds(cpu: Option<&CpuStats>) -> Option<(f64, Time)> {
    let cpu = cpu?;
    Some((cpu.usage_core_nano_seconds? as f64 / 1e9, cpu.time))
}

fn working_set(mem: Option<&MemoryStats>) -> Option<(f64, Time)> {
    let mem = mem?;
    Some((mem.working_set_bytes? as f64, mem.time))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_as_go() {
        assert_eq!(go_float(10.0), "10");
        assert_eq!(go_float(1000.0), "1000");
        assert_eq!(go_float(123456.0), "123456");
        assert_eq!(go_float(1234567.0), "1.234567e+06");
        assert_eq!(go_float(1.6243962483020916e9), "1.6243962483020916e+09");
        assert_eq!(go_float(0.5), "0.5");
        assert_eq!(go_float(0.00001), "1e-05");
    }

    #[test]
    fn upstream_text() {
        let t = Time::from_nanos(1_624_396_278_302_000_000);
        let summary = Summary {
            node: NodeStats {
                cpu: Some(CpuStats {
                    time: t,
                    usage_core_nano_seconds: Some(10_000_000_000),
                    ..Default::default()
                }),
                memory: Some(MemoryStats {
                    time: t,
                    working_set_bytes: Some(1000),
                    ..Default::default()
                }),
                ..Default::default()
            },
            pods: vec![PodStats {
                pod_ref: PodReference {
                    name: "pod_a".into(),
                    namespace: "namespace_a".into(),
                    uid: "u".into(),
                },
                containers: vec![ContainerStats {
                    name: "container_a".into(),
                    start_time: Time::from_nanos(1_624_396_248_302_000_000),
                    memory: Some(MemoryStats {
                        time: t,
                        working_set_bytes: Some(1000),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let text = render(Some(&summary));
        let expected = "\
# HELP container_memory_working_set_bytes [STABLE] Current working set of the container in bytes
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{container=\"container_a\",namespace=\"namespace_a\",pod=\"pod_a\"} 1000 1624396278302
# HELP container_start_time_seconds [STABLE] Start time of the container since unix epoch in seconds
# TYPE container_start_time_seconds gauge
container_start_time_seconds{container=\"container_a\",namespace=\"namespace_a\",pod=\"pod_a\"} 1.624396248302e+09 1624396248302
# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the node in core-seconds
# TYPE node_cpu_usage_seconds_total counter
node_cpu_usage_seconds_total 10 1624396278302
# HELP node_memory_working_set_bytes [STABLE] Current working set of the node in bytes
# TYPE node_memory_working_set_bytes gauge
node_memory_working_set_bytes 1000 1624396278302
# HELP resource_scrape_error [STABLE] 1 if there was an error while getting container metrics, 0 otherwise
# TYPE resource_scrape_error gauge
resource_scrape_error 0
";
        assert_eq!(text, expected);
        assert!(render(None).ends_with("resource_scrape_error 1\n"));
    }
}
