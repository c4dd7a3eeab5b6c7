//! `krust add-node [--ttl D]`: a bootstrap token for a new node, as kubeadm's `token create`
//! and MicroK8s's `add-node` (default TTL one hour): the Secret
//! `kube-system/bootstrap-token-<id>` written through the API server with the admin
//! credentials, the bindings that let its holders ask for and get a kubelet client
//! certificate (kubeadm's), and the command that joins, with the token pinning the cluster CA
//! (`K10<sha256 of ca.crt>::<id>.<secret>`).

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};

use crate::settings::Settings;

/// The group every token `krust add-node` makes adds (kubeadm's
/// `system:bootstrappers:kubeadm:default-node-token`).
pub const NODE_TOKEN_GROUP: &str = "system:bootstrappers:krust:default-node-token";
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

pub fn run(data_dir: &Path, ttl: Option<&str>) -> Result<ExitCode> {
    let ttl = match ttl {
        Some(text) => parse_duration(text)?,
        None => DEFAULT_TTL,
    };
    let settings = Settings::load_or_default(data_dir)?;
    let port = settings
        .port_map()?
        .port(ports::Service::Apiserver)
        .context("the API server port is off in this configuration")?;
    let ca = pki::Paths::new(data_dir).ca_crt;
    let ca_pem = std::fs::read(&ca)
        .with_context(|| format!("cannot read {}: is this a server's data dir?", ca.display()))?;
    let ca_hash = kubelet::bootstrap::ca_hash_of_pem(&ca_pem)
        .with_context(|| format!("{} holds no certificate", ca.display()))?;
    let token = random_token()?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(create(data_dir, &token, ttl))?;
    let join = kubelet::bootstrap::JoinToken { ca_hash, token };
    let host = pki::primary_address();
    let host = match host {
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        v4 => v4.to_string(),
    };
    println!("On the machine to join, as root, within {}:", human(ttl));
    println!();
    println!("  krust agent --server https://{host}:{port} --token {join}");
    Ok(ExitCode::SUCCESS)
}

async fn create(data_dir: &Path, token: &str, ttl: Duration) -> Result<()> {
    let client = admin_client(data_dir).await?;
    ensure_bindings(&client).await?;
    let (id, secret) = token.split_once('.').context("token shape")?;
    let expiration = k8s_openapi::jiff::Timestamp::now()
        .checked_add(ttl)
        .context("--ttl is too long")?;
    let data = [
        ("token-id", id.to_string()),
        ("token-secret", secret.to_string()),
        (
            "expiration",
            expiration.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        ),
        ("usage-bootstrap-authentication", "true".into()),
        ("usage-bootstrap-signing", "true".into()),
        ("auth-extra-groups", NODE_TOKEN_GROUP.into()),
        (
            "description",
            "Node join token made by krust add-node".into(),
        ),
    ];
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(format!("bootstrap-token-{id}")),
            namespace: Some("kube-system".into()),
            ..Default::default()
        },
        type_: Some("bootstrap.kubernetes.io/token".into()),
        string_data: Some(data.into_iter().map(|(k, v)| (k.into(), v)).collect()),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client, "kube-system")
        .create(&PostParams::default(), &secret)
        .await
        .context("cannot create the token secret")?;
    Ok(())
}

/// kubeadm's three bindings: bootstrappers may create requests and have them auto-approved,
/// nodes may have their renewals auto-approved.
async fn ensure_bindings(client: &kube::Client) -> Result<()> {
    let bindings = [
        (
            "krust:kubelet-bootstrap",
            "system:node-bootstrapper",
            NODE_TOKEN_GROUP,
        ),
        (
            "krust:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            NODE_TOKEN_GROUP,
        ),
        (
            "krust:node-autoapprove-certificate-rotation",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            "system:nodes",
        ),
    ];
    let api: Api<ClusterRoleBinding> = Api::all(client.clone());
    for (name, role, group) in bindings {
        let binding = ClusterRoleBinding {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "ClusterRole".into(),
                name: role.into(),
            },
            subjects: Some(vec![Subject {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "Group".into(),
                name: group.into(),
                namespace: None,
            }]),
        };
        api.patch(
            name,
            &PatchParams::apply("krust-add-node").force(),
            &Patch::Apply(&binding),
        )
        .await
        .with_context(|| format!("cannot write the ClusterRoleBinding {name}"))?;
    }
    Ok(())
}

async fn admin_client(data_dir: &Path) -> Result<kube::Client> {
    let path = pki::Paths::new(data_dir).client_config;
    let file = kube::config::Kubeconfig::read_from(&path).with_context(|| {
        format!(
            "cannot read {}: is this a server's data dir?",
            path.display()
        )
    })?;
    let config = kube::Config::from_custom_kubeconfig(file, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

/// `<6>.<16>` characters of `[a-z0-9]` from the kernel's random source.
fn random_token() -> Result<String> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::new();
    let mut urandom = std::fs::File::open("/dev/urandom").context("cannot open /dev/urandom")?;
    while out.len() < 23 {
        if out.len() == 6 {
            out.push('.');
            continue;
        }
        let mut byte = [0u8; 1];
        urandom.read_exact(&mut byte)?;
        // 252 = 7 * 36: rejecting the rest keeps every character equally likely.
        if byte[0] < 252 {
            out.push(ALPHABET[(byte[0] % 36) as usize] as char);
        }
    }
    Ok(out)
}

/// `90s`, `30m`, `1h`, `2h30m`, `7d`.
fn parse_duration(text: &str) -> Result<Duration> {
    let mut total = 0u64;
    let mut number = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => bail!("--ttl {text:?}: use a number with s, m, h or d (e.g. 1h, 30m)"),
        };
        let n: u64 = number
            .parse()
            .with_context(|| format!("--ttl {text:?}: a unit without a number"))?;
        total += n * unit;
        number.clear();
    }
    if !number.is_empty() || total == 0 {
        bail!("--ttl {text:?}: use a positive number with s, m, h or d (e.g. 1h, 30m)");
    }
    Ok(Duration::from_secs(total))
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s % 86400 == 0 => format!("{}d", s / 86400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("2h30m").unwrap(), Duration::from_secs(9000));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert!(parse_duration("1x").is_err());
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("0s").is_err());
    }

    #[test]
    fn tokens_have_the_bootstrap_shape() {
        let token = random_token().unwrap();
        assert!(kubelet::bootstrap::valid_bootstrap_token(&token), "{token}");
    }
}
