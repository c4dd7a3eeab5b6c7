//! JSON list bodies written item by item. Building one `Value` for a whole list and serialising it
//! held every object twice (as a tree and as bytes); here each item is serialised into the body as
//! soon as it is read and then dropped, and the output is byte-for-byte what serialising the
//! `{"kind", "apiVersion", "metadata", "items"}` envelope as one `Value` gives.

use serde_json::{json, Value};

use crate::conversion::strip_type;
use crate::resources::Resource;

/// Stands in for the items array while the envelope is serialised; a string a stored object can
/// never produce at the top level of the envelope.
const ITEMS_MARK: &str = "\u{0}krust-list-items\u{0}";

/// The serialised items of a list, comma-separated, without the brackets.
#[derive(Default)]
pub struct JsonItems {
    buf: Vec<u8>,
}

impl JsonItems {
    /// Appends one object as a typed list's item (no kind/apiVersion, as upstream).
    pub fn push(&mut self, mut obj: Value) {
        strip_type(&mut obj);
        if !self.buf.is_empty() {
            self.buf.push(b',');
        }
        // Serialising a `Value` into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.buf, &obj);
    }

    /// The whole body: the envelope with `metadata` and these items.
    pub fn finish(self, res: &Resource, meta: Value) -> Vec<u8> {
        let envelope = json!({
            "kind": res.list_kind(),
            "apiVersion": res.api_version(),
            "metadata": meta,
            "items": ITEMS_MARK,
        });
        let head = serde_json::to_vec(&envelope).unwrap_or_default();
        let mark = serde_json::to_vec(ITEMS_MARK).unwrap_or_default();
        let at = find(&head, &mark).unwrap_or(head.len());
        let mut body = Vec::with_capacity(head.len() + self.buf.len() + 2);
        body.extend_from_slice(&head[..at]);
        body.push(b'[');
        body.extend_from_slice(&self.buf);
        body.push(b']');
        body.extend_from_slice(&head[(at + mark.len()).min(head.len())..]);
        body
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The streamed body equals serialising the envelope as one `Value`, for empty and
    /// non-empty lists and with a continue token.
    #[test]
    fn same_bytes_as_one_value() {
        let res = crate::resources::find("", "v1", "pods").expect("pods");
        for n in [0, 1, 3] {
            let objs: Vec<Value> = (0..n)
                .map(|i| json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": format!("p{i}"), "labels": {"a": "\"]"}}, "spec": {}}))
                .collect();
            let meta = json!({"resourceVersion": "7", "continue": "abc"});
            let mut items = JsonItems::default();
            objs.iter().cloned().for_each(|o| items.push(o));
            let got = items.finish(res, meta.clone());
            let mut stripped = objs;
            stripped.iter_mut().for_each(strip_type);
            let want =
                json!({"kind": "PodList", "apiVersion": "v1", "metadata": meta, "items": stripped});
            assert_eq!(got, serde_json::to_vec(&want).unwrap());
        }
    }
}
