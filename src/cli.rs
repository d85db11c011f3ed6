//! Command-line definitions only; each subcommand calls into its module.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::datastore;
use crate::host::config::Local;

#[derive(Parser)]
#[command(name = "k8s", about = "A lightweight Kubernetes distribution in one binary", version = crate::version::VERSION)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Print the version of k8s and of the parts it carries.
    Version,
    /// Run a server: datastore, control plane and (unless disabled) a node.
    Server(ServerArgs),
    /// Run a worker node that joins a server.
    Agent(AgentArgs),
    /// Manage join tokens (on a server).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Inspect and change the etcd membership (servers of an HA cluster).
    #[command(subcommand)]
    Etcd(EtcdCommand),
    /// The cluster's upgrades to a new k8s binary.
    #[command(subcommand)]
    Upgrade(UpgradeCommand),
    /// Secrets encryption at rest (on a server, as root).
    #[command(subcommand)]
    SecretsEncrypt(SecretsEncryptCommand),
    /// This server's certificates: expiry, renewal (on a server, as root).
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Back up this server (datastore, PKI, tokens, config) to one archive; list or prune archives.
    Backup(BackupArgs),
    /// Bring a cluster back from a `k8s backup` archive, on a host with no cluster data.
    Restore(RestoreArgs),
    /// Whether this host can run k8s: kernel, cgroups, tools, ports, clock,
    /// memory, disk (changes nothing; exit 1 on a problem).
    CheckConfig(CheckConfigArgs),
    /// Show the server's components and the node.
    Status(DataDirArg),
    /// Print the admin kubeconfig.
    Kubeconfig,
    /// Install or converge a cluster over SSH from an inventory (hosts.yaml).
    Up(UpArgs),
    /// Stop the server and remove everything it created (with -i: on every host of an inventory).
    Reset(ResetArgs),
    /// Serve the etcd v3 API from SQLite (the single-node datastore).
    Datastore(DatastoreArgs),
    /// Run the carried kubectl, with the admin kubeconfig by default.
    #[command(disable_help_flag = true)]
    Kubectl {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Run the carried crictl against this node's containerd.
    #[command(disable_help_flag = true)]
    Crictl {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Run the carried ctr against this node's containerd (namespace k8s.io by default).
    #[command(disable_help_flag = true)]
    Ctr {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Attach a payload (tar.zst of components) to a k8s executable: `make dist`.
    #[command(hide = true)]
    AttachPayload {
        #[arg(long)]
        exe: PathBuf,
        #[arg(long)]
        payload: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Extract the components attached to a k8s file of any architecture
    /// into DATA_DIR/bin/<hash>/ and print that directory (`make test-arm64`
    /// runs an arm64 file's parts under qemu).
    #[command(hide = true)]
    ExtractPayload {
        #[arg(long)]
        exe: PathBuf,
        #[arg(long)]
        data_dir: PathBuf,
    },
}

#[derive(Args)]
pub struct ServerArgs {
    /// Config file; its keys are these flags' names [default: /etc/k8s/config.yaml].
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub options: crate::host::config::ServerOptions,
}

#[derive(Args)]
pub struct AgentArgs {
    /// Config file; its keys are these flags' names [default: /etc/k8s/config.yaml].
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub options: crate::host::config::AgentOptions,
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it.
    Create {
        /// What the token joins: agent or server.
        #[arg(long, default_value = "agent")]
        role: String,
        /// Lifetime, e.g. 24h, 30m or 1h30m; 0 never expires (like the default tokens).
        #[arg(long, default_value = "24h", value_parser = parse_ttl)]
        // Written out in full: clap reads a plain `Option` as "may be absent".
        ttl: ::std::option::Option<std::time::Duration>,
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        data_dir: DataDirArg,
    },
    /// List tokens (ids, roles, expiry; never secrets).
    List,
    /// Revoke a token by id (the part between `::` and `.`).
    Revoke { id: String },
    /// Replace this server's default token of a role (the file under
    /// <data-dir>/server) with a new one and revoke the old. Joined nodes keep
    /// running; give the new token to those that join later (`k8s up` does).
    Rotate {
        /// Which default token: agent or server.
        #[arg(long, default_value = "agent")]
        role: String,
        #[command(flatten)]
        data_dir: DataDirArg,
    },
}

#[derive(Subcommand)]
pub enum EtcdCommand {
    /// List the members: name, id, role (leader, voter, learner), URLs.
    Members(DataDirArg),
    /// Remove a server that is gone for good from the membership.
    RemoveMember {
        /// The member's name (its node name).
        name: String,
        #[command(flatten)]
        data_dir: DataDirArg,
    },
}

impl EtcdCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            EtcdCommand::Members(d) => crate::etcd::cli::members(&Local::resolve(d.data_dir)?.data_dir).await,
            EtcdCommand::RemoveMember { name, data_dir } => {
                crate::etcd::cli::remove_member(&Local::resolve(data_dir.data_dir)?.data_dir, &name).await
            }
        }
    }
}

