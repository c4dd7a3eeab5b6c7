//! Upstream's default RBAC policy, reconciled with the store at every start: missing objects are
//! created, stored ones gain what upstream added but keep what the admin added, and objects
//! annotated `rbac.authorization.kubernetes.io/autoupdate: "false"` are left alone.

use serde_json::Value;

use crate::rbac::reconcile::{self, Operation, Reconciled};
use crate::rbac::{bootstrap, Object, RbacError};
use crate::registry::{DeleteOptions, Registry};
use crate::resources::{self, Resource};
use crate::status::{ApiError, ApiResult};

/// How often one object is retried when a concurrent writer changed it under us.
const ATTEMPTS: usize = 5;

/// Reconciles every bootstrap object, in upstream's order (roles before their bindings).
pub async fn reconcile_all(reg: &Registry) -> ApiResult<()> {
    let objects = bootstrap::objects().map_err(internal)?;
    let mut written = 0;
    for expected in &objects {
        if reconcile_one(reg, expected).await? {
            written += 1;
        }
    }
    tracing::info!(
        objects = objects.len(),
        written,
        "RBAC bootstrap policy reconciled"
    );
    Ok(())
}

fn internal(e: RbacError) -> ApiError {
    ApiError::Internal(e.to_string())
}

/// Reconciles one object, retrying on a conflict; true when something was written.
async fn reconcile_one(reg: &Registry, expected: &Value) -> ApiResult<bool> {
    let object = Object::from_value(expected).map_err(internal)?;
    let res = resources::by_kind(crate::rbac::objects::GROUP, object.kind().name())
        .ok_or(ApiError::NoSuchResource)?;
    let meta = object.meta();
    let ns = (!meta.namespace.is_empty()).then_some(meta.namespace.as_str());
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let existing = match reg.get(res, ns, &meta.name).await {
            Ok(v) => Some(v),
            Err(ApiError::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        let plan = reconcile::reconcile(expected, existing.as_ref()).map_err(internal)?;
        match write(reg, res, ns, &plan).await {
            Err(e @ (ApiError::Conflict(..) | ApiError::AlreadyExists(_))) => last = Some(e),
            other => return other,
        }
    }
    Err(last.unwrap_or(ApiError::NoSuchResource))
}

async fn write(
    reg: &Registry,
    res: &Resource,
    ns: Option<&str>,
    plan: &Reconciled,
) -> ApiResult<bool> {
    let Some(object) = plan.to_write() else {
        return Ok(false);
    };
    match plan.operation {
        Operation::None => return Ok(false),
        Operation::Create => {
            reg.create(res, ns, object.clone(), false).await?;
        }
        Operation::Update => {
            reg.update_with(res, ns, &plan.name, None, false, |_| Ok(object.clone()))
                .await?;
        }
        Operation::Recreate => {
            let opts = DeleteOptions::default();
            match reg.delete(res, ns, &plan.name, &opts).await {
                Ok(_) | Err(ApiError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
            reg.create(res, ns, strip_identity(object), false).await?;
        }
    }
    Ok(true)
}

/// A recreated object is a new object: it keeps no uid or resourceVersion of the old one.
fn strip_identity(object: &Value) -> Value {
    let mut new = object.clone();
    if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in ["uid", "resourceVersion", "creationTimestamp"] {
            m.remove(field);
        }
    }
    new
}
