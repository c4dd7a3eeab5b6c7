//! The API server's configuration, from the settings, the port map and the PKI's files.

use anyhow::{Context, Result};
use ports::{PortMap, Service};

use crate::settings::Settings;

pub fn config(settings: &Settings, map: &PortMap, paths: &pki::Paths) -> Result<apiserver::Config> {
    let defaults = settings.profile()?.defaults();
    let bind = map
        .addr(Service::Apiserver)
        .context("the API server port is off: give it one with --port apiserver=PORT")?;
    let node_ports = match map.row(Service::Nodeport).port {
        ports::Port::Range(lo, hi) => lo..=hi,
        _ => 30000..=32767,
    };
    Ok(apiserver::Config {
        bind,
        advertise_port: bind.port(),
        // The `kubernetes` Endpoints must name an address pods can reach, not 127.0.0.1.
        advertise_address: Some(pki::primary_address()),
        tls_cert: paths.server_crt.clone(),
        tls_key: paths.server_key.clone(),
        client_ca: Some(paths.ca_crt.clone()),
        token_file: Some(paths.known_tokens.clone()),
        basic_auth_file: settings.basic_auth.then(|| paths.basic_auth.clone()),
        service_account_keys: vec![paths.service_account_pub.clone()],
        service_account_signing_key: Some(paths.service_account_key.clone()),
        audit_log: settings.audit_log.clone(),
        insecure_bind: map.addr(Service::ApiserverInsecure),
        service_cidr: defaults.service_cidr.to_string(),
        node_port_range: node_ports,
        authorization_mode: settings.authorization_mode(),
        authorization_updates: settings.live_authorization.as_ref().map(|l| l.0.clone()),
        kubelet_client_cert: Some(paths.apiserver_kubelet_client_crt.clone()),
        kubelet_client_key: Some(paths.apiserver_kubelet_client_key.clone()),
        ..apiserver::Config::default()
    })
}
