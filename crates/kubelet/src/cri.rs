//! A CRI v1 client (`runtime.v1`) over gRPC on the runtime's unix socket, generated from the
//! vendored `proto/cri/api.proto`. [`Cri`] wraps the calls the node agent makes with errors that
//! name the call; the generated clients are there too ([`Cri::runtime`], [`Cri::images`]) for
//! anything not wrapped yet.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::sync::Semaphore;
use tonic::transport::Channel;

pub use crate::proto::cri as api;
use api::image_service_client::ImageServiceClient;
use api::runtime_service_client::RuntimeServiceClient;

/// Messages as large as upstream's kubelet accepts (ListContainers on a busy node).
const MAX_MESSAGE: usize = 16 << 20;

/// Sandboxes started at once per CPU. Each start spawns a shim and runs the CNI plugins and runc,
/// mostly CPU: 100 pods created at once on a 2-CPU node all competed for the CPUs and became
/// Running together at the end (p50 13.2 s, all 14.6 s); 8 at a time, they become Running in
/// turn (p50 8.8 s, all 15.9 s on a busier machine). At 5 pods/s nothing waits unless a start
/// takes over 1.6 s (BENCHMARKS.md, Kubelet).
const SANDBOX_STARTS_PER_CPU: usize = 4;
/// How long one RunPodSandbox holds its turn: a start stuck in the runtime (a hung CNI plugin)
/// must not hold back every other pod; it goes on without its permit.
const SANDBOX_TURN: std::time::Duration = std::time::Duration::from_secs(30);

/// A CRI client. Cloning is cheap: clones share one connection.
#[derive(Clone)]
pub struct Cri {
    socket: PathBuf,
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    /// Permits for RunPodSandbox calls in flight, shared by the clones.
    sandbox_starts: Arc<Semaphore>,
}

impl Cri {
    /// A client for the runtime at `socket`; it connects on the first call.
    pub fn connect(socket: &Path) -> Result<Cri> {
        let channel = crate::grpc::channel(socket)
            .with_context(|| format!("bad runtime socket path {}", socket.display()))?;
        Ok(Cri {
            socket: socket.to_path_buf(),
            runtime: RuntimeServiceClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            images: ImageServiceClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            sandbox_starts: Arc::new(Semaphore::new(sandbox_starts())),
        })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The generated RuntimeService client.
    pub fn runtime(&self) -> RuntimeServiceClient<Channel> {
        self.runtime.clone()
    }

    /// The generated ImageService client.
    pub fn images(&self) -> ImageServiceClient<Channel> {
        self.images.clone()
    }

    pub async fn version(&self) -> Result<api::VersionResponse> {
        let req = api::VersionRequest {
            version: "v1".into(),
        };
        call("Version", self.runtime().version(req).await)
    }

    pub async fn status(&self) -> Result<api::StatusResponse> {
        let req = api::StatusRequest { verbose: false };
        call("Status", self.runtime().status(req).await)
    }

    pub async fn list_images(&self) -> Result<Vec<api::Image>> {
        let req = api::ListImagesRequest { filter: None };
        Ok(call("ListImages", self.images().list_images(req).await)?.images)
    }

    /// The image `reference` names, if the runtime has it.
    pub async fn image_status(&self, reference: &str) -> Result<Option<api::Image>> {
        let req = api::ImageStatusRequest {
            image: Some(image_spec(reference)),
            verbose: false,
        };
        Ok(call("ImageStatus", self.images().image_status(req).await)?.image)
    }

    /// Starts a pod sandbox; returns its ID. At most [`SANDBOX_STARTS_PER_CPU`] per CPU run at
    /// once; the others wait their turn in order.
    pub async fn run_pod_sandbox(
        &self,
        config: api::PodSandboxConfig,
        runtime_handler: &str,
    ) -> Result<String> {
        // The semaphore is never closed, so acquiring only fails if it were.
        let mut permit = Some(self.sandbox_starts.acquire().await?);
        let req = api::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: runtime_handler.into(),
        };
        let mut runtime = self.runtime();
        let run = runtime.run_pod_sandbox(req);
        tokio::pin!(run);
        let turn = tokio::time::sleep(SANDBOX_TURN);
        tokio::pin!(turn);
        let result = loop {
            tokio::select! {
                result = &mut run => break result,
                _ = &mut turn, if permit.is_some() => permit = None,
            }
        };
        drop(permit);
        Ok(call("RunPodSandbox", result)?.pod_sandbox_id)
    }

