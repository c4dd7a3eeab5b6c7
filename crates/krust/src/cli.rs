//! The command line, as DESIGN.md promises it to users.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ports::{Override, Profile};

#[derive(Debug, Parser)]
#[command(
    name = "krust",
    version,
    about = "A lightweight, secure Kubernetes distribution in one binary"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once at start: the server's many flags need no boxing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a control-plane node: datastore, API server and the node's components.
    Server(ServerArgs),
    /// Run the node agent only (kubelet, kube-proxy, networking) and join a server.
    Agent(AgentArgs),
    /// Show components, their ports, the authorization mode and nodes.
    Status(StatusArgs),
    /// Print the admin kubeconfig, with the server address set to this machine's primary address.
    Config(DataDirArgs),
    /// Run kubectl with the admin kubeconfig.
    #[command(disable_help_flag = true)]
    Kubectl {
        #[command(flatten)]
        data: DataDirArgs,
        /// Arguments passed to kubectl unchanged.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Print the services-and-ports table of this configuration and what is listening now.
    Ports(PortsArgs),
    /// Turn an authorization mode on for the running cluster.
    Enable {
        /// The feature: `rbac`.
        feature: String,
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// Turn an authorization mode off for the running cluster.
    Disable {
        /// The feature: `rbac`.
        feature: String,
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// Regenerate certificates (all leaves by default), or check their expiry.
    RefreshCerts(RefreshCertsArgs),
    /// Import or list container images.
    Images {
        #[command(subcommand)]
        command: ImagesCommand,
    },
    /// Create a join token for a new node and print the `krust agent` command that joins.
    AddNode {
        /// How long the token may be used (e.g. 30m, 1h, 2d); 1h by default.
        #[arg(long)]
        ttl: Option<String>,
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// Join this machine to a cluster with a token from `krust add-node`.
    Join {
        /// HOST:PORT/TOKEN, as printed by `krust add-node`.
        target: String,
        #[arg(long)]
        worker: bool,
    },
    /// Remove a node from the cluster.
    RemoveNode { name: String },
    /// Print krust's version and the Kubernetes version it serves.
    Version,
}

#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// Import an OCI image-layout or docker-archive (`docker save`) tarball into this node's
    /// containerd, with no registry.
    Import {
        /// The tarball (.tar, or gzip-compressed).
        file: PathBuf,
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// List the images on this node (repository:tag, ID, size).
    Ls {
        #[command(flatten)]
        data: DataDirArgs,
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: Output,
    },
}

#[derive(Debug, Clone, Args)]
pub struct DataDirArgs {
    /// Where krust keeps its certificates, credentials, datastore and settings.
    #[arg(long, env = "KRUST_DATA_DIR", default_value = "/var/lib/krust")]
    pub data_dir: PathBuf,
}

/// Options that decide the services-and-ports table.
#[derive(Debug, Clone, Args)]
pub struct LayoutArgs {
    /// Port layout and defaults to reproduce: upstream (default), microk8s or canonical.
    #[arg(long)]
    pub profile: Option<Profile>,
    /// Override one service's port: KEY=PORT (repeatable), KEY=off to turn a service off.
    #[arg(long = "port", value_name = "KEY=PORT")]
    pub ports: Vec<Override>,
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    #[command(flatten)]
    pub data: DataDirArgs,
    #[command(flatten)]
    pub layout: LayoutArgs,
    /// `embedded` (default) or etcd://HOST:PORT[,HOST:PORT...] for an existing etcd cluster.
    #[arg(long, default_value = "embedded")]
    pub datastore: String,
    /// CA certificate that signed the etcd servers' certificates (with --datastore etcd://).
    #[arg(long)]
    pub datastore_cafile: Option<PathBuf>,
    /// Client certificate for etcd (with --datastore etcd://).
    #[arg(long)]
    pub datastore_certfile: Option<PathBuf>,
    /// Client key for etcd (with --datastore etcd://).
    #[arg(long)]
    pub datastore_keyfile: Option<PathBuf>,
    /// Run the control plane only, without the node agent.
    #[arg(long)]
    pub disable_agent: bool,
    /// Use this container runtime (unix:///run/containerd/containerd.sock) instead of starting
    /// containerd under the data dir.
    #[arg(long, value_name = "ENDPOINT")]
    pub container_runtime_endpoint: Option<String>,
    /// The node's hard eviction thresholds, as upstream's kubelet takes them
    /// (default memory.available<100Mi,nodefs.available<5%, k3s's).
    #[arg(long, value_name = "SIGNAL<VALUE,...")]
    pub eviction_hard: Option<String>,
    /// Soft eviction thresholds (SIGNAL<VALUE,...), each needing a grace period.
    #[arg(long, value_name = "SIGNAL<VALUE,...")]
    pub eviction_soft: Option<String>,
    /// How long each soft threshold must hold before pods are evicted (SIGNAL=DURATION,...).
    #[arg(long, value_name = "SIGNAL=DURATION,...")]
    pub eviction_soft_grace_period: Option<String>,
    /// The grace period (seconds) of a pod evicted for a soft threshold.
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub eviction_max_pod_grace_period: i64,
    /// How long a pressure condition stays after the pressure ended (upstream's 5m).
    #[arg(long, value_name = "DURATION", default_value = "5m")]
    pub eviction_pressure_transition_period: String,
    /// Graceful node shutdown: on SIGTERM/SIGINT end the node's pods within this duration
    /// (e.g. 30s) before stopping, instead of leaving them running for the next start.
    #[arg(long, value_name = "DURATION", default_value = "0")]
    pub shutdown_grace_period: String,
    /// The part of --shutdown-grace-period kept for critical pods, which end last.
    #[arg(long, value_name = "DURATION", default_value = "0")]
    pub shutdown_grace_period_critical_pods: String,
    /// Rotate a running container's log once it is this large (upstream's containerLogMaxSize).
    #[arg(long, value_name = "QUANTITY", default_value = "10Mi")]
    pub container_log_max_size: String,
    /// Log files kept per container, the current one included (containerLogMaxFiles, ≥ 2).
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub container_log_max_files: usize,
    /// Accept the legacy static password file (credentials/basic_auth.csv).
    #[arg(long)]
    pub basic_auth: bool,
    /// This node's name (default: the host name).
    #[arg(long)]
    pub node_name: Option<String>,
    /// Append one JSON audit event (audit.k8s.io/v1, level Metadata) per API request to PATH.
    #[arg(long, value_name = "PATH")]
    pub audit_log: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The API server to join, https://HOST:PORT, as `krust add-node` prints it (needed only
    /// until this machine has joined).
    #[arg(long)]
    pub server: Option<String>,
    /// The join token `krust add-node` printed: K10<CA hash>::<id>.<secret>.
    #[arg(long, env = "KRUST_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(flatten)]
    pub data: DataDirArgs,
    /// Port layout of this node's services (kubelet, containerd metrics) and --port overrides.
    #[command(flatten)]
    pub layout: LayoutArgs,
    /// This node's name (default: the host name).
    #[arg(long)]
    pub node_name: Option<String>,
    /// Use this container runtime instead of starting containerd under the data dir.
    #[arg(long, value_name = "ENDPOINT")]
    pub container_runtime_endpoint: Option<String>,
    /// The node's hard eviction thresholds (default memory.available<100Mi,nodefs.available<5%).
    #[arg(long, value_name = "SIGNAL<VALUE,...")]
    pub eviction_hard: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub data: DataDirArgs,
    /// Wait until the API server answers ready (up to --timeout).
    #[arg(long)]
    pub wait_ready: bool,
    /// How long --wait-ready waits, in seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct PortsArgs {
    #[command(flatten)]
    pub data: DataDirArgs,
    #[command(flatten)]
    pub layout: LayoutArgs,
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct RefreshCertsArgs {
    #[command(flatten)]
    pub data: DataDirArgs,
    /// Only this certificate: ca.crt, server.crt or front-proxy-client.crt.
    #[arg(long)]
    pub cert: Option<String>,
    /// Print each certificate's subject, SANs and expiry; fail if one expires within 30 days.
    #[arg(long)]
    pub check: bool,
}
