//! apps/v1 and batch/v1 validation: selectors that must match their pod templates, restart
//! policies, strategies, non-negative counts, and the fields that may not change on update.

use super::errors::{
    forbidden, go_selector, go_string_map, go_value, invalid, not_supported, quote, required,
};
use super::meta::label_selector;
use super::pod::{one_of, template};
use crate::kinds::json::{arr_at, at, str_at, string_map, without};
use crate::kinds::Cause;
use serde_json::Value;

/// Fields that must not be negative (`ValidateNonnegativeField`).
fn non_negative(errs: &mut Vec<Cause>, obj: &Value, fields: &[&str]) {
    for f in fields {
        if let Some(n) = at(obj, f).as_i64().filter(|n| *n < 0) {
            errs.push(invalid(
                f,
                &n.to_string(),
                "must be greater than or equal to 0",
            ));
        }
    }
}

/// Whether a label selector matches a label set; `None` if the selector is malformed.
fn selector_matches(sel: &Value, labels: &Value) -> Option<bool> {
    let set = string_map(labels);
    let get = |k: &str| set.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
    let mut ok = string_map(&sel["matchLabels"])
        .iter()
        .all(|(k, v)| get(k) == Some(v));
    for e in arr_at(sel, "matchExpressions") {
        let values: Vec<&str> = arr_at(e, "values")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let current = get(str_at(e, "key"));
        ok &= match str_at(e, "operator") {
            "In" if !values.is_empty() => current.is_some_and(|v| values.contains(&v)),
            "NotIn" if !values.is_empty() => current.is_none_or(|v| !values.contains(&v)),
            "Exists" if values.is_empty() => current.is_some(),
            "DoesNotExist" if values.is_empty() => current.is_none(),
            _ => return None,
        };
    }
    Some(ok)
}

/// How a workload's pod template is constrained.
struct TemplateRules {
    /// Kind name in "empty selector is invalid for <kind>".
    kind: &'static str,
    /// Restart policies the template may use.
    restart: &'static [&'static str],
    /// Message when the template sets activeDeadlineSeconds (None: allowed).
    deadline: Option<&'static str>,
}

const REPLICATED: TemplateRules = TemplateRules {
    kind: "deployment",
    restart: &["Always"],
    deadline: Some("activeDeadlineSeconds in ReplicaSet is not Supported"),
};
const DAEMON: TemplateRules = TemplateRules {
    kind: "daemonset",
    restart: &["Always"],
    deadline: Some("activeDeadlineSeconds in DaemonSet is not Supported"),
};
const STATEFUL: TemplateRules = TemplateRules {
    kind: "statefulset",
    restart: &["Always"],
    deadline: Some("activeDeadlineSeconds in StatefulSet is not Supported"),
};

/// The selector (required, non-empty, well-formed) and the pod template at `<spec>.template`,
/// whose labels the selector must match.
fn selector_and_template(
    errs: &mut Vec<Cause>,
    spec_path: &str,
    spec: &Value,
    rules: &TemplateRules,
    claim_volumes: &[&str],
) {
    let sel = at(spec, "selector");
    let sel_path = format!("{spec_path}.selector");
    if !sel.is_object() {
        errs.push(required(&sel_path, ""));
    } else {
        label_selector(errs, sel, &sel_path);
        if string_map(&sel["matchLabels"]).is_empty() && arr_at(sel, "matchExpressions").is_empty()
        {
            errs.push(invalid(
                &sel_path,
                &go_selector(sel),
                &format!("empty selector is invalid for {}", rules.kind),
            ));
        }
    }
    template_checks(errs, spec_path, spec, rules.restart, claim_volumes);
    let t_path = format!("{spec_path}.template");
    if let Some(msg) = rules
        .deadline
        .filter(|_| !at(spec, "template.spec.activeDeadlineSeconds").is_null())
    {
        errs.push(forbidden(
            &format!("{t_path}.spec.activeDeadlineSeconds"),
            msg,
        ));
    }
}