#[derive(Subcommand)]
pub enum UpgradeCommand {
    /// Roll the cluster to a new k8s binary, node by node, health-gated,
    /// rolled back by itself on failure (on a server, as root).
    Apply {
        /// The new binary (the one `make dist` builds); repeated, one per
        /// architecture of the cluster's nodes (`make dist ARCH=arm64`), this
        /// server's among them.
        #[arg(long, required = true)]
        binary: Vec<PathBuf>,
        /// Print the order and the preflight checks; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Seconds a restarted node may take to be Ready on the new binary.
        #[arg(long, default_value_t = 300)]
        ready_timeout: u64,
        /// Seconds a node must stay healthy on the new binary before it commits.
        #[arg(long, default_value_t = 30)]
        soak: u64,
        /// Drain each node before its swap (evictions honour
        /// PodDisruptionBudgets): auto (when the kubelet's minor version
        /// changes), always, or cordon-only.
        #[arg(long, default_value = "auto", value_parser = ["auto", "always", "cordon-only"])]
        drain: String,
        /// text: lines for a person; json: one JSON object per change of the plan.
        #[arg(long, value_enum, default_value = "text")]
        output: OutputFormat,
        #[command(flatten)]
        data_dir: DataDirArg,
    },
    /// Every upgrade plan and the phase of each of its nodes.
    Status {
        /// text: a table per plan; json: the plans' specs and statuses.
        #[arg(long, value_enum, default_value = "text")]
        output: OutputFormat,
    },
    /// Start no new node (one in progress finishes).
    Pause {
        /// The plan (default: the one running).
        plan: Option<String>,
    },
    /// Go on with a paused plan.
    Resume {
        /// The plan (default: the one running).
        plan: Option<String>,
    },
    /// Run by the guard timer an upgrade arms, as the previous binary: puts
    /// that binary back and restarts the service when the new one has not
    /// committed by its deadline.
    #[command(hide = true)]
    Guard {
        #[command(flatten)]
        data_dir: DataDirArg,
        /// The binary systemd runs.
        #[arg(long, default_value = crate::host::paths::BINARY)]
        binary: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum SecretsEncryptCommand {
    /// Whether Secrets are encrypted at rest, the keys, and how many stored Secrets are.
    Status(DataDirArg),
    /// A new key on every server, every Secret rewritten under it, the old
    /// keys dropped; continues a rotation that stopped part way.
    RotateKeys(DataDirArg),
}

#[derive(Subcommand)]
pub enum CertsCommand {
    /// Every certificate of this server and of its kubeconfigs: subject,
    /// issuer, expiry, and whether the next start renews it.
    Check {
        /// text: an aligned table; json: an array of objects.
        #[arg(long, value_enum, default_value = "text")]
        output: OutputFormat,
        #[command(flatten)]
        data_dir: DataDirArg,
    },
    /// Remove leaf certificates (keys kept) and kubeconfigs, never a CA, so
    /// the next `k8s server` start issues them anew; the server must be stopped.
    Rotate {
        /// Only these (repeatable) [default: every leaf and kubeconfig].
        #[arg(long = "service", value_name = "NAME", value_enum)]
        services: Vec<CertService>,
        #[command(flatten)]
        data_dir: DataDirArg,
    },
}

/// What `k8s certs rotate --service` names: a component's certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CertService {
    /// pki/apiserver.crt
    Apiserver,
    /// pki/apiserver-kubelet-client.crt
    ApiserverKubeletClient,
    /// pki/kubelet.crt and kubelet.kubeconfig
    Kubelet,
    /// pki/front-proxy-client.crt
    FrontProxyClient,
    /// pki/metrics-server.crt
    MetricsServer,
    /// pki/etcd/{server,peer}.crt and pki/apiserver-etcd-client.crt
    Etcd,
    /// admin.kubeconfig
    Admin,
    /// supervisor.kubeconfig
    Supervisor,
    /// controller-manager.kubeconfig
    ControllerManager,
    /// scheduler.kubeconfig
    Scheduler,
    /// kube-proxy.kubeconfig
    KubeProxy,
}

/// The data dir of the server or agent on this host; resolved by
/// [`crate::host::config::Local::resolve`].
#[derive(Args)]
pub struct DataDirArg {
    /// The data dir [default: data-dir of /etc/k8s/config.yaml, else /var/lib/k8s].
    #[arg(long, env = "K8S_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BackupArgs {
    #[command(subcommand)]
    pub command: Option<BackupCommand>,
    /// The archive to write [default: <backup-dir>/on-demand-<node>-<time>.tar.zst].
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub place: BackupPlace,
}

#[derive(Subcommand)]
pub enum BackupCommand {
    /// The archives in the backup dir, oldest first.
    List(BackupPlace),
    /// Remove all but the newest archives of each kind (scheduled, on-demand).
    Prune {
        /// How many of each kind to keep.
        #[arg(long, default_value_t = 5)]
        keep: usize,
        #[command(flatten)]
        place: BackupPlace,
    },
}

/// Where a server's data and backups are; unset, from the server's config file.
#[derive(Args)]
pub struct BackupPlace {
    /// The server's data dir [default: data-dir of /etc/k8s/config.yaml, else /var/lib/k8s].
    #[arg(long, env = "K8S_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The backup dir [default: backup-dir of /etc/k8s/config.yaml, else <data-dir>/backups].
    #[arg(long)]
    pub backup_dir: Option<PathBuf>,
}

#[derive(Args)]
pub struct RestoreArgs {
    /// The archive (`k8s backup`'s).
    pub file: PathBuf,
    #[command(flatten)]
    pub data_dir: DataDirArg,
}

#[derive(Args)]
pub struct ResetArgs {
    #[command(flatten)]
    pub data_dir: DataDirArg,
    /// Uninstall k8s from every host of this inventory (over SSH) instead of this machine.
    #[arg(long, short = 'i')]
    pub inventory: Option<PathBuf>,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Args)]
