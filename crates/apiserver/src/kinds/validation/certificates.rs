//! CertificateSigningRequests, as upstream's pkg/apis/certificates/validation: a parseable
//! PKCS#10 request, a qualified signer name, known usages, at least ten minutes of requested
//! lifetime, an immutable spec, and Approved and Denied never together.

use base64::Engine as _;
use serde_json::Value;

use super::errors::{duplicate, forbidden, invalid, not_supported, quote, required};
use crate::kinds::json::at;
use crate::kinds::Cause;

/// Upstream's `KeyUsage` values.
const USAGES: &[&str] = &[
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
];

pub fn csr(obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut errs = Vec::new();
    request(obj, &mut errs);
    signer_name(obj, &mut errs);
    usages(obj, &mut errs);
    if let Some(s) = at(obj, "spec.expirationSeconds")
        .as_i64()
        .filter(|s| *s < 600)
    {
        errs.push(invalid(
            "spec.expirationSeconds",
            &s.to_string(),
            "may not specify a duration less than 600 seconds (10 minutes)",
        ));
    }
    conditions(obj, &mut errs);
    if let Some(old) = old {
        if at(obj, "spec") != at(old, "spec") {
            errs.push(forbidden("spec", "field is immutable"));
        }
    }
    errs
}

fn request(obj: &Value, errs: &mut Vec<Cause>) {
    let Some(b64) = at(obj, "spec.request").as_str().filter(|s| !s.is_empty()) else {
        errs.push(required("spec.request", ""));
        return;
    };
    let parsed = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| e.to_string())
        .and_then(|bytes| String::from_utf8(bytes).map_err(|e| e.to_string()))
        .and_then(|pem| pki::parse_request(&pem).map_err(|e| e.to_string()));
    if let Err(e) = parsed {
        errs.push(invalid("spec.request", "[]byte{...}", &e));
    }
}

fn signer_name(obj: &Value, errs: &mut Vec<Cause>) {
    let name = at(obj, "spec.signerName").as_str().unwrap_or("");
    if name.is_empty() {
        errs.push(required("spec.signerName", ""));
        return;
    }
    let qualified = name
        .split_once('/')
        .is_some_and(|(domain, path)| domain.contains('.') && !path.is_empty());
    if !qualified {
        errs.push(invalid(
            "spec.signerName",
            &quote(name),
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        ));
    }
}

fn usages(obj: &Value, errs: &mut Vec<Cause>) {
    let list = at(obj, "spec.usages")
        .as_array()
        .cloned()
        .unwrap_or_default();
    if list.is_empty() {
        errs.push(required("spec.usages", "usages must be provided"));
    }
    let mut seen = Vec::new();
    for (i, usage) in list.iter().enumerate() {
        let field = format!("spec.usages[{i}]");
        let u = usage.as_str().unwrap_or("");
        if !USAGES.contains(&u) {
            errs.push(not_supported(&field, u, USAGES));
        } else if seen.contains(&u) {
            errs.push(duplicate(&field, u));
        }
        seen.push(u);
    }
}

fn conditions(obj: &Value, errs: &mut Vec<Cause>) {
    let list = at(obj, "status.conditions")
        .as_array()
        .cloned()
        .unwrap_or_default();
    let is_true = |t: &str| {
        list.iter()
            .any(|c| c["type"] == t && c["status"].as_str().unwrap_or("True") == "True")
    };
    if is_true("Approved") && is_true("Denied") {
        errs.push(invalid(
            "status.conditions",
            "[]certificates.CertificateSigningRequestCondition{...}",
            "Approved and Denied conditions are mutually exclusive",
        ));
    }
    let mut seen = Vec::new();
    for (i, c) in list.iter().enumerate() {
        let t = c["type"].as_str().unwrap_or("");
        if t.is_empty() {
            errs.push(required(&format!("status.conditions[{i}].type"), ""));
        } else if seen.contains(&t) {
            errs.push(duplicate(&format!("status.conditions[{i}].type"), t));
        }
        seen.push(t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request_b64() -> String {
        let (_, pem) = pki::new_request("system:node:n", "system:nodes", &[]).unwrap();
        base64::engine::general_purpose::STANDARD.encode(pem)
    }

    #[test]
    fn a_valid_request_passes_and_a_bad_one_names_its_fields() {
        let good = json!({"spec": {"request": request_b64(),
            "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
            "usages": ["digital signature", "client auth"]}});
        assert!(csr(&good, None).is_empty(), "{:?}", csr(&good, None));
        let bad = json!({"spec": {"request": "bm90IGEgcmVxdWVzdA==", "signerName": "kubelet",
            "usages": ["flying"], "expirationSeconds": 60},
            "status": {"conditions": [{"type": "Approved", "status": "True"}, {"type": "Denied", "status": "True"}]}});
        let fields: Vec<String> = csr(&bad, None).into_iter().map(|c| c.field).collect();
        assert_eq!(
            fields,
            [
                "spec.request",
                "spec.signerName",
                "spec.usages[0]",
                "spec.expirationSeconds",
                "status.conditions"
            ]
        );
        let mut changed = good.clone();
        changed["spec"]["usages"] = json!(["digital signature", "server auth"]);
        let fields: Vec<String> = csr(&changed, Some(&good))
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(fields, ["spec"]);
    }
}
