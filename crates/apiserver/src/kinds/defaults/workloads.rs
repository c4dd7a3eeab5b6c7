//! apps/v1 and batch/v1 defaults (`pkg/apis/apps/v1/defaults.go`, `pkg/apis/batch/v1/defaults.go`).

use super::core::pvc;
use super::pod::template;
use crate::kinds::json::{at, obj_mut, set_default, set_default_str, str_at};
use serde_json::{json, Map, Value};

/// Defaults of the pod template at `spec.template`, if there is one.
fn spec_template(obj: &mut Value) {
    if let Some(t) = obj.pointer_mut("/spec/template").filter(|t| t.is_object()) {
        template(t);
    }
}

/// Applies `(field, value)` defaults to the object at `path` (created if missing).
fn fill(obj: &mut Value, path: &str, defaults: &[(&str, Value)]) -> Option<()> {
    let map = obj_mut(obj, path)?;
    for (k, v) in defaults {
        set_default(map, k, v.clone());
    }
    Some(())
}

/// An update strategy: `type` defaults to RollingUpdate, whose parameters then get defaults.
fn rolling_update(strategy: &mut Map<String, Value>, params: &[(&str, Value)]) {
    set_default_str(strategy, "type", "RollingUpdate");
    if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
        let ru = strategy.entry("rollingUpdate").or_insert_with(|| json!({}));
        if let Some(ru) = ru.as_object_mut() {
            for (k, v) in params {
                set_default(ru, k, v.clone());
            }
        }
    }
}

pub(super) fn deployment(obj: &mut Value) {
    fill(
        obj,
        "spec",
        &[
            ("replicas", json!(1)),
            ("revisionHistoryLimit", json!(10)),
            ("progressDeadlineSeconds", json!(600)),
        ],
    );
    if let Some(strategy) = obj_mut(obj, "spec.strategy") {
        rolling_update(
            strategy,
            &[("maxUnavailable", json!("25%")), ("maxSurge", json!("25%"))],
        );
    }
    spec_template(obj);
}

pub(super) fn replica_set(obj: &mut Value) {
    fill(obj, "spec", &[("replicas", json!(1))]);
    spec_template(obj);
}

pub(super) fn daemon_set(obj: &mut Value) {
    fill(obj, "spec", &[("revisionHistoryLimit", json!(10))]);
    if let Some(strategy) = obj_mut(obj, "spec.updateStrategy") {
        rolling_update(
            strategy,
            &[("maxUnavailable", json!(1)), ("maxSurge", json!(0))],
        );
    }
    spec_template(obj);
}

pub(super) fn stateful_set(obj: &mut Value) {
    fill(
        obj,
        "spec",
        &[
            ("replicas", json!(1)),
            ("revisionHistoryLimit", json!(10)),
            ("podManagementPolicy", json!("OrderedReady")),
        ],
    );
    fill(
        obj,
        "spec.persistentVolumeClaimRetentionPolicy",
        &[
            ("whenDeleted", json!("Retain")),
            ("whenScaled", json!("Retain")),
        ],
    );
    if let Some(strategy) = obj_mut(obj, "spec.updateStrategy") {
        rolling_update(strategy, &[("partition", json!(0))]);
    }
    if let Some(Value::Array(claims)) = obj.pointer_mut("/spec/volumeClaimTemplates") {
        claims.iter_mut().for_each(pvc);
    }
    spec_template(obj);
}

/// Upstream's job strategy generates the selector on create (unless `manualSelector`): the pod
/// template is labelled with the job's name and uid, and the selector picks the uid. The registry
/// assigns the uid before defaulting, so this runs here; without a uid it does nothing.
fn generate_job_selector(obj: &mut Value) {
    let name = str_at(obj, "metadata.name").to_string();
    let uid = str_at(obj, "metadata.uid").to_string();
    if uid.is_empty() || at(obj, "spec.manualSelector").as_bool() == Some(true) {
        return;
    }
    if let Some(labels) = obj_mut(obj, "spec.template.metadata.labels") {
        for (key, value) in [
            ("job-name", &name),
            ("batch.kubernetes.io/job-name", &name),
            ("controller-uid", &uid),
            ("batch.kubernetes.io/controller-uid", &uid),
        ] {
            labels.entry(key).or_insert_with(|| json!(value));
        }
    }
    if let Some(match_labels) = obj_mut(obj, "spec.selector.matchLabels") {
        match_labels
            .entry("batch.kubernetes.io/controller-uid")
            .or_insert_with(|| json!(uid));
    }
}

pub(super) fn job(obj: &mut Value) {
    generate_job_selector(obj);
    let Some(spec) = obj_mut(obj, "spec") else {
        return;
    };
    if spec.get("completions").is_none_or(Value::is_null)
        && spec.get("parallelism").is_none_or(Value::is_null)
    {
        spec.insert("completions".into(), json!(1));
    }
    set_default(spec, "parallelism", json!(1));
    let per_index = spec
        .get("backoffLimitPerIndex")
        .is_some_and(|v| !v.is_null());
    set_default(
        spec,
        "backoffLimit",
        json!(if per_index { i32::MAX } else { 6 }),
    );
    set_default(spec, "completionMode", json!("NonIndexed"));
    set_default(spec, "suspend", json!(false));
    let failure_policy = spec.get("podFailurePolicy").is_some_and(|v| !v.is_null());
    set_default(
        spec,
        "podReplacementPolicy",
        json!(if failure_policy {
            "Failed"
        } else {
            "TerminatingOrFailed"
        }),
    );
    // A job without labels takes its pod template's.
    let template_labels = spec
        .get("template")
        .and_then(|t| t.get("metadata"))
        .and_then(|m| m.get("labels"))
        .cloned();
    if let Some(labels @ Value::Object(_)) = template_labels {
        if let Some(meta) = obj_mut(obj, "metadata") {
            if meta
                .get("labels")
                .and_then(Value::as_object)
                .is_none_or(Map::is_empty)
            {
                meta.insert("labels".into(), labels);
            }
        }
    }
    spec_template(obj);
}