pub struct UpArgs {
    /// The inventory: cluster settings and hosts (docs/inventory.md).
    #[arg(long, short = 'i')]
    pub inventory: PathBuf,
    /// Connect, gather facts and validate, print the plan; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// text: progress and a summary table; json: one JSON document on stdout (docs/up.md).
    #[arg(long, value_enum, default_value = "text")]
    pub output: OutputFormat,
    /// Where to write the workstation's kubeconfig [default: ./<cluster>.kubeconfig].
    #[arg(long)]
    pub kubeconfig_out: Option<PathBuf>,
    /// Remove nodes of the cluster that the inventory does not list (drain, reset the host, delete).
    #[arg(long)]
    pub prune: bool,
    /// Do not ask for confirmation (of --prune).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// When the cluster runs another k8s version, `up` hands the rollout to
    /// the cluster's upgrade controller: seconds a restarted node may take to
    /// be Ready on the new binary before it rolls back.
    #[arg(long, default_value_t = 300)]
    pub ready_timeout: u64,
    /// Seconds a node must stay healthy on the new binary before it commits.
    #[arg(long, default_value_t = 30)]
    pub soak: u64,
    /// Drain each node before its swap: auto (when the kubelet's minor
    /// version changes), always, or cordon-only.
    #[arg(long, default_value = "auto", value_parser = ["auto", "always", "cordon-only"])]
    pub drain: String,
    /// Bring the cluster back from a `k8s backup` archive: restored on the
    /// first server, which must hold no cluster data (`k8s reset -i` first);
    /// the other hosts join it (docs/backup.md).
    #[arg(long, value_name = "FILE")]
    pub restore: Option<PathBuf>,
    /// The k8s binary for hosts of another architecture than this one's
    /// (e.g. dist/k8s-arm64 from `make dist ARCH=arm64`; repeatable, the
    /// architecture is read from the file); like the inventory's `cluster.binaries`.
    #[arg(long, value_name = "FILE")]
    pub binary: Vec<PathBuf>,
}

