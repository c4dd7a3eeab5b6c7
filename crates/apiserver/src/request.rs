//! What a REST request asks for, decoded from its method, path and query the way upstream's
//! `RequestInfoFactory` does: verb, group/version/resource, namespace, name, subresource.

use http::Method;

use std::sync::Arc;

use crate::resources::{Resource, ResourceTable};
use crate::status::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
        }
    }
}

#[derive(Debug, Clone)]
pub struct RequestInfo {
    pub verb: Verb,
    pub res: Arc<Resource>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Query parameters list, watch, get, write and delete requests understand.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub watch: bool,
    pub label_selector: String,
    pub field_selector: String,
    pub limit: i64,
    pub continue_token: String,
    pub resource_version: Option<String>,
    pub resource_version_match: String,
    pub timeout_seconds: Option<u64>,
    pub allow_bookmarks: bool,
    pub send_initial_events: Option<bool>,
    pub include_object: String,
    pub dry_run: bool,
    /// `dryRun` values other than `All`, which writes refuse ([`Query::check_dry_run`]).
    pub dry_run_unsupported: Vec<String>,
    pub grace_period: Option<i64>,
    pub propagation_policy: String,
    /// `Strict`, `Warn` (the default) or `Ignore`: what unknown fields in the body cause.
    pub field_validation: String,
    /// Who makes a write, for managedFields (defaults to the user agent's product name).
    pub field_manager: Option<String>,
    /// An apply patch's `force`: take fields other managers own.
    pub force: Option<bool>,
}

fn truthy(v: &str) -> bool {
    matches!(v, "1" | "true" | "True" | "TRUE" | "t")
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
            .map_err(|e| ApiError::BadRequest(format!("invalid query: {e}")))?;
        let mut q = Query::default();
        for (k, v) in pairs {
            match k.as_str() {
                "watch" => q.watch = truthy(&v),
                "labelSelector" => q.label_selector = v,
                "fieldSelector" => q.field_selector = v,
                "limit" => q.limit = v.parse().map_err(|_| bad_int("limit", &v))?,
                "continue" => q.continue_token = v,
                "resourceVersion" => q.resource_version = Some(v),
                "resourceVersionMatch" => q.resource_version_match = v,
                "timeoutSeconds" => {
                    q.timeout_seconds = Some(v.parse().map_err(|_| bad_int("timeoutSeconds", &v))?)
                }
                "allowWatchBookmarks" => q.allow_bookmarks = truthy(&v),
                "sendInitialEvents" => q.send_initial_events = Some(truthy(&v)),
                "includeObject" => q.include_object = v,
                "dryRun" if v == "All" => q.dry_run = true,
                "dryRun" => q.dry_run_unsupported.push(v),
                "gracePeriodSeconds" => {
                    q.grace_period = Some(v.parse().map_err(|_| bad_int("gracePeriodSeconds", &v))?)
                }
                "propagationPolicy" => q.propagation_policy = v,
                "fieldValidation" => q.field_validation = v,
                "fieldManager" => q.field_manager = Some(v),
                "force" => q.force = Some(truthy(&v)),
                _ => {}
            }
        }
        Ok(q)
    }
}

impl Query {
    /// Upstream accepts no `dryRun` value but `All`: 422 on the write's options kind
    /// (`CreateOptions`, `PatchOptions`, ...).
    pub fn check_dry_run(&self, options: &str) -> Result<(), ApiError> {
        if self.dry_run_unsupported.is_empty() {
            return Ok(());
        }
        let mut given: Vec<&str> = self
            .dry_run_unsupported
            .iter()
            .map(String::as_str)
            .collect();
        if self.dry_run {
            given.insert(0, "All");
        }
        let cause = crate::status::cause(
            "FieldValueNotSupported",
            "dryRun",
            format!(
                "Unsupported value: {}: supported values: \"All\"",
                serde_json::json!(given)
            ),
        );
        Err(ApiError::Invalid(
            crate::status::Subject::new("meta.k8s.io", options, ""),
            vec![cause],
        ))
    }
}

fn bad_int(name: &str, v: &str) -> ApiError {
    ApiError::BadRequest(format!("invalid value {v:?} for {name}: not an integer"))
}

/// Splits `/api/v1/...` or `/apis/g/v/...` into (group, version, rest); None for non-API paths.
pub fn split_api_path(path: &str) -> Option<(&str, &str, Vec<&str>)> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["api", version, rest @ ..] => Some(("", *version, rest.to_vec())),
        ["apis", group, version, rest @ ..] => Some((*group, *version, rest.to_vec())),
        _ => None,
    }
}

