//! Rows of the apps/v1 and batch/v1 kinds.

use super::{
    age, cells, col, container_cells, name, ready_of, wide, Column, AGE, CONTAINERS, IMAGES, NAME,
};
use crate::kinds::duration::{human_duration, parse_rfc3339, since};
use crate::kinds::format::{format_label_selector, format_labels, selector_string};
use crate::kinds::json::{arr_at, at, int_at, len_at, str_at};
use serde_json::Value;

const SELECTOR: Column = wide("Selector", "string", "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.");

pub(super) const DEPLOYMENT: &[Column] = &[
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    col("Up-to-date", "string", "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
    col("Available", "string", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

pub(super) fn deployment(o: &Value, now: i64) -> Vec<Value> {
    let (containers, images) = container_cells(at(o, "spec.template.spec"));
    let selector = selector_string(at(o, "spec.selector")).unwrap_or_else(|| "<invalid>".into());
    cells![
        name(o),
        ready_of(o),
        int_at(o, "status.updatedReplicas"),
        int_at(o, "status.availableReplicas"),
        age(o, now),
        containers,
        images,
        selector,
    ]
}

pub(super) const REPLICA_SET: &[Column] = &[
    NAME,
    col(
        "Desired",
        "integer",
        "Replicas is the number of desired replicas.",
    ),
    col(
        "Current",
        "integer",
        "Replicas is the most recently observed number of replicas.",
    ),
    col(
        "Ready",
        "integer",
        "The number of ready replicas for this replica set.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

pub(super) fn replica_set(o: &Value, now: i64) -> Vec<Value> {
    let (containers, images) = container_cells(at(o, "spec.template.spec"));
    cells![
        name(o),
        int_at(o, "spec.replicas"),
        int_at(o, "status.replicas"),
        int_at(o, "status.readyReplicas"),
        age(o, now),
        containers,
        images,
        format_label_selector(at(o, "spec.selector")),
    ]
}

pub(super) const DAEMON_SET: &[Column] = &[
    NAME,
    col("Desired", "integer", "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod)."),
    col("Current", "integer", "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod."),
    col("Ready", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition."),
    col("Up-to-date", "integer", "The total number of nodes that are running updated daemon pod"),
    col("Available", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)"),
    col("Node Selector", "string", "NodeSelector is a selector which must be true for the pod to fit on a node."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

pub(super) fn daemon_set(o: &Value, now: i64) -> Vec<Value> {
    let (containers, images) = container_cells(at(o, "spec.template.spec"));
    cells![
        name(o),
        int_at(o, "status.desiredNumberScheduled"),
        int_at(o, "status.currentNumberScheduled"),
        int_at(o, "status.numberReady"),
        int_at(o, "status.updatedNumberScheduled"),
        int_at(o, "status.numberAvailable"),
        format_labels(at(o, "spec.template.spec.nodeSelector")),
        age(o, now),
        containers,
        images,
        format_label_selector(at(o, "spec.selector")),
    ]
}

pub(super) const STATEFUL_SET: &[Column] = &[
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    AGE,
    CONTAINERS,
    IMAGES,
];

pub(super) fn stateful_set(o: &Value, now: i64) -> Vec<Value> {
    let (containers, images) = container_cells(at(o, "spec.template.spec"));
    cells![name(o), ready_of(o), age(o, now), containers, images]
}

pub(super) const CONTROLLER_REVISION: &[Column] = &[
    NAME,
    col("Controller", "string", "Controller of the object"),
    col(
        "Revision",
        "string",
        "Revision indicates the revision of the state represented by Data.",
    ),
    AGE,
];

pub(super) fn controller_revision(o: &Value, now: i64) -> Vec<Value> {
    let controller = arr_at(o, "metadata.ownerReferences")
        .iter()
        .find(|r| at(r, "controller").as_bool() == Some(true))
        .map_or("<none>".to_string(), |r| {
            // GroupKind.String() lower-cased: "daemonset.apps" ("kind" alone for the core group).
            let group = str_at(r, "apiVersion")
                .rsplit_once('/')
                .map_or("", |(g, _)| g);
            let kind = str_at(r, "kind");
            let gk = if group.is_empty() {
                kind.to_string()
            } else {
                format!("{kind}.{group}")
            };
            if gk.is_empty() {
                str_at(r, "name").to_string()
            } else {
                format!("{}/{}", gk.to_lowercase(), str_at(r, "name"))
            }
        });
    cells![name(o), controller, int_at(o, "revision"), age(o, now)]
}

pub(super) const JOB: &[Column] = &[
    NAME,
    col("Status", "string", "Status of the job."),
    col(
        "Completions",
        "string",
        "The number of pods which reached phase Succeeded.",
    ),
    col("Duration", "string", "Time required to complete the job."),
    AGE,
    CONTAINERS,
    IMAGES,
    wide(
        "Selector",
        "string",
        "A label query over pods that should match the pod count.",
    ),
];

pub(super) fn job(o: &Value, now: i64) -> Vec<Value> {
    let succeeded = int_at(o, "status.succeeded");
    let completions = match at(o, "spec.completions").as_i64() {
        Some(c) => format!("{succeeded}/{c}"),
        None => match int_at(o, "spec.parallelism") {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let time = |key: &str| at(o, key).as_str().and_then(parse_rfc3339);
    let duration = match (time("status.startTime"), time("status.completionTime")) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(now - start),
        (Some(start), Some(end)) => human_duration(end - start),
    };
    let (containers, images) = container_cells(at(o, "spec.template.spec"));
    cells![
        name(o),
        job_status(o),
        completions,
        duration,
        age(o, now),
        containers,
        images,
        format_label_selector(at(o, "spec.selector")),
    ]
}

fn job_status(o: &Value) -> &'static str {
    // Upstream looks at the first condition of each type only.
    let has = |type_: &str| {
        arr_at(o, "status.conditions")
            .iter()
            .find(|c| str_at(c, "type") == type_)
            .is_some_and(|c| str_at(c, "status") == "True")
    };
    if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if !at(o, "metadata.deletionTimestamp").is_null() {
        "Terminating"
    } else if has("Suspended") {
        "Suspended"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    }
}

pub(super) const CRON_JOB: &[Column] = &[
    NAME,
    col("Schedule", "string", "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
    col("Timezone", "string", "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones."),
    col("Suspend", "boolean", "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions."),
    col("Active", "integer", "A list of pointers to currently running jobs."),
    col("Last Schedule", "string", "Information when was the last time the job was successfully scheduled."),
    AGE,
    CONTAINERS,
    IMAGES,
    wide("Selector", "string", "A label query over pods that should match the pod count."),
];

pub(super) fn cron_job(o: &Value, now: i64) -> Vec<Value> {
    let last = match at(o, "status.lastScheduleTime") {
        Value::Null => "<none>".to_string(),
        t => since(t, now),
    };
    let suspend = match at(o, "spec.suspend").as_bool() {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    };
    let (containers, images) = container_cells(at(o, "spec.jobTemplate.spec.template.spec"));
    cells![
        name(o),
        str_at(o, "spec.schedule"),
        match str_at(o, "spec.timeZone") {
            "" if at(o, "spec.timeZone").is_null() => "<none>",
            tz => tz,
        },
        suspend,
        len_at(o, "status.active"),
        last,
        age(o, now),
        containers,
        images,
        format_label_selector(at(o, "spec.jobTemplate.spec.selector")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_700_000_000;

    fn meta() -> Value {
        json!({"name": "w", "creationTimestamp": "2023-11-14T22:08:20Z"})
    }

    fn template() -> Value {
        json!({"spec": {"containers": [{"name": "a", "image": "nginx"}, {"name": "b", "image": "busybox:1"}]}})
    }

    #[test]
    fn deployments_and_replica_sets() {
        let d = json!({"metadata": meta(), "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "w"}}, "template": template()},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        assert_eq!(
            deployment(&d, NOW),
            cells!["w", "2/3", 3, 2, "5m", "a,b", "nginx,busybox:1", "app=w"]
        );
        let rs = json!({"metadata": meta(), "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "w"}}, "template": template()},
            "status": {"replicas": 3, "readyReplicas": 1}});
        assert_eq!(
            replica_set(&rs, NOW),
            cells!["w", 3, 3, 1, "5m", "a,b", "nginx,busybox:1", "app=w"]
        );
        let ds = json!({"metadata": meta(), "spec": {"template": template()}, "status": {"desiredNumberScheduled": 1}});
        assert_eq!(
            daemon_set(&ds, NOW),
            cells![
                "w",
                1,
                0,
                0,
                0,
                0,
                "<none>",
                "5m",
                "a,b",
                "nginx,busybox:1",
                "<none>"
            ]
        );
        let sts = json!({"metadata": meta(), "spec": {"replicas": 2, "template": template()}, "status": {"readyReplicas": 2}});
        assert_eq!(
            stateful_set(&sts, NOW),
            cells!["w", "2/2", "5m", "a,b", "nginx,busybox:1"]
        );
    }

    #[test]
    fn controller_revisions() {
        let cr = json!({"metadata": {"name": "w-1", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "w", "controller": true}]}, "revision": 1});
        assert_eq!(
            controller_revision(&cr, NOW),
            cells!["w-1", "daemonset.apps/w", 1, "<unknown>"]
        );
        assert_eq!(controller_revision(&json!({}), NOW)[1], json!("<none>"));
    }

    #[test]
    fn jobs() {
        let j = json!({"metadata": meta(), "spec": {"completions": 1, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}}, "template": template()},
            "status": {"succeeded": 1, "startTime": "2023-11-14T22:08:20Z", "completionTime": "2023-11-14T22:08:31Z",
                "conditions": [{"type": "Complete", "status": "True"}]}});
        assert_eq!(
            job(&j, NOW),
            cells![
                "w",
                "Complete",
                "1/1",
                "11s",
                "5m",
                "a,b",
                "nginx,busybox:1",
                "batch.kubernetes.io/controller-uid=u"
            ]
        );
        let running =
            json!({"spec": {"parallelism": 3}, "status": {"startTime": "2023-11-14T22:08:20Z"}});
        assert_eq!(
            job(&running, NOW)[1..4],
            cells!["Running", "0/1 of 3", "5m"][..]
        );
        let suspended =
            json!({"status": {"conditions": [{"type": "Suspended", "status": "True"}]}});
        assert_eq!(
            job(&suspended, NOW)[1..4],
            cells!["Suspended", "0/1", ""][..]
        );
    }

    #[test]
    fn cron_jobs() {
        let cj = json!({"metadata": meta(), "spec": {"schedule": "*/5 * * * *", "suspend": false,
            "jobTemplate": {"spec": {"template": template()}}}, "status": {"active": [{}], "lastScheduleTime": "2023-11-14T22:12:20Z"}});
        assert_eq!(
            cron_job(&cj, NOW),
            cells![
                "w",
                "*/5 * * * *",
                "<none>",
                "False",
                1,
                "60s",
                "5m",
                "a,b",
                "nginx,busybox:1",
                "<none>"
            ]
        );
        assert_eq!(
            cron_job(&json!({}), NOW)[3..6],
            cells!["<unset>", 0, "<none>"][..]
        );
    }
}
