//! `--authz-overhead`: what authorization adds to the API server's latency. One server, one
//! client identity (a ServiceAccount token, so no request takes the `system:masters` short cut),
//! the same gets, namespace lists and creates measured under AlwaysAllow and under Node,RBAC with
//! 1,000 Roles and 1,000 RoleBindings stored besides the bootstrap policy. The two modes alternate
//! round by round (`krust enable/disable rbac` switches the running server), so drift in the
//! machine's load falls on both; the p99 of each mode is taken over all its rounds.

use std::future::Future;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{ListParams, PostParams};
use kube::config::AuthInfo;
use kube::{Api, Client};
use serde_json::json;

use crate::load::{self, Layout};
use crate::server::KrustServer;
use crate::stats::{ms, Summary};

const SERVICE_ACCOUNT: &str = "api-bench";
const OPS: [&str; 3] = ["get", "namespace list", "create"];

pub struct Params {
    pub clients: usize,
    pub pods: usize,
    pub per_namespace: usize,
    pub gets: usize,
    pub lists: usize,
    pub creates: usize,
    pub rbac_objects: usize,
    pub rounds: usize,
}

/// Latency samples of one mode, per operation.
#[derive(Default)]
struct Samples([Vec<Duration>; 3]);

pub async fn run(
    bin: &Path,
    server: &KrustServer,
    admin: kube::Config,
    p: &Params,
) -> Result<String> {
    let admin_client = Client::try_from(admin.clone())?;
    let layout = Arc::new(Layout::new(p.pods, p.per_namespace));
    eprintln!(
        "setup: {} namespaces, {} pods",
        layout.namespaces.len(),
        p.pods
    );
    load::create_namespaces(&admin_client, &layout).await?;
    let admins = (0..p.clients)
        .map(|_| Client::try_from(admin.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    load::creates(&admins, &layout).await?;
    eprintln!(
        "setup: {} Roles and {} RoleBindings",
        p.rbac_objects, p.rbac_objects
    );
    rbac_objects(&admin_client, &layout, p.rbac_objects).await?;
    let token = service_account_token(&admin_client, &layout).await?;
    let mut config = admin;
    config.auth_info = AuthInfo {
        token: Some(token.into()),
        ..Default::default()
    };

    // The kubeconfig is <data-dir>/credentials/client.config.
    let kubeconfig = server.kubeconfig();
    let data_dir = kubeconfig
        .parent()
        .and_then(Path::parent)
        .context("the server's data dir")?;
    let (mut always, mut rbac) = (Samples::default(), Samples::default());
    for round in 0..p.rounds {
        let order = match round % 2 {
            0 => [false, true],
            _ => [true, false],
        };
        for rbac_on in order {
            set_rbac(bin, data_dir, rbac_on)?;
            // The switch (SIGHUP) ends open connections: each phase starts with fresh clients.
            let clients = (0..p.clients)
                .map(|_| Client::try_from(config.clone()))
                .collect::<Result<Vec<_>, _>>()?;
            let label = if rbac_on { "Node,RBAC" } else { "AlwaysAllow" };
            eprintln!("round {}/{}: {label}", round + 1, p.rounds);
            let into = if rbac_on { &mut rbac } else { &mut always };
            measure(&clients, &layout, p, &format!("r{round}-{label}"), into).await?;
        }
    }
    set_rbac(bin, data_dir, false)?;
    Ok(report(p, &always, &rbac))
}

/// Roles with a few rules each and bindings to one user each, spread over the bench namespaces;
/// then the benchmark's own account gets `edit` in every bench namespace.
async fn rbac_objects(client: &Client, layout: &Layout, count: usize) -> Result<()> {
    let pp = PostParams::default();
    for i in 0..count {
        let ns = &layout.namespaces[i % layout.namespaces.len()];
        let roles: Api<Role> = Api::namespaced(client.clone(), ns);
        let role: Role = serde_json::from_value(json!({
            "metadata": {"name": format!("role-{i:04}")},
            "rules": [
                {"apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": ["get", "list"], "resourceNames": [format!("cm-{i}")]},
                {"apiGroups": ["apps"], "resources": ["deployments", "deployments/scale"], "verbs": ["get", "update", "patch"]},
                {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["*"]},
            ],
        }))?;
        roles.create(&pp, &role).await.context("creating a Role")?;
        let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), ns);
        let binding: RoleBinding = serde_json::from_value(json!({
            "metadata": {"name": format!("binding-{i:04}")},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": format!("role-{i:04}")},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": format!("user-{i:04}")}],
        }))?;
        bindings
            .create(&pp, &binding)
            .await
            .context("creating a RoleBinding")?;
    }
    for ns in &layout.namespaces {
        let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), ns);
        let binding: RoleBinding = serde_json::from_value(json!({
            "metadata": {"name": "api-bench-edit"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
            "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": "default"}],
        }))?;
        bindings.create(&pp, &binding).await?;
    }
    Ok(())
}

