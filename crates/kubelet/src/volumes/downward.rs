//! The downward API in files: pod fields (`fieldRef`) and container resources
//! (`resourceFieldRef`), formatted as upstream's kubelet writes them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, DownwardAPIVolumeFile, DownwardAPIVolumeSource, Node, Pod, ResourceFieldSelector,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::Api;

use super::atomic_writer::{FileProjection, Payload};
use super::sources::DEFAULT_MODE;
use super::SetUpError;
use crate::context::NodeContext;
use component_base::quantity::{milli_value, value};

pub(crate) async fn volume(
    ctx: &NodeContext,
    pod: &Pod,
    src: &DownwardAPIVolumeSource,
) -> Result<Payload, SetUpError> {
    let mut payload = Payload::new();
    let items = src.items.as_deref().unwrap_or_default();
    let mode = src.default_mode.unwrap_or(DEFAULT_MODE);
    self::items(ctx, pod, items, mode, &mut payload).await?;
    Ok(payload)
}

pub(crate) async fn items(
    ctx: &NodeContext,
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: i32,
    payload: &mut Payload,
) -> Result<(), SetUpError> {
    let mut allocatable = None;
    for item in items {
        let content = if let Some(f) = &item.field_ref {
            field_value(pod, &f.field_path).ok_or_else(|| {
                SetUpError::Message(format!("unsupported fieldPath: {}", f.field_path))
            })?
        } else if let Some(r) = &item.resource_field_ref {
            if allocatable.is_none() {
                allocatable = Some(node_allocatable(ctx).await);
            }
            resource_value(pod, r, allocatable.as_ref().unwrap_or(&BTreeMap::new()))?
        } else {
            continue;
        };
        payload.insert(
            item.path.clone(),
            FileProjection {
                data: content.into_bytes(),
                mode: item.mode.unwrap_or(default_mode) as u32 & 0o777,
            },
        );
    }
    Ok(())
}

/// A pod field by upstream's field path (`metadata.labels`, `metadata.labels['k']`,
/// `spec.nodeName`, ...); `None` for an unsupported path.
pub(crate) fn field_value(pod: &Pod, path: &str) -> Option<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    if let Some((map, key)) = subscript(path) {
        let values = match map {
            "metadata.labels" => meta.labels.as_ref(),
            "metadata.annotations" => meta.annotations.as_ref(),
            _ => return None,
        };
        return Some(values.and_then(|m| m.get(key)).cloned().unwrap_or_default());
    }
    Some(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" => status.and_then(|s| s.host_ip.clone()).unwrap_or_default(),
        "status.podIP" => status.and_then(|s| s.pod_ip.clone()).unwrap_or_default(),
        _ => return None,
    })
}

/// `metadata.labels['key']` → (`metadata.labels`, `key`).
fn subscript(path: &str) -> Option<(&str, &str)> {
    let (map, rest) = path.split_once("['")?;
    Some((map, rest.strip_suffix("']")?))
}

/// Upstream's `fieldpath.FormatMap`: `key="value"` lines in key order, values quoted as Go's
/// `%q`, no trailing newline.
pub(crate) fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.map(|m| {
        m.iter()
            .map(|(k, v)| format!("{k}={}", go_quote(v)))
            .collect::<Vec<_>>()
            .join("\n")
    })
    .unwrap_or_default()
}

/// Go's `strconv.Quote`: printable characters as they are, the usual escapes, others as
/// `\x`/`\u`/`\U`.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() && (c as u32) < 0x10000 => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if c.is_control() => out.push_str(&format!("\\U{:08x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub(crate) async fn node_allocatable(ctx: &NodeContext) -> BTreeMap<String, Quantity> {
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    match nodes.get_opt(&ctx.node_name).await {
        Ok(Some(node)) => node.status.and_then(|s| s.allocatable).unwrap_or_default(),
        _ => BTreeMap::new(),
    }
}

fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
}

/// Upstream's `ExtractContainerResourceValue`: the value divided by the divisor, rounded up;
/// an unset limit is the node's allocatable amount.
fn resource_value(
    pod: &Pod,
    r: &ResourceFieldSelector,
    allocatable: &BTreeMap<String, Quantity>,
) -> Result<String, SetUpError> {
    let name = r.container_name.as_deref().unwrap_or_default();
    let container = find_container(pod, name)
        .ok_or_else(|| SetUpError::Message(format!("container {name:?} not found in the pod")))?;
    let resources = container.resources.clone().unwrap_or_default();
    let (kind, resource) = r.resource.split_once('.').ok_or_else(|| {
        SetUpError::Message(format!("unsupported container resource : {}", r.resource))
    })?;
    let set = match kind {
        "limits" => resources
            .limits
            .as_ref()
            .and_then(|l| l.get(resource))
            .cloned(),
        "requests" => resources
            .requests
            .as_ref()
            .and_then(|l| l.get(resource))
            .cloned(),
        _ => None,
    };
    let quantity = match (kind, set) {
        (_, Some(q)) => q,
        ("limits", None) => allocatable
            .get(resource)
            .cloned()
            .unwrap_or(Quantity("0".into())),
        _ => Quantity("0".into()),
    };
    let divisor = r.divisor.clone().unwrap_or(Quantity("1".into()));
    let (amount, per) = match resource {
        "cpu" => (milli_value(&quantity), milli_value(&divisor)),
        "memory" | "ephemeral-storage" => (value(&quantity), value(&divisor)),
        _ if resource.starts_with("hugepages-") => (value(&quantity), value(&divisor)),
        _ => {
            return Err(SetUpError::Message(format!(
                "unsupported container resource : {}",
                r.resource
            )))
        }
    };
    if per <= 0 {
        return Err(SetUpError::Message(format!(
            "invalid divisor for {}",
            r.resource
        )));
    }
    Ok(((amount + per - 1) / per).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_as_upstream_formats_them() {
        let mut m = BTreeMap::new();
        m.insert("b".to_string(), "two \"x\"\n".to_string());
        m.insert("a".to_string(), "1".to_string());
        assert_eq!(format_map(Some(&m)), "a=\"1\"\nb=\"two \\\"x\\\"\\n\"");
    }

    #[test]
    fn subscripted_paths() {
        assert_eq!(
            subscript("metadata.labels['app.kubernetes.io/name']"),
            Some(("metadata.labels", "app.kubernetes.io/name"))
        );
        assert_eq!(subscript("metadata.name"), None);
    }
}
