//! `POST pods/NAME/eviction` (policy/v1 Eviction), as upstream's EvictionREST: the pod is
//! deleted only if the one PodDisruptionBudget selecting it allows a disruption, which is then
//! used up (`disruptionsAllowed` decremented, the pod recorded in `disruptedPods` for the
//! disruption controller); otherwise 429 TooManyRequests, which `kubectl drain` retries.

use axum::response::Response;
use http::StatusCode;
use serde_json::{json, Value};

use crate::content::{self, Output};
use crate::registry::DeleteOptions;
use crate::rest::Call;
use crate::status::{cause, ApiError, ApiResult, Subject};

/// Upstream's MaxDisruptedPodSize: evictions the disruption controller has not confirmed yet.
const MAX_DISRUPTED_PODS: usize = 2000;

const VIOLATION: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

pub async fn create(call: &Call<'_>) -> Result<Response, ApiError> {
    let eviction = call
        .body_object("Eviction", "policy/v1")
        .or_else(|_| call.body_object("Eviction", "policy/v1beta1"))?;
    let name = call.info.name.clone().unwrap_or_default();
    if eviction["metadata"]["name"]
        .as_str()
        .is_some_and(|n| n != name)
    {
        return Err(ApiError::BadRequest(
            "name in URL does not match name in Eviction object".into(),
        ));
    }
    let ns = call.info.namespace.as_deref();
    let pods = &call.info.res;
    let pod = call.registry.get(pods, ns, &name).await?;
    let options = &eviction["deleteOptions"];
    let dry_run = call.query.dry_run
        || options["dryRun"]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v == "All"));
    if !can_ignore_budgets(&pod) {
        check_budget(call, &pod, dry_run).await?;
    }
    if !dry_run && !terminal(&pod) {
        let marked = call
            .registry
            .update_with(pods, ns, &name, Some("status"), false, |old| {
                Ok(with_disruption_target(old.clone()))
            })
            .await;
        match marked {
            Ok(_) | Err(ApiError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    let opts = DeleteOptions {
        grace_period: options["gracePeriodSeconds"].as_i64(),
        uid: options["preconditions"]["uid"].as_str().map(String::from),
        resource_version: options["preconditions"]["resourceVersion"]
            .as_str()
            .map(String::from),
        dry_run,
        ..Default::default()
    };
    call.registry.delete(pods, ns, &name, &opts).await?;
    let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201});
    Ok(content::respond(StatusCode::CREATED, &status, Output::Json))
}

fn phase(pod: &Value) -> &str {
    pod["status"]["phase"].as_str().unwrap_or("Pending")
}

fn terminal(pod: &Value) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// Upstream's canIgnorePDB: a pod that finished, has not started or is already being deleted
/// disrupts nothing more.
fn can_ignore_budgets(pod: &Value) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed" | "Pending")
        || !pod["metadata"]["deletionTimestamp"].is_null()
}

