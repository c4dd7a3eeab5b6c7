//! API errors as upstream's `metav1.Status`: every failure a client sees is one of these, with the
//! reason, code and message text that upstream's `k8s.io/apimachinery/pkg/api/errors` produces, so
//! clients that match on reasons or messages behave the same against krust.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::{json, Value};
use thiserror::Error;

use crate::kinds::Cause;

/// Which object an error is about: group, kind as upstream reports it (often the plural resource
/// name), and object name.
#[derive(Debug, Clone, Default)]
pub struct Subject {
    pub group: String,
    pub kind: String,
    pub name: String,
}

impl Subject {
    pub fn new(group: &str, kind: &str, name: &str) -> Self {
        Subject {
            group: group.into(),
            kind: kind.into(),
            name: name.into(),
        }
    }

    /// `pods` or `deployments.apps`, as upstream's `GroupResource.String()`.
    fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }
}

#[derive(Debug, Error)]
pub enum ApiError {
    #[error("{} \"{}\" not found", .0.qualified(), .0.name)]
    NotFound(Subject),
    #[error("{} \"{}\" already exists", .0.qualified(), .0.name)]
    AlreadyExists(Subject),
    #[error("Operation cannot be fulfilled on {} \"{}\": {}", .0.qualified(), .0.name, .1)]
    Conflict(Subject, String),
    #[error("{}", invalid_message(.0, .1))]
    Invalid(Subject, Vec<Cause>),
    #[error("{0}")]
    BadRequest(String),
    #[error("{1}")]
    Forbidden(Subject, String),
    #[error("Unauthorized")]
    Unauthorized,
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    #[error("the server could not find the requested resource")]
    NoSuchResource,
    #[error("{0}")]
    Gone(String),
    #[error("Request entity too large: limit is {0}")]
    TooLarge(usize),
    #[error(
        "the body of the request was in an unknown format - accepted media types include: {0}"
    )]
    UnsupportedMediaType(String),
    #[error("only the following media types are accepted: {0}")]
    NotAcceptable(String),
    #[error("Timeout: {0}")]
    Timeout(String),
    /// Server-side apply conflicts: upstream's message and one cause per contested field.
    #[error("{0}")]
    ApplyConflict(String, Vec<Cause>),
    #[error("Internal error occurred: {0}")]
    Internal(String),
    /// 429, e.g. an eviction a PodDisruptionBudget does not allow now: message and causes.
    #[error("{0}")]
    TooManyRequests(String, Vec<Cause>),
}

fn invalid_message(subject: &Subject, causes: &[Cause]) -> String {
    let kind = format!("{} \"{}\" is invalid", subject.qualified(), subject.name);
    let errs: Vec<String> = causes
        .iter()
        .map(|c| {
            if c.field.is_empty() {
                c.message.clone()
            } else {
                format!("{}: {}", c.field, c.message)
            }
        })
        .collect();
    match errs.len() {
        0 => kind,
        1 => format!("{kind}: {}", errs[0]),
        _ => format!("{kind}: [{}]", errs.join(", ")),
    }
}

impl From<store::StoreError> for ApiError {
    fn from(e: store::StoreError) -> Self {
        match e {
            store::StoreError::Compacted { .. } => {
                ApiError::Gone("The resourceVersion for the provided list is too old.".into())
            }
            store::StoreError::FutureRevision => {
                ApiError::Timeout("Too large resource version".into())
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl ApiError {
    pub fn code(&self) -> StatusCode {
        match self {
            ApiError::NotFound(_) | ApiError::NoSuchResource => StatusCode::NOT_FOUND,
            ApiError::AlreadyExists(_) | ApiError::Conflict(..) | ApiError::ApplyConflict(..) => {
                StatusCode::CONFLICT
            }
            ApiError::Invalid(..) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Forbidden(..) => StatusCode::FORBIDDEN,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::TooManyRequests(..) => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound(_) | ApiError::NoSuchResource => "NotFound",
            ApiError::AlreadyExists(_) => "AlreadyExists",
            ApiError::Conflict(..) | ApiError::ApplyConflict(..) => "Conflict",
            ApiError::Invalid(..) => "Invalid",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Forbidden(..) => "Forbidden",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::MethodNotAllowed => "MethodNotAllowed",
            ApiError::Gone(_) => "Expired",
            ApiError::TooLarge(_) => "RequestEntityTooLarge",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::NotAcceptable(_) => "NotAcceptable",
            ApiError::Timeout(_) => "Timeout",
            ApiError::Internal(_) => "InternalError",
            ApiError::TooManyRequests(..) => "TooManyRequests",
        }
    }

    fn details(&self) -> Option<Value> {
        let subject = match self {
            ApiError::NotFound(s)
            | ApiError::AlreadyExists(s)
            | ApiError::Conflict(s, _)
            | ApiError::Forbidden(s, _) => s,
            ApiError::Invalid(s, causes) => {
                let causes: Vec<Value> = causes
                    .iter()
                    .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                    .collect();
                return Some(subject_json(s, Some(causes)));
            }
            ApiError::Internal(msg) => {
                return Some(json!({"causes": [{"message": msg}]}));
            }
            ApiError::TooManyRequests(_, causes) => {
                let causes: Vec<Value> = causes
                    .iter()
                    .map(|c| json!({"reason": c.reason, "message": c.message}))
                    .collect();
                return Some(json!({"causes": causes}));
            }
            ApiError::ApplyConflict(_, causes) => {
                let causes: Vec<Value> = causes
                    .iter()
                    .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                    .collect();
                return Some(json!({"causes": causes}));
            }
            _ => return None,
        };
        Some(subject_json(subject, None))
    }

    /// The `metav1.Status` body.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code().as_u16(),
        });
        if let Some(details) = self.details() {
            status["details"] = details;
        }
        if matches!(self, ApiError::Internal(_)) {
            tracing::warn!(error = %self, "internal error");
        }
        status
    }
}

fn subject_json(s: &Subject, causes: Option<Vec<Value>>) -> Value {
    let mut d = serde_json::Map::new();
    if !s.name.is_empty() {
        d.insert("name".into(), s.name.clone().into());
    }
    if !s.group.is_empty() {
        d.insert("group".into(), s.group.clone().into());
    }
    if !s.kind.is_empty() {
        d.insert("kind".into(), s.kind.clone().into());
    }
    if let Some(c) = causes {
        d.insert("causes".into(), c.into());
    }
    Value::Object(d)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.to_status()).unwrap_or_default();
        let mut resp = (self.code(), body).into_response();
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// One field-level cause, for the generic metadata validation.
pub fn cause(reason: &str, field: &str, message: String) -> Cause {
    Cause {
        reason: reason.into(),
        field: field.into(),
        message,
    }
}
