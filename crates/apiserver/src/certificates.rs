//! CertificateSigningRequests (`certificates.k8s.io/v1`), as upstream's registry strategy:
//! the requester's identity is recorded in `spec` on create (a client cannot claim another's),
//! the `approval` subresource changes only `status.conditions`, and the `status` subresource
//! (the signer's `status.certificate`) is the generic status write. The approving and signing
//! are the controller manager's (`controllers::certificates`).

use serde_json::{json, Value};

use crate::authn::UserInfo;
use crate::resources::Resource;

fn is_csr(res: &Resource) -> bool {
    res.group == "certificates.k8s.io" && res.plural == "certificatesigningrequests"
}

/// Upstream's `PrepareForCreate`: `spec.username`, `uid`, `groups` and `extra` are who created
/// the request, whatever the body said.
pub fn prepare_create(res: &Resource, obj: &mut Value, requester: Option<&UserInfo>) {
    if !is_csr(res) {
        return;
    }
    let Some(user) = requester else {
        return;
    };
    if !obj["spec"].is_object() {
        obj["spec"] = json!({});
    }
    let spec = &mut obj["spec"];
    spec["username"] = json!(user.name);
    spec["groups"] = json!(user.groups);
    match user.uid.is_empty() {
        true => drop(spec.as_object_mut().map(|s| s.remove("uid"))),
        false => spec["uid"] = json!(user.uid),
    }
    match user.extra.is_empty() {
        true => drop(spec.as_object_mut().map(|s| s.remove("extra"))),
        false => spec["extra"] = json!(user.extra),
    }
}

/// The `approval` subresource: the stored object with the new `status.conditions` only.
pub fn merge_approval(new: &mut Value, old: &Value) {
    let mut merged = old.clone();
    merged["status"]["conditions"] = new["status"]["conditions"].clone();
    merged["metadata"]["resourceVersion"] = new["metadata"]["resourceVersion"].clone();
    *new = merged;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approval_changes_conditions_only() {
        let old = json!({"metadata": {"name": "a"}, "spec": {"username": "u"}, "status": {"certificate": "Yw=="}});
        let mut new = json!({"metadata": {"name": "a", "resourceVersion": "7"}, "spec": {"username": "evil"},
            "status": {"conditions": [{"type": "Approved", "status": "True"}], "certificate": "eA=="}});
        merge_approval(&mut new, &old);
        assert_eq!(new["spec"]["username"], "u");
        assert_eq!(new["status"]["certificate"], "Yw==");
        assert_eq!(new["status"]["conditions"][0]["type"], "Approved");
        assert_eq!(new["metadata"]["resourceVersion"], "7");
    }
}