/// The template: present, its labels matched by a non-empty selector, valid, with an allowed
/// restart policy.
fn template_checks(
    errs: &mut Vec<Cause>,
    spec_path: &str,
    spec: &Value,
    restart: &[&str],
    claim_volumes: &[&str],
) {
    let t_path = format!("{spec_path}.template");
    let t = at(spec, "template");
    if !t.is_object() {
        errs.push(required(&t_path, ""));
        return;
    }
    let t_labels = at(t, "metadata.labels");
    let sel = at(spec, "selector");
    let non_empty =
        !string_map(&sel["matchLabels"]).is_empty() || !arr_at(sel, "matchExpressions").is_empty();
    if non_empty && selector_matches(sel, t_labels) == Some(false) {
        errs.push(invalid(
            &format!("{t_path}.metadata.labels"),
            &go_string_map(t_labels),
            "`selector` does not match template `labels`",
        ));
    }
    errs.extend(template(t, &t_path, claim_volumes));
    let policy = str_at(t, "spec.restartPolicy");
    if !policy.is_empty() && !restart.contains(&policy) {
        errs.push(not_supported(
            &format!("{t_path}.spec.restartPolicy"),
            policy,
            restart,
        ));
    }
}

pub fn deployment(obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut errs = Vec::new();
    let spec = at(obj, "spec");
    non_negative(
        &mut errs,
        obj,
        &[
            "spec.replicas",
            "spec.minReadySeconds",
            "spec.revisionHistoryLimit",
            "spec.progressDeadlineSeconds",
        ],
    );
    selector_and_template(&mut errs, "spec", spec, &REPLICATED, &[]);
    let strategy = at(spec, "strategy");
    match str_at(strategy, "type") {
        "Recreate" if !at(strategy, "rollingUpdate").is_null() => errs.push(forbidden(
            "spec.strategy.rollingUpdate",
            "may not be specified when strategy `type` is 'Recreate'",
        )),
        "Recreate" => {}
        "RollingUpdate" => rolling_update(
            &mut errs,
            at(strategy, "rollingUpdate"),
            "spec.strategy.rollingUpdate",
        ),
        other => errs.push(not_supported(
            "spec.strategy.type",
            other,
            &["Recreate", "RollingUpdate"],
        )),
    }
    if let Some(deadline) = at(spec, "progressDeadlineSeconds").as_i64() {
        if deadline <= at(spec, "minReadySeconds").as_i64().unwrap_or(0) {
            errs.push(invalid(
                "spec.progressDeadlineSeconds",
                &deadline.to_string(),
                "must be greater than minReadySeconds",
            ));
        }
    }
    errs.extend(immutable_selector(obj, old));
    errs
}

/// maxUnavailable/maxSurge: a count or a percentage, not both zero.
fn rolling_update(errs: &mut Vec<Cause>, ru: &Value, path: &str) {
    let zero = |v: &Value| v.as_i64() == Some(0) || v.as_str() == Some("0%");
    for key in ["maxUnavailable", "maxSurge"] {
        let v = at(ru, key);
        let field = format!("{path}.{key}");
        match v {
            Value::Number(n) if n.as_i64().is_none_or(|n| n < 0) => errs.push(invalid(&field, &n.to_string(), "must be greater than or equal to 0")),
            Value::String(s) => match s.strip_suffix('%').and_then(|p| p.parse::<u64>().ok()) {
                None => errs.push(invalid(&field, &quote(s), "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')")),
                Some(p) if p > 100 && key == "maxUnavailable" => errs.push(invalid(&field, &quote(s), "must not be greater than 100%")),
                Some(_) => {}
            },
            _ => {}
        }
    }
    if zero(at(ru, "maxUnavailable")) && zero(at(ru, "maxSurge")) {
        errs.push(invalid(
            &format!("{path}.maxUnavailable"),
            &go_value(at(ru, "maxUnavailable")),
            "may not be 0 when `maxSurge` is 0",
        ));
    }
}

/// apps/v1 selectors are immutable.
fn immutable_selector(obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    match old {
        Some(old) if at(obj, "spec.selector") != at(old, "spec.selector") => {
            vec![invalid(
                "spec.selector",
                &go_selector(at(obj, "spec.selector")),
                "field is immutable",
            )]
        }
        _ => Vec::new(),
    }
}

pub fn replica_set(obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut errs = Vec::new();
    non_negative(&mut errs, obj, &["spec.replicas", "spec.minReadySeconds"]);
    selector_and_template(&mut errs, "spec", at(obj, "spec"), &REPLICATED, &[]);
    errs.extend(immutable_selector(obj, old));
    errs
}

