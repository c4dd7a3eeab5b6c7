//! The REST layer: turns a resource request into a registry call and the result into the
//! response upstream sends (status codes, list envelopes, Status bodies, subresource shapes).

use axum::response::Response;
use bytes::Bytes;
use http::{request::Parts, StatusCode};
use serde_json::{json, Value};

use crate::content::{self, BodyType, Output};
use crate::conversion::strip_type;
use crate::list_encoding::JsonItems;
use crate::registry::{check_type, DeleteOptions, ListOptions, Registry};
use crate::request::{Query, RequestInfo, Verb};
use crate::resources::Resource;
use crate::selectors::{FieldSelector, LabelSelector, Selector};
use crate::status::{ApiError, ApiResult, Subject};
use crate::table::{self, IncludeObject};
use crate::{patch, scale, watch};

/// One resource request after authentication and authorization.
pub struct Call<'a> {
    pub registry: &'a Registry,
    pub user: &'a crate::authn::UserInfo,
    pub authn: &'a crate::authn::Authenticator,
    pub authz: &'a dyn crate::authz::Authorizer,
    pub info: RequestInfo,
    pub query: Query,
    pub parts: &'a Parts,
    pub body: Bytes,
}

impl Call<'_> {
    fn res(&self) -> &Resource {
        &self.info.res
    }

    fn ns(&self) -> Option<&str> {
        self.info.namespace.as_deref()
    }

    fn name(&self) -> &str {
        self.info.name.as_deref().unwrap_or("")
    }

    fn sub(&self) -> Option<&str> {
        self.info.subresource.as_deref()
    }
}

pub async fn serve(call: Call<'_>) -> Result<Response, ApiError> {
    let output = content::negotiate(&call.parts.headers)?;
    match (call.info.verb, call.sub()) {
        (Verb::Get, Some("scale")) => scale::get(&call)
            .await
            .map(|v| content::respond(StatusCode::OK, &v, plain(output))),
        (Verb::Get, _) => get(&call, output).await,
        (Verb::List, _) => list(&call, output).await,
        (Verb::Watch, _) => watch::serve(&call, output).await,
        (Verb::Create, _) if call.info.res.review => crate::reviews::create(&call).await,
        (Verb::Create, Some("binding")) => bind(&call).await,
        (Verb::Create, Some("eviction")) => crate::eviction::create(&call).await,
        (Verb::Create, Some("token")) => crate::serviceaccount_tokens::create(&call).await,
        (Verb::Create, _) => create(&call, output).await,
        (Verb::Update | Verb::Patch, Some("scale")) => scale::write(&call)
            .await
            .map(|v| content::respond(StatusCode::OK, &v, plain(output))),
        (Verb::Update, _) => update(&call, output).await,
        (Verb::Patch, _) => patch(&call, output).await,
        (Verb::Delete, _) => delete(&call, output).await,
        (Verb::DeleteCollection, _) => delete_collection(&call, output).await,
    }
}

/// Subresource and Status bodies are never tables.
fn plain(output: Output) -> Output {
    match output {
        Output::Yaml => Output::Yaml,
        _ => Output::Json,
    }
}

