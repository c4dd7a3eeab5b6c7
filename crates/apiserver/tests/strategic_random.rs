//! Randomized strategic merge patch tests.
//!
//! Differential: random patches on Pods and Deployments, applied by krust and by upstream's own
//! code through `kubectl patch --local --type strategic` (which runs apimachinery's
//! `StrategicMergePatch` client-side); skipped with a message when `kubectl` is not installed.
//! kubectl prints the patched map before any decoding into Go structs, so both results are
//! compared as that decoding would see them: null fields and `$`-directive keys dropped.
//!
//! Robustness: arbitrary JSON rich in directives never makes [`apply`] panic.

use std::process::Command;

use apiserver::strategic::apply;
use serde_json::{json, Map, Value};

/// Cases per kind by default. `KRUST_ORACLE_CASES` runs more and `KRUST_ORACLE_SEED` others
/// (seeds 42 and 7 agreed on 300 and 400 cases per kind when this was written).
const CASES: usize = 60;

/// Deterministic pseudo-random choices.
struct Gen(u64);

impl Gen {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }

    fn key(&mut self) -> &'static str {
        const KEYS: &[&str] = &[
            "spec",
            "template",
            "containers",
            "name",
            "env",
            "ports",
            "containerPort",
            "volumes",
            "metadata",
            "finalizers",
            "labels",
            "$patch",
            "$retainKeys",
            "$setElementOrder/containers",
            "$setElementOrder/finalizers",
            "$deleteFromPrimitiveList/finalizers",
            "$setElementOrder",
            "$deleteFromPrimitiveList",
            "strategy",
            "status",
            "conditions",
            "type",
        ];
        self.pick(KEYS)
    }

    /// Any JSON value, `depth` levels deep at most, biased towards directive words.
    fn value(&mut self, depth: u32) -> Value {
        match self.below(if depth == 0 { 5 } else { 8 }) {
            0 => Value::Null,
            1 => json!(self.pick(&["delete", "replace", "merge", "x"])),
            2 => json!(self.below(3)),
            3 => json!(self.chance(50)),
            4 => json!("a"),
            5 | 6 => self.object(depth - 1),
            _ => (0..self.below(4)).map(|_| self.value(depth - 1)).collect(),
        }
    }

    fn object(&mut self, depth: u32) -> Value {
        (0..self.below(5))
            .map(|_| (self.key().to_string(), self.value(depth)))
            .collect()
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a>(&mut self, pool: &[&'a str]) -> &'a str {
        pool[self.below(pool.len())]
    }

    /// A random subset of `pool` in random order.
    fn subset<'a>(&mut self, pool: &[&'a str]) -> Vec<&'a str> {
        let mut items: Vec<&str> = pool.iter().copied().filter(|_| self.chance(50)).collect();
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
        items
    }
}

const CONTAINERS: &[&str] = &["a", "b", "c", "d"];
const ENV: &[&str] = &["X", "Y", "Z"];
const FINALIZERS: &[&str] = &["f1", "f2", "f3", "f4"];
const VOLUMES: &[&str] = &["v1", "v2", "v3"];

fn volume_source(g: &mut Gen) -> (&'static str, Value) {
    match g.below(3) {
        0 => ("emptyDir", json!({})),
        1 => ("configMap", json!({"name": g.pick(&["cm1", "cm2"])})),
        _ => ("secret", json!({"secretName": "s"})),
    }
}

fn live_pod(g: &mut Gen) -> Value {
    let containers: Vec<Value> = g
        .subset(CONTAINERS)
        .into_iter()
        .map(|name| {
            let mut c = json!({"name": name, "image": g.pick(&["i1", "i2"])});
            if g.chance(60) {
                c["env"] = g
                    .subset(ENV)
                    .into_iter()
                    .map(|n| json!({"name": n, "value": "v"}))
                    .collect();
            }
            if g.chance(40) {
                c["ports"] = g
                    .subset(&["80", "81"])
                    .into_iter()
                    .map(|p| json!({"containerPort": p.parse::<u16>().unwrap_or(80)}))
                    .collect();
            }
            c
        })
        .collect();
    let volumes: Vec<Value> = g
        .subset(VOLUMES)
        .into_iter()
        .map(|name| {
            let (kind, source) = volume_source(g);
            json!({"name": name, kind: source})
        })
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "labels": {"l1": "x", "l2": "y"}, "finalizers": g.subset(FINALIZERS)},
        "spec": {"containers": containers, "volumes": volumes, "tolerations": [{"key": "t"}]}
    })
}