pub fn daemon_set(obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut errs = Vec::new();
    non_negative(
        &mut errs,
        obj,
        &["spec.minReadySeconds", "spec.revisionHistoryLimit"],
    );
    selector_and_template(&mut errs, "spec", at(obj, "spec"), &DAEMON, &[]);
    match str_at(obj, "spec.updateStrategy.type") {
        "OnDelete" => {}
        "RollingUpdate" => rolling_update(
            &mut errs,
            at(obj, "spec.updateStrategy.rollingUpdate"),
            "spec.updateStrategy.rollingUpdate",
        ),
        other => errs.push(not_supported(
            "spec.updateStrategy",
            other,
            &["OnDelete", "RollingUpdate"],
        )),
    }
    errs.extend(immutable_selector(obj, old));
    errs
}

/// Spec fields a stateful set update may change.
const STS_MUTABLE: &[&str] = &[
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "revisionHistoryLimit",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
];

pub fn stateful_set(obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut errs = Vec::new();
    let spec = at(obj, "spec");
    non_negative(
        &mut errs,
        obj,
        &[
            "spec.replicas",
            "spec.minReadySeconds",
            "spec.updateStrategy.rollingUpdate.partition",
        ],
    );
    match str_at(spec, "podManagementPolicy") {
        "" => errs.push(required("spec.podManagementPolicy", "")),
        "OrderedReady" | "Parallel" => {}
        other => errs.push(invalid(
            "spec.podManagementPolicy",
            &quote(other),
            "must be 'OrderedReady' or 'Parallel'",
        )),
    }
    match str_at(spec, "updateStrategy.type") {
        "" => errs.push(required("spec.updateStrategy", "")),
        "RollingUpdate" => {}
        "OnDelete" if !at(spec, "updateStrategy.rollingUpdate").is_null() => errs.push(invalid(
            "spec.updateStrategy.rollingUpdate",
            &at(spec, "updateStrategy.rollingUpdate").to_string(),
            "only allowed for updateStrategy 'RollingUpdate'",
        )),
        "OnDelete" => {}
        _ => errs.push(invalid(
            "spec.updateStrategy",
            &at(spec, "updateStrategy").to_string(),
            "must be 'RollingUpdate' or 'OnDelete'",
        )),
    }
    let claims: Vec<&str> = arr_at(spec, "volumeClaimTemplates")
        .iter()
        .map(|c| str_at(c, "metadata.name"))
        .collect();
    selector_and_template(&mut errs, "spec", spec, &STATEFUL, &claims);
    if let Some(old) = old {
        let strip = |v: &Value| without(at(v, "spec"), STS_MUTABLE);
        if strip(obj) != strip(old) {
            errs.push(forbidden("spec", "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"));
        }
    }
    errs
}

pub fn controller_revision(obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut errs = Vec::new();
    non_negative(&mut errs, obj, &["revision"]);
    if old.is_some_and(|o| at(o, "data") != at(obj, "data")) {
        errs.push(invalid(
            "data",
            &at(obj, "data").to_string(),
            "field is immutable",
        ));
    }
    errs
}

/// Job spec checks shared by jobs and cron jobs' job templates (whose selector is optional).
fn job_spec(errs: &mut Vec<Cause>, spec: &Value, path: &str, selector_required: bool) {
    for key in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
    ] {
        if let Some(n) = at(spec, key).as_i64().filter(|n| *n < 0) {
            errs.push(invalid(
                &format!("{path}.{key}"),
                &n.to_string(),
                "must be greater than or equal to 0",
            ));
        }
    }
    let mode = str_at(spec, "completionMode");
    if !mode.is_empty() && !["NonIndexed", "Indexed"].contains(&mode) {
        errs.push(not_supported(
            &format!("{path}.completionMode"),
            mode,
            &["NonIndexed", "Indexed"],
        ));
    }
    if mode == "Indexed" && at(spec, "completions").is_null() {
        errs.push(required(
            &format!("{path}.completions"),
            "when completion mode is Indexed",
        ));
    }
    let sel = at(spec, "selector");
    if sel.is_object() {
        label_selector(errs, sel, &format!("{path}.selector"));
    } else if selector_required {
        errs.push(required(&format!("{path}.selector"), ""));
    }
    template_checks(errs, path, spec, &["OnFailure", "Never"], &[]);
}

pub fn job(obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut errs = Vec::new();
    job_spec(&mut errs, at(obj, "spec"), "spec", true);
    if let Some(old) = old {
        errs.extend(immutable_selector(obj, Some(old)));
        if at(obj, "spec.completions") != at(old, "spec.completions")
            && str_at(obj, "spec.completionMode") != "Indexed"
        {
            errs.push(invalid(
                "spec.completions",
                &go_value(at(obj, "spec.completions")),
                "field is immutable",
            ));
        }
        // The template may only change while the job is suspended (to resize it before start).
        let suspended = at(old, "spec.suspend").as_bool() == Some(true);
        if !suspended && at(obj, "spec.template") != at(old, "spec.template") {
            errs.push(invalid(
                "spec.template",
                &at(obj, "spec.template").to_string(),
                "field is immutable",
            ));
        }
    }
    errs
}