impl Call<'_> {
    pub fn include_object(&self) -> IncludeObject {
        IncludeObject::parse(&self.query.include_object)
    }

    /// One object in the negotiated form.
    pub fn render_one(&self, code: StatusCode, obj: Value, output: Output) -> Response {
        let value = match output {
            Output::Table => {
                let meta = json!({"resourceVersion": obj["metadata"]["resourceVersion"].clone()});
                table::table(self.res(), &[obj], meta, self.include_object())
            }
            Output::PartialObjectMetadata => table::partial_metadata(&obj),
            _ => obj,
        };
        content::respond(code, &value, output)
    }

    pub fn selector(&self) -> ApiResult<Selector> {
        let labels = LabelSelector::parse(&self.query.label_selector)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let fields = FieldSelector::parse(&self.query.field_selector)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        fields.check_fields(self.res()).map_err(|e| {
            let r = self.res();
            ApiError::BadRequest(format!(
                "Unable to find \"{}/{}, Resource={}\" that match label selector \"{}\", field selector \"{}\": {e}",
                r.group, r.version, r.plural, self.query.label_selector, self.query.field_selector
            ))
        })?;
        Ok(Selector { labels, fields })
    }

    /// Decodes the body as an object of the URL's kind (`kind`/`version` override for subresources).
    pub fn body_object(&self, kind: &str, version: &str) -> ApiResult<Value> {
        let bt = content::body_type(&self.parts.headers)?;
        let obj = match bt {
            BodyType::Json | BodyType::Yaml => content::decode_object(bt, &self.body)?,
            BodyType::Protobuf => {
                let (group, v) = version.split_once('/').unwrap_or(("", version));
                crate::protobuf::decode(&self.body, group, v, kind)
                    .map_err(|e| ApiError::BadRequest(e.to_string()))?
            }
            _ => {
                return Err(ApiError::UnsupportedMediaType(
                    "application/json, application/yaml, application/vnd.kubernetes.protobuf"
                        .into(),
                ))
            }
        };
        check_type(self.res(), &obj, kind, version)?;
        Ok(obj)
    }
}

impl Call<'_> {
    /// Refuses values of the wrong JSON type and drops fields the kind does not have, as
    /// upstream's typed decoding does; with `fieldValidation=Strict` unknown fields are a
    /// BadRequest instead. Returns the warnings to send.
    pub fn check_fields(
        &self,
        obj: &mut Value,
        kind: &str,
        version: &str,
    ) -> ApiResult<Vec<String>> {
        let (group, v) = version.split_once('/').unwrap_or(("", version));
        let findings = match &self.info.res.custom {
            // A custom resource's unknown fields are those its schema would prune.
            Some(custom) if kind == self.info.res.kind => crate::protobuf::fields::Findings {
                unknown: custom.unknown_fields(obj),
                ..Default::default()
            },
            _ => crate::protobuf::fields::check(obj, group, v, kind),
        };
        let cannot = |detail: String| {
            ApiError::BadRequest(format!(
                "{kind} in version \"{v}\" cannot be handled as a {kind}: {detail}"
            ))
        };
        if let Some(m) = findings.mistyped {
            return Err(cannot(format!("json: {m}")));
        }
        if findings.unknown.is_empty() || self.query.field_validation == "Ignore" {
            return Ok(Vec::new());
        }
        let listed: Vec<String> = findings
            .unknown
            .iter()
            .map(|f| format!("unknown field \"{f}\""))
            .collect();
        if self.query.field_validation == "Strict" {
            return Err(cannot(format!(
                "strict decoding error: {}",
                listed.join(", ")
            )));
        }
        Ok(listed)
    }
}

impl Call<'_> {
    /// The field manager this write is recorded under (see [`crate::apply::manager_name`]), once
    /// the write's dryRun values are known good.
    pub(crate) fn field_manager(&self, write: crate::apply::Write) -> ApiResult<String> {
        self.query.check_dry_run(match write {
            crate::apply::Write::Create => "CreateOptions",
            crate::apply::Write::Update => "UpdateOptions",
            crate::apply::Write::Patch | crate::apply::Write::Apply => "PatchOptions",
        })?;
        let ua = self
            .parts
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        crate::apply::manager_name(
            self.query.field_manager.as_deref(),
            self.query.force,
            ua,
            write,
        )
    }
}

/// Upstream's `Warning: 299 - "..."` headers.
fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = format!("299 - {}", serde_json::to_string(w).unwrap_or_default());
        if let Ok(v) = http::HeaderValue::from_str(&text) {
            resp.headers_mut().append(http::header::WARNING, v);
        }
    }
    resp
}

async fn get(call: &Call<'_>, output: Output) -> Result<Response, ApiError> {
    let obj = call
        .registry
        .get(call.res(), call.ns(), call.name())
        .await?;
    Ok(call.render_one(StatusCode::OK, obj, output))
}

