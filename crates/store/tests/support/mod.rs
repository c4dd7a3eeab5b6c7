//! Shared test support: a throwaway PKI, free loopback ports, a real etcd process and the krust
//! endpoint, each cleaned up by a guard (processes are killed by PID, also when a test panics).
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use store::etcd::{EtcdBackend, EtcdTls};
use store::server::TlsPems;
use store::Store;
use tempfile::TempDir;

/// A CA, a server certificate for localhost/127.0.0.1 and a client certificate, as PEM files.
pub struct Pki {
    pub dir: TempDir,
}

impl Pki {
    pub fn generate() -> Pki {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_key = KeyPair::generate().expect("key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca.distinguished_name
            .push(DnType::CommonName, "krust-test-ca");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).expect("ca cert");
        let issuer = Issuer::new(ca, ca_key);
        let write = |name: &str, pem: String| std::fs::write(dir.path().join(name), pem).unwrap();
        write("ca.crt", ca_cert.pem());
        let leaf = |cn: &str, sans: Vec<String>, eku: Vec<ExtendedKeyUsagePurpose>| {
            let key = KeyPair::generate().expect("key");
            let mut p = CertificateParams::new(sans).expect("params");
            p.distinguished_name.push(DnType::CommonName, cn);
            p.extended_key_usages = eku;
            let cert = p.signed_by(&key, &issuer).expect("sign");
            (cert.pem(), key.serialize_pem())
        };
        let both = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let (c, k) = leaf(
            "krust-datastore",
            vec!["localhost".into(), "127.0.0.1".into()],
            both,
        );
        write("server.crt", c);
        write("server.key", k);
        let (c, k) = leaf("root", vec![], vec![ExtendedKeyUsagePurpose::ClientAuth]);
        write("client.crt", c);
        write("client.key", k);
        Pki { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).expect("read pem")
    }

    pub fn server_pems(&self) -> TlsPems {
        TlsPems {
            cert: self.read("server.crt"),
            key: self.read("server.key"),
            client_ca: self.read("ca.crt"),
        }
    }

    pub fn client_tls(&self) -> EtcdTls {
        EtcdTls {
            ca: Some(self.read("ca.crt")),
            cert: Some(self.read("client.crt")),
            key: Some(self.read("client.key")),
        }
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Kills a child process by PID when dropped.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real single-member etcd 3.4 on loopback with TLS and client certificates required.
pub struct EtcdProcess {
    pub child: ChildGuard,
    pub endpoint: String,
    pub data: TempDir,
}

impl EtcdProcess {
    pub fn start(pki: &Pki) -> EtcdProcess {
        Self::start_in(pki, tempfile::tempdir().expect("temp dir"))
    }

    /// Starts etcd on free ports; if another process takes a port between the check and etcd's
    /// bind (etcd then exits), tries again with new ones.
    pub fn start_in(pki: &Pki, data: TempDir) -> EtcdProcess {
        for _ in 0..5 {
            // A failed attempt must not leave a half-bootstrapped member behind.
            let _ = std::fs::remove_dir_all(data.path().join("member"));
            if let Some((child, endpoint)) = Self::try_start(pki, &data) {
                return EtcdProcess {
                    child,
                    endpoint,
                    data,
                };
            }
        }
        panic!("etcd did not start (is the Debian package etcd-server installed?)");
    }

    fn try_start(pki: &Pki, data: &TempDir) -> Option<(ChildGuard, String)> {
        let (client, peer) = (free_port(), free_port());
        let client_url = format!("https://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let p = |n: &str| pki.path(n).display().to_string();
        let child = Command::new("etcd")
            .args(["--name", "conformance", "--data-dir"])
            .arg(data.path())
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("conformance={peer_url}")])
            .args([
                "--cert-file",
                &p("server.crt"),
                "--key-file",
                &p("server.key"),
            ])
            .args(["--trusted-ca-file", &p("ca.crt"), "--client-cert-auth"])
            .args(["--logger", "zap", "--log-level", "error"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd (Debian package etcd-server)");
        let mut child = ChildGuard(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if !matches!(child.0.try_wait(), Ok(None)) {
                return None;
            }
            if std::net::TcpStream::connect(("127.0.0.1", client)).is_ok() {
                // The port may have answered for another process; ours fails its bind quickly.
                std::thread::sleep(Duration::from_millis(300));
                let alive = matches!(child.0.try_wait(), Ok(None));
                return alive.then(|| (child, format!("127.0.0.1:{client}")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// A backend for this etcd, once it answers.
    pub async fn backend(&self, pki: &Pki) -> Arc<EtcdBackend> {
        let b = Arc::new(
            EtcdBackend::new(vec![self.endpoint.clone()], Some(pki.client_tls())).expect("backend"),
        );
        wait_ready(b.as_ref()).await;
        b
    }
}

pub async fn wait_ready(store: &dyn Store) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match store.status().await {
            Ok(_) => return,
            Err(e) if Instant::now() > deadline => panic!("store not ready: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The krust endpoint serving `store` on a free loopback port; stops when dropped.
pub struct Endpoint {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Endpoint {
    pub async fn start(store: Arc<dyn Store>, pki: &Pki) -> Endpoint {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let tls = pki.server_pems();
        tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(e) = store::server::serve_listener(store, listener, tls, shutdown).await {
                eprintln!("endpoint failed: {e}");
            }
        });
        Endpoint {
            addr,
            stop: Some(stop),
        }
    }

    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub fn exists(path: &Path) -> bool {
    path.exists()
}

/// A raw gRPC channel to an endpoint, with or without the client certificate.
pub async fn grpc_channel(
    endpoint: &str,
    pki: &Pki,
    with_cert: bool,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pki.read("ca.crt")));
    if with_cert {
        tls = tls.identity(Identity::from_pem(
            pki.read("client.crt"),
            pki.read("client.key"),
        ));
    }
    tonic::transport::Endpoint::from_shared(format!("https://{endpoint}"))?
        .tls_config(tls)?
        .connect()
        .await
}
