//! Test harness: a CA and certificates made with rcgen, an API server on a free loopback port
//! over the in-memory engine, an admin kubeconfig, and helpers to run the real kubectl.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;

use apiserver::{Config, Server};
use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use tokio::sync::oneshot;

pub const ADMIN_TOKEN: &str = "admin-token-0123456789";

pub struct Pki {
    pub ca_pem: String,
    pub admin_cert: String,
    pub admin_key: String,
    pub sa_private: String,
    /// The CA's private key (PEM), to issue more client certificates ([`TestServer::client_cert`]).
    pub ca_key: String,
}

fn issue(params: CertificateParams, ca: &Issuer<'_, KeyPair>) -> (String, String) {
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, ca).expect("sign");
    (cert.pem(), key.serialize_pem())
}

fn client_params(cn: &str, org: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, org);
    p.distinguished_name = dn;
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p
}

/// Writes ca.crt, server.crt/key, known_tokens.csv and the service-account public key into `dir`.
pub fn make_pki(dir: &Path) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "krust-test-ca");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().expect("key");
    let ca_key_pem = ca_key.serialize_pem();
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca");
    let ca = Issuer::new(ca_params, ca_key);

    let mut server = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    server
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    server
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let (server_cert, server_key) = issue(server, &ca);
    let (admin_cert, admin_key) = issue(client_params("admin", "system:masters"), &ca);

    let sa = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("sa key");
    std::fs::write(dir.join("ca.crt"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("server.crt"), server_cert).unwrap();
    std::fs::write(dir.join("server.key"), server_key).unwrap();
    std::fs::write(dir.join("sa.pub"), sa.public_key_pem()).unwrap();
    std::fs::write(
        dir.join("known_tokens.csv"),
        format!("{ADMIN_TOKEN},admin,admin-uid,\"system:masters\"\n"),
    )
    .unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        admin_cert,
        admin_key,
        sa_private: sa.serialize_pem(),
        ca_key: ca_key_pem,
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub insecure_addr: Option<SocketAddr>,
    pub store: std::sync::Arc<store::engine::Engine>,
    pub dir: tempfile::TempDir,
    pub pki: Pki,
    pub kubeconfig: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        Self::start_on(
            store::engine::Engine::in_memory(),
            tempfile::tempdir().expect("tempdir"),
            tweak,
        )
        .await
    }

    /// Starts on an existing engine and directory (a restart keeps both).
    pub async fn start_on(
        store: std::sync::Arc<store::engine::Engine>,
        dir: tempfile::TempDir,
        tweak: impl FnOnce(&mut Config),
    ) -> TestServer {
        let pki = make_pki(dir.path());
        let p = |f: &str| dir.path().join(f);
        let mut config = Config {
            bind: "127.0.0.1:0".parse().unwrap(),
            tls_cert: p("server.crt"),
            tls_key: p("server.key"),
            client_ca: Some(p("ca.crt")),
            token_file: Some(p("known_tokens.csv")),
            service_account_keys: vec![p("sa.pub")],
            service_cidr: "10.152.183.0/24".into(),
            ..Config::default()
        };
        tweak(&mut config);
        let server = Server::bind(config, store.clone()).await.expect("bind");
        let addr = server.local_addr();
        let insecure_addr = server.insecure_addr();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            server
                .serve(async {
                    let _ = stopped.await;
                })
                .await
                .expect("serve");
        });
        let kubeconfig = p("admin.kubeconfig");
        write_kubeconfig(&kubeconfig, addr, &pki);
        TestServer {
            addr,
            insecure_addr,
            store,
            dir,
            pki,
            kubeconfig,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Runs a kubectl binary (`None` = /usr/bin/kubectl, `Some("1.27")` = the gcloud SDK one).
    pub async fn kubectl_v(&self, version: Option<&str>, args: &[&str]) -> Output {
        let bin = match version {
            None => "/usr/bin/kubectl".to_string(),
            Some(v) => format!("/usr/lib/google-cloud-sdk/bin/kubectl.{v}"),
        };
        let cache = self
            .dir
            .path()
            .join(format!("cache-{}", version.unwrap_or("default")));
        tokio::process::Command::new(bin)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&cache)
            .args(args)
            .env("HOME", self.dir.path())
            .kill_on_drop(true)
            .output()
            .await
            .expect("run kubectl")
    }

    pub async fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_v(None, args).await
    }

    /// kubectl that must succeed; returns stdout.
    pub async fn ok(&self, args: &[&str]) -> String {
        self.ok_v(None, args).await
    }

    pub async fn ok_v(&self, version: Option<&str>, args: &[&str]) -> String {
        let out = self.kubectl_v(version, args).await;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "kubectl {version:?} {args:?} failed:\nstdout: {stdout}\nstderr: {stderr}"
        );
        stdout
    }

    /// kubectl that must fail; returns stderr.
    pub async fn fails(&self, args: &[&str]) -> String {
        let out = self.kubectl(args).await;
        assert!(
            !out.status.success(),
            "kubectl {args:?} unexpectedly succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// A kubectl binary's run that must fail; returns stderr.
    pub async fn fails_v(&self, version: Option<&str>, args: &[&str]) -> String {
        let out = self.kubectl_v(version, args).await;
        assert!(
            !out.status.success(),
            "kubectl {version:?} {args:?} unexpectedly succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Writes a manifest into the test directory and returns its path.
    pub fn file(&self, name: &str, content: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path.display().to_string()
    }

    pub async fn stop(self) {
        self.shutdown().await;
    }

    /// Stops the server and hands back its engine and directory for a restart.
    pub async fn shutdown(mut self) -> (std::sync::Arc<store::engine::Engine>, tempfile::TempDir) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
        (self.store.clone(), dir)
    }

    /// A kubeconfig at `name` that authenticates with `user_yaml` (e.g. `token: x`) or nothing.
    pub fn kubeconfig_with(&self, name: &str, user_yaml: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        let cfg = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: krust\n  cluster:\n    server: https://{}\n    certificate-authority-data: {}\nusers:\n- name: u\n  user: {{{user_yaml}}}\ncontexts:\n- name: krust\n  context:\n    cluster: krust\n    user: u\ncurrent-context: krust\n",
            self.addr,
            b64(&self.pki.ca_pem)
        );
        std::fs::write(&path, cfg).unwrap();
        path
    }

    /// A kube-rs client from a kubeconfig file.
    pub async fn client_from(&self, kubeconfig: &Path) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
        let cfg =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .expect("config");
        kube::Client::try_from(cfg).expect("client")
    }

    pub async fn admin_client(&self) -> kube::Client {
        self.client_from(&self.kubeconfig).await
    }

    /// A client certificate and key (PEM) for user `cn` in group `org`, signed by the cluster CA.
    pub fn client_cert(&self, cn: &str, org: &str) -> (String, String) {
        let key = KeyPair::from_pem(&self.pki.ca_key).expect("CA key");
        let ca = Issuer::from_ca_cert_pem(&self.pki.ca_pem, key).expect("CA");
        issue(client_params(cn, org), &ca)
    }

    /// A kubeconfig at `name` authenticating with a fresh client certificate for `cn`/`org`
    /// (e.g. a kubelet's: `system:node:n1` in `system:nodes`).
    pub fn cert_kubeconfig(&self, name: &str, cn: &str, org: &str) -> PathBuf {
        let (cert, key) = self.client_cert(cn, org);
        self.kubeconfig_with(
            name,
            &format!(
                "client-certificate-data: {}, client-key-data: {}",
                b64(&cert),
                b64(&key)
            ),
        )
    }

    /// Runs /usr/bin/kubectl with another kubeconfig (see [`TestServer::kubeconfig_with`]).
    pub async fn kubectl_with(&self, kubeconfig: &Path, args: &[&str]) -> Output {
        let cache = self.dir.path().join("cache-other");
        tokio::process::Command::new("/usr/bin/kubectl")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--cache-dir")
            .arg(&cache)
            .args(args)
            .env("HOME", self.dir.path())
            .kill_on_drop(true)
            .output()
            .await
            .expect("run kubectl")
    }

    /// Runs a kubectl binary (as [`TestServer::kubectl_v`]) with extra environment variables,
    /// e.g. `KUBE_EDITOR` for `kubectl edit`.
    pub async fn kubectl_env(
        &self,
        version: Option<&str>,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Output {
        let bin = match version {
            None => "/usr/bin/kubectl".to_string(),
            Some(v) => format!("/usr/lib/google-cloud-sdk/bin/kubectl.{v}"),
        };
        let cache = self
            .dir
            .path()
            .join(format!("cache-{}", version.unwrap_or("default")));
        tokio::process::Command::new(bin)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&cache)
            .args(args)
            .env("HOME", self.dir.path())
            .envs(env.iter().copied())
            .kill_on_drop(true)
            .output()
            .await
            .expect("run kubectl")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn write_kubeconfig(path: &Path, addr: SocketAddr, pki: &Pki) {
    let cfg = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: krust\n  cluster:\n    server: https://{addr}\n    certificate-authority-data: {}\nusers:\n- name: admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: krust\n  context:\n    cluster: krust\n    user: admin\ncurrent-context: krust\n",
        b64(&pki.ca_pem),
        b64(&pki.admin_cert),
        b64(&pki.admin_key)
    );
    std::fs::write(path, cfg).unwrap();
}
