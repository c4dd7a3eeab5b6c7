//! Who a client certificate says its holder is, by Kubernetes' convention: the subject's CN is
//! the user name and every O a group. The PKI issues certificates that way; the API server and
//! every component's secure port read them back the same way.

/// A certificate's user (CN) and groups (every O), or `None` when it names no user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertIdentity {
    pub user: String,
    pub groups: Vec<String>,
}

/// Reads the identity of a DER certificate; unparseable certificates and an empty or missing CN
/// authenticate no one.
pub fn cert_identity(der: &[u8]) -> Option<CertIdentity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let user = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    if user.is_empty() {
        return None;
    }
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Some(CertIdentity { user, groups })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed DER certificate with `subject`, made by openssl: rcgen keeps one value per
    /// attribute type, and several O attributes are exactly what must be read back here.
    fn cert(subject: &str) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("c.der");
        let status = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args([
                "-nodes",
                "-keyout",
                "/dev/null",
                "-outform",
                "DER",
                "-subj",
                subject,
            ])
            .arg("-out")
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            status.status.success(),
            "{}",
            String::from_utf8_lossy(&status.stderr)
        );
        std::fs::read(out).unwrap()
    }

    #[test]
    fn cn_is_the_user_and_every_o_a_group() {
        let id = cert_identity(&cert("/CN=jane/O=a/O=b")).unwrap();
        assert_eq!(id.user, "jane");
        assert_eq!(id.groups, ["a", "b"]);
    }

    #[test]
    fn no_cn_or_garbage_is_no_one() {
        assert_eq!(cert_identity(&cert("/O=a")), None);
        assert_eq!(cert_identity(b"not a certificate"), None);
    }
}