pub(super) fn cron_job(obj: &mut Value) {
    fill(
        obj,
        "spec",
        &[
            ("concurrencyPolicy", json!("Allow")),
            ("suspend", json!(false)),
            ("successfulJobsHistoryLimit", json!(3)),
            ("failedJobsHistoryLimit", json!(1)),
        ],
    );
    if let Some(job_template) = obj
        .pointer_mut("/spec/jobTemplate")
        .filter(|t| t.is_object())
    {
        spec_template(job_template);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpl() -> Value {
        json!({"metadata": {"labels": {"app": "w"}}, "spec": {"containers": [{"name": "a", "image": "nginx:1"}]}})
    }

    #[test]
    fn deployment_defaults_like_upstream() {
        let mut d =
            json!({"spec": {"selector": {"matchLabels": {"app": "w"}}, "template": tmpl()}});
        deployment(&mut d);
        let s = &d["spec"];
        assert_eq!(s["replicas"], 1);
        assert_eq!(s["revisionHistoryLimit"], 10);
        assert_eq!(s["progressDeadlineSeconds"], 600);
        assert_eq!(
            s["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        assert_eq!(s["template"]["spec"]["restartPolicy"], "Always");
        assert_eq!(
            s["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
        let mut r = json!({"spec": {"replicas": 0, "strategy": {"type": "Recreate"}}});
        deployment(&mut r);
        assert_eq!(r["spec"]["replicas"], 0);
        assert_eq!(r["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn other_workloads() {
        let mut ds = json!({"spec": {"template": tmpl()}});
        daemon_set(&mut ds);
        assert_eq!(
            ds["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        );
        assert_eq!(ds["spec"]["revisionHistoryLimit"], 10);
        let mut sts = json!({"spec": {"template": tmpl(), "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {}}]}});
        stateful_set(&mut sts);
        let s = &sts["spec"];
        assert_eq!(
            (s["replicas"].clone(), s["podManagementPolicy"].clone()),
            (json!(1), json!("OrderedReady"))
        );
        assert_eq!(
            s["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        );
        assert_eq!(
            s["persistentVolumeClaimRetentionPolicy"],
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
        );
        assert_eq!(
            s["volumeClaimTemplates"][0]["spec"]["volumeMode"],
            "Filesystem"
        );
        assert_eq!(s["volumeClaimTemplates"][0]["status"]["phase"], "Pending");
        let mut rs = json!({"spec": {}});
        replica_set(&mut rs);
        assert_eq!(rs["spec"]["replicas"], 1);
    }

    #[test]
    fn jobs_and_cron_jobs() {
        let mut j = json!({"spec": {"template": tmpl()}});
        job(&mut j);
        let s = &j["spec"];
        assert_eq!(
            [
                &s["completions"],
                &s["parallelism"],
                &s["backoffLimit"],
                &s["completionMode"],
                &s["suspend"],
                &s["podReplacementPolicy"]
            ],
            [
                &json!(1),
                &json!(1),
                &json!(6),
                &json!("NonIndexed"),
                &json!(false),
                &json!("TerminatingOrFailed")
            ]
        );
        assert_eq!(j["metadata"]["labels"], json!({"app": "w"}));
        assert!(j["spec"].get("selector").is_none());
        let mut created =
            json!({"metadata": {"name": "pi", "uid": "u-1"}, "spec": {"template": {"spec": {}}}});
        job(&mut created);
        assert_eq!(
            created["spec"]["selector"],
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}})
        );
        let labels = json!({"job-name": "pi", "batch.kubernetes.io/job-name": "pi", "controller-uid": "u-1", "batch.kubernetes.io/controller-uid": "u-1"});
        assert_eq!(created["spec"]["template"]["metadata"]["labels"], labels);
        assert_eq!(created["metadata"]["labels"], labels);
        let mut manual = json!({"metadata": {"uid": "u"}, "spec": {"manualSelector": true}});
        job(&mut manual);
        assert!(manual["spec"].get("selector").is_none());
        let mut p = json!({"spec": {"parallelism": 3, "backoffLimitPerIndex": 1, "podFailurePolicy": {"rules": []}}});
        job(&mut p);
        assert!(p["spec"].get("completions").is_none());
        assert_eq!(p["spec"]["backoffLimit"], i32::MAX);
        assert_eq!(p["spec"]["podReplacementPolicy"], "Failed");
        let mut cj = json!({"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": tmpl()}}}});
        cron_job(&mut cj);
        let s = &cj["spec"];
        assert_eq!(
            (
                s["concurrencyPolicy"].clone(),
                s["successfulJobsHistoryLimit"].clone(),
                s["failedJobsHistoryLimit"].clone()
            ),
            (json!("Allow"), json!(3), json!(1))
        );
        assert_eq!(s["suspend"], false);
        assert_eq!(
            s["jobTemplate"]["spec"]["template"]["spec"]["dnsPolicy"],
            "ClusterFirst"
        );
        assert!(s["jobTemplate"]["spec"].get("backoffLimit").is_none());
    }
}
