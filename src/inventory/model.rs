//! The typed inventory: what `hosts.yaml` says, with every default applied
//! and every value checked (see `docs/inventory.md`).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::syntax;
pub use super::syntax::Cidr;
pub use crate::host::config::{Addon, PodNetwork, Profile};
/// The inventory's `host-key-checking` and `sudo` are the SSH module's own settings.
pub use crate::ssh::{HostKeyChecking, Sudo};

pub const DEFAULT_CLUSTER_NAME: &str = "k8s";
pub const DEFAULT_API_PORT: u16 = 6443;
pub const DEFAULT_CLUSTER_CIDR: &str = "10.42.0.0/16";
pub const DEFAULT_SERVICE_CIDR: &str = "10.43.0.0/16";
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";
pub const DEFAULT_SSH_USER: &str = "root";
pub const DEFAULT_SSH_PORT: u16 = 22;
pub const DEFAULT_SSH_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_CONCURRENCY: usize = 5;
/// etcd recommends at most 7 members.
pub const MAX_SERVERS: usize = 7;

/// `cluster:`: settings of the whole cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    /// `[a-z0-9-]`; names the kubeconfig context.
    pub name: String,
    pub api: Api,
    /// Extra names/IPs for the API server certificate, as written.
    pub tls_san: Vec<String>,
    pub cluster_cidr: Cidr,
    pub service_cidr: Cidr,
    /// Explicit or the 10th address of the service network.
    pub cluster_dns: IpAddr,
    pub cluster_domain: String,
    /// How pods reach pods on other nodes (`pod-network`).
    pub pod_network: PodNetwork,
    /// How hardened the cluster is (`profile`: standard or cis).
    pub profile: Profile,
    /// Built-in addons the servers do not deploy (`disable`).
    pub disable: Vec<Addon>,
    /// Image archives for every host's images dir (`images`), as written:
    /// relative to the inventory's directory ([`Inventory::image_archives`]).
    pub images: Vec<String>,
    /// A registries.yaml for every host's `/etc/k8s/registries.yaml`
    /// (`registries`), as written ([`Inventory::registries_file`]).
    pub registries: Option<String>,
    /// The k8s binary for each architecture's hosts (`binaries`: arch → path
    /// as written, [`Inventory::binary_files`]); the running binary serves its own.
    pub binaries: Vec<(String, String)>,
    /// The `k8s` version to install; `None`: the running binary's.
    pub version: Option<String>,
}

/// `cluster.api:`: where clients and nodes reach the API server.
#[derive(Debug, Clone, PartialEq)]
pub struct Api {
    /// A load balancer or DNS name in front of the servers, or one server's
    /// address; `None`: the first server's address.
    pub address: Option<String>,
    /// The port clients use and servers listen on.
    pub port: u16,
}

/// `ssh:` at the top: settings for every host.
#[derive(Debug, Clone, PartialEq)]
pub struct SshDefaults {
    pub user: String,
    pub port: u16,
    /// Whether `user` / `port` were written (else `~/.ssh/config` may set them).
    pub user_written: bool,
    pub port_written: bool,
    /// As written (`~` is expanded at use, see [`SshSettings::identity_path`]);
    /// `None`: the ssh agent and the usual `~/.ssh/id_*` keys.
    pub identity_file: Option<String>,
    pub bastion: Option<Bastion>,
    pub host_key_checking: HostKeyChecking,
    pub sudo: Sudo,
    pub timeout: Duration,
    /// How many hosts are worked on at once.
    pub concurrency: usize,
    /// `None`: `~/.ssh/known_hosts`.
    pub known_hosts: Option<String>,
    /// The inventory's directory: relative paths are relative to it.
    pub base_dir: PathBuf,
}

impl Default for SshDefaults {
    fn default() -> Self {
        SshDefaults {
            user: DEFAULT_SSH_USER.into(),
            port: DEFAULT_SSH_PORT,
            user_written: false,
            port_written: false,
            identity_file: None,
            bastion: None,
            host_key_checking: HostKeyChecking::AcceptNew,
            sudo: Sudo::Auto,
            timeout: DEFAULT_SSH_TIMEOUT,
            concurrency: DEFAULT_CONCURRENCY,
            known_hosts: None,
            base_dir: PathBuf::from("."),
        }
    }
}