pub fn cron_job(obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
    let mut errs = Vec::new();
    let name = str_at(obj, "metadata.name");
    if name.len() > 52 {
        errs.push(invalid(
            "metadata.name",
            &quote(name),
            "must be no more than 52 characters",
        ));
    }
    let spec = at(obj, "spec");
    let schedule = str_at(spec, "schedule");
    if schedule.is_empty() {
        errs.push(required("spec.schedule", ""));
    } else if let Some(msg) = schedule_error(schedule) {
        errs.push(invalid("spec.schedule", &quote(schedule), &msg));
    }
    one_of(
        &mut errs,
        "spec.concurrencyPolicy",
        str_at(spec, "concurrencyPolicy"),
        &["Allow", "Forbid", "Replace"],
    );
    non_negative(
        &mut errs,
        obj,
        &[
            "spec.startingDeadlineSeconds",
            "spec.successfulJobsHistoryLimit",
            "spec.failedJobsHistoryLimit",
        ],
    );
    job_spec(
        &mut errs,
        at(spec, "jobTemplate.spec"),
        "spec.jobTemplate.spec",
        false,
    );
    errs
}

/// A cheap structural check of a cron schedule: a descriptor or five fields, no time zone.
fn schedule_error(schedule: &str) -> Option<String> {
    if schedule.contains("TZ") {
        return Some("cannot use TZ or CRON_TZ in schedule, use timeZone field instead".into());
    }
    const DESCRIPTORS: &[&str] = &[
        "@yearly",
        "@annually",
        "@monthly",
        "@weekly",
        "@daily",
        "@midnight",
        "@hourly",
    ];
    if DESCRIPTORS.contains(&schedule) || schedule.starts_with("@every ") {
        return None;
    }
    if schedule.starts_with('@') {
        return Some(format!("unrecognized descriptor: {schedule}"));
    }
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    if fields.len() != 5 {
        return Some(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    let valid_char =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '*' | '/' | ',' | '-' | '?');
    fields
        .iter()
        .find(|f| !f.chars().all(valid_char))
        .map(|f| format!("failed to parse int from {f}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::defaults;
    use crate::kinds::validation::fields_of as fields;
    use serde_json::json;

    fn defaulted(group: &str, kind: &str, obj: Value) -> Value {
        let mut obj = obj;
        defaults::apply(group, kind, &mut obj);
        obj
    }

    fn deploy(selector: Value, labels: Value) -> Value {
        defaulted(
            "apps",
            "Deployment",
            json!({"metadata": {"name": "d"}, "spec": {"selector": selector,
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "a", "image": "nginx"}]}}}}),
        )
    }

    #[test]
    fn deployments() {
        let ok = deploy(
            json!({"matchLabels": {"app": "d"}}),
            json!({"app": "d", "tier": "x"}),
        );
        assert_eq!(deployment(&ok, None), []);
        let mismatch = deploy(json!({"matchLabels": {"app": "d"}}), json!({"app": "e"}));
        let errs = deployment(&mismatch, None);
        assert_eq!(fields(&errs), ["spec.template.metadata.labels"]);
        assert_eq!(errs[0].message, "Invalid value: map[string]string{\"app\":\"e\"}: `selector` does not match template `labels`");
        let errs = deployment(&deploy(json!(null), json!({})), None);
        assert_eq!(fields(&errs), ["spec.selector"]);
        assert_eq!(errs[0].message, "Required value");
        let errs = deployment(&deploy(json!({}), json!({})), None);
        assert!(errs[0]
            .message
            .ends_with("empty selector is invalid for deployment"));
        let mut bad = ok.clone();
        bad["spec"]["replicas"] = json!(-1);
        bad["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        bad["spec"]["strategy"]["rollingUpdate"] = json!({"maxUnavailable": 0, "maxSurge": "0%"});
        let errs = deployment(&bad, None);
        assert_eq!(
            fields(&errs),
            [
                "spec.replicas",
                "spec.template.spec.restartPolicy",
                "spec.strategy.rollingUpdate.maxUnavailable"
            ]
        );
        assert_eq!(
            errs[1].message,
            "Unsupported value: \"Never\": supported values: \"Always\""
        );
        let moved = deploy(
            json!({"matchLabels": {"app": "other"}}),
            json!({"app": "other"}),
        );
        let errs = deployment(&moved, Some(&ok));
        assert_eq!(errs[0].message, "Invalid value: &v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"other\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable");
    }

    #[test]
    fn selector_expressions() {
        let sel = json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}, {"key": "x", "operator": "DoesNotExist"}]});
        assert_eq!(selector_matches(&sel, &json!({"tier": "a"})), Some(true));
        assert_eq!(
            selector_matches(&sel, &json!({"tier": "a", "x": "1"})),
            Some(false)
        );
        assert_eq!(
            selector_matches(
                &json!({"matchExpressions": [{"key": "a", "operator": "Nope"}]}),
                &json!({})
            ),
            None
        );
    }

    #[test]
    fn other_workloads() {
        let t = json!({"metadata": {"labels": {"app": "w"}}, "spec": {"containers": [{"name": "a", "image": "nginx",
            "volumeMounts": [{"name": "data", "mountPath": "/d"}]}]}});
        let sts = defaulted(
            "apps",
            "StatefulSet",
            json!({"spec": {"selector": {"matchLabels": {"app": "w"}}, "template": t,
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]}}),
        );
        assert_eq!(stateful_set(&sts, None), []);
        let mut changed = sts.clone();
        changed["spec"]["serviceName"] = json!("other");
        assert_eq!(fields(&stateful_set(&changed, Some(&sts))), ["spec"]);
        let mut scaled = sts.clone();
        scaled["spec"]["replicas"] = json!(5);
        assert_eq!(stateful_set(&scaled, Some(&sts)), []);
        let ds = defaulted(
            "apps",
            "DaemonSet",
            json!({"spec": {"selector": {"matchLabels": {"app": "w"}}, "template": {"metadata": {"labels": {"app": "w"}},
            "spec": {"containers": [{"name": "a", "image": "x"}]}}}}),
        );
        assert_eq!(daemon_set(&ds, None), []);
        let rs = defaulted(
            "apps",
            "ReplicaSet",
            json!({"spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}}),
        );
        assert!(replica_set(&rs, None)[0]
            .message
            .ends_with("empty selector is invalid for deployment"));
    }

    #[test]
    fn controller_revisions() {
        let cr = json!({"revision": 1, "data": {"spec": {}}});
        assert_eq!(controller_revision(&cr, None), []);
        let changed = json!({"revision": -1, "data": {"spec": {"x": 1}}});
        assert_eq!(
            fields(&controller_revision(&changed, Some(&cr))),
            ["revision", "data"]
        );
    }

    #[test]
    fn jobs_and_cron_jobs() {
        let j = defaulted(
            "batch",
            "Job",
            json!({"spec": {"selector": {"matchLabels": {"u": "1"}}, "template": {"metadata": {"labels": {"u": "1"}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "a", "image": "x"}]}}}}),
        );
        assert_eq!(job(&j, None), []);
        let mut always = j.clone();
        always["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
        let errs = job(&always, None);
        assert_eq!(
            errs[0].message,
            "Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""
        );
        assert_eq!(
            fields(&job(&always, Some(&j))),
            ["spec.template.spec.restartPolicy", "spec.template"]
        );
        let no_selector = defaulted(
            "batch",
            "Job",
            json!({"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "a", "image": "x"}]}}}}),
        );
        assert_eq!(fields(&job(&no_selector, None)), ["spec.selector"]);
        let cj = defaulted(
            "batch",
            "CronJob",
            json!({"metadata": {"name": "c"}, "spec": {"schedule": "*/1 * * * *",
            "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "a", "image": "x"}]}}}}}}),
        );
        assert_eq!(cron_job(&cj, None), []);
        let mut bad = cj.clone();
        bad["metadata"]["name"] = json!("x".repeat(53));
        bad["spec"]["schedule"] = json!("bad");
        bad["spec"]["concurrencyPolicy"] = json!("Sometimes");
        let errs = cron_job(&bad, None);
        assert_eq!(
            fields(&errs),
            ["metadata.name", "spec.schedule", "spec.concurrencyPolicy"]
        );
        assert_eq!(
            errs[1].message,
            "Invalid value: \"bad\": expected exactly 5 fields, found 1: [bad]"
        );
        assert_eq!(schedule_error("@hourly"), None);
    }
}
