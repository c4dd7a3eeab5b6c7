//! The server's effective settings, saved in `<data-dir>/config.yaml` so that every other
//! command (`ports`, `status`, `config`, `enable rbac`) sees the layout the server runs with,
//! and a person can read it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ports::{AuthorizationMode, DatastoreKind, Override, PortMap, Profile, Service};
use serde::{Deserialize, Serialize};

use crate::cli::ServerArgs;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Settings {
    pub profile: String,
    /// `--port` overrides as given, KEY=PORT.
    #[serde(default)]
    pub ports: Vec<String>,
    /// `embedded` or an etcd:// URL.
    pub datastore: String,
    /// `AlwaysAllow` or `Node,RBAC`.
    pub authorization_mode: String,
    pub node_name: String,
    #[serde(default)]
    pub basic_auth: bool,
    /// `--audit-log`: where the API server appends its audit events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_log: Option<PathBuf>,
    /// Where a running server publishes mode changes to its API server (never saved): set by
    /// `krust server`, so `krust enable rbac` switches the mode without restarting listeners.
    #[serde(skip)]
    pub live_authorization: Option<LiveAuthorization>,
}

/// The API server's end of the running server's authorization-mode channel.
#[derive(Debug, Clone)]
pub struct LiveAuthorization(pub tokio::sync::watch::Receiver<AuthorizationMode>);

/// Settings compare by what is saved; the channel is plumbing, not a setting.
impl PartialEq for LiveAuthorization {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl Eq for LiveAuthorization {}

impl Settings {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("config.yaml")
    }

    /// The saved settings, or `None` when no server has been started with this data dir.
    pub fn load(data_dir: &Path) -> Result<Option<Settings>> {
        let path = Settings::path(data_dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let settings = serde_yaml::from_str(&text).with_context(|| {
            format!(
                "{} is not valid: fix it or remove it to start from defaults",
                path.display()
            )
        })?;
        Ok(Some(settings))
    }

    /// The saved settings, or the upstream preset's when no server has run with this data dir.
    pub fn load_or_default(data_dir: &Path) -> Result<Settings> {
        Ok(Settings::load(data_dir)?.unwrap_or_else(|| Settings::new(Profile::default())))
    }

    pub fn new(profile: Profile) -> Settings {
        Settings {
            profile: profile.name().to_string(),
            ports: Vec::new(),
            datastore: "embedded".into(),
            authorization_mode: profile.defaults().authorization_mode.to_string(),
            node_name: default_node_name(),
            basic_auth: false,
            audit_log: None,
            live_authorization: None,
        }
    }

    /// The settings `krust server` runs with: its flags, and from an earlier run what flags do
    /// not carry (the authorization mode `krust enable rbac` chose).
    pub fn for_server(args: &ServerArgs) -> Result<Settings> {
        let saved = Settings::load(&args.data.data_dir)?;
        let profile = args.layout.profile.unwrap_or_default();
        let mut settings = Settings::new(profile);
        if let Some(saved) = saved.filter(|s| s.profile == settings.profile) {
            settings.authorization_mode = saved.authorization_mode;
        }
        settings.ports = args.layout.ports.iter().map(|o| o.to_string()).collect();
        settings.datastore = args.datastore.clone();
        settings.basic_auth = args.basic_auth;
        settings.audit_log = args.audit_log.clone();
        if let Some(name) = &args.node_name {
            settings.node_name = name.clone();
        }
        settings.port_map()?; // refuse a bad layout before anything is written
        Ok(settings)
    }

    pub fn pki_config(&self, data_dir: &Path) -> Result<pki::PkiConfig> {
        let profile = self.profile()?;
        let port = self
            .port_map()?
            .port(Service::Apiserver)
            .context("the API server port is off: give it one with --port apiserver=PORT")?;
        let mut cfg = pki::PkiConfig::new(
            data_dir,
            &self.node_name,
            profile.defaults().first_service_ip,
            port,
        );
        cfg.basic_auth = self.basic_auth;
        Ok(cfg)
    }

    pub fn save(&self, data_dir: &Path) -> Result<()> {
        let path = Settings::path(data_dir);
        let text = format!(
            "# krust server settings; `krust server` rewrites this file from its flags.\n{}",
            serde_yaml::to_string(self)?
        );
        write_atomically(&path, text.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))
    }

    pub fn profile(&self) -> Result<Profile> {
        self.profile.parse().map_err(anyhow::Error::msg)
    }

    pub fn datastore_kind(&self) -> DatastoreKind {
        match self.datastore.as_str() {
            "embedded" => DatastoreKind::Embedded,
            _ => DatastoreKind::Etcd,
        }
    }

    pub fn overrides(&self) -> Result<Vec<Override>> {
        self.ports
            .iter()
            .map(|p| p.parse::<Override>().map_err(anyhow::Error::from))
            .collect()
    }

    pub fn port_map(&self) -> Result<PortMap> {
        Ok(PortMap::new(
            self.profile()?,
            self.datastore_kind(),
            &self.overrides()?,
        )?)
    }

    pub fn authorization_mode(&self) -> AuthorizationMode {
        match self.authorization_mode.as_str() {
            "AlwaysAllow" => AuthorizationMode::AlwaysAllow,
            _ => AuthorizationMode::NodeRbac,
        }
    }
}

/// Writes through a temporary file and a rename, so a crash never leaves a half-written file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// The host name, lower-cased as node names must be; `localhost` if it cannot be read.
fn default_node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
