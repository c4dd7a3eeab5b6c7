//! Rows of `kubectl get csr`, as upstream's `printCertificateSigningRequest`.

use super::{age, cells, col, name, Column, AGE, NAME};
use crate::kinds::duration::human_duration;
use crate::kinds::json::str_at;
use serde_json::Value;

pub(super) const CSR: &[Column] = &[
    NAME,
    AGE,
    col(
        "SignerName",
        "string",
        "Name of the signer that will issue the certificate.",
    ),
    col(
        "Requestor",
        "string",
        "Name of the user that requested the certificate.",
    ),
    col(
        "RequestedDuration",
        "string",
        "Requested lifetime of the certificate.",
    ),
    col(
        "Condition",
        "string",
        "Approval and issuance state of the request.",
    ),
];

pub(super) fn csr(o: &Value, now: i64) -> Vec<Value> {
    let duration = match o["spec"]["expirationSeconds"].as_i64() {
        Some(s) => human_duration(s),
        None => "<none>".to_string(),
    };
    cells![
        name(o),
        age(o, now),
        str_at(o, "spec.signerName"),
        str_at(o, "spec.username"),
        duration,
        condition(o)
    ]
}

/// Approved, Denied and Failed as they are set, then Issued once there is a certificate;
/// Pending when nothing is.
fn condition(o: &Value) -> String {
    let mut states: Vec<String> = o["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["status"] != "False")
        .filter_map(|c| c["type"].as_str())
        .filter(|t| matches!(*t, "Approved" | "Denied" | "Failed"))
        .map(str::to_string)
        .collect();
    if o["status"]["certificate"]
        .as_str()
        .is_some_and(|c| !c.is_empty())
    {
        states.push("Issued".into());
    }
    match states.is_empty() {
        true => "Pending".into(),
        false => states.join(","),
    }
}
