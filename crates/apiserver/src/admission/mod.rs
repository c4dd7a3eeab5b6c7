//! Admission: what runs on a client's create, update, patch or delete after authorization and
//! before the object is validated and stored, as upstream's admission chain. Each plugin sees the
//! request's [`Attributes`] and the new object (mutable, None on delete), and may change the
//! object or refuse the request; plugins run in upstream's order and the first refusal wins.
//!
//! The registry runs the chain for writes made on a client's behalf (never for the server's own
//! bootstrap, finalizer or aggregation writes); subresource creates that do not go through the
//! registry's create (`serviceaccounts/token`) call [`run`] themselves.
//!
//! Plugins: [`service_account`] (upstream's `ServiceAccount`), [`node_restriction`]
//! (`NodeRestriction`), [`default_toleration_seconds`] (`DefaultTolerationSeconds`),
//! [`default_storage_class`] (`DefaultStorageClass`: a claim without a class gets the default
//! one), [`certificates`] (`CertificateApproval`, `CertificateSigning`: `approve`/`sign` on the
//! request's signer; `CertificateSubjectRestriction`: no system:masters client certificates)
//! and [`resource_quota`] (`ResourceQuota`, last as upstream: it charges what the others
//! produced).

pub mod certificates;
pub mod default_storage_class;
pub mod default_toleration_seconds;
pub mod node_restriction;
pub mod resource_quota;
pub mod service_account;

use async_trait::async_trait;
use serde_json::Value;

use crate::authn::UserInfo;
use crate::registry::Registry;
use crate::resources::Resource;
use crate::status::{ApiError, ApiResult, Subject};

/// Upstream's `admission.Operation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
        }
    }
}

/// Upstream's `admission.Attributes`, less the object (passed beside it, mutable).
pub struct Attributes<'a> {
    pub operation: Operation,
    pub res: &'a Resource,
    /// Empty for the resource itself.
    pub subresource: &'a str,
    /// Empty for cluster-scoped resources.
    pub namespace: &'a str,
    /// The object's name; on a create, the body's (empty with only `generateName`).
    pub name: &'a str,
    pub user: &'a UserInfo,
    /// The stored object, on update and delete.
    pub old: Option<&'a Value>,
}

impl Attributes<'_> {
    pub fn is(&self, group: &str, plural: &str) -> bool {
        self.res.group == group && self.res.plural == plural
    }

    /// Upstream's `admission.NewForbidden`: `<resource> "<name>" is forbidden: <why>`, the name
    /// being the request's, else the object's name or generateName, else `Unknown`.
    pub fn forbidden(&self, object: Option<&Value>, why: impl std::fmt::Display) -> ApiError {
        let from_object = |field: &str| {
            object
                .and_then(|o| o["metadata"][field].as_str())
                .filter(|n| !n.is_empty())
        };
        let name = Some(self.name)
            .filter(|n| !n.is_empty())
            .or_else(|| from_object("name"))
            .or_else(|| from_object("generateName"))
            .unwrap_or("Unknown");
        let qualified = match self.res.group {
            "" => self.res.plural.to_string(),
            group => format!("{}.{group}", self.res.plural),
        };
        ApiError::Forbidden(
            Subject::new(self.res.group, self.res.plural, name),
            format!("{qualified} {name:?} is forbidden: {why}"),
        )
    }
}

#[async_trait]
pub trait Plugin: Send + Sync {
    /// Upstream's plugin name (`ServiceAccount`, `NodeRestriction`).
    fn name(&self) -> &'static str;

    /// Mutates `object` and/or refuses the request. `reg` reads other objects.
    async fn admit(
        &self,
        attrs: &Attributes<'_>,
        object: Option<&mut Value>,
        reg: &Registry,
    ) -> ApiResult<()>;
}

/// The admission chain of a server.
pub struct Admission {
    plugins: Vec<Box<dyn Plugin>>,
}

impl Default for Admission {
    /// The plugins krust enables, in upstream's order (ServiceAccount, NodeRestriction,
    /// DefaultTolerationSeconds, DefaultStorageClass, ResourceQuota).
    fn default() -> Self {
        Admission {
            plugins: vec![
                Box::new(service_account::ServiceAccount),
                Box::new(node_restriction::NodeRestriction),
                Box::new(default_toleration_seconds::DefaultTolerationSeconds),
                Box::new(default_storage_class::DefaultStorageClass),
                Box::new(certificates::CertificateApproval),
                Box::new(certificates::CertificateSigning),
                Box::new(certificates::CertificateSubjectRestriction),
                Box::new(resource_quota::ResourceQuota),
            ],
        }
    }
}

impl Admission {
    /// The default chain less the plugins named in `disabled`.
    pub fn without(disabled: &[String]) -> Self {
        let mut admission = Admission::default();
        admission
            .plugins
            .retain(|p| !disabled.iter().any(|d| d == p.name()));
        admission
    }

    pub async fn admit(
        &self,
        attrs: &Attributes<'_>,
        mut object: Option<&mut Value>,
        reg: &Registry,
    ) -> ApiResult<()> {
        for plugin in &self.plugins {
            plugin.admit(attrs, object.as_deref_mut(), reg).await?;
        }
        Ok(())
    }
}

/// Runs `reg`'s admission chain for a write made through it on a client's behalf; a no-op for
/// the server's own writes (no requester).
#[allow(clippy::too_many_arguments)]
pub async fn run(
    reg: &Registry,
    operation: Operation,
    res: &Resource,
    subresource: Option<&str>,
    namespace: Option<&str>,
    name: &str,
    object: Option<&mut Value>,
    old: Option<&Value>,
) -> ApiResult<()> {
    let Some(user) = &reg.requester else {
        return Ok(());
    };
    let name = match (name.is_empty(), &object) {
        (true, Some(obj)) => obj["metadata"]["name"].as_str().unwrap_or("").to_string(),
        _ => name.to_string(),
    };
    let attrs = Attributes {
        operation,
        res,
        subresource: subresource.unwrap_or(""),
        namespace: namespace.unwrap_or(""),
        name: &name,
        user,
        old,
    };
    reg.admission.admit(&attrs, object, reg).await
}
