//! The network-facing components of a server, started together and stopped in reverse order:
//! the API server stops accepting before the datastore endpoint closes.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use ports::Service;
use prometheus_client::registry::Registry;
use store::Store;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::settings::Settings;

/// One running component: its stop signal and its task.
struct Component {
    name: &'static str,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<()>>,
}

/// The components of a running server, in start order.
pub struct Running(Vec<Component>);

pub async fn start(settings: &Settings, data_dir: &Path, store: Arc<dyn Store>) -> Result<Running> {
    let map = settings.port_map()?;
    let paths = pki::Paths::new(data_dir);
    let mut running = Running(Vec::new());
    if settings.datastore == "embedded" {
        if let Some(addr) = map.addr(Service::Datastore) {
            let tls = store::server::TlsPems {
                cert: read(&paths.datastore_crt)?,
                key: read(&paths.datastore_key)?,
                client_ca: read(&paths.datastore_ca_crt)?,
            };
            let store = store.clone();
            running.spawn("datastore endpoint", move |stop| async move {
                store::server::serve(store, addr, tls, stop).await?;
                Ok(())
            });
        }
    }
    let config = crate::server::apiserver::config(settings, &map, &paths)?;
    running.spawn("API server", move |stop| async move {
        apiserver::run(config, store, stop).await?;
        Ok(())
    });
    // The scheduler and the controller manager are ordinary API clients with their own
    // certificates, so either could as well run on another machine; their watches retry until
    // the API server above is listening.
    start_scheduler(&mut running, &map, &paths).await?;
    start_controller_manager(&mut running, &map, &paths, data_dir).await?;
    Ok(running)
}

async fn start_scheduler(
    running: &mut Running,
    map: &ports::PortMap,
    paths: &pki::Paths,
) -> Result<()> {
    // HTTP/2: bindings and events in flight share one connection, as client-go's would.
    let client = scheduler::client::http2(component_config(&paths.scheduler_config).await?)?;
    let metrics = scheduler::Metrics::default();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let config = scheduler::Config {
        metrics,
        ..Default::default()
    };
    let scheduler_client = client.clone();
    running.spawn("scheduler", move |stop| async move {
        scheduler::run(scheduler_client, config, stop).await?;
        Ok(())
    });
    let ports = ComponentPorts {
        names: ["scheduler secure port", "scheduler insecure port"],
        secure: map.addr(Service::Scheduler),
        insecure: map.addr(Service::SchedulerInsecure),
        cert: &paths.scheduler_serving_crt,
        key: &paths.scheduler_serving_key,
    };
    ports.spawn(running, paths, client, Arc::new(registry))
}

async fn start_controller_manager(
    running: &mut Running,
    map: &ports::PortMap,
    paths: &pki::Paths,
    data_dir: &Path,
) -> Result<()> {
    let kube_config = component_config(&paths.controller_config).await?;
    let client = kube::Client::try_from(kube_config.clone())?;
    let metrics = controllers::Metrics::default();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let config = controllers::Config {
        metrics,
        service_account_key: Some(paths.service_account_key.clone()),
        // csrsigning issues joining nodes' kubelet certificates with the cluster CA.
        cluster_signing: Some(controllers::certificates::SigningCa {
            cert: paths.ca_crt.clone(),
            key: paths.ca_key.clone(),
        }),
        // Each node's pod CIDR comes from the profile's cluster pod range (nodeipam).
        node_ipam: controllers::node_ipam::Settings {
            cluster_cidr: Some(map.profile().defaults().pod_cidr.to_string()),
            node_cidr_mask_size: None,
        },
        // Provisioned volumes live under the data dir; the default class is named as the
        // profile's system names it (MicroK8s's hostpath-storage addon: microk8s-hostpath).
        local_path: controllers::persistentvolume::local_path::Settings {
            storage_dir: Some(data_dir.join("storage")),
            class_name: match map.profile() {
                ports::Profile::Microk8s => "microk8s-hostpath".into(),
                _ => "local-path".into(),
            },
        },
        ..Default::default()
    };
    running.spawn("controller manager", move |stop| async move {
        controllers::run(kube_config, config, stop).await?;
        Ok(())
    });
    let ports = ComponentPorts {
        names: [
            "controller manager secure port",
            "controller manager insecure port",
        ],
        secure: map.addr(Service::ControllerManager),
        insecure: map.addr(Service::ControllerManagerInsecure),
        cert: &paths.controller_manager_serving_crt,
        key: &paths.controller_manager_serving_key,
    };
    ports.spawn(running, paths, client, Arc::new(registry))
}