#[derive(Args)]
pub struct CheckConfigArgs {
    /// What the host is to run: server (its ports too) or agent.
    #[arg(long, value_enum, default_value = "server")]
    pub role: CheckRole,
    /// An HA server: etcd's ports 2379 and 2380 must be free too.
    #[arg(long)]
    pub etcd: bool,
    /// The pod network the cluster uses (vxlan needs the kernel's vxlan).
    #[arg(long, value_enum, default_value = "host-gw")]
    pub pod_network: crate::host::config::PodNetwork,
    /// text: one line per check; json: an array of objects.
    #[arg(long, value_enum, default_value = "text")]
    pub output: OutputFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckRole {
    Server,
    Agent,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Args)]
pub struct DatastoreArgs {
    /// Directory holding the database file.
    #[arg(long, default_value = "/var/lib/k8s/datastore")]
    pub data_dir: PathBuf,
    /// unix:///path.sock, http://HOST:PORT or https://HOST:PORT; repeatable.
    #[arg(long = "listen", required = true)]
    pub listen: Vec<datastore::Listen>,
    /// Server certificate (PEM) for https listeners.
    #[arg(long)]
    pub cert_file: Option<PathBuf>,
    /// Key of --cert-file (PEM).
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// CA (PEM) that client certificates must chain to; enables client auth.
    #[arg(long)]
    pub trusted_ca_file: Option<PathBuf>,
    /// How often idle watchers that asked for progress hear it (etcd: 10m).
    #[arg(long, default_value = "10m", value_parser = crate::duration::parse)]
    pub watch_progress_notify_interval: std::time::Duration,
    /// The space quota in bytes: past it the NOSPACE alarm refuses writes
    /// that add data (etcd's flag; 0: 2 GiB, negative: no quota).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub quota_backend_bytes: i64,
    /// Watchers open at once; more are refused (created, then canceled).
    #[arg(long, default_value_t = datastore::DEFAULT_MAX_WATCHERS)]
    pub max_watchers: usize,
    /// The most a Range answer may hold, in bytes; larger ones must be paged.
    #[arg(long, default_value_t = datastore::DEFAULT_MAX_RESPONSE_BYTES)]
    pub max_response_bytes: usize,
}

impl DatastoreArgs {
    pub fn into_config(self) -> datastore::Config {
        datastore::Config {
            data_dir: self.data_dir,
            listen: self.listen,
            cert_file: self.cert_file,
            key_file: self.key_file,
            trusted_ca_file: self.trusted_ca_file,
            tuning: datastore::Tuning {
                progress_notify_interval: self.watch_progress_notify_interval,
                quota_bytes: self.quota_backend_bytes,
                max_watchers: self.max_watchers,
                max_response_bytes: self.max_response_bytes,
            },
        }
    }
}

