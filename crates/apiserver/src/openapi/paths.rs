//! The operations of each served resource, in v3 or v2 (Swagger 2.0) form: what kubectl reads to
//! learn that the server validates fields itself (the PATCH operation's `fieldValidation`
//! parameter) and which patch types a kind accepts (the PATCH request body's media types).

use serde_json::{json, Map, Value};

use crate::resources::Resource;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Form {
    V2,
    V3,
}

impl Form {
    fn schema_ref(self, name: &str) -> Value {
        match self {
            Form::V3 => json!({"$ref": format!("{}{name}", super::schemas::V3_PREFIX)}),
            Form::V2 => json!({"$ref": format!("#/definitions/{name}")}),
        }
    }

    fn query(self, name: &str, ty: &str) -> Value {
        match self {
            Form::V3 => {
                json!({"name": name, "in": "query", "schema": {"type": ty, "uniqueItems": true}})
            }
            Form::V2 => json!({"name": name, "in": "query", "type": ty, "uniqueItems": true}),
        }
    }

    fn path_param(self, name: &str) -> Value {
        match self {
            Form::V3 => {
                json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}})
            }
            Form::V2 => json!({"name": name, "in": "path", "required": true, "type": "string"}),
        }
    }

    fn ok(self, schema: &Value) -> Value {
        match self {
            Form::V3 => json!({"200": {"description": "OK", "content": {
                "application/json": {"schema": schema},
                "application/yaml": {"schema": schema},
            }}}),
            Form::V2 => json!({"200": {"description": "OK", "schema": schema}}),
        }
    }
}

/// `api/v1` or `apis/apps/v1`: the key kubectl looks group-versions up by.
pub fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn collection_path(r: &Resource) -> String {
    let ns = if r.namespaced {
        "/namespaces/{namespace}"
    } else {
        ""
    };
    format!("/{}{ns}/{}", gv_path(r.group, r.version), r.plural)
}

/// The media types a PATCH accepts: strategic merge only for built-in kinds, as upstream (custom
/// resources have no patch strategies, so kubectl sends them merge patches).
fn patch_types(r: &Resource) -> &'static [&'static str] {
    if r.custom.is_some() {
        &[
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/apply-patch+yaml",
        ]
    } else {
        &[
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
            "application/apply-patch+yaml",
        ]
    }
}

/// One operation on `r` (or on its subresource `sub`), with the parameters kubectl looks at.
struct Op<'a> {
    r: &'a Resource,
    form: Form,
    action: &'static str,
    schema: Value,
    sub: Option<&'a str>,
}

impl Op<'_> {
    fn build(&self, method: &str) -> Value {
        let f = self.form;
        let mut params = Vec::new();
        if self.r.namespaced {
            params.push(f.path_param("namespace"));
        }
        if !matches!(self.action, "list" | "post") {
            params.push(f.path_param("name"));
        }
        params.push(f.query("pretty", "string"));
        if matches!(self.action, "put" | "post" | "patch" | "delete") {
            params.push(f.query("dryRun", "string"));
        }
        if matches!(self.action, "put" | "post" | "patch") {
            params.push(f.query("fieldManager", "string"));
            params.push(f.query("fieldValidation", "string"));
        }
        if self.action == "patch" {
            params.push(f.query("force", "boolean"));
        }
        if self.action == "delete" {
            params.push(f.query("gracePeriodSeconds", "integer"));
            params.push(f.query("propagationPolicy", "string"));
        }
        let body_types: &[&str] = match self.action {
            "patch" => patch_types(self.r),
            "put" | "post" => &["application/json", "application/yaml"],
            _ => &[],
        };
        let body_schema = if self.action == "patch" {
            json!({"type": "object"})
        } else {
            self.schema.clone()
        };
        let (g, v, k) = crate::resources::subresource_kind(self.r, self.sub.unwrap_or(""));
        let mut op = json!({
            "operationId": format!("{method}{}{}", self.r.kind, self.sub.map(title).unwrap_or_default()),
            "x-kubernetes-action": self.action,
            "x-kubernetes-group-version-kind": {"group": g, "version": v, "kind": k},
            "responses": f.ok(&self.schema),
        });
        if !body_types.is_empty() {
            match f {
                Form::V3 => {
                    let content: Map<String, Value> = body_types
                        .iter()
                        .map(|t| (t.to_string(), json!({"schema": body_schema})))
                        .collect();
                    op["requestBody"] = json!({"required": true, "content": content});
                }
                Form::V2 => {
                    params.push(json!({"name": "body", "in": "body", "required": true, "schema": body_schema}));
                    op["consumes"] = json!(body_types);
                }
            }
        }
        op["parameters"] = Value::Array(params);
        op
    }
}

fn title(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

/// The paths of one resource: its collection, its objects and its status/scale subresources.
/// `schema` is the kind's schema name, when there is one.
pub fn resource_paths(
    r: &Resource,
    schema: Option<&str>,
    form: Form,
    out: &mut Map<String, Value>,
) {
    let kind_schema = schema.map_or_else(|| json!({"type": "object"}), |n| form.schema_ref(n));
    let op = |action, sub, schema: &Value| Op {
        r,
        form,
        action,
        schema: schema.clone(),
        sub,
    };
    let collection = collection_path(r);
    if r.review {
        out.insert(
            collection,
            json!({"post": op("post", None, &kind_schema).build("create")}),
        );
        return;
    }
    out.insert(
        collection.clone(),
        json!({
            "get": op("list", None, &json!({"type": "object"})).build("list"),
            "post": op("post", None, &kind_schema).build("create"),
        }),
    );
    let object = format!("{collection}/{{name}}");
    out.insert(
        object.clone(),
        json!({
            "get": op("get", None, &kind_schema).build("read"),
            "put": op("put", None, &kind_schema).build("replace"),
            "patch": op("patch", None, &kind_schema).build("patch"),
            "delete": op("delete", None, &json!({"type": "object"})).build("delete"),
        }),
    );
    for sub in ["status", "scale"]
        .into_iter()
        .filter(|s| r.has_subresource(s))
    {
        let schema = if sub == "scale" {
            form.schema_ref("io.k8s.api.autoscaling.v1.Scale")
        } else {
            kind_schema.clone()
        };
        out.insert(
            format!("{object}/{sub}"),
            json!({
                "get": op("get", Some(sub), &schema).build("read"),
                "put": op("put", Some(sub), &schema).build("replace"),
                "patch": op("patch", Some(sub), &schema).build("patch"),
            }),
        );
    }
}
