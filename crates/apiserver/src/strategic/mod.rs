//! Strategic merge patch (`application/strategic-merge-patch+json`), as upstream's
//! `k8s.io/apimachinery/pkg/util/strategicpatch` applies it on the server.
//!
//! `kubectl apply` (client-side), `edit`, `label` and `rollout restart` send these patches; they
//! rely on per-field patch strategies (lists merged by a key, unions cleared with `$retainKeys`),
//! which the `schema` module holds for the built-in kinds. The registry calls [`apply`] and answers 415 for
//! kinds where [`supports`] is false, as upstream does for custom resources.
//!
//! Behaviour follows upstream's apply half (`mergeMap`, `mergeSlice`, `$setElementOrder`
//! ordering, including where server-only elements land and its quirks), checked against
//! `kubectl patch --local` in `tests/strategic_random.rs`. Deliberate differences:
//! - patch values upstream keeps verbatim lose null fields and directive keys here, as decoding
//!   into Go structs drops them there (krust stores the JSON; see the `verbatim` module);
//! - fields missing from the metadata merge as plain maps and replace as lists, where upstream's
//!   struct lookup fails (stored objects only hold known fields, so this rarely differs);
//! - `$deleteFromPrimitiveList` with map or list elements is rejected as malformed;
//! - a map's keys are processed in sorted order, where Go's is random (only a patch that adds and
//!   deletes the same primitive in one go can tell);
//! - element lookups hash, so long lists cost linear time (upstream is quadratic).

mod directives;
mod error;
mod list;
mod map;
mod order;
mod schema;
#[cfg(test)]
mod upstream_cases;
mod value;
mod verbatim;

use serde_json::{Map, Value};

pub use error::StrategicPatchError;
use schema::Schema;

/// Whether `(group, version, kind)` has patch metadata, i.e. accepts strategic merge patches; the
/// core group is `""`. Kinds without it (custom resources) should get 415 UnsupportedMediaType.
pub fn supports(gvk: (&str, &str, &str)) -> bool {
    Schema::get().is_ok_and(|s| s.kind(gvk).is_some())
}

/// Applies a strategic merge patch to `original` (an object of `group/version/kind`), as upstream's
/// k8s.io/apimachinery/pkg/util/strategicpatch does, using the patch strategies of that kind's fields.
///
/// Kinds without metadata (see [`supports`]) get JSON merge patch semantics: maps merge, lists are
/// replaced. `null` for either document counts as an empty object, as in upstream. Errors carry
/// upstream's message and [`StrategicPatchError::http_status`].
///
/// ```
/// use serde_json::json;
/// let live = json!({"spec": {"template": {"spec": {"containers": [
///     {"name": "app", "image": "nginx:1.25"}, {"name": "sidecar", "image": "envoy"}
/// ]}}}});
/// let patch = json!({"spec": {"template": {"spec": {"containers": [
///     {"name": "app", "image": "nginx:1.26"}
/// ]}}}});
/// let got = apiserver::strategic::apply(&live, &patch, ("apps", "v1", "Deployment")).unwrap();
/// assert_eq!(got["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.26");
/// assert_eq!(got["spec"]["template"]["spec"]["containers"][1]["name"], "sidecar");
/// ```
pub fn apply(
    original: &Value,
    patch: &Value,
    gvk: (&str, &str, &str),
) -> Result<Value, StrategicPatchError> {
    let original = as_object(original)?;
    let patch = as_object(patch)?;
    let Some(root) = Schema::get()?.kind(gvk) else {
        let mut doc = Value::Object(original);
        json_patch::merge(&mut doc, &Value::Object(patch));
        return Ok(doc);
    };
    map::merge_map(original, patch, root).map(Value::Object)
}

fn as_object(v: &Value) -> Result<Map<String, Value>, StrategicPatchError> {
    match v {
        Value::Object(m) => Ok(m.clone()),
        Value::Null => Ok(Map::new()),
        _ => Err(StrategicPatchError::BadJsonDoc),
    }
}
