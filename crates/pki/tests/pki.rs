//! End-to-end checks of the PKI on a temporary data dir, judged by the real tools: openssl for
//! the certificates and kubectl for the kubeconfig.

use std::collections::BTreeMap;
use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use pki::{Action, CertName, PkiConfig, PkiError};
use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair};
use time::{Duration, OffsetDateTime};

const LEAVES: [&str; 14] = [
    "server",
    "front-proxy-client",
    "admin",
    "scheduler",
    "controller",
    "scheduler-serving",
    "controller-manager-serving",
    "proxy",
    "kubelet-client",
    "kubelet",
    "apiserver-kubelet-client",
    "datastore",
    "datastore-peer",
    "datastore-client",
];

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test ip")
}

fn config(dir: &Path) -> PkiConfig {
    PkiConfig {
        data_dir: dir.to_path_buf(),
        node_name: "node1".into(),
        service_ip: ip("10.152.183.1"),
        host_addresses: vec![ip("192.0.2.10"), ip("2001:db8::10")],
        apiserver_url: "https://127.0.0.1:16443".into(),
        basic_auth: false,
    }
}

fn fresh() -> (tempfile::TempDir, PkiConfig) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    pki::ensure(&cfg).expect("first ensure");
    (dir, cfg)
}

fn cert(cfg: &PkiConfig, name: &str) -> PathBuf {
    cfg.data_dir.join("certs").join(name)
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn tool");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn openssl_verify(ca: &Path, leaf: &Path) -> bool {
    Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(ca)
        .arg(leaf)
        .output()
        .expect("openssl")
        .status
        .success()
}

fn san_text(path: &Path) -> String {
    run(Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(path))
}

/// Every file under certs/ and credentials/ with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut all = BTreeMap::new();
    for sub in ["certs", "credentials"] {
        for entry in fs::read_dir(dir.join(sub)).expect("read_dir") {
            let path = entry.expect("entry").path();
            all.insert(path.clone(), fs::read(&path).expect("read"));
        }
    }
    all
}

#[test]
fn first_start_writes_a_verifiable_pki() {
    let (_dir, cfg) = fresh();
    let (ca, fp_ca, ds_ca) = (
        cert(&cfg, "ca.crt"),
        cert(&cfg, "front-proxy-ca.crt"),
        cert(&cfg, "datastore-ca.crt"),
    );
    for leaf in LEAVES {
        let file = cert(&cfg, &format!("{leaf}.crt"));
        let signer = match leaf {
            "front-proxy-client" => &fp_ca,
            l if l.starts_with("datastore") => &ds_ca,
            _ => &ca,
        };
        assert!(openssl_verify(signer, &file), "{leaf}.crt does not verify");
    }
    // The datastore trusts only its own CA: cluster client certificates must not open it.
    assert!(!openssl_verify(&ds_ca, &cert(&cfg, "admin.crt")));
    for name in ["serviceaccount.pub", "csr.conf.template"] {
        assert!(cert(&cfg, name).exists(), "{name} missing");
    }
    for name in [
        "known_tokens.csv",
        "client.config",
        "scheduler.config",
        "controller.config",
        "proxy.config",
        "kubelet.config",
    ] {
        assert!(
            cfg.data_dir.join("credentials").join(name).exists(),
            "{name} missing"
        );
    }
    assert!(!cfg.data_dir.join("credentials/basic_auth.csv").exists());
}

#[test]
fn server_cert_lists_every_san() {
    let (_dir, cfg) = fresh();
    let text = san_text(&cert(&cfg, "server.crt"));
    for san in [
        "DNS:localhost",
        "IP Address:127.0.0.1",
        "IP Address:192.0.2.10",
        "IP Address:2001:DB8:0:0:0:0:0:10",
        "IP Address:10.152.183.1",
        "DNS:kubernetes,",
        "DNS:kubernetes.default,",
        "DNS:kubernetes.default.svc,",
        "DNS:kubernetes.default.svc.cluster,",
        "DNS:kubernetes.default.svc.cluster.local",
    ] {
        assert!(text.contains(san), "{san} missing from\n{text}");
    }
}