async fn list(call: &Call<'_>, output: Output) -> Result<Response, ApiError> {
    let q = &call.query;
    let opts = ListOptions {
        selector: call.selector()?,
        limit: q.limit,
        continue_token: q.continue_token.clone(),
        resource_version: q.resource_version.clone(),
        resource_version_match: q.resource_version_match.clone(),
    };
    if matches!(output, Output::Json) {
        return json_list(call, &opts).await;
    }
    let result = call.registry.list(call.res(), call.ns(), &opts).await?;
    let meta = list_meta(result.revision, result.continue_token);
    let value = match output {
        Output::Table => table::table(call.res(), &result.items, meta, call.include_object()),
        Output::PartialObjectMetadata => table::metadata_list(&result.items, meta),
        _ => {
            let mut items = result.items;
            items.iter_mut().for_each(strip_type);
            let r = call.res();
            json!({"kind": r.list_kind(), "apiVersion": r.api_version(), "metadata": meta, "items": items})
        }
    };
    Ok(content::respond(StatusCode::OK, &value, output))
}

/// The plain JSON list, the common and largest case: each object is encoded as it is read, so the
/// server never holds the whole list as `Value`s (same bytes as the generic path above).
async fn json_list(call: &Call<'_>, opts: &ListOptions) -> Result<Response, ApiError> {
    let mut items = JsonItems::default();
    let result = call
        .registry
        .list_each(call.res(), call.ns(), opts, |obj| items.push(obj))
        .await?;
    let meta = list_meta(result.revision, result.continue_token);
    let body = items.finish(call.res(), meta);
    Ok(content::raw(
        StatusCode::OK,
        Bytes::from(body),
        "application/json",
    ))
}

fn list_meta(revision: i64, continue_token: Option<String>) -> Value {
    let mut meta = json!({"resourceVersion": revision.to_string()});
    if let Some(c) = continue_token {
        meta["continue"] = json!(c);
    }
    meta
}

/// The URL's namespace wins; a different one in the body is a BadRequest, as upstream.
fn check_namespace_matches(call: &Call<'_>, obj: &Value) -> ApiResult<()> {
    let body_ns = obj["metadata"]["namespace"].as_str().unwrap_or("");
    if let (true, Some(ns)) = (call.res().namespaced, call.ns()) {
        if !body_ns.is_empty() && body_ns != ns {
            return Err(ApiError::BadRequest("the namespace of the provided object does not match the namespace sent on the request".into()));
        }
    }
    Ok(())
}

fn check_name_matches(call: &Call<'_>, obj: &Value) -> ApiResult<()> {
    let body_name = obj["metadata"]["name"].as_str().unwrap_or("");
    if body_name != call.name() {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({})",
            call.name()
        )));
    }
    Ok(())
}

async fn create(call: &Call<'_>, output: Output) -> Result<Response, ApiError> {
    let res = call.res();
    let mut obj = call.body_object(res.kind, &res.api_version())?;
    let warnings = call.check_fields(&mut obj, res.kind, &res.api_version())?;
    check_namespace_matches(call, &obj)?;
    if res.namespaced && call.ns().is_none() {
        return Err(ApiError::NoSuchResource);
    }
    let manager = call.field_manager(crate::apply::Write::Create)?;
    let obj = crate::apply::track(res, None, None, obj, &manager);
    let created = call
        .registry
        .create(res, call.ns(), obj, call.query.dry_run)
        .await?;
    Ok(with_warnings(
        call.render_one(StatusCode::CREATED, created, output),
        &warnings,
    ))
}

async fn update(call: &Call<'_>, output: Output) -> Result<Response, ApiError> {
    let res = call.res();
    let mut obj = call.body_object(res.kind, &res.api_version())?;
    let warnings = call.check_fields(&mut obj, res.kind, &res.api_version())?;
    check_namespace_matches(call, &obj)?;
    check_name_matches(call, &obj)?;
    let manager = call.field_manager(crate::apply::Write::Update)?;
    let updated = call
        .registry
        .update_with(
            res,
            call.ns(),
            call.name(),
            call.sub(),
            call.query.dry_run,
            |old| {
                Ok(crate::apply::track(
                    res,
                    call.sub(),
                    Some(old),
                    obj.clone(),
                    &manager,
                ))
            },
        )
        .await?;
    Ok(with_warnings(
        call.render_one(StatusCode::OK, updated, output),
        &warnings,
    ))
}