/// A jump host (like OpenSSH's `ProxyJump`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bastion {
    pub address: String,
    /// `None`: 22.
    pub port: Option<u16>,
    /// `None`: the same user as the host behind it.
    pub user: Option<String>,
    /// `None`: the same identity as the host behind it.
    pub identity_file: Option<String>,
}

impl Bastion {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(DEFAULT_SSH_PORT)
    }
}

impl fmt::Display for Bastion {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        if self.address.contains(':') {
            write!(f, "[{}]:{}", self.address, self.port())
        } else {
            write!(f, "{}:{}", self.address, self.port())
        }
    }
}

/// `hosts[i].ssh:`: per-host settings over the defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostSsh {
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_file: Option<String>,
    pub bastion: BastionChoice,
    pub host_key_checking: Option<HostKeyChecking>,
    pub sudo: Option<Sudo>,
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub enum BastionChoice {
    /// The default bastion, if any.
    #[default]
    Inherit,
    /// `bastion: none`: connect directly even if a default bastion is set.
    Direct,
    Via(Bastion),
}

/// Everything needed to open an SSH session to one host.
#[derive(Debug, Clone, PartialEq)]
pub struct SshSettings {
    pub address: String,
    pub port: u16,
    pub user: String,
    /// Whether `user` / `port` were written for the host or in the defaults;
    /// when not, `~/.ssh/config` may set them (else 22 and root).
    pub user_written: bool,
    pub port_written: bool,
    pub identity_file: Option<String>,
    /// With `identity_file` filled in from the host's, and `user` too when
    /// the host's was written.
    pub bastion: Option<Bastion>,
    /// `bastion: none` was written for the host: connect directly, even if
    /// `~/.ssh/config` names a ProxyJump.
    pub bastion_none: bool,
    pub host_key_checking: HostKeyChecking,
    pub sudo: Sudo,
    pub timeout: Duration,
    pub known_hosts: Option<String>,
    pub base_dir: PathBuf,
}

impl SshSettings {
    /// The identity file with `~` expanded from `$HOME` and a relative path
    /// taken from the inventory's directory.
    pub fn identity_path(&self) -> Result<Option<PathBuf>, String> {
        self.identity_file.as_deref().map(|p| expand_path(p, &self.base_dir)).transpose()
    }

    pub fn bastion_identity_path(&self) -> Result<Option<PathBuf>, String> {
        let file = self.bastion.as_ref().and_then(|b| b.identity_file.as_deref());
        file.map(|p| expand_path(p, &self.base_dir)).transpose()
    }

    /// known_hosts, expanded; `~/.ssh/known_hosts` by default.
    pub fn known_hosts_path(&self) -> Result<PathBuf, String> {
        expand_path(self.known_hosts.as_deref().unwrap_or("~/.ssh/known_hosts"), &self.base_dir)
    }
}

/// `~` → `$HOME`, `~/x` → `$HOME/x`; relative paths join `base`.
pub fn expand_path(raw: &str, base: &Path) -> Result<PathBuf, String> {
    let home = || std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
    if raw == "~" || raw.starts_with("~/") {
        let home = home().ok_or_else(|| format!("cannot expand {raw:?}: $HOME is not set"))?;
        return Ok(match raw.strip_prefix("~/") {
            Some(rest) => home.join(rest),
            None => home,
        });
    }
    let p = Path::new(raw);
    Ok(if p.is_absolute() { p.to_path_buf() } else { base.join(p) })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Control plane (and, unless `control-plane-only`, a node too).
    Server,
    /// A node only.
    Agent,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Role::Server => "server",
            Role::Agent => "agent",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taint {
    pub key: String,
    pub value: Option<String>,
    pub effect: TaintEffect,
}

impl fmt::Display for Taint {
    /// `key[=value]:Effect`, as kubelet's `--register-with-taints` takes it.
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.key)?;
        if let Some(v) = &self.value {
            write!(f, "={v}")?;
        }
        write!(f, ":{:?}", self.effect)
    }
}

