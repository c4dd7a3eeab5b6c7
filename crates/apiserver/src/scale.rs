//! The `scale` subresource: an autoscaling/v1 Scale view of a workload's replicas, read and
//! written through the parent object so the parent's resourceVersion guards both.

use serde_json::{json, Value};

use crate::crd::{jsonpath, ScalePaths};
use crate::patch::Patch;
use crate::registry::check_type;
use crate::resources::Resource;
use crate::rest::Call;
use crate::status::{cause, ApiError, ApiResult, Subject};

/// `matchLabels` and `matchExpressions` as the label-selector string Scale.status.selector holds.
fn selector_string(sel: &Value) -> String {
    let mut parts: Vec<String> = sel["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    for e in sel["matchExpressions"].as_array().into_iter().flatten() {
        let key = e["key"].as_str().unwrap_or("");
        let values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        parts.push(match e["operator"].as_str().unwrap_or("") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            _ => format!("!{key}"),
        });
    }
    parts.join(",")
}

/// A custom resource's scale paths (its CRD's `subresources.scale`), None for built-ins.
fn custom_paths(res: &Resource) -> Option<&ScalePaths> {
    res.custom.as_ref().and_then(|c| c.scale.as_ref())
}

fn at<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    jsonpath::Path::parse(path).ok()?.first(obj)
}

fn to_scale(res: &Resource, parent: &Value) -> Value {
    let mut scale = builtin_scale(parent);
    if let Some(paths) = custom_paths(res) {
        scale["spec"]["replicas"] = json!(at(parent, &paths.spec_replicas)
            .and_then(Value::as_i64)
            .unwrap_or(0));
        scale["status"]["replicas"] = json!(at(parent, &paths.status_replicas)
            .and_then(Value::as_i64)
            .unwrap_or(0));
        let selector = paths
            .label_selector
            .as_deref()
            .and_then(|p| at(parent, p))
            .and_then(Value::as_str)
            .unwrap_or("");
        scale["status"]["selector"] = json!(selector);
        if selector.is_empty() {
            if let Some(s) = scale["status"].as_object_mut() {
                s.remove("selector");
            }
        }
    }
    scale
}

fn builtin_scale(parent: &Value) -> Value {
    let m = &parent["metadata"];
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": m["name"], "namespace": m["namespace"], "uid": m["uid"],
            "resourceVersion": m["resourceVersion"], "creationTimestamp": m["creationTimestamp"],
        },
        "spec": {"replicas": parent["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {
            "replicas": parent["status"]["replicas"].as_i64().unwrap_or(0),
            "selector": selector_string(&parent["spec"]["selector"]),
        },
    })
}

pub async fn get(call: &Call<'_>) -> ApiResult<Value> {
    let parent = call
        .registry
        .get(
            &call.info.res,
            call.info.namespace.as_deref(),
            call.info.name.as_deref().unwrap_or(""),
        )
        .await?;
    Ok(to_scale(&call.info.res, &parent))
}

/// PUT or PATCH of the Scale: only spec.replicas reaches the parent.
pub async fn write(call: &Call<'_>) -> ApiResult<Value> {
    let name = call.info.name.clone().unwrap_or_default();
    let put_body = match call.info.verb {
        crate::request::Verb::Update => Some(call.body_object("Scale", "autoscaling/v1")?),
        _ => None,
    };
    let patch = match put_body {
        None => Some(Patch::from_request(&call.parts.headers, &call.body)?),
        Some(_) => None,
    };
    // Upstream records a scale write on the parent, as its manager's with subresource "scale".
    let write = match (&put_body, &patch) {
        (Some(_), _) => crate::apply::Write::Update,
        (None, Some(Patch::Apply(_))) => crate::apply::Write::Apply,
        _ => crate::apply::Write::Patch,
    };
    let manager = call.field_manager(write)?;
    let updated = call
        .registry
        .update_with(
            &call.info.res,
            call.info.namespace.as_deref(),
            &name,
            None,
            call.query.dry_run,
            |old| {
                let scale = match (&put_body, &patch) {
                    (Some(b), _) => b.clone(),
                    (None, Some(p)) => p.apply(
                        &to_scale(&call.info.res, old),
                        ("autoscaling", "v1", "Scale"),
                    )?,
                    _ => return Err(ApiError::MethodNotAllowed),
                };
                check_type(&call.info.res, &scale, "Scale", "autoscaling/v1")?;
                let new = apply_replicas(custom_paths(&call.info.res), old, &scale, &name)?;
                Ok(crate::apply::track(
                    &call.info.res,
                    Some("scale"),
                    Some(old),
                    new,
                    &manager,
                ))
            },
        )
        .await?;
    Ok(to_scale(&call.info.res, &updated))
}

fn apply_replicas(
    paths: Option<&ScalePaths>,
    old: &Value,
    scale: &Value,
    name: &str,
) -> ApiResult<Value> {
    let replicas = scale["spec"]["replicas"].as_i64().unwrap_or(0);
    if replicas < 0 {
        let c = cause(
            "FieldValueInvalid",
            "spec.replicas",
            format!("Invalid value: {replicas}: must be greater than or equal to 0"),
        );
        return Err(ApiError::Invalid(
            Subject::new("autoscaling", "Scale", name),
            vec![c],
        ));
    }
    let mut new = old.clone();
    let spec_path = paths.map_or(".spec.replicas", |p| p.spec_replicas.as_str());
    let fields = jsonpath::Path::parse(spec_path)
        .ok()
        .and_then(|p| {
            p.fields()
                .map(|f| f.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        })
        .unwrap_or_else(|| vec!["spec".into(), "replicas".into()]);
    let mut slot = &mut new;
    for f in &fields {
        if !slot.is_object() {
            *slot = json!({});
        }
        slot = &mut slot[f.as_str()];
    }
    *slot = json!(replicas);
    new["metadata"]["resourceVersion"] = scale["metadata"]["resourceVersion"].clone();
    if new["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("")
        .is_empty()
    {
        if let Some(m) = new["metadata"].as_object_mut() {
            m.remove("resourceVersion");
        }
    }
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_view() {
        let d = json!({"metadata": {"name": "d", "resourceVersion": "9"}, "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "x"}}}, "status": {"replicas": 1}});
        let s = to_scale(
            crate::resources::find("apps", "v1", "deployments").unwrap(),
            &d,
        );
        assert_eq!(s["spec"]["replicas"], 2);
        assert_eq!(s["status"]["selector"], "app=x");
        assert_eq!(s["metadata"]["resourceVersion"], "9");
    }
}
