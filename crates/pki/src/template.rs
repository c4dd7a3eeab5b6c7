//! `csr.conf.template`: the openssl request config MicroK8s users know. krust writes it once with
//! the defaults and afterwards only reads it; its `[ alt_names ]` section (`DNS.N = name`,
//! `IP.N = address`) adds SANs to the API server certificate. The rest of the file is kept for
//! openssl compatibility (`openssl req -config csr.conf.template ...` works with it) and ignored.

use std::net::IpAddr;
use std::path::Path;

use crate::files;
use crate::sans::{San, KUBERNETES_NAMES};
use crate::PkiError;

/// The template as first written, with `service_ip` as `IP.2`.
pub fn default_template(service_ip: IpAddr) -> String {
    let mut dns = String::new();
    for (i, name) in KUBERNETES_NAMES.iter().enumerate() {
        dns.push_str(&format!("DNS.{} = {name}\n", i + 1));
    }
    format!(
        "# API server certificate request config (openssl format), read by krust.\n\
         # Add names to [ alt_names ] (DNS.6 = my.domain, IP.3 = 203.0.113.7, ...) and run\n\
         #   krust refresh-certs --cert server.crt\n\
         # localhost, 127.0.0.1, every address of this machine and the service IP are always included.\n\
         \n\
         [ req ]\n\
         default_bits = 2048\n\
         prompt = no\n\
         default_md = sha256\n\
         req_extensions = req_ext\n\
         distinguished_name = dn\n\
         \n\
         [ dn ]\n\
         CN = kube-apiserver\n\
         \n\
         [ req_ext ]\n\
         subjectAltName = @alt_names\n\
         \n\
         [ alt_names ]\n\
         {dns}\
         IP.1 = 127.0.0.1\n\
         IP.2 = {service_ip}\n\
         \n\
         [ v3_ext ]\n\
         authorityKeyIdentifier = keyid,issuer:always\n\
         basicConstraints = CA:FALSE\n\
         keyUsage = keyEncipherment,dataEncipherment,digitalSignature\n\
         extendedKeyUsage = serverAuth,clientAuth\n\
         subjectAltName = @alt_names\n"
    )
}

/// Writes the default template unless one exists. Returns whether it wrote.
pub fn ensure(path: &Path, service_ip: IpAddr) -> Result<bool, PkiError> {
    if path.exists() {
        return Ok(false);
    }
    files::write(path, default_template(service_ip).as_bytes(), files::PUBLIC)?;
    Ok(true)
}

/// The SANs listed in the `[ alt_names ]` section of the template at `path`.
pub fn read_alt_names(path: &Path) -> Result<Vec<San>, PkiError> {
    match files::read_opt(path)? {
        Some(text) => parse_alt_names(&text, path),
        None => Ok(Vec::new()),
    }
}

/// Parses `[ alt_names ]` from openssl config text; `path` only labels errors.
pub fn parse_alt_names(text: &str, path: &Path) -> Result<Vec<San>, PkiError> {
    let mut in_section = false;
    let mut sans = Vec::new();
    for (idx, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_section = name.trim() == "alt_names";
            continue;
        }
        if !in_section || line.is_empty() {
            continue;
        }
        if let Some(san) = parse_entry(line).map_err(|reason| PkiError::Template {
            path: path.to_path_buf(),
            line: idx + 1,
            reason,
        })? {
            sans.push(san);
        }
    }
    Ok(sans)
}

/// One `KIND.N = value` line; `Ok(None)` for kinds krust does not put into certificates.
fn parse_entry(line: &str) -> Result<Option<San>, String> {
    let (key, value) = line
        .split_once('=')
        .ok_or_else(|| format!("expected `DNS.N = name` or `IP.N = address`, found {line:?}"))?;
    let kind = key
        .trim()
        .split('.')
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    let value = value.trim();
    if value.is_empty() {
        return Err(format!("{} has no value", key.trim()));
    }
    match kind.as_str() {
        "DNS" => valid_dns(value).map(|()| Some(San::Dns(value.to_string()))),
        "IP" => value
            .parse()
            .map(|ip| Some(San::Ip(ip)))
            .map_err(|_| format!("{value:?} is not an IP address")),
        _ => {
            tracing::warn!(
                entry = line,
                "csr.conf.template: only DNS and IP alt names are used; ignoring"
            );
            Ok(None)
        }
    }
}

fn valid_dns(name: &str) -> Result<(), String> {
    let ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '*' | '_'));
    if ok && !name.starts_with('.') && !name.ends_with('.') {
        Ok(())
    } else {
        Err(format!("{name:?} is not a DNS name"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_template_parses_to_the_kubernetes_names() {
        let svc: IpAddr = "10.96.0.1".parse().expect("ip");
        let sans = parse_alt_names(&default_template(svc), Path::new("t")).expect("parse");
        assert_eq!(sans.len(), 7);
        assert!(sans.contains(&San::Dns("kubernetes.default.svc.cluster.local".into())));
        assert!(sans.contains(&San::Ip(svc)));
    }

    #[test]
    fn extra_entries_and_other_sections() {
        let text = "[ dn ]\nCN = x\n[alt_names]\nDNS.6 = mydomain.example # mine\nIP.3=203.0.113.7\nemail.1 = a@b\n[ v3_ext ]\nDNS.9 = ignored\n";
        let sans = parse_alt_names(text, Path::new("t")).expect("parse");
        assert_eq!(
            sans,
            vec![
                San::Dns("mydomain.example".into()),
                San::Ip("203.0.113.7".parse().expect("ip"))
            ]
        );
    }

    #[test]
    fn bad_entries_name_the_line() {
        let err = parse_alt_names("[ alt_names ]\n\nIP.1 = 300.1.1.1\n", Path::new("csr"))
            .expect_err("bad ip");
        assert!(err.to_string().contains("line 3"), "{err}");
        assert!(parse_alt_names("[ alt_names ]\nDNS.1 = a b\n", Path::new("c")).is_err());
    }
}