/// A merge-list patch over `pool`: plain elements, `$patch: delete` elements, sometimes a
/// `$patch: replace` marker, and sometimes a consistent `$setElementOrder` list.
fn list_patch(
    g: &mut Gen,
    out: &mut Map<String, Value>,
    field: &str,
    pool: &[&str],
    key: &str,
    element: &mut dyn FnMut(&mut Gen, &str) -> Value,
) {
    // Merge keys are numbers where the pool holds numbers (ports), strings otherwise.
    let id = |n: &str| n.parse::<u64>().map_or_else(|_| json!(n), |p| json!(p));
    let names = g.subset(pool);
    let mut items = Vec::new();
    let mut kept = Vec::new();
    for name in &names {
        if g.chance(25) {
            items.push(json!({key: id(name), "$patch": "delete"}));
        } else {
            items.push(element(g, name));
            kept.push(*name);
        }
    }
    if g.chance(8) {
        items.insert(g.below(items.len() + 1), json!({"$patch": "replace"}));
    }
    if g.chance(50) {
        let mut listed = kept.clone();
        for extra in g.subset(pool) {
            if !listed.contains(&extra) {
                listed.insert(g.below(listed.len() + 1), extra);
            }
        }
        // The patch's plain elements must follow the order list.
        items.sort_by_key(|i| listed.iter().position(|l| i[key] == id(l)));
        let order: Vec<Value> = listed.iter().map(|n| json!({key: id(n)})).collect();
        out.insert(format!("$setElementOrder/{field}"), Value::Array(order));
    }
    if !items.is_empty() || g.chance(30) {
        out.insert(field.to_string(), Value::Array(items));
    }
}

fn container_patch(g: &mut Gen, name: &str) -> Value {
    let mut c = Map::new();
    c.insert("name".into(), json!(name));
    if g.chance(60) {
        c.insert("image".into(), json!(g.pick(&["i2", "i3"])));
    }
    if g.chance(40) {
        list_patch(
            g,
            &mut c,
            "env",
            ENV,
            "name",
            &mut |g, n| json!({"name": n, "value": g.pick(&["v", "w"])}),
        );
    }
    if g.chance(10) {
        c.insert("args".into(), json!(["--x"]));
    }
    if g.chance(25) {
        let ports = ["80", "81", "82"];
        list_patch(
            g,
            &mut c,
            "ports",
            &ports,
            "containerPort",
            &mut |g, p| json!({"containerPort": p.parse::<u16>().unwrap_or(80), "name": g.pick(&["a", "b"])}),
        );
    }
    if g.chance(10) {
        let context = [
            json!({"privileged": true, "$patch": "replace"}),
            json!({"$patch": "delete"}),
        ];
        c.insert("securityContext".into(), context[g.below(2)].clone());
    }
    Value::Object(c)
}

fn volume_patch(g: &mut Gen, name: &str) -> Value {
    let (kind, source) = volume_source(g);
    json!({"name": name, "$retainKeys": [kind, "name"], kind: source})
}

fn metadata_patch(g: &mut Gen) -> Value {
    let mut m = Map::new();
    let labels = match g.below(5) {
        0 => Some(json!({"l1": null, "l3": "z"})),
        1 => Some(json!({"$patch": "replace", "l9": "q"})),
        2 => Some(json!({"$patch": "delete"})),
        _ => None,
    };
    if let Some(labels) = labels {
        m.insert("labels".into(), labels);
    }
    if g.chance(15) {
        // A map the live object lacks, carrying directives or nulls.
        let annotations = [json!({"$patch": "delete"}), json!({"a": null, "b": "c"})];
        m.insert("annotations".into(), annotations[g.below(2)].clone());
    }
    if g.chance(50) {
        let added = g.subset(FINALIZERS);
        if g.chance(50) {
            let mut order = added.clone();
            for f in g.subset(FINALIZERS) {
                if !order.contains(&f) {
                    order.push(f);
                }
            }
            m.insert("$setElementOrder/finalizers".into(), json!(order));
        }
        m.insert("finalizers".into(), json!(added));
    }
    if g.chance(30) {
        // Upstream applies additions and deletions in Go's random map order, so the two lists
        // stay disjoint (as kubectl's own patches are).
        let added = m.get("finalizers").cloned().unwrap_or_default();
        let deleted: Vec<&str> = g
            .subset(FINALIZERS)
            .into_iter()
            .filter(|f| !added.as_array().is_some_and(|a| a.contains(&json!(f))))
            .collect();
        m.insert("$deleteFromPrimitiveList/finalizers".into(), json!(deleted));
    }
    Value::Object(m)
}

