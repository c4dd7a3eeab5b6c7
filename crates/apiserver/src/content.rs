//! Content negotiation: request bodies in JSON, YAML or Kubernetes protobuf (and the patch media
//! types), responses in JSON, YAML, `meta.k8s.io` Table or PartialObjectMetadata as the Accept
//! header asks. Responses are never protobuf: clients that list JSON as an alternative (client-go
//! does) get JSON, others a 406 Status.

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde_json::Value;

use crate::status::ApiError;

const ACCEPTED_BODIES: &str =
    "application/json, application/yaml, application/vnd.kubernetes.protobuf";
const ACCEPTED_OUTPUTS: &str = "application/json, application/yaml";

/// How the body of a write is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyType {
    Json,
    Yaml,
    MergePatch,
    JsonPatch,
    StrategicMergePatch,
    ApplyPatch,
    Protobuf,
}

pub fn body_type(headers: &HeaderMap) -> Result<BodyType, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    Ok(match media.as_str() {
        "" | "application/json" | "*/*" => BodyType::Json,
        "application/yaml" | "application/x-yaml" | "text/yaml" => BodyType::Yaml,
        "application/merge-patch+json" => BodyType::MergePatch,
        "application/json-patch+json" => BodyType::JsonPatch,
        "application/strategic-merge-patch+json" => BodyType::StrategicMergePatch,
        "application/apply-patch+yaml" => BodyType::ApplyPatch,
        "application/vnd.kubernetes.protobuf" => BodyType::Protobuf,
        _ => return Err(ApiError::UnsupportedMediaType(ACCEPTED_BODIES.into())),
    })
}

/// Decodes an object body; anything but a JSON object is a BadRequest as upstream's decoder says.
pub fn decode_object(kind: BodyType, body: &[u8]) -> Result<Value, ApiError> {
    let value: Value = match kind {
        BodyType::Yaml | BodyType::ApplyPatch => serde_yaml::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("error converting YAML to JSON: {e}")))?,
        _ => serde_json::from_slice(body).map_err(|e| {
            ApiError::BadRequest(format!(
                "Object 'Kind' is missing in '{}': {e}",
                preview(body)
            ))
        })?,
    };
    if !value.is_object() {
        return Err(ApiError::BadRequest(format!(
            "the object provided is not a JSON object: '{}'",
            preview(body)
        )));
    }
    Ok(value)
}

fn preview(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(&body[..body.len().min(200)]);
    s.into_owned()
}

/// What the client wants back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Json,
    Yaml,
    Table,
    PartialObjectMetadata,
}

/// Picks the first Accept entry we can produce, as upstream's negotiator does for ordered lists.
pub fn negotiate(headers: &HeaderMap) -> Result<Output, ApiError> {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.trim().is_empty() {
        return Ok(Output::Json);
    }
    for entry in accept.split(',') {
        let mut parts = entry.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let params: Vec<(String, String)> = parts
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let param = |k: &str| {
            params
                .iter()
                .find(|(pk, _)| pk == k)
                .map(|(_, v)| v.as_str())
        };
        let json_like = matches!(media.as_str(), "application/json" | "application/*" | "*/*");
        match param("as") {
            Some("Table") if json_like && param("g") == Some("meta.k8s.io") => {
                return Ok(Output::Table)
            }
            Some("PartialObjectMetadata" | "PartialObjectMetadataList")
                if json_like && param("g") == Some("meta.k8s.io") =>
            {
                return Ok(Output::PartialObjectMetadata)
            }
            Some(_) => continue,
            None => {}
        }
        if json_like {
            return Ok(Output::Json);
        }
        if media == "application/yaml" {
            return Ok(Output::Yaml);
        }
    }
    Err(ApiError::NotAcceptable(ACCEPTED_OUTPUTS.into()))
}

/// Serialises `value` in the negotiated encoding (Table and metadata forms are built by callers
/// and then serialised as JSON).
pub fn respond(code: StatusCode, value: &Value, output: Output) -> Response {
    let (body, ct) = match output {
        Output::Yaml => (
            serde_yaml::to_string(value)
                .unwrap_or_default()
                .into_bytes(),
            "application/yaml",
        ),
        _ => (
            serde_json::to_vec(value).unwrap_or_default(),
            "application/json",
        ),
    };
    raw(code, Bytes::from(body), ct)
}

pub fn raw(code: StatusCode, body: Bytes, content_type: &'static str) -> Response {
    let mut resp = (code, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> Result<Output, ApiError> {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        negotiate(&h)
    }

    #[test]
    fn kubectl_table_accept() {
        let a = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(accept(a).unwrap(), Output::Table);
        assert_eq!(
            accept("application/vnd.kubernetes.protobuf, application/json").unwrap(),
            Output::Json
        );
        assert!(accept("application/vnd.kubernetes.protobuf").is_err());
        assert_eq!(accept("application/yaml").unwrap(), Output::Yaml);
    }
}