    pub async fn stop_pod_sandbox(&self, pod_sandbox_id: &str) -> Result<()> {
        let req = api::StopPodSandboxRequest {
            pod_sandbox_id: pod_sandbox_id.into(),
        };
        call("StopPodSandbox", self.runtime().stop_pod_sandbox(req).await)?;
        Ok(())
    }

    pub async fn remove_pod_sandbox(&self, pod_sandbox_id: &str) -> Result<()> {
        let req = api::RemovePodSandboxRequest {
            pod_sandbox_id: pod_sandbox_id.into(),
        };
        call(
            "RemovePodSandbox",
            self.runtime().remove_pod_sandbox(req).await,
        )?;
        Ok(())
    }

    pub async fn pod_sandbox_status(&self, pod_sandbox_id: &str) -> Result<api::PodSandboxStatus> {
        let req = api::PodSandboxStatusRequest {
            pod_sandbox_id: pod_sandbox_id.into(),
            verbose: false,
        };
        call(
            "PodSandboxStatus",
            self.runtime().pod_sandbox_status(req).await,
        )?
        .status
        .context("PodSandboxStatus returned no status")
    }

    pub async fn list_pod_sandboxes(&self) -> Result<Vec<api::PodSandbox>> {
        let req = api::ListPodSandboxRequest { filter: None };
        Ok(call("ListPodSandbox", self.runtime().list_pod_sandbox(req).await)?.items)
    }

    /// Creates a container in a sandbox; returns its ID.
    pub async fn create_container(
        &self,
        pod_sandbox_id: &str,
        config: api::ContainerConfig,
        sandbox_config: api::PodSandboxConfig,
    ) -> Result<String> {
        let req = api::CreateContainerRequest {
            pod_sandbox_id: pod_sandbox_id.into(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        };
        Ok(call(
            "CreateContainer",
            self.runtime().create_container(req).await,
        )?
        .container_id)
    }

    pub async fn start_container(&self, container_id: &str) -> Result<()> {
        let req = api::StartContainerRequest {
            container_id: container_id.into(),
        };
        call("StartContainer", self.runtime().start_container(req).await)?;
        Ok(())
    }

    /// Stops a container, giving it `timeout_seconds` after SIGTERM (the stop signal) before
    /// SIGKILL.
    pub async fn stop_container(&self, container_id: &str, timeout_seconds: i64) -> Result<()> {
        let req = api::StopContainerRequest {
            container_id: container_id.into(),
            timeout: timeout_seconds,
        };
        call("StopContainer", self.runtime().stop_container(req).await)?;
        Ok(())
    }

    pub async fn remove_container(&self, container_id: &str) -> Result<()> {
        let req = api::RemoveContainerRequest {
            container_id: container_id.into(),
        };
        call(
            "RemoveContainer",
            self.runtime().remove_container(req).await,
        )?;
        Ok(())
    }

    pub async fn container_status(&self, container_id: &str) -> Result<api::ContainerStatus> {
        let req = api::ContainerStatusRequest {
            container_id: container_id.into(),
            verbose: false,
        };
        call(
            "ContainerStatus",
            self.runtime().container_status(req).await,
        )?
        .status
        .context("ContainerStatus returned no status")
    }

    pub async fn list_containers(&self) -> Result<Vec<api::Container>> {
        let req = api::ListContainersRequest { filter: None };
        Ok(call("ListContainers", self.runtime().list_containers(req).await)?.containers)
    }

    /// Runs `cmd` in a container and waits for it (at most `timeout_seconds`, 0 for no limit).
    pub async fn exec_sync(
        &self,
        container_id: &str,
        cmd: &[&str],
        timeout_seconds: i64,
    ) -> Result<api::ExecSyncResponse> {
        let req = api::ExecSyncRequest {
            container_id: container_id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: timeout_seconds,
        };
        call("ExecSync", self.runtime().exec_sync(req).await)
    }
}

fn sandbox_starts() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    cpus * SANDBOX_STARTS_PER_CPU
}

/// An image reference as CRI takes it.
pub fn image_spec(reference: &str) -> api::ImageSpec {
    api::ImageSpec {
        image: reference.into(),
        ..Default::default()
    }
}

fn call<T>(what: &str, result: Result<tonic::Response<T>, tonic::Status>) -> Result<T> {
    match result {
        Ok(response) => Ok(response.into_inner()),
        Err(status) => Err(anyhow::anyhow!(
            "CRI {what} failed: {} ({:?})",
            status.message(),
            status.code()
        )),
    }
}