/// Decodes a resource request. `rest` is the path after the group-version.
pub fn resolve(
    method: &Method,
    group: &str,
    version: &str,
    rest: &[&str],
    q: &Query,
    table: &ResourceTable,
) -> Result<RequestInfo, ApiError> {
    let mut parts = rest;
    let mut namespace = None;
    if parts.first() == Some(&"namespaces") && parts.len() > 1 {
        namespace = Some(parts[1].to_string());
        if parts.len() > 2 && !matches!(parts[2], "status" | "finalize") {
            parts = &parts[2..];
        }
    }
    let plural = *parts.first().ok_or(ApiError::NoSuchResource)?;
    let res = table
        .find(group, version, plural)
        .ok_or(ApiError::NoSuchResource)?;
    let name = parts.get(1).map(|s| s.to_string());
    let subresource = parts.get(2).map(|s| s.to_string());
    // `nodes/NAME/proxy/PATH...`: the rest is the kubelet's path.
    if parts.len() > 3 && subresource.as_deref() != Some("proxy") {
        return Err(ApiError::NoSuchResource);
    }
    if let Some(sub) = &subresource {
        if !res.has_subresource(sub) {
            return Err(ApiError::NoSuchResource);
        }
    }
    if res.plural == "namespaces" {
        // `/api/v1/namespaces/x` names the namespace object itself, which is cluster-scoped.
        namespace = None;
    } else if !res.namespaced && namespace.is_some() {
        return Err(ApiError::NoSuchResource);
    }
    let verb = verb_for(method, name.is_some(), subresource.as_deref(), q.watch)?;
    if res.review && verb != Verb::Create {
        return Err(ApiError::MethodNotAllowed);
    }
    Ok(RequestInfo {
        verb,
        res,
        namespace,
        name,
        subresource,
    })
}

fn verb_for(
    method: &Method,
    named: bool,
    sub: Option<&str>,
    watch: bool,
) -> Result<Verb, ApiError> {
    Ok(match (method.as_str(), named, sub) {
        // A WebSocket exec/attach/portforward is a GET that creates, authorized as `create`
        // (upstream's AuthorizePodWebsocketUpgradeCreatePermission, on since 1.31).
        ("GET", true, Some("exec" | "attach" | "portforward")) => Verb::Create,
        ("GET" | "HEAD", true, Some("proxy")) => Verb::Get,
        ("GET" | "HEAD", true, _) if watch => Verb::Watch,
        ("GET" | "HEAD", true, _) => Verb::Get,
        ("GET" | "HEAD", false, _) if watch => Verb::Watch,
        ("GET" | "HEAD", false, _) => Verb::List,
        ("POST", false, _) => Verb::Create,
        ("POST", true, Some("binding" | "token" | "eviction")) => Verb::Create,
        ("POST", true, Some("exec" | "attach" | "portforward" | "proxy")) => Verb::Create,
        ("DELETE", true, Some("proxy")) => Verb::Delete,
        ("PUT", true, _) => Verb::Update,
        ("PATCH", true, _) => Verb::Patch,
        ("DELETE", true, None) => Verb::Delete,
        ("DELETE", false, _) => Verb::DeleteCollection,
        _ => return Err(ApiError::MethodNotAllowed),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(method: Method, path: &str) -> Result<RequestInfo, ApiError> {
        let (g, v, rest) = split_api_path(path).unwrap();
        resolve(
            &method,
            g,
            v,
            &rest,
            &Query::default(),
            &ResourceTable::default(),
        )
    }

    #[test]
    fn dry_run_values() {
        let q = Query::parse(Some("dryRun=All")).unwrap();
        assert!(q.dry_run && q.check_dry_run("CreateOptions").is_ok());
        let q = Query::parse(Some("dryRun=Server")).unwrap();
        assert!(!q.dry_run);
        assert_eq!(
            q.check_dry_run("CreateOptions").unwrap_err().to_string(),
            "CreateOptions.meta.k8s.io \"\" is invalid: dryRun: Unsupported value: [\"Server\"]: supported values: \"All\""
        );
    }

    #[test]
    fn paths() {
        let i = info(Method::GET, "/api/v1/namespaces/default/pods/x").unwrap();
        assert_eq!(
            (
                i.verb,
                i.res.plural,
                i.namespace.as_deref(),
                i.name.as_deref()
            ),
            (Verb::Get, "pods", Some("default"), Some("x"))
        );
        let i = info(Method::GET, "/api/v1/namespaces/kube-system").unwrap();
        assert_eq!(
            (i.res.plural, i.namespace, i.name.as_deref()),
            ("namespaces", None, Some("kube-system"))
        );
        let i = info(Method::PUT, "/api/v1/namespaces/x/finalize").unwrap();
        assert_eq!(i.subresource.as_deref(), Some("finalize"));
        let i = info(
            Method::PUT,
            "/apis/apps/v1/namespaces/d/deployments/x/scale",
        )
        .unwrap();
        assert_eq!(i.subresource.as_deref(), Some("scale"));
        let i = info(Method::DELETE, "/api/v1/namespaces/d/configmaps").unwrap();
        assert_eq!(i.verb, Verb::DeleteCollection);
        assert!(info(Method::GET, "/api/v1/namespaces/d/nodes").is_err());
        assert!(info(Method::GET, "/api/v1/widgets").is_err());
        assert!(matches!(
            info(Method::POST, "/api/v1/namespaces/d/pods/x"),
            Err(ApiError::MethodNotAllowed)
        ));
    }
}