/// A component's health and metrics ports, as the port map enables them.
struct ComponentPorts<'a> {
    /// How the ports appear in logs, e.g. `scheduler secure port`.
    names: [&'static str; 2],
    secure: Option<SocketAddr>,
    /// The legacy plain-HTTP port, on localhost only (MicroK8s profile).
    insecure: Option<SocketAddr>,
    cert: &'a Path,
    key: &'a Path,
}

impl ComponentPorts<'_> {
    /// Spawns the enabled ports; `client` is the component's own, for the delegated reviews.
    fn spawn(
        &self,
        running: &mut Running,
        paths: &pki::Paths,
        client: kube::Client,
        registry: Arc<Registry>,
    ) -> Result<()> {
        // The answer comes from the process itself, as upstream's default `ping` check.
        let health: component_base::Health = Arc::new(|| true);
        if let Some(addr) = self.secure {
            let config = component_base::SecureConfig {
                cert_pem: read(self.cert)?,
                key_pem: read(self.key)?,
                client_ca_pem: read(&paths.ca_crt)?,
                client,
                registry: registry.clone(),
                health: health.clone(),
            };
            running.spawn(self.names[0], move |stop| async move {
                component_base::serve_secure(addr, config, stop).await?;
                Ok(())
            });
        }
        if let Some(addr) = self.insecure {
            running.spawn(self.names[1], move |stop| async move {
                component_base::serve_insecure(addr, registry, health, stop).await?;
                Ok(())
            });
        }
        Ok(())
    }
}

/// A component's client configuration, from the kubeconfig the PKI wrote for it.
async fn component_config(kubeconfig: &Path) -> Result<kube::Config> {
    let file = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("cannot read {}", kubeconfig.display()))?;
    kube::Config::from_custom_kubeconfig(file, &Default::default())
        .await
        .with_context(|| format!("{} is not a usable kubeconfig", kubeconfig.display()))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

impl Running {
    fn spawn<F, Fut>(&mut self, name: &'static str, run: F)
    where
        F: FnOnce(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> Fut,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        let (stop, mut stopped) = watch::channel(false);
        let signal = Box::pin(async move {
            let _ = stopped.wait_for(|s| *s).await;
        });
        let task = tokio::spawn(run(signal));
        self.0.push(Component { name, stop, task });
    }

    /// Resolves when a component ends on its own, which is always a failure while running.
    /// The component that ended is removed, so that `stop` does not wait for it again.
    pub async fn failed(&mut self) -> anyhow::Error {
        if self.0.is_empty() {
            return std::future::pending().await;
        }
        let tasks = self.0.iter_mut().map(|c| &mut c.task);
        let (outcome, index, _) = futures::future::select_all(tasks).await;
        let name = self.0.remove(index).name;
        match outcome {
            Ok(Ok(())) => anyhow!("the {name} stopped unexpectedly"),
            Ok(Err(e)) => e.context(format!("the {name} failed")),
            Err(e) => anyhow!("the {name} crashed: {e}"),
        }
    }

    /// Stops the components newest first, each fully before the next.
    pub async fn stop(self) {
        for c in self.0.into_iter().rev() {
            let _ = c.stop.send(true);
            match c.task.await {
                Ok(Err(e)) => tracing::warn!("the {} stopped with an error: {e:#}", c.name),
                Err(e) => tracing::warn!("the {} crashed while stopping: {e}", c.name),
                Ok(Ok(())) => tracing::info!("the {} stopped", c.name),
            }
        }
    }
}