/// A token's lifetime: a duration (`24h`, `1h30m`: [`crate::duration`]), or 0 for none.
fn parse_ttl(s: &str) -> Result<Option<std::time::Duration>, String> {
    if s == "0" { Ok(None) } else { crate::duration::parse(s).map(Some) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ttls() {
        assert_eq!(super::parse_ttl("0").unwrap(), None);
        assert_eq!(super::parse_ttl("24h").unwrap().map(|d| d.as_secs()), Some(86_400));
        assert!(super::parse_ttl("10").unwrap_err().contains("no unit"));
    }

    use clap::Parser;

    fn agent(args: &[&str]) -> Result<crate::host::config::AgentOptions, clap::Error> {
        match super::Cli::try_parse_from([&["k8s", "agent"], args].concat())?.command {
            super::Command::Agent(a) => Ok(a.options),
            _ => panic!("not agent"),
        }
    }

    // The only test that sets these variables (tests run in parallel threads
    // of one process), and the only one that reads what they set.
    #[test]
    fn join_settings_from_flags_or_the_environment() {
        use crate::host::config::{over, AgentOptions, Secret, TokenSource};
        let pick = |o: AgentOptions| TokenSource::pick(o.token, o.token_file);
        std::env::set_var("K8S_URL", "https://env:9345");
        std::env::set_var("K8S_TOKEN", "K10env");
        let o = agent(&[]).unwrap();
        assert_eq!(o.server.as_deref(), Some("https://env:9345"));
        assert_eq!(pick(o).unwrap(), Some(TokenSource::Given(Secret::from("K10env".to_string()))));
        let o = agent(&["--server", "https://flag:9345", "--token", "K10flag"]).unwrap();
        assert_eq!(o.server.as_deref(), Some("https://flag:9345"), "a flag beats its variable");
        assert_eq!(pick(o).unwrap(), Some(TokenSource::Given(Secret::from("K10flag".to_string()))));
        let file = AgentOptions { token_file: Some("/etc/k8s/token".into()), ..Default::default() };
        assert!(matches!(pick(over(agent(&[]).unwrap(), file)), Ok(Some(TokenSource::Given(_)))), "K8S_TOKEN beats the file's token-file");
        let err = pick(agent(&["--token-file", "/t"]).unwrap()).unwrap_err().to_string();
        assert!(err.contains("token and token-file") && !err.contains("K10env"), "{err}");
        std::env::remove_var("K8S_TOKEN");
        std::env::set_var("K8S_TOKEN_FILE", "/env/token");
        assert_eq!(pick(agent(&[]).unwrap()).unwrap(), Some(TokenSource::File("/env/token".into())));
        for name in ["K8S_URL", "K8S_TOKEN_FILE"] {
            std::env::remove_var(name);
        }
        let o = agent(&[]).unwrap();
        assert!(o.server.is_none() && pick(o).unwrap().is_none());
    }

    #[test]
    fn write_kubeconfig_mode_and_aliases_on_the_command_line() {
        let server = |args: &[&str]| match super::Cli::try_parse_from([&["k8s", "server"], args].concat()).map(|c| c.command) {
            Ok(super::Command::Server(s)) => Ok(s.options),
            Ok(_) => panic!("not server"),
            Err(e) => Err(e.to_string()),
        };
        let mode = server(&["--write-kubeconfig-mode", "0644"]).unwrap().write_kubeconfig_mode;
        assert_eq!(mode.map(|m| m.0), Some(0o644));
        let err = server(&["--write-kubeconfig-mode", "0844"]).unwrap_err();
        assert!(err.contains("--write-kubeconfig-mode") && err.contains("not a file mode"), "{err}");
        assert!(server(&["--control-plane-only"]).unwrap().disable_agent, "the inventory's name");
    }

    #[test]
    fn created_tokens_expire_in_a_day_unless_told() {
        let ttl = |args: &[&str]| match super::Cli::try_parse_from(args).unwrap().command {
            super::Command::Token(super::TokenCommand::Create { ttl, .. }) => ttl.map(|d| d.as_secs()),
            _ => panic!("not token create"),
        };
        assert_eq!(ttl(&["k8s", "token", "create"]), Some(86_400));
        assert_eq!(ttl(&["k8s", "token", "create", "--ttl", "30m"]), Some(1_800));
        assert_eq!(ttl(&["k8s", "token", "create", "--ttl", "0"]), None);
        assert_eq!(ttl(&["k8s", "token", "create", "--ttl", "1h30m"]), Some(5_400), "the inventory's syntax");
    }
}
