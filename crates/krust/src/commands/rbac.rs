//! `krust enable rbac` / `krust disable rbac`: switch the running cluster between Node,RBAC and
//! AlwaysAllow. The mode is saved in `<data-dir>/config.yaml` (so it survives restarts), the
//! server is told by SIGHUP and applies it without restarting its listeners, and the command
//! returns once the API server answers in the new mode.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use ports::AuthorizationMode;

use crate::settings::Settings;

/// How long the server has to apply the change before the command gives up.
const APPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// A user no binding names: allowed to list pods under AlwaysAllow only.
const PROBE_USER: &str = "krust:authorization-probe";

pub fn run(data_dir: &Path, feature: &str, on: bool) -> Result<ExitCode> {
    if feature != "rbac" {
        let verb = if on { "enable" } else { "disable" };
        bail!("unknown feature {feature:?}: `krust {verb}` knows only \"rbac\"");
    }
    let mode = match on {
        true => AuthorizationMode::NodeRbac,
        false => AuthorizationMode::AlwaysAllow,
    };
    let Some(mut settings) = Settings::load(data_dir)? else {
        bail!(
            "no krust server has been started with {}: run `krust server` first",
            data_dir.display()
        );
    };
    settings.authorization_mode = mode.to_string();
    settings.save(data_dir)?;
    if crate::pidfile::signal_reload(data_dir) {
        let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
        runtime.block_on(wait_for_mode(data_dir, mode))?;
        println!("{}", summary(mode));
    } else {
        println!("{} (from the next `krust server` start)", summary(mode));
    }
    Ok(ExitCode::SUCCESS)
}

fn summary(mode: AuthorizationMode) -> String {
    let state = match mode {
        AuthorizationMode::NodeRbac => "on",
        AuthorizationMode::AlwaysAllow => "off",
    };
    format!("RBAC is {state}: the authorization mode is {mode}")
}

/// Asks the API server, until it answers as `mode` would, whether a user nobody bound may list
/// pods: AlwaysAllow says yes, Node,RBAC no.
async fn wait_for_mode(data_dir: &Path, mode: AuthorizationMode) -> Result<()> {
    let client = super::status::admin_client(data_dir).await?;
    let reviews: Api<SubjectAccessReview> = Api::all(client);
    let want_allowed = mode == AuthorizationMode::AlwaysAllow;
    let start = Instant::now();
    loop {
        match reviews.create(&PostParams::default(), &probe()).await {
            Ok(r) if r.status.as_ref().is_some_and(|s| s.allowed == want_allowed) => return Ok(()),
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "authorization probe failed"),
        }
        if start.elapsed() > APPLY_TIMEOUT {
            bail!(
                "the server did not switch to {mode} within {}s: see its log",
                APPLY_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn probe() -> SubjectAccessReview {
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(PROBE_USER.into()),
            resource_attributes: Some(ResourceAttributes {
                verb: Some("list".into()),
                resource: Some("pods".into()),
                namespace: Some("default".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    }
}
