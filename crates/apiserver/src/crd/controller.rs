//! The CRD controller, in process: upstream's naming, establishing and finalizer controllers in
//! one loop. It follows the watch cache, and on every change to a CRD (or to the objects of a
//! terminating one) reconciles all CRDs:
//! - accepts names not used by another CRD of the group (NamesAccepted, or False with
//!   PluralConflict/SingularConflict/ShortNamesConflict/KindConflict/ListKindConflict), then marks
//!   the CRD Established and serves it: its rows go into the server's resource table;
//! - for a CRD being deleted (it carries `customresourcecleanup.apiextensions.k8s.io`), sets
//!   Terminating, deletes every object, and when none is left removes the finalizer, so the CRD
//!   goes and its rows leave the table.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

use crate::metadata::now_rfc3339;
use crate::registry::{DeleteOptions, ListOptions, Registry};
use crate::resources::{self, Resource};
use crate::status::ApiError;

use super::CLEANUP_FINALIZER;

/// Where CRDs are stored.
pub const PREFIX: &str = "/registry/apiextensions.k8s.io/customresourcedefinitions/";
/// How often a terminating CRD's cleanup is retried without events (objects with finalizers).
const RETRY: Duration = Duration::from_secs(5);

/// What the controller remembers between passes.
#[derive(Default)]
struct State {
    /// CRDs whose rows are in the table.
    served: BTreeSet<String>,
    /// Storage prefixes of terminating CRDs: changes under them retrigger the cleanup.
    terminating: Vec<String>,
}

fn crd_resource() -> &'static Resource {
    resources::find("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        .expect("the CRD resource is a built-in row")
}

/// Serves the CRDs already stored before the server takes requests, then follows changes.
pub async fn start(registry: Arc<Registry>) -> JoinHandle<()> {
    let mut state = State::default();
    if let Err(e) = sync(&registry, &mut state).await {
        tracing::warn!(error = %e, "serving the stored CustomResourceDefinitions");
    }
    tokio::spawn(run(registry, state))
}

async fn run(registry: Arc<Registry>, mut state: State) {
    loop {
        let revision = registry.cache.current_revision();
        let Ok(mut sub) = registry.cache.subscribe(revision) else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        if let Err(e) = sync(&registry, &mut state).await {
            tracing::warn!(error = %e, "reconciling CustomResourceDefinitions");
        }
        loop {
            let dirty = tokio::select! {
                ev = sub.live.recv() => match ev {
                    Ok(ev) => relevant(&state, &ev.key),
                    Err(RecvError::Lagged(_)) => true,
                    Err(RecvError::Closed) => return,
                },
                _ = tokio::time::sleep(RETRY) => !state.terminating.is_empty(),
            };
            if !dirty {
                continue;
            }
            // Take whatever else arrived in the same burst, then reconcile once.
            loop {
                match sub.live.try_recv() {
                    Ok(_) | Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::TryRecvError::Closed) => return,
                    Err(tokio::sync::broadcast::error::TryRecvError::Empty) => break,
                }
            }
            if let Err(e) = sync(&registry, &mut state).await {
                tracing::warn!(error = %e, "reconciling CustomResourceDefinitions");
            }
        }
    }
}

fn relevant(state: &State, key: &str) -> bool {
    key.starts_with(PREFIX)
        || state
            .terminating
            .iter()
            .any(|p| key.starts_with(p.as_str()))
}