#[test]
fn template_san_appears_after_refresh_of_server_crt() {
    let (_dir, cfg) = fresh();
    let template = cert(&cfg, "csr.conf.template");
    let text = fs::read_to_string(&template).expect("template");
    let text = text.replace(
        "DNS.5 = kubernetes.default.svc.cluster.local\n",
        "DNS.5 = kubernetes.default.svc.cluster.local\nDNS.6 = mydomain.example\n",
    );
    fs::write(&template, text).expect("edit template");
    let before = snapshot(&cfg.data_dir);

    let report = pki::refresh(&cfg, Some(CertName::Server)).expect("refresh");

    let server = cert(&cfg, "server.crt");
    assert!(san_text(&server).contains("DNS:mydomain.example"));
    assert!(san_text(&server).contains("DNS:kubernetes.default.svc.cluster.local"));
    assert!(openssl_verify(&cert(&cfg, "ca.crt"), &server));
    let after = snapshot(&cfg.data_dir);
    let changed: Vec<_> = after
        .keys()
        .filter(|p| before.get(*p) != after.get(*p))
        .collect();
    assert_eq!(
        changed,
        vec![&cert(&cfg, "server.crt"), &cert(&cfg, "server.key")]
    );
    assert_eq!(report.changes.len(), 1, "{:?}", report.changes);
}

#[test]
fn kubectl_parses_client_config() {
    let (_dir, cfg) = fresh();
    let config = cfg.data_dir.join("credentials/client.config");
    let out = run(Command::new("/usr/bin/kubectl")
        .args(["config", "view", "--raw", "-o"])
        .arg("jsonpath={.clusters[0].cluster.server} {.users[0].name} {.current-context}")
        .arg("--kubeconfig")
        .arg(&config));
    assert_eq!(out, "https://127.0.0.1:16443 admin krust");
    run(Command::new("/usr/bin/kubectl")
        .args(["config", "view", "--kubeconfig"])
        .arg(&config));
}

#[test]
fn embedded_admin_cert_is_the_admin_cert() {
    let (_dir, cfg) = fresh();
    let yaml = pki::admin_kubeconfig(&cfg.data_dir, "https://203.0.113.5:16443").expect("config");
    assert!(yaml.contains("server: https://203.0.113.5:16443"));
    let info = pki::inspect(&cert(&cfg, "admin.crt")).expect("inspect");
    assert!(info.subject.contains("CN=admin") && info.subject.contains("O=system:masters"));
    let node = pki::inspect(&cert(&cfg, "kubelet-client.crt")).expect("inspect");
    assert!(
        node.subject.contains("CN=system:node:node1") && node.subject.contains("O=system:nodes")
    );
}

#[test]
fn second_start_changes_nothing() {
    let (_dir, cfg) = fresh();
    let before = snapshot(&cfg.data_dir);
    let report = pki::ensure(&cfg).expect("second ensure");
    assert!(report.is_unchanged(), "{:?}", report.changes);
    assert_eq!(before, snapshot(&cfg.data_dir));
}

#[test]
fn an_older_pki_gains_the_component_serving_certs_and_keeps_the_rest() {
    let (_dir, cfg) = fresh();
    for stem in ["scheduler-serving", "controller-manager-serving"] {
        fs::remove_file(cert(&cfg, &format!("{stem}.crt"))).expect("rm crt");
        fs::remove_file(cert(&cfg, &format!("{stem}.key"))).expect("rm key");
    }
    let before = snapshot(&cfg.data_dir);
    let report = pki::ensure(&cfg).expect("ensure");
    let created: Vec<_> = report.changes.iter().map(|c| c.path.clone()).collect();
    assert_eq!(
        created,
        [
            cert(&cfg, "scheduler-serving.crt"),
            cert(&cfg, "controller-manager-serving.crt")
        ],
        "{report:?}"
    );
    let after = snapshot(&cfg.data_dir);
    for (path, bytes) in &before {
        assert_eq!(&after[path], bytes, "{} changed", path.display());
    }
    let ca = cert(&cfg, "ca.crt");
    assert!(openssl_verify(&ca, &cert(&cfg, "scheduler-serving.crt")));
    let sans = san_text(&cert(&cfg, "scheduler-serving.crt"));
    for san in [
        "DNS:localhost",
        "IP Address:127.0.0.1",
        "IP Address:192.0.2.10",
    ] {
        assert!(sans.contains(san), "{sans}");
    }
}