async fn patch(call: &Call<'_>, output: Output) -> Result<Response, ApiError> {
    let res = call.res();
    let patch = patch::Patch::from_request(&call.parts.headers, &call.body)?;
    if let patch::Patch::Apply(config) = &patch {
        return apply_patch(call, output, config.clone()).await;
    }
    let manager = call.field_manager(crate::apply::Write::Patch)?;
    let updated = call
        .registry
        .update_with(
            res,
            call.ns(),
            call.name(),
            call.sub(),
            call.query.dry_run,
            |old| {
                let mut new = patch.apply(old, (res.group, res.version, res.kind))?;
                call.check_fields(&mut new, res.kind, &res.api_version())?;
                check_name_matches(call, &new)?;
                check_type(res, &new, res.kind, &res.api_version())?;
                Ok(crate::apply::track(
                    res,
                    call.sub(),
                    Some(old),
                    new,
                    &manager,
                ))
            },
        )
        .await?;
    Ok(call.render_one(StatusCode::OK, updated, output))
}

/// PATCH with `application/apply-patch+yaml`: server-side apply of `config`, creating the object
/// when it does not exist (201), as upstream's apply patcher.
async fn apply_patch(
    call: &Call<'_>,
    output: Output,
    mut config: Value,
) -> Result<Response, ApiError> {
    let res = call.res();
    let manager = call.field_manager(crate::apply::Write::Apply)?;
    let force = call.query.force.unwrap_or(false);
    let warnings = call.check_fields(&mut config, res.kind, &res.api_version())?;
    check_type(res, &config, res.kind, &res.api_version())?;
    check_namespace_matches(call, &config)?;
    let explicit_rv = !config["metadata"]["resourceVersion"].is_null();
    let apply = |live: Option<&Value>| {
        let mut new = crate::apply::apply(res, call.sub(), live, &config, &manager, force)?;
        check_name_matches(call, &new)?;
        if !explicit_rv {
            // The live object's resourceVersion is no precondition: the write may be retried.
            if let Some(m) = new["metadata"].as_object_mut() {
                m.remove("resourceVersion");
            }
        }
        Ok(new)
    };
    let dry_run = call.query.dry_run;
    let updated = call
        .registry
        .update_with(res, call.ns(), call.name(), call.sub(), dry_run, |old| {
            apply(Some(old))
        })
        .await;
    let (code, obj) = match updated {
        Err(ApiError::NotFound(_)) if call.sub().is_none() => {
            let new = apply(None)?;
            let created = call.registry.create(res, call.ns(), new, dry_run).await?;
            (StatusCode::CREATED, created)
        }
        other => (StatusCode::OK, other?),
    };
    Ok(with_warnings(call.render_one(code, obj, output), &warnings))
}

/// DeleteOptions from the body (kubectl sends them there) and the query.
fn delete_options(call: &Call<'_>) -> ApiResult<DeleteOptions> {
    call.query.check_dry_run("DeleteOptions")?;
    let body: Value = if call.body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        match content::body_type(&call.parts.headers)? {
            BodyType::Protobuf => crate::protobuf::decode_meta(&call.body, "DeleteOptions")
                .map_err(|e| ApiError::BadRequest(e.to_string()))?,
            bt => content::decode_object(bt, &call.body)?,
        }
    };
    let dry_run = call.query.dry_run
        || body["dryRun"]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v == "All"));
    Ok(DeleteOptions {
        grace_period: call
            .query
            .grace_period
            .or(body["gracePeriodSeconds"].as_i64()),
        uid: body["preconditions"]["uid"].as_str().map(String::from),
        resource_version: body["preconditions"]["resourceVersion"]
            .as_str()
            .map(String::from),
        dry_run,
        propagation: crate::propagation::Propagation::from_request(call.parts.uri.query(), &body)?,
    })
}