/// One pass over every CRD.
async fn sync(registry: &Registry, state: &mut State) -> Result<(), ApiError> {
    let res = crd_resource();
    let mut crds = registry
        .list(res, None, &ListOptions::default())
        .await?
        .items;
    // Earlier CRDs claim names first, as they did when they were created.
    crds.sort_by(|a, b| {
        let key = |c: &Value| {
            (
                c["metadata"]["creationTimestamp"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                c["metadata"]["name"].as_str().unwrap_or("").to_string(),
            )
        };
        key(a).cmp(&key(b))
    });
    let mut terminating = Vec::new();
    for i in 0..crds.len() {
        let name = crds[i]["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let deleting = !crds[i]["metadata"]["deletionTimestamp"].is_null();
        let mut status = crds[i]["status"].clone();
        if deleting {
            set_condition(
                &mut status,
                "Terminating",
                "True",
                "InstanceDeletionInProgress",
                "CustomResource deletion is in progress",
            );
        } else {
            let others: Vec<&Value> = crds
                .iter()
                .enumerate()
                .filter(|(j, c)| *j != i && c["spec"]["group"] == crds[i]["spec"]["group"])
                .map(|(_, c)| c)
                .collect();
            accept_names(&crds[i], &others, &mut status);
        }
        if status != crds[i]["status"] {
            match write_status(registry, &name, status).await {
                Ok(updated) => crds[i] = updated,
                Err(ApiError::NotFound(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        let rows = if established(&crds[i]) {
            super::rows(&crds[i], deleting)
        } else {
            Vec::new()
        };
        if deleting {
            if let Some(row) = rows.first() {
                terminating.push(row.prefix());
            }
            let storage_row = rows.first().cloned();
            registry.resources.set_custom(&name, rows);
            state.served.insert(name.clone());
            if cleanup(registry, &crds[i], storage_row.as_ref()).await? {
                registry.resources.set_custom(&name, Vec::new());
                state.served.remove(&name);
            }
            continue;
        }
        if rows.is_empty() {
            state.served.remove(&name);
        } else {
            state.served.insert(name.clone());
        }
        registry.resources.set_custom(&name, rows);
    }
    let present: BTreeSet<String> = crds
        .iter()
        .filter_map(|c| c["metadata"]["name"].as_str().map(String::from))
        .collect();
    for gone in state
        .served
        .difference(&present)
        .cloned()
        .collect::<Vec<_>>()
    {
        registry.resources.set_custom(&gone, Vec::new());
        state.served.remove(&gone);
    }
    state.terminating = terminating;
    Ok(())
}

fn established(crd: &Value) -> bool {
    condition(&crd["status"], "Established").is_some_and(|c| c["status"] == "True")
}

fn condition<'a>(status: &'a Value, kind: &str) -> Option<&'a Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

/// Sets a condition, keeping its lastTransitionTime when its status did not change.
fn set_condition(status: &mut Value, kind: &str, state: &str, reason: &str, message: &str) {
    if !status.is_object() {
        *status = json!({});
    }
    let since = match condition(status, kind) {
        Some(c) if c["status"] == state => c["lastTransitionTime"].clone(),
        _ => json!(now_rfc3339()),
    };
    let new = json!({"type": kind, "status": state, "lastTransitionTime": since,
                     "reason": reason, "message": message});
    if !status["conditions"].is_array() {
        status["conditions"] = json!([]);
    }
    if let Some(list) = status["conditions"].as_array_mut() {
        match list.iter_mut().find(|c| c["type"] == kind) {
            Some(c) => *c = new,
            None => list.push(new),
        }
    }
}

/// Upstream's naming controller: each requested name is taken when it is already ours or no
/// other CRD of the group accepted it; then the establishing controller's Established.
fn accept_names(crd: &Value, others: &[&Value], status: &mut Value) {
    let mut resources_used = BTreeSet::new();
    let mut kinds_used = BTreeSet::new();
    for o in others {
        let n = &o["status"]["acceptedNames"];
        for f in ["plural", "singular"] {
            if let Some(s) = n[f].as_str().filter(|s| !s.is_empty()) {
                resources_used.insert(s.to_string());
            }
        }
        for s in n["shortNames"].as_array().into_iter().flatten() {
            if let Some(s) = s.as_str() {
                resources_used.insert(s.to_string());
            }
        }
        for f in ["kind", "listKind"] {
            if let Some(s) = n[f].as_str().filter(|s| !s.is_empty()) {
                kinds_used.insert(s.to_string());
            }
        }
    }
    let requested = &crd["spec"]["names"];
    let accepted = status["acceptedNames"].clone();
    let mut names = if accepted.is_object() {
        accepted.clone()
    } else {
        json!({})
    };
    let mut verdict: Option<(&str, String)> = None;
    let fresh = |want: &str, have: &str, used: &BTreeSet<String>| -> Result<(), String> {
        if want == have || !used.contains(want) {
            Ok(())
        } else {
            Err(format!("\"{want}\" is already in use"))
        }
    };
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    for (field, reason, used) in [
        ("plural", "PluralConflict", &resources_used),
        ("singular", "SingularConflict", &resources_used),
    ] {
        match fresh(&s(&requested[field]), &s(&accepted[field]), used) {
            Ok(()) => names[field] = requested[field].clone(),
            Err(e) => verdict = Some((reason, e)),
        }
    }
    let wanted_short: Vec<String> = requested["shortNames"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    let have_short: Vec<String> = accepted["shortNames"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    if wanted_short != have_short {
        let errs: Vec<String> = wanted_short
            .iter()
            .filter(|n| !have_short.contains(n))
            .filter_map(|n| fresh(n, "", &resources_used).err())
            .collect();
        if errs.is_empty() {
            names["shortNames"] = requested["shortNames"].clone();
        } else {
            verdict = Some(("ShortNamesConflict", errs.join(", ")));
        }
    }
    for (field, reason) in [("kind", "KindConflict"), ("listKind", "ListKindConflict")] {
        match fresh(&s(&requested[field]), &s(&accepted[field]), &kinds_used) {
            Ok(()) => names[field] = requested[field].clone(),
            Err(e) => verdict = Some((reason, e)),
        }
    }
    if !requested["categories"].is_null() {
        names["categories"] = requested["categories"].clone();
    } else if let Some(m) = names.as_object_mut() {
        m.remove("categories");
    }
    if wanted_short.is_empty() {
        if let Some(m) = names.as_object_mut() {
            m.remove("shortNames");
        }
    }
    status["acceptedNames"] = names;
    match verdict {
        None => {
            set_condition(
                status,
                "NamesAccepted",
                "True",
                "NoConflicts",
                "no conflicts found",
            );
            if !established(&json!({"status": status.clone()})) {
                set_condition(
                    status,
                    "Established",
                    "True",
                    "InitialNamesAccepted",
                    "the initial names have been accepted",
                );
            }
        }
        Some((reason, message)) => {
            set_condition(status, "NamesAccepted", "False", reason, &message);
            if condition(status, "Established").is_none() {
                set_condition(
                    status,
                    "Established",
                    "False",
                    "NotAccepted",
                    "not all names are accepted",
                );
            }
        }
    }
}

async fn write_status(registry: &Registry, name: &str, status: Value) -> Result<Value, ApiError> {
    registry
        .update_with(crd_resource(), None, name, Some("status"), false, |old| {
            let mut new = old.clone();
            new["status"] = status.clone();
            if let Some(m) = new["metadata"].as_object_mut() {
                m.remove("resourceVersion");
            }
            Ok(new)
        })
        .await
}

/// Deletes the objects of a terminating CRD; once none is left, marks the CRD's Terminating
/// condition done and removes the finalizer (the registry then removes the CRD). Returns whether
/// the CRD is gone.
async fn cleanup(
    registry: &Registry,
    crd: &Value,
    row: Option<&Resource>,
) -> Result<bool, ApiError> {
    let name = crd["metadata"]["name"].as_str().unwrap_or("").to_string();
    let finalizers: Vec<&Value> = crd["metadata"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    if !finalizers.iter().any(|f| *f == CLEANUP_FINALIZER) {
        return Ok(false);
    }
    if let Some(row) = row {
        let listed = registry.list(row, None, &ListOptions::default()).await?;
        let mut remaining = 0;
        for obj in &listed.items {
            let ns = obj["metadata"]["namespace"].as_str();
            let n = obj["metadata"]["name"].as_str().unwrap_or("");
            match registry.delete(row, ns, n, &DeleteOptions::default()).await {
                Ok(d) if d.gone => {}
                Ok(_) => remaining += 1,
                Err(ApiError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        if remaining > 0 {
            return Ok(false);
        }
    }
    let mut status = crd["status"].clone();
    set_condition(
        &mut status,
        "Terminating",
        "False",
        "InstanceDeletionCompleted",
        "removed all instances",
    );
    match write_status(registry, &name, status).await {
        Ok(_) => {}
        Err(ApiError::NotFound(_)) => return Ok(true),
        Err(e) => return Err(e),
    }
    let result = registry
        .update_with(crd_resource(), None, &name, None, false, |old| {
            let mut new = old.clone();
            if let Some(list) = new["metadata"]["finalizers"].as_array_mut() {
                list.retain(|f| f != CLEANUP_FINALIZER);
            }
            if let Some(m) = new["metadata"].as_object_mut() {
                m.remove("resourceVersion");
            }
            Ok(new)
        })
        .await;
    match result {
        Ok(_) | Err(ApiError::NotFound(_)) => Ok(true),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd(plural: &str, kind: &str, short: &[&str]) -> Value {
        json!({"metadata": {"name": format!("{plural}.example.com")},
               "spec": {"group": "example.com", "names": {"plural": plural, "singular": kind.to_lowercase(), "kind": kind, "listKind": format!("{kind}List"), "shortNames": short}},
               "status": {}})
    }

    #[test]
    fn names_conflicts_as_upstream() {
        let a = crd("widgets", "Widget", &["wd"]);
        let mut a_status = json!({});
        accept_names(&a, &[], &mut a_status);
        assert_eq!(
            condition(&a_status, "NamesAccepted").unwrap()["reason"],
            "NoConflicts"
        );
        assert_eq!(
            condition(&a_status, "Established").unwrap()["status"],
            "True"
        );
        let accepted = json!({"status": a_status});

        let mut b = crd("gadgets", "Widget", &[]);
        b["spec"]["names"]["listKind"] = json!("GadgetList");
        let mut b_status = json!({});
        accept_names(&b, &[&accepted], &mut b_status);
        let names = condition(&b_status, "NamesAccepted").unwrap();
        assert_eq!(names["status"], "False");
        assert_eq!(names["reason"], "KindConflict");
        assert_eq!(names["message"], "\"Widget\" is already in use");
        assert_eq!(
            condition(&b_status, "Established").unwrap()["reason"],
            "NotAccepted"
        );
        assert_eq!(b_status["acceptedNames"]["plural"], "gadgets");
    }
}