/// One entry of `hosts:`.
#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    /// Where SSH connects: an IP or a DNS name.
    pub address: String,
    pub role: Role,
    /// The node name; `None`: the host's own hostname.
    pub name: Option<String>,
    /// A server that runs no node (k3s' `--disable-agent`).
    pub control_plane_only: bool,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    /// The node's IP; `None`: detected on the host.
    pub node_ip: Option<IpAddr>,
    pub ssh: HostSsh,
    /// Where the entry starts in the file (1-based), for messages.
    pub line: usize,
}

impl Host {
    /// The node name if set, else the address: for progress and messages.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.address)
    }

    pub fn is_server(&self) -> bool {
        self.role == Role::Server
    }

    /// Whether the host runs a kubelet (registers as a Node).
    pub fn is_node(&self) -> bool {
        !(self.role == Role::Server && self.control_plane_only)
    }

    /// Labels kubelet may set on its own Node (`--node-labels`).
    pub fn kubelet_labels(&self) -> BTreeMap<&str, &str> {
        self.labels.iter().filter(|(k, _)| syntax::kubelet_may_set(k)).map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    /// A host with nothing but its address and role (e.g. one found in the
    /// cluster but no longer listed).
    pub fn new(address: &str, role: Role) -> Host {
        Host {
            address: address.to_string(),
            role,
            name: None,
            control_plane_only: false,
            labels: BTreeMap::new(),
            taints: vec![],
            node_ip: None,
            ssh: HostSsh::default(),
            line: 0,
        }
    }

    /// The host's SSH settings over `defaults`.
    pub fn ssh_settings(&self, defaults: &SshDefaults) -> SshSettings {
        let s = &self.ssh;
        let user = s.user.clone().unwrap_or_else(|| defaults.user.clone());
        let user_written = s.user.is_some() || defaults.user_written;
        let identity_file = s.identity_file.clone().or_else(|| defaults.identity_file.clone());
        let bastion = match &s.bastion {
            BastionChoice::Inherit => defaults.bastion.clone(),
            BastionChoice::Direct => None,
            BastionChoice::Via(b) => Some(b.clone()),
        }
        .map(|b| Bastion {
            user: b.user.or_else(|| user_written.then(|| user.clone())),
            identity_file: b.identity_file.or_else(|| identity_file.clone()),
            ..b
        });
        SshSettings {
            address: self.address.clone(),
            port: s.port.unwrap_or(defaults.port),
            user,
            user_written,
            port_written: s.port.is_some() || defaults.port_written,
            identity_file,
            bastion,
            bastion_none: s.bastion == BastionChoice::Direct,
            host_key_checking: s.host_key_checking.unwrap_or(defaults.host_key_checking),
            sudo: s.sudo.unwrap_or(defaults.sudo),
            timeout: s.timeout.unwrap_or(defaults.timeout),
            known_hosts: defaults.known_hosts.clone(),
            base_dir: defaults.base_dir.clone(),
        }
    }
}

/// `options:`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Options {
    /// Accept 2, 4 or 6 servers.
    pub force_even_servers: bool,
}

/// How the control plane stores its state, from the number of servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One server; the datastore is SQLite.
    Single,
    /// Several servers, each an etcd member.
    Ha { servers: usize },
}

impl Mode {
    /// How many servers may fail with the API still working.
    pub fn tolerated_failures(&self) -> usize {
        match self {
            Mode::Single => 0,
            Mode::Ha { servers } => (servers - 1) / 2,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Mode::Single => f.write_str("single server (SQLite)"),
            Mode::Ha { servers } => {
                let n = self.tolerated_failures();
                write!(f, "HA: {servers} servers (etcd; tolerates {n} failed server{})", if n == 1 { "" } else { "s" })
            }
        }
    }
}