async fn service_account_token(client: &Client, layout: &Layout) -> Result<String> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": SERVICE_ACCOUNT}}))?;
    accounts.create(&PostParams::default(), &sa).await?;
    let request: TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 7200}}))?;
    let issued = accounts
        .create_token_request(SERVICE_ACCOUNT, &PostParams::default(), &request)
        .await
        .context("TokenRequest")?;
    let token = issued.status.map(|s| s.token).unwrap_or_default();
    if token.is_empty() {
        bail!("the TokenRequest returned no token");
    }
    let _ = layout;
    Ok(token)
}

/// `krust enable rbac` / `krust disable rbac` on the running server (returns once it applies).
fn set_rbac(bin: &Path, data_dir: &Path, on: bool) -> Result<()> {
    let verb = if on { "enable" } else { "disable" };
    let out = Command::new(bin)
        .args([verb, "rbac", "--data-dir"])
        .arg(data_dir)
        .output()
        .with_context(|| format!("running krust {verb} rbac"))?;
    if !out.status.success() {
        bail!(
            "krust {verb} rbac failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

async fn measure(
    clients: &[Client],
    layout: &Arc<Layout>,
    p: &Params,
    tag: &str,
    into: &mut Samples,
) -> Result<()> {
    let l = layout.clone();
    into.0[0].extend(
        timed(clients, p.gets, move |client, k| {
            let (ns, name) = l.pod(k.wrapping_mul(7919) % l.pods);
            let (ns, name) = (ns.to_string(), name);
            async move {
                Api::<Pod>::namespaced(client, &ns).get(&name).await?;
                Ok(())
            }
        })
        .await?,
    );
    let l = layout.clone();
    into.0[1].extend(
        timed(clients, p.lists, move |client, k| {
            let ns = l.namespaces[k % l.namespaces.len()].clone();
            async move {
                Api::<Pod>::namespaced(client, &ns)
                    .list(&ListParams::default())
                    .await?;
                Ok(())
            }
        })
        .await?,
    );
    let l = layout.clone();
    let tag = tag.to_lowercase().replace(',', "-");
    into.0[2].extend(
        timed(clients, p.creates, move |client, k| {
            let ns = l.namespaces[k % l.namespaces.len()].clone();
            let cm: Result<ConfigMap, _> = serde_json::from_value(
                json!({"metadata": {"name": format!("cm-{tag}-{k}")}, "data": {"k": "v"}}),
            );
            async move {
                Api::<ConfigMap>::namespaced(client, &ns)
                    .create(&PostParams::default(), &cm?)
                    .await?;
                Ok(())
            }
        })
        .await?,
    );
    Ok(())
}

/// `total` operations over `clients` concurrently; each one's latency.
async fn timed<F, Fut>(clients: &[Client], total: usize, op: F) -> Result<Vec<Duration>>
where
    F: Fn(Client, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = clients
        .iter()
        .map(|client| {
            let (op, next, client) = (op.clone(), next.clone(), client.clone());
            tokio::spawn(async move {
                let mut samples = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return Ok::<_, anyhow::Error>(samples);
                    }
                    let t = Instant::now();
                    op(client.clone(), i).await?;
                    samples.push(t.elapsed());
                }
            })
        })
        .collect();
    let mut samples = Vec::with_capacity(total);
    for task in tasks {
        samples.extend(task.await.context("a client task panicked")??);
    }
    Ok(samples)
}

fn ratio(a: Duration, b: Duration) -> f64 {
    b.as_secs_f64() / a.as_secs_f64().max(f64::EPSILON)
}

fn report(p: &Params, always: &Samples, rbac: &Samples) -> String {
    let mut out = String::from(
        "| operation | AlwaysAllow p50 / p99 | Node,RBAC p50 / p99 | p99 ratio |\n|---|---|---|---|\n",
    );
    let mut all = (Vec::new(), Vec::new());
    for (i, op) in OPS.iter().enumerate() {
        let (a, r) = (
            Summary::of(always.0[i].clone()),
            Summary::of(rbac.0[i].clone()),
        );
        all.0.extend(always.0[i].iter().copied());
        all.1.extend(rbac.0[i].iter().copied());
        out.push_str(&format!(
            "| {op} | {} / {} | {} / {} | {:.3} |\n",
            ms(a.p50),
            ms(a.p99),
            ms(r.p50),
            ms(r.p99),
            ratio(a.p99, r.p99)
        ));
    }
    let (a, r) = (Summary::of(all.0), Summary::of(all.1));
    out.push_str(&format!(
        "| all of them | {} / {} | {} / {} | {:.3} |\n",
        ms(a.p50),
        ms(a.p99),
        ms(r.p50),
        ms(r.p99),
        ratio(a.p99, r.p99)
    ));
    out.push_str(&format!(
        "\nSetup: {} clients with one ServiceAccount token (bound to `edit` by a RoleBinding in \
         each bench namespace); {} pods in {} namespaces; {} Roles and {} RoleBindings (to other \
         users) besides the bootstrap policy; per mode and round {} gets, {} namespace lists of \
         {} pods, {} ConfigMap creates; {} rounds, modes alternating.\n",
        p.clients,
        p.pods,
        p.pods.div_ceil(p.per_namespace),
        p.rbac_objects,
        p.rbac_objects,
        p.gets,
        p.lists,
        p.per_namespace,
        p.creates,
        p.rounds
    ));
    out
}