fn pod_patch(g: &mut Gen) -> Value {
    let mut spec = Map::new();
    list_patch(
        g,
        &mut spec,
        "containers",
        CONTAINERS,
        "name",
        &mut container_patch,
    );
    if g.chance(40) {
        list_patch(g, &mut spec, "volumes", VOLUMES, "name", &mut volume_patch);
    }
    if g.chance(20) {
        spec.insert("tolerations".into(), json!([{"key": "u", "value": null}]));
    }
    json!({"metadata": metadata_patch(g), "spec": spec})
}

/// What decoding into upstream's Go types keeps: no null fields, no `$` directive keys.
fn decoded(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, v)| !v.is_null() && !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), decoded(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(decoded).collect()),
        other => other.clone(),
    }
}

fn upstream(dir: &std::path::Path, original: &Value, patch: &Value) -> Result<Value, String> {
    let file = dir.join("pod.json");
    std::fs::write(&file, original.to_string()).map_err(|e| e.to_string())?;
    let out = Command::new("kubectl")
        .args([
            "patch",
            "--local",
            "--type",
            "strategic",
            "-o",
            "json",
            "-f",
        ])
        .arg(&file)
        .arg("-p")
        .arg(patch.to_string())
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

/// The live Deployment wraps a random Pod spec in its template and has a random update strategy.
fn live_deployment(g: &mut Gen) -> Value {
    let pod = live_pod(g);
    let strategy = if g.chance(50) {
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}})
    } else {
        json!({"type": "Recreate"})
    };
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": pod["metadata"],
        "spec": {"replicas": 1, "strategy": strategy, "template": {"spec": pod["spec"]}}
    })
}

/// kubectl's strategy switch (`$retainKeys`) plus a Pod patch in the template.
fn deployment_patch(g: &mut Gen) -> Value {
    let pod = pod_patch(g);
    let strategy = match g.below(3) {
        0 => json!({"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}),
        1 => json!({"$retainKeys": ["rollingUpdate", "type"], "type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": 2}}),
        _ => json!({"rollingUpdate": {"maxUnavailable": 1}}),
    };
    json!({"metadata": pod["metadata"], "spec": {"strategy": strategy, "template": {"spec": pod["spec"]}}})
}

fn compare_with_upstream(
    gvk: (&str, &str, &str),
    cases: &mut dyn FnMut(&mut Gen) -> (Value, Value),
) {
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: kubectl is not installed; cannot compare with upstream");
        return;
    }
    let count = std::env::var("KRUST_ORACLE_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(CASES);
    let dir = tempfile::tempdir().expect("tempdir");
    let seed = std::env::var("KRUST_ORACLE_SEED")
        .ok()
        .and_then(|n| n.parse().ok());
    let mut g = Gen(seed.unwrap_or(42));
    let mut mismatches = Vec::new();
    for case in 0..count {
        let (original, patch) = cases(&mut g);
        let theirs = upstream(dir.path(), &original, &patch);
        let ours = apply(&original, &patch, gvk);
        let same = match (&theirs, &ours) {
            (Ok(t), Ok(o)) => decoded(t) == decoded(o),
            (Err(_), Err(_)) => true,
            _ => false,
        };
        if !same {
            mismatches.push(format!(
                "case {case}\noriginal: {original}\npatch: {patch}\nupstream: {}\nkrust: {}",
                theirs.map_or_else(|e| e, |v| decoded(&v).to_string()),
                ours.map_or_else(|e| e.to_string(), |v| decoded(&v).to_string()),
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n\n")
    );
}

#[test]
fn random_pod_patches_match_upstream() {
    compare_with_upstream(("", "v1", "Pod"), &mut |g| (live_pod(g), pod_patch(g)));
}

#[test]
fn random_deployment_patches_match_upstream() {
    compare_with_upstream(("apps", "v1", "Deployment"), &mut |g| {
        (live_deployment(g), deployment_patch(g))
    });
}

#[test]
fn arbitrary_input_never_panics() {
    let mut g = Gen(7);
    for _ in 0..20_000 {
        let original = g.object(5);
        let patch = g.object(5);
        let _ = apply(&original, &patch, ("", "v1", "Pod"));
        let _ = apply(&original, &patch, ("apps", "v1", "Deployment"));
    }
}
