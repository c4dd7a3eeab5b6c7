//! What every controller gets: who it is, where it counts, and a client acting as its own
//! service account.
//!
//! As upstream's `--use-service-account-credentials` (which MicroK8s and k3s both set), each
//! controller talks to the API server as `system:serviceaccount:kube-system:<name>-controller`,
//! so the bootstrap RBAC policy's per-controller roles decide what it may do, not the controller
//! manager's own, deliberately narrow, `system:kube-controller-manager` role.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::config::AuthInfo;
use kube::Client;

use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// Lifetime of a controller's token; it is renewed at 80% of it, as the kubelet renews
/// projected tokens.
const TOKEN_TTL: Duration = Duration::from_secs(3600);

#[derive(Clone)]
pub struct Context {
    /// The controller manager's own client (its certificate).
    pub client: Client,
    /// The connection settings the per-controller clients are derived from.
    pub config: kube::Config,
    /// Lease holder identity; also the `reportingInstance` of events.
    pub identity: String,
    pub metrics: Metrics,
    /// The manager's settings, for the timings some controllers read (default until
    /// [`Context::with_settings`]).
    pub settings: crate::manager::Config,
    /// Per-controller clients, made once per process: their token files are kept fresh by one
    /// background task each.
    clients: Arc<Mutex<HashMap<String, Client>>>,
    /// Private (0700) directory holding the token files.
    tokens: Arc<tempfile::TempDir>,
}

impl Context {
    pub fn new(
        client: Client,
        config: kube::Config,
        identity: String,
        metrics: Metrics,
    ) -> Result<Context> {
        let tokens = tempfile::Builder::new()
            .prefix("krust-controller-tokens")
            .tempdir()
            .map_err(|e| {
                Error::Invalid(format!(
                    "cannot create a directory for controller tokens: {e}"
                ))
            })?;
        Ok(Context {
            client,
            config,
            identity,
            metrics,
            settings: Default::default(),
            clients: Arc::default(),
            tokens: Arc::new(tokens),
        })
    }

    pub fn with_settings(mut self, settings: crate::manager::Config) -> Context {
        self.settings = settings;
        self
    }

    /// A client acting as the service account `kube-system/<account>` (e.g.
    /// `replicaset-controller`), created if missing, as upstream's SAControllerClientBuilder.
    pub async fn client_for(&self, account: &str) -> Result<Client> {
        if let Some(client) = self
            .clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(account)
        {
            return Ok(client.clone());
        }
        ensure_account(&self.client, account).await?;
        let path = self.tokens.path().join(account);
        write_token(&path, &request_token(&self.client, account).await?)?;
        let mut config = self.config.clone();
        config.auth_info = AuthInfo {
            token_file: Some(path.display().to_string()),
            ..Default::default()
        };
        let client = Client::try_from(config)?;
        tokio::spawn(keep_fresh(self.client.clone(), account.to_string(), path));
        self.clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(account.to_string(), client.clone());
        Ok(client)
    }

    /// An events recorder reporting as upstream's controller of that name (e.g.
    /// `replicaset-controller`).
    pub fn recorder(&self, client: Client, controller: &str) -> kube::runtime::events::Recorder {
        let reporter = kube::runtime::events::Reporter {
            controller: controller.to_string(),
            instance: Some(self.identity.clone()),
        };
        kube::runtime::events::Recorder::new(client, reporter)
    }
}

async fn ensure_account(client: &Client, account: &str) -> Result<()> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), "kube-system");
    if api.get_opt(account).await?.is_some() {
        return Ok(());
    }
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(account.to_string()),
            namespace: Some("kube-system".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &sa).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn request_token(client: &Client, account: &str) -> Result<String> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), "kube-system");
    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(TOKEN_TTL.as_secs() as i64),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = api
        .create_token_request(account, &PostParams::default(), &request)
        .await?;
    answer
        .status
        .map(|s| s.token)
        .ok_or_else(|| Error::Invalid(format!("the token request for {account} returned no token")))
}

/// Replaces the file whole, so the client never reads half a token.
fn write_token(path: &PathBuf, token: &str) -> Result<()> {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, token)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| Error::Invalid(format!("cannot write {}: {e}", path.display())))
}

/// Renews the token at 80% of its lifetime (retrying every 10 s on failure); kube-rs rereads
/// the file every minute.
async fn keep_fresh(client: Client, account: String, path: PathBuf) {
    let mut wait = TOKEN_TTL.mul_f32(0.8);
    loop {
        tokio::time::sleep(wait).await;
        wait = match request_token(&client, &account)
            .await
            .and_then(|t| write_token(&path, &t))
        {
            Ok(()) => TOKEN_TTL.mul_f32(0.8),
            Err(e) => {
                tracing::warn!(%account, error = %e, "cannot renew the controller's token");
                Duration::from_secs(10)
            }
        };
    }
}