fn ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// Finds the pod's budget and, unless the pod's loss costs nothing, uses up one disruption.
async fn check_budget(call: &Call<'_>, pod: &Value, dry_run: bool) -> ApiResult<()> {
    let Some(budgets) = crate::resources::find("policy", "v1", "poddisruptionbudgets") else {
        return Ok(());
    };
    let ns = call.info.namespace.as_deref();
    let listed = call.registry.list(budgets, ns, &Default::default()).await?;
    let labels = &pod["metadata"]["labels"];
    let matching: Vec<&Value> = listed
        .items
        .iter()
        .filter(|b| selects(&b["spec"]["selector"], labels))
        .collect();
    let budget = match matching.as_slice() {
        [] => return Ok(()),
        [one] => *one,
        _ => {
            return Err(ApiError::Internal(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.".into(),
            ))
        }
    };
    let status = &budget["status"];
    let int = |k: &str| status[k].as_i64().unwrap_or(0);
    // An unready pod is not counted healthy: evicting it takes nothing from the budget
    // (unhealthyPodEvictionPolicy IfHealthyBudget when the budget is met, AlwaysAllow always).
    if !ready(pod) {
        let always = budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow";
        let met = int("currentHealthy") >= int("desiredHealthy") && int("desiredHealthy") > 0;
        if always || met {
            return Ok(());
        }
    }
    let budget_name = budget["metadata"]["name"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let pod_name = call.info.name.clone().unwrap_or_default();
    call.registry
        .update_with(
            budgets,
            ns,
            &budget_name,
            Some("status"),
            dry_run,
            |current| decrement(current, &budget_name, &pod_name),
        )
        .await?;
    Ok(())
}

/// policy/v1: a missing selector selects nothing, an empty one everything (upstream's
/// LabelSelectorAsSelector); a malformed one nothing.
fn selects(selector: &Value, labels: &Value) -> bool {
    if selector.is_null() {
        return false;
    }
    crate::kinds::selector_string(selector)
        .and_then(|s| crate::selectors::LabelSelector::parse(&s).ok())
        .is_some_and(|s| s.matches(labels))
}

/// Upstream's checkAndDecrement on the budget as stored now.
fn decrement(budget: &Value, name: &str, pod: &str) -> ApiResult<Value> {
    let status = &budget["status"];
    let int = |k: &str| status[k].as_i64().unwrap_or(0);
    let generation = budget["metadata"]["generation"].as_i64().unwrap_or(0);
    let subject = || Subject::new("policy", "poddisruptionbudget", name);
    if status["observedGeneration"].as_i64().unwrap_or(0) < generation {
        return Err(too_many(format!(
            "The disruption budget {name} is still being processed by the server."
        )));
    }
    let allowed = int("disruptionsAllowed");
    if allowed < 0 {
        return Err(ApiError::Forbidden(subject(), format!("poddisruptionbudget.policy \"{name}\" is forbidden: pdb disruptions allowed is negative")));
    }
    let disrupted = status["disruptedPods"].as_object().map_or(0, |m| m.len());
    if disrupted > MAX_DISRUPTED_PODS {
        return Err(ApiError::Forbidden(subject(), format!("poddisruptionbudget.policy \"{name}\" is forbidden: DisruptedPods map too big - too many evictions not confirmed by PDB controller")));
    }
    if allowed == 0 {
        return Err(too_many(format!(
            "The disruption budget {name} needs {} healthy pods and has {} currently",
            int("desiredHealthy"),
            int("currentHealthy")
        )));
    }
    let mut new = budget.clone();
    new["status"]["disruptionsAllowed"] = json!(allowed - 1);
    if allowed == 1 {
        insufficient(&mut new["status"]);
    }
    if !new["status"]["disruptedPods"].is_object() {
        new["status"]["disruptedPods"] = json!({});
    }
    new["status"]["disruptedPods"][pod] = json!(crate::metadata::now_rfc3339());
    Ok(new)
}

fn too_many(message: String) -> ApiError {
    ApiError::TooManyRequests(
        VIOLATION.into(),
        vec![cause("DisruptionBudget", "", message)],
    )
}

/// The DisruptionAllowed condition turns False with the last allowed disruption.
fn insufficient(status: &mut Value) {
    let generation = status["observedGeneration"].clone();
    let condition = json!({"type": "DisruptionAllowed", "status": "False", "reason": "InsufficientPods",
        "message": "", "observedGeneration": generation,
        "lastTransitionTime": crate::metadata::now_rfc3339()});
    match status["conditions"].as_array_mut() {
        Some(cs) => match cs.iter_mut().find(|c| c["type"] == "DisruptionAllowed") {
            Some(c) if c["status"] == "False" => {}
            Some(c) => *c = condition,
            None => cs.push(condition),
        },
        None => status["conditions"] = json!([condition]),
    }
}

/// Upstream's DisruptionTarget condition (reason EvictionByEvictionAPI) before the delete.
fn with_disruption_target(mut pod: Value) -> Value {
    let condition = json!({"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI",
        "message": "Eviction API: evicting", "lastProbeTime": null,
        "lastTransitionTime": crate::metadata::now_rfc3339()});
    match pod["status"]["conditions"].as_array_mut() {
        Some(cs) => {
            cs.retain(|c| c["type"] != "DisruptionTarget");
            cs.push(condition);
        }
        None => pod["status"]["conditions"] = json!([condition]),
    }
    pod
}