#[test]
fn secrets_are_private() {
    let (_dir, cfg) = fresh();
    for (path, _) in snapshot(&cfg.data_dir) {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        let secret =
            name.ends_with(".key") || path.parent().is_some_and(|p| p.ends_with("credentials"));
        if secret {
            assert_eq!(mode, 0o600, "{name} is {mode:o}");
        } else {
            assert_eq!(mode & 0o022, 0, "{name} is writable by others");
        }
    }
    // A loosened key is tightened again at start.
    let key = cert(&cfg, "server.key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).expect("chmod");
    pki::ensure(&cfg).expect("ensure");
    assert_eq!(
        fs::metadata(&key).expect("meta").permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn corrupt_or_missing_ca_key_is_a_clear_error() {
    let (_dir, cfg) = fresh();
    let key = cert(&cfg, "ca.key");
    let good = fs::read(&key).expect("read");
    fs::write(&key, "not a key").expect("corrupt");
    let err = pki::ensure(&cfg).expect_err("corrupt key must fail");
    assert!(matches!(err, PkiError::CaKeyInvalid { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("ca.key") && msg.contains("krust refresh-certs --cert ca.crt"),
        "{msg}"
    );

    fs::remove_file(&key).expect("remove");
    let err = pki::ensure(&cfg).expect_err("missing key must fail");
    assert!(matches!(err, PkiError::CaKeyMissing { .. }), "{err:?}");
    assert!(err.to_string().contains("ca.key"));

    // Another CA's key does not pass for this one.
    fs::write(
        &key,
        fs::read(cert(&cfg, "datastore-ca.key")).expect("read"),
    )
    .expect("write");
    let err = pki::ensure(&cfg).expect_err("wrong key must fail");
    assert!(matches!(err, PkiError::CaKeyMismatch { .. }), "{err:?}");
    fs::write(&key, good).expect("restore");
    pki::ensure(&cfg).expect("restored key works");
}

#[test]
fn new_ca_reissues_everything_it_signed() {
    let (_dir, cfg) = fresh();
    fs::write(cert(&cfg, "ca.key"), "garbage").expect("corrupt");
    let before = snapshot(&cfg.data_dir);
    pki::refresh(&cfg, Some(CertName::Ca)).expect("new CA");
    let after = snapshot(&cfg.data_dir);
    let ca = cert(&cfg, "ca.crt");
    assert_ne!(before[&ca], after[&ca]);
    for leaf in ["server", "admin", "kubelet", "kubelet-client"] {
        assert!(
            openssl_verify(&ca, &cert(&cfg, &format!("{leaf}.crt"))),
            "{leaf}"
        );
    }
    let client = cfg.data_dir.join("credentials/client.config");
    assert_ne!(before[&client], after[&client]);
    // Tokens and the service-account key survive a CA change.
    let tokens = cfg.data_dir.join("credentials/known_tokens.csv");
    assert_eq!(before[&tokens], after[&tokens]);
    let sa = cert(&cfg, "serviceaccount.key");
    assert_eq!(before[&sa], after[&sa]);
}

#[test]
fn refresh_all_renews_every_leaf_but_no_ca() {
    let (_dir, cfg) = fresh();
    let before = snapshot(&cfg.data_dir);
    let report = pki::refresh(&cfg, None).expect("refresh");
    let after = snapshot(&cfg.data_dir);
    for leaf in LEAVES {
        let path = cert(&cfg, &format!("{leaf}.crt"));
        assert_ne!(before[&path], after[&path], "{leaf}.crt kept");
    }
    assert_eq!(before[&cert(&cfg, "ca.crt")], after[&cert(&cfg, "ca.crt")]);
    let renewed = report
        .changes
        .iter()
        .filter(|c| matches!(c.action, Action::Renewed { .. }))
        .count();
    assert_eq!(renewed, LEAVES.len());
}

/// Replaces `stem`.crt with one signed by the cluster CA that expires in `days`.
fn write_short_lived(cfg: &PkiConfig, stem: &str, cn: &str, days: i64) {
    let read = |n: &str| fs::read_to_string(cert(cfg, n)).expect("read");
    let ca_key = KeyPair::from_pem(&read("ca.key")).expect("ca key");
    let issuer = Issuer::from_ca_cert_pem(&read("ca.crt"), ca_key).expect("issuer");
    let key = KeyPair::from_pem(&read(&format!("{stem}.key"))).expect("leaf key");
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = OffsetDateTime::now_utc() - Duration::days(1);
    params.not_after = OffsetDateTime::now_utc() + Duration::days(days);
    let leaf = params.signed_by(&key, &issuer).expect("sign");
    fs::write(cert(cfg, &format!("{stem}.crt")), leaf.pem()).expect("write");
}

#[test]
fn expiring_leaf_is_renewed_at_start_and_flagged_by_check() {
    let (_dir, cfg) = fresh();
    assert!(!pki::any_expiring(
        &pki::check(&cfg.data_dir).expect("check"),
        pki::CHECK_WITHIN_DAYS
    ));
    write_short_lived(&cfg, "scheduler", "system:kube-scheduler", 10);
    let infos = pki::check(&cfg.data_dir).expect("check");
    assert!(pki::any_expiring(&infos, pki::CHECK_WITHIN_DAYS));
    let key_before = fs::read(cert(&cfg, "scheduler.key")).expect("key");

    let report = pki::ensure(&cfg).expect("ensure renews");

    let renewed: Vec<_> = report
        .changes
        .iter()
        .filter(|c| matches!(c.action, Action::Renewed { .. }))
        .collect();
    assert_eq!(renewed.len(), 1, "{:?}", report.changes);
    assert!(renewed[0].path.ends_with("scheduler.crt"));
    assert!(
        renewed[0].to_string().contains("expires in"),
        "{}",
        renewed[0]
    );
    let info = pki::inspect(&cert(&cfg, "scheduler.crt")).expect("inspect");
    assert!(info.days_left > 300, "{info}");
    assert_eq!(
        key_before,
        fs::read(cert(&cfg, "scheduler.key")).expect("key")
    );
    assert!(openssl_verify(
        &cert(&cfg, "ca.crt"),
        &cert(&cfg, "scheduler.crt")
    ));
    // The kubeconfig embedding it follows.
    assert!(report
        .changes
        .iter()
        .any(|c| c.path.ends_with("scheduler.config")));
    assert!(!pki::any_expiring(
        &pki::check(&cfg.data_dir).expect("check"),
        pki::CHECK_WITHIN_DAYS
    ));
    // A leaf signed by the loaded (not freshly made) CA is recognised as sound next time.
    let report = pki::ensure(&cfg).expect("third ensure");
    assert!(report.is_unchanged(), "{:?}", report.changes);
}

#[test]
fn expiring_ca_is_kept_with_a_warning() {
    let (_dir, cfg) = fresh();
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "short-lived-ca");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    params.not_after = OffsetDateTime::now_utc() + Duration::days(20);
    let ca = params.self_signed(&key).expect("ca");
    fs::write(cert(&cfg, "ca.crt"), ca.pem()).expect("write crt");
    fs::write(cert(&cfg, "ca.key"), key.serialize_pem()).expect("write key");

    let report = pki::ensure(&cfg).expect("ensure");

    assert_eq!(
        fs::read_to_string(cert(&cfg, "ca.crt")).expect("read"),
        ca.pem()
    );
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("ca.crt expires in")),
        "{:?}",
        report.warnings
    );
    // Its leaves are re-signed by it, so everything verifies against the CA on disk.
    assert!(openssl_verify(
        &cert(&cfg, "ca.crt"),
        &cert(&cfg, "server.crt")
    ));
}

#[test]
fn service_account_keys_sign_and_verify_es256() {
    use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Claims {
        sub: String,
        exp: i64,
    }
    let (_dir, cfg) = fresh();
    let private = fs::read(cert(&cfg, "serviceaccount.key")).expect("key");
    let public = fs::read(cert(&cfg, "serviceaccount.pub")).expect("pub");
    let claims = Claims {
        sub: "system:serviceaccount:default:default".into(),
        exp: OffsetDateTime::now_utc().unix_timestamp() + 600,
    };
    let encoding = EncodingKey::from_ec_pem(&private).expect("encoding key");
    let token = encode(&Header::new(Algorithm::ES256), &claims, &encoding).expect("sign");
    let decoding = DecodingKey::from_ec_pem(&public).expect("decoding key");
    let data =
        decode::<Claims>(&token, &decoding, &Validation::new(Algorithm::ES256)).expect("verify");
    assert_eq!(data.claims.sub, claims.sub);
}

#[test]
fn check_lists_subject_sans_and_expiry() {
    let (_dir, cfg) = fresh();
    let infos = pki::check(&cfg.data_dir).expect("check");
    assert_eq!(infos.len(), LEAVES.len() + 3);
    let server = infos
        .iter()
        .find(|i| i.path.ends_with("server.crt"))
        .expect("server.crt listed");
    let line = server.to_string();
    assert!(
        line.contains("CN=kube-apiserver") && line.contains("DNS:kubernetes.default.svc"),
        "{line}"
    );
    assert!(infos.iter().filter(|i| i.is_ca).count() == 3);
    assert!(infos.iter().all(|i| i.days_left >= pki::RENEW_WITHIN_DAYS));
}

#[test]
fn service_account_key_is_p256() {
    let (_dir, cfg) = fresh();
    let text = run(Command::new("openssl")
        .args(["pkey", "-noout", "-text", "-in"])
        .arg(cert(&cfg, "serviceaccount.key")));
    assert!(
        text.contains("prime256v1") || text.contains("P-256"),
        "{text}"
    );
    let public = fs::read_to_string(cert(&cfg, "serviceaccount.pub")).expect("pub");
    assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"));
}

#[test]
fn basic_auth_and_new_addresses() {
    let (_dir, mut cfg) = fresh();
    cfg.basic_auth = true;
    cfg.host_addresses.push(ip("198.51.100.7"));
    let report = pki::ensure(&cfg).expect("ensure");
    let entries =
        pki::read_basic_auth_file(&cfg.data_dir.join("credentials/basic_auth.csv")).expect("read");
    assert_eq!(entries[0].user, "admin");
    // A new machine address gets into the serving certificates, logged as a renewal.
    assert!(san_text(&cert(&cfg, "server.crt")).contains("198.51.100.7"));
    assert!(report
        .changes
        .iter()
        .any(|c| c.path.ends_with("server.crt")));
}

#[test]
fn real_machine_addresses_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = PkiConfig::new(dir.path(), "node1", ip("10.96.0.1"), 6443);
    pki::ensure(&cfg).expect("ensure");
    let text = san_text(&cert(&cfg, "server.crt"));
    for addr in pki::machine_addresses() {
        let shown = match addr {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(_) => continue, // openssl prints v6 uncompressed
        };
        assert!(text.contains(&shown), "{shown} missing from {text}");
    }
    assert!(text.contains("10.96.0.1"));
}