async fn delete(call: &Call<'_>, output: Output) -> Result<Response, ApiError> {
    let res = call.res();
    let opts = delete_options(call)?;
    let deleted = call
        .registry
        .delete(res, call.ns(), call.name(), &opts)
        .await?;
    if deleted.gone && !res.returns_deleted_object {
        let status = success_status(res, &deleted.obj);
        return Ok(content::respond(StatusCode::OK, &status, plain(output)));
    }
    Ok(call.render_one(StatusCode::OK, deleted.obj, plain(output)))
}

/// Upstream's answer to a completed delete: Success with the object's name, resource and uid.
fn success_status(res: &Resource, obj: &Value) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
        "details": {"name": obj["metadata"]["name"], "group": res.group, "kind": res.plural, "uid": obj["metadata"]["uid"]},
    })
}

async fn delete_collection(call: &Call<'_>, output: Output) -> Result<Response, ApiError> {
    let res = call.res();
    let opts = delete_options(call)?;
    let list_opts = ListOptions {
        selector: call.selector()?,
        ..Default::default()
    };
    let listed = call.registry.list(res, call.ns(), &list_opts).await?;
    let mut items = Vec::new();
    for obj in listed.items {
        let ns = obj["metadata"]["namespace"].as_str().map(String::from);
        let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
        match call.registry.delete(res, ns.as_deref(), &name, &opts).await {
            Ok(d) => items.push(d.obj),
            Err(ApiError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    items.iter_mut().for_each(strip_type);
    let list = json!({"kind": res.list_kind(), "apiVersion": res.api_version(), "metadata": {}, "items": items});
    Ok(content::respond(StatusCode::OK, &list, plain(output)))
}

/// POST pods/NAME/binding: assigns the pod to a node, once.
async fn bind(call: &Call<'_>) -> Result<Response, ApiError> {
    let binding = call.body_object("Binding", "v1")?;
    let node = binding["target"]["name"].as_str().unwrap_or("").to_string();
    if node.is_empty() {
        let cause =
            crate::status::cause("FieldValueRequired", "target.name", "Required value".into());
        return Err(ApiError::Invalid(
            Subject::new("", "Binding", call.name()),
            vec![cause],
        ));
    }
    let name = call.name().to_string();
    call.registry
        .update_with(
            call.res(),
            call.ns(),
            &name,
            Some("binding"),
            call.query.dry_run,
            |old| {
                let current = old["spec"]["nodeName"].as_str().unwrap_or("");
                if !current.is_empty() {
                    return Err(ApiError::Conflict(
                        Subject::new("", "pods/binding", &name),
                        format!("pod {name} is already assigned to node \"{current}\""),
                    ));
                }
                if !old["metadata"]["deletionTimestamp"].is_null() {
                    return Err(ApiError::Conflict(
                        Subject::new("", "pods/binding", &name),
                        format!("pod {name} is being deleted, cannot be assigned to a host"),
                    ));
                }
                let mut new = old.clone();
                new["spec"]["nodeName"] = json!(node);
                scheduled_condition(&mut new);
                new["metadata"]["resourceVersion"] = binding["metadata"]["resourceVersion"].clone();
                Ok(new)
            },
        )
        .await?;
    let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201});
    Ok(content::respond(StatusCode::CREATED, &status, Output::Json))
}

/// Binding marks the pod scheduled, as upstream's binding REST does.
fn scheduled_condition(pod: &mut Value) {
    let cond = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null,
                      "lastTransitionTime": crate::metadata::now_rfc3339()});
    match pod["status"]["conditions"].as_array_mut() {
        Some(conds) => {
            conds.retain(|c| c["type"] != "PodScheduled");
            conds.push(cond);
        }
        None => pod["status"]["conditions"] = json!([cond]),
    }
}
