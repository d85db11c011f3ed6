//! The config file `/etc/k8s/config.yaml`: its keys are the flag names of
//! `k8s server` and `k8s agent`, so one struct per command is both its
//! flags (clap) and its file (serde). `k8s up` writes the file from the
//! same structs, so what it writes is what the host reads. Some flags also
//! come from the environment, as k3s' do (`K8S_URL`, `K8S_TOKEN`,
//! `K8S_TOKEN_FILE`, `K8S_DATA_DIR`), and count as the flag. [`Local`] is
//! what the other commands on the host (kubectl, status, reset, …) read
//! from the file.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// `k8s server`'s settings: flags, and keys of the config file (same
/// names). All optional here; the server applies the defaults.
#[derive(Args, Serialize, Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ServerOptions {
    /// Where state lives [default: /var/lib/k8s].
    #[arg(long, env = "K8S_DATA_DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Node name [default: the hostname].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// The node's IP [default: the address of the default-route interface].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_ip: Option<IpAddr>,
    /// Address the API server listens on [default: 0.0.0.0].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind_address: Option<IpAddr>,
    /// API server port [default: 6443].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub https_listen_port: Option<u16>,
    /// Port of the join endpoint agents and servers join through [default: 9345].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join_port: Option<u16>,
    /// Address advertised to the cluster [default: the node IP].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertise_address: Option<IpAddr>,
    /// Extra names or IPs for the API server certificate; repeatable.
    #[arg(long)]
    #[serde(default)]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tls_san: Vec<String>,
    /// Pod network [default: 10.42.0.0/16].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_cidr: Option<String>,
    /// Service network [default: 10.43.0.0/16].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_cidr: Option<String>,
    /// Cluster DNS service IP [default: 10.43.0.10].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_dns: Option<IpAddr>,
    /// Cluster domain [default: cluster.local].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_domain: Option<String>,
    /// How pods reach pods on other nodes: host-gw (routes via the node IPs;
    /// nodes on one L2 segment) or vxlan (an overlay on UDP 8472; nodes in
    /// different networks). The whole cluster's; agents receive it on joining [default: host-gw].
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_network: Option<PodNetwork>,
    /// Hardening: standard, or cis (the CIS Kubernetes Benchmark's settings:
    /// PodSecurity restricted outside kube-system, EventRateLimit, kubelet
    /// protectKernelDefaults, strong TLS ciphers; see docs/security.md). The
    /// whole cluster's; agents receive it on joining [default: standard].
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
    /// Run the control plane only, without a node (also: control-plane-only,
    /// the inventory's name).
    #[arg(long, alias = "control-plane-only")]
    #[serde(default, alias = "control-plane-only")]
    #[serde(skip_serializing_if = "is_false")]
    pub disable_agent: bool,
    /// Built-in addons not to deploy (repeatable, or comma-separated).
    /// Disabling one on a running cluster deletes its objects; give every
    /// server the same list.
    #[arg(long, value_enum, value_delimiter = ',')]
    #[serde(default)]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub disable: Vec<Addon>,
    /// Use components from this directory instead of the attached payload.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub components_dir: Option<PathBuf>,
    /// Where local-path volumes of this node go [default: <data-dir>/storage].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_local_storage_path: Option<PathBuf>,
    /// Where to write the admin kubeconfig [default: /etc/k8s/admin.kubeconfig].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_kubeconfig: Option<PathBuf>,
    /// The admin kubeconfig's mode, in octal as for chmod [default: 0600].
    /// It holds cluster-admin credentials: 0644 makes every user of this
    /// host a cluster admin (k3s' habit for a single-user machine).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_kubeconfig_mode: Option<FileMode>,
    /// Extra kube-apiserver flags (`name=value` or `--name=value`); repeatable.
    /// The logging flags (v, vmodule, logging-format, log-*) and feature-gates
    /// reach the controller-manager and scheduler too: the three share a process.
    #[arg(long)]
    #[serde(default)]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kube_apiserver_arg: Vec<String>,
    /// Extra kubelet flags (`name=value` or `--name=value`); repeatable.
    #[arg(long)]
    #[serde(default)]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kubelet_arg: Vec<String>,
    /// Node labels at registration (`key=value`); repeatable.
    #[arg(long)]
    #[serde(default)]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub node_label: Vec<String>,
    /// Node taints at registration (`key=value:Effect`); repeatable.
    #[arg(long)]
    #[serde(default)]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub node_taint: Vec<String>,
    /// Start a new HA cluster: the datastore is etcd (the carried one),
    /// which other servers join.
    #[arg(long)]
    #[serde(default)]
    #[serde(skip_serializing_if = "is_false")]
    pub cluster_init: bool,
    /// Join the HA cluster of this server's join endpoint: https://HOST:9345.
    #[arg(long, env = "K8S_URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// File holding a server join token (from `k8s token create --role server`).
    #[arg(long, env = "K8S_TOKEN_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// A server join token itself, instead of token-file. Given as a flag
    /// it is visible to every user in `ps`: prefer token-file, or K8S_TOKEN
    /// in /etc/default/k8s-server (0600).
    #[arg(long, env = "K8S_TOKEN", hide_env_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// When to make a scheduled backup: cron (five fields, or six with
    /// seconds first), or off [default: "0 */12 * * *", every 12 hours].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_schedule: Option<String>,
    /// How many scheduled backups to keep [default: 5].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_retention: Option<usize>,
    /// Where backups go [default: <data-dir>/backups]; copy them off the host too.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_dir: Option<PathBuf>,
}

/// `k8s agent`'s settings: flags, and keys of the config file (same names).
#[derive(Args, Serialize, Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AgentOptions {
    /// The join endpoint of a server: https://HOST:9345.
    #[arg(long, env = "K8S_URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// File holding the join token (from the server's `k8s token create --role agent`).
    #[arg(long, env = "K8S_TOKEN_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// The join token itself, instead of token-file. Given as a flag it is
    /// visible to every user in `ps`: prefer token-file, or K8S_TOKEN in
    /// /etc/default/k8s-agent (0600).
    #[arg(long, env = "K8S_TOKEN", hide_env_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// Where state lives [default: /var/lib/k8s].
    #[arg(long, env = "K8S_DATA_DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Node name [default: the hostname].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// The node's IP [default: the address of the default-route interface].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_ip: Option<IpAddr>,
    /// Use components from this directory instead of the attached payload.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub components_dir: Option<PathBuf>,
    /// Where local-path volumes of this node go [default: <data-dir>/storage].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_local_storage_path: Option<PathBuf>,
    /// Extra kubelet flags (`name=value` or `--name=value`); repeatable.
    #[arg(long)]
    #[serde(default)]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kubelet_arg: Vec<String>,
    /// Node labels at registration (`key=value`); repeatable.
    #[arg(long)]
    #[serde(default)]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub node_label: Vec<String>,
    /// Node taints at registration (`key=value:Effect`); repeatable.
    #[arg(long)]
    #[serde(default)]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub node_taint: Vec<String>,
}

/// How pods reach pods on other nodes: one setting for the whole cluster
/// (`pod-network`), which agents receive when they join.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum PodNetwork {
    /// A route to each node's pod CIDR via its node IP: the nodes share an
    /// L2 segment.
    #[default]
    HostGw,
    /// A VXLAN overlay (UDP 8472) between the node IPs: the nodes need only
    /// reach each other over IP.
    Vxlan,
}

impl fmt::Display for PodNetwork {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            PodNetwork::HostGw => "host-gw",
            PodNetwork::Vxlan => "vxlan",
        })
    }
}

/// A built-in addon: what servers deploy through the manifests directory
/// unless `disable` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Addon {
    /// Cluster DNS (CoreDNS at cluster-dns); disable it to run your own.
    Coredns,
    /// LoadBalancer Services on the nodes' addresses; disable it for
    /// another load balancer implementation (MetalLB, a cloud's).
    Servicelb,
    /// The default StorageClass `local-path`: volumes in a directory of
    /// their pod's node.
    LocalStorage,
    /// NetworkPolicies enforced by every node; disable it for another
    /// implementation (a CNI plugin's).
    NetworkPolicy,
    /// metrics-server: CPU and memory of nodes and pods (`kubectl top`,
    /// HorizontalPodAutoscalers); disable it to run your own.
    MetricsServer,
}

/// How hardened the cluster is: one setting for the whole cluster
/// (`profile`), which agents receive when they join.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// Secure defaults that run any workload (PodSecurity warns, does not enforce).
    #[default]
    Standard,
    /// The CIS Kubernetes Benchmark's settings on top.
    Cis,
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Profile::Standard => "standard",
            Profile::Cis => "cis",
        })
    }
}

/// A value never printed: the join token (`token`). Debug output of the
/// options, and so any log of them, shows a placeholder.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// Where a joining node's token is: given itself (`token`, K8S_TOKEN) or
/// in a file (`token-file`, K8S_TOKEN_FILE).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenSource {
    Given(Secret),
    File(PathBuf),
}

impl TokenSource {
    /// The one source the options name, if any; both at once is an error
    /// rather than a guess at which one was meant.
    pub fn pick(token: Option<Secret>, token_file: Option<PathBuf>) -> anyhow::Result<Option<TokenSource>> {
        match (token, token_file) {
            (Some(_), Some(file)) => anyhow::bail!(
                "both token and token-file are given (token-file {}); give one: token (--token, K8S_TOKEN) or token-file (--token-file, K8S_TOKEN_FILE)",
                file.display()
            ),
            (Some(token), None) => Ok(Some(TokenSource::Given(token))),
            (None, Some(file)) => Ok(Some(TokenSource::File(file))),
            (None, None) => Ok(None),
        }
    }

    /// The token's text.
    pub fn read(&self) -> anyhow::Result<String> {
        use anyhow::Context;
        match self {
            TokenSource::Given(token) => Ok(token.expose().to_string()),
            TokenSource::File(file) => std::fs::read_to_string(file).with_context(|| format!("cannot read the token file {}", file.display())),
        }
    }
}

/// Names the source, never the token: what errors about it say.
impl fmt::Display for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            TokenSource::Given(_) => f.write_str("the token given (--token, K8S_TOKEN or the config key token)"),
            TokenSource::File(file) => write!(f, "{}", file.display()),
        }
    }
}

/// A file's permission bits, written in octal as for chmod: `0644`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct FileMode(pub u32);

impl std::str::FromStr for FileMode {
    type Err = String;

    fn from_str(s: &str) -> Result<FileMode, String> {
        let digits = s.strip_prefix("0o").unwrap_or(s);
        let octal = !digits.is_empty() && digits.bytes().all(|b| (b'0'..=b'7').contains(&b));
        match u32::from_str_radix(digits, 8) {
            Ok(mode) if octal && mode <= 0o777 => Ok(FileMode(mode)),
            _ => Err(format!("{s:?} is not a file mode: octal as for chmod, at most 0777, like 0600 or 0644")),
        }
    }
}

/// Read as the text written: YAML makes an unquoted 644 the number 644,
/// and 0o644 the number 420, which would lose what was meant.
impl<'de> Deserialize<'de> for FileMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<FileMode, D::Error> {
        struct Octal;
        impl serde::de::Visitor<'_> for Octal {
            type Value = FileMode;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a file mode in octal, like 0644")
            }

            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<FileMode, E> {
                s.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(Octal)
    }
}

impl From<FileMode> for String {
    fn from(m: FileMode) -> String {
        format!("{:04o}", m.0)
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Keys that say one thing two ways.
const ONE_SETTING: [[&str; 2]; 1] = [["token", "token-file"]];

/// Extra flags for a component (`kube-apiserver-arg`, `kubelet-arg`), each
/// `name=value`; written `--name=value`, as the component's own docs spell
/// it, it is taken the same (as k3s does), rather than passed on as
/// `----name` for the component to refuse at start.
pub fn extra_args(option: &str, args: Vec<String>) -> anyhow::Result<Vec<String>> {
    args.into_iter()
        .map(|arg| {
            let bare = arg.trim_start_matches('-');
            match bare.split_once('=') {
                Some((name, _)) if !name.is_empty() => Ok(bare.to_string()),
                _ => anyhow::bail!("{option} {arg:?} must look like name=value (e.g. {option}: [\"v=2\"])"),
            }
        })
        .collect()
}

/// Flags (and their environment variables) win over the file: every key
/// the flags set (a value, a non-empty list, a true switch) replaces the
/// file's. Either key of a pair in [`ONE_SETTING`] replaces both: the
/// `token-file` `k8s up` wrote is no reason to refuse a token given by hand.
pub fn over<T: Serialize + DeserializeOwned>(flags: T, file: T) -> T {
    use serde_yaml::Value;
    let mapping = |t: &T| match serde_yaml::to_value(t).expect("options serialize") {
        Value::Mapping(m) => m,
        _ => unreachable!("options serialize to a mapping"),
    };
    let (flags, mut merged) = (mapping(&flags), mapping(&file));
    for keys in ONE_SETTING {
        if keys.iter().any(|k| flags.contains_key(*k)) {
            for k in keys {
                merged.remove(k);
            }
        }
    }
    merged.extend(flags);
    serde_yaml::from_value(Value::Mapping(merged)).expect("merged options deserialize")
}

/// The data dir of every command: the flag (or K8S_DATA_DIR), else the
/// config file's `data-dir`, else /var/lib/k8s.
pub fn data_dir(flag: Option<PathBuf>, file: Option<PathBuf>) -> PathBuf {
    flag.or(file).unwrap_or_else(|| super::paths::DATA_DIR.into())
}

/// What the commands run beside a server or agent (kubectl, ctr, status,
/// token, certs, reset, …) take from its config file: where its data and
/// admin kubeconfig are.
#[derive(Debug, Clone, PartialEq)]
pub struct Local {
    pub data_dir: PathBuf,
    pub admin_kubeconfig: PathBuf,
}

/// The keys [`Local`] reads; others are left alone, so a typo elsewhere in
/// the file does not stop `k8s reset` or `k8s kubectl`.
#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct LocalKeys {
    data_dir: Option<PathBuf>,
    write_kubeconfig: Option<PathBuf>,
}

impl Local {
    /// From /etc/k8s/config.yaml, with `data_dir` from a flag winning.
    pub fn resolve(data_dir: Option<PathBuf>) -> anyhow::Result<Local> {
        Local::from_file(data_dir, Path::new(super::paths::CONFIG))
    }

    fn from_file(flag: Option<PathBuf>, config: &Path) -> anyhow::Result<Local> {
        // The file is root's (0600): a user's `k8s kubectl`, reading a
        // kubeconfig written 0644, goes on with the defaults.
        let unreadable = std::fs::File::open(config).is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied);
        let keys: LocalKeys = if unreadable { LocalKeys::default() } else { load_file(config, false)? };
        Ok(Local {
            data_dir: data_dir(flag, keys.data_dir),
            admin_kubeconfig: keys.write_kubeconfig.unwrap_or_else(|| super::paths::ADMIN_KUBECONFIG.into()),
        })
    }
}

/// The config file named with --config, else the default one if present.
pub fn load<T: DeserializeOwned + Default>(named: Option<&Path>) -> anyhow::Result<T> {
    match named {
        Some(path) => load_file(path, true),
        None => load_file(Path::new(super::paths::CONFIG), false),
    }
}

/// Reads a config file whose keys are flag names; a missing default file
/// is not an error, a missing named one is.
pub fn load_file<T: DeserializeOwned + Default>(path: &Path, explicit: bool) -> anyhow::Result<T> {
    use anyhow::Context;
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => return Ok(T::default()),
        Err(e) => return Err(e).with_context(|| format!("cannot read the config file {}", path.display())),
    };
    if text.trim().is_empty() {
        return Ok(T::default());
    }
    serde_yaml::from_str(&text).map_err(|e| {
        anyhow::anyhow!("{}: {e}\n(keys are the flag names of `k8s server --help` / `k8s agent --help`, e.g. `node-name: n1`)", location(path, &e))
    })
}

fn location(path: &Path, e: &serde_yaml::Error) -> String {
    match e.location() {
        Some(l) => format!("{}:{}:{}", path.display(), l.line(), l.column()),
        None => path.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn extra_args_take_the_components_own_spelling_too() {
        let given = vec!["v=2".to_string(), "--profiling=true".into(), "-a=b=c".into()];
        assert_eq!(extra_args("kube-apiserver-arg", given).unwrap(), ["v=2", "profiling=true", "a=b=c"]);
        for bad in ["profiling", "--profiling", "=true", "--=x"] {
            let err = extra_args("kubelet-arg", vec![bad.into()]).unwrap_err().to_string();
            assert!(err.contains("kubelet-arg") && err.contains("name=value"), "{bad}: {err}");
        }
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_the_line() {
        let f = write("node-name: n1\nnode-nmae: typo\n");
        let err = load_file::<ServerOptions>(f.path(), true).unwrap_err().to_string();
        assert!(err.contains(":2:") && err.contains("node-nmae"), "{err}");
        let f = write("https-listen-port: lots\n");
        let err = load_file::<ServerOptions>(f.path(), true).unwrap_err().to_string();
        assert!(err.contains(":1:") && err.contains("https-listen-port"), "{err}");
        let f = write("cluster-domain: example.org\npod-network: wireguard\n");
        let err = load_file::<ServerOptions>(f.path(), true).unwrap_err().to_string();
        assert!(err.contains(":2:") && err.contains("host-gw") && err.contains("vxlan"), "{err}");
        let f = write("server: https://s:9345\ncluster-init: true\n");
        let err = load_file::<AgentOptions>(f.path(), true).unwrap_err().to_string();
        assert!(err.contains(":2:") && err.contains("cluster-init"), "an agent has no cluster-init: {err}");
    }

    #[test]
    fn missing_default_file_is_fine_but_a_named_one_is_not() {
        assert!(load_file::<ServerOptions>(Path::new("/nonexistent/config.yaml"), false).is_ok());
        assert!(load_file::<ServerOptions>(Path::new("/nonexistent/config.yaml"), true).is_err());
    }

    #[test]
    fn a_flag_for_token_or_token_file_replaces_both_of_the_file() {
        let given = |t: &str| Some(Secret::from(t.to_string()));
        let file = AgentOptions { token_file: Some("/etc/k8s/token".into()), ..Default::default() };
        let merged = over(AgentOptions { token: given("K10x"), ..Default::default() }, file);
        assert_eq!(TokenSource::pick(merged.token, merged.token_file).unwrap(), Some(TokenSource::Given(Secret::from("K10x".to_string()))));
        let file = AgentOptions { token: given("K10x"), ..Default::default() };
        let merged = over(AgentOptions { token_file: Some("/t".into()), ..Default::default() }, file);
        assert_eq!(TokenSource::pick(merged.token, merged.token_file).unwrap(), Some(TokenSource::File("/t".into())));
        let file = AgentOptions { token: given("K10x"), ..Default::default() };
        let merged = over(AgentOptions { node_name: Some("n1".into()), ..Default::default() }, file);
        assert!(merged.token.is_some(), "other flags leave the file's token alone");
    }

    #[test]
    fn token_and_token_file_together_are_refused_naming_both() {
        let f = write("token: K10abc\ntoken-file: /etc/k8s/token\n");
        let o = load_file::<AgentOptions>(f.path(), true).unwrap();
        let err = TokenSource::pick(o.token, o.token_file).unwrap_err().to_string();
        assert!(err.contains("token and token-file") && err.contains("--token") && err.contains("K8S_TOKEN_FILE"), "{err}");
        assert!(!err.contains("K10abc"), "the token is never printed: {err}");
        assert_eq!(TokenSource::pick(None, None).unwrap(), None);
    }

    #[test]
    fn the_token_is_never_printed() {
        let o = ServerOptions { token: Some(Secret::from("K10secret".to_string())), ..Default::default() };
        assert!(!format!("{o:?}").contains("K10secret"));
        let source = TokenSource::pick(o.token, None).unwrap().unwrap();
        assert!(!format!("{source} {source:?}").contains("K10secret"));
        assert_eq!(source.read().unwrap(), "K10secret");
        let missing = TokenSource::File("/nonexistent/token".into()).read().unwrap_err().to_string();
        assert!(missing.contains("/nonexistent/token"), "{missing}");
    }

    #[test]
    fn file_modes_are_octal_as_for_chmod() {
        let mode = |s: &str| s.parse::<FileMode>().map(|m| m.0);
        assert_eq!(mode("0644"), Ok(0o644));
        assert_eq!(mode("600"), Ok(0o600));
        assert_eq!(mode("0o640"), Ok(0o640));
        for bad in ["", "0o", "0888", "1777", "+644", "-1", "rw-r--r--", "0x1a4"] {
            let err = mode(bad).unwrap_err();
            assert!(err.contains("not a file mode") && err.contains("0644"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn write_kubeconfig_mode_in_the_file() {
        // As written, though YAML would make 644 and 0o644 numbers (644, 420).
        for text in ["write-kubeconfig-mode: 0644\n", "write-kubeconfig-mode: \"0644\"\n", "write-kubeconfig-mode: 644\n", "write-kubeconfig-mode: 0o644\n"] {
            let o = load_file::<ServerOptions>(write(text).path(), true).unwrap();
            assert_eq!(o.write_kubeconfig_mode, Some(FileMode(0o644)), "{text}");
            let back = serde_yaml::to_string(&o).unwrap();
            assert_eq!(serde_yaml::from_str::<ServerOptions>(&back).unwrap(), o, "{back}");
        }
        let f = write("node-name: n1\nwrite-kubeconfig-mode: 0999\n");
        let err = load_file::<ServerOptions>(f.path(), true).unwrap_err().to_string();
        assert!(err.contains(":2:") && err.contains("write-kubeconfig-mode") && err.contains("not a file mode"), "{err}");
    }

    #[test]
    fn control_plane_only_is_disable_agent() {
        let f = write("control-plane-only: true\n");
        assert!(load_file::<ServerOptions>(f.path(), true).unwrap().disable_agent);
        let f = write("disable-agent: true\n");
        assert!(load_file::<ServerOptions>(f.path(), true).unwrap().disable_agent);
    }

    #[test]
    fn disabled_addons_from_the_file_and_the_flag() {
        let f = write("disable: [coredns]\n");
        assert_eq!(load_file::<ServerOptions>(f.path(), true).unwrap().disable, [Addon::Coredns]);
        let f = write("disable: [coredns, servicelb, metrics-server]\n");
        assert_eq!(load_file::<ServerOptions>(f.path(), true).unwrap().disable, [Addon::Coredns, Addon::Servicelb, Addon::MetricsServer]);
        let f = write("disable: [traefik]\n");
        let err = load_file::<ServerOptions>(f.path(), true).unwrap_err().to_string();
        assert!(err.contains("traefik") && err.contains("coredns"), "names the bad value and the known ones: {err}");
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            o: ServerOptions,
        }
        assert_eq!(Cli::try_parse_from(["k8s", "--disable", "coredns"]).unwrap().o.disable, [Addon::Coredns]);
        assert_eq!(Cli::try_parse_from(["k8s", "--disable", "coredns,servicelb"]).unwrap().o.disable, [Addon::Coredns, Addon::Servicelb]);
        assert_eq!(Cli::try_parse_from(["k8s", "--disable", "metrics-server"]).unwrap().o.disable, [Addon::MetricsServer]);
        assert!(Cli::try_parse_from(["k8s", "--disable", "traefik"]).is_err());
    }

    #[test]
    fn local_commands_find_the_data_dir_flag_then_file_then_default() {
        let f = write("data-dir: /srv/k8s\nwrite-kubeconfig: /root/.kube/config\nnode-nmae: a typo the server reports\n");
        let local = Local::from_file(None, f.path()).unwrap();
        assert_eq!(local, Local { data_dir: "/srv/k8s".into(), admin_kubeconfig: "/root/.kube/config".into() });
        assert_eq!(Local::from_file(Some("/flag".into()), f.path()).unwrap().data_dir, PathBuf::from("/flag"));
        let none = Local::from_file(None, Path::new("/nonexistent/config.yaml")).unwrap();
        assert_eq!(none, Local { data_dir: "/var/lib/k8s".into(), admin_kubeconfig: "/etc/k8s/admin.kubeconfig".into() });
        let f = write("data-dir: [a, b]\n");
        assert!(Local::from_file(None, f.path()).unwrap_err().to_string().contains("data-dir"), "a bad data-dir is not ignored");
    }

    #[test]
    fn what_is_written_is_what_is_read() {
        let o = AgentOptions {
            server: Some("https://10.0.0.1:9345".into()),
            token_file: Some("/etc/k8s/token".into()),
            node_label: vec!["a=b".into()],
            ..Default::default()
        };
        let text = serde_yaml::to_string(&o).unwrap();
        assert_eq!(text, "server: https://10.0.0.1:9345\ntoken-file: /etc/k8s/token\nnode-label:\n- a=b\n", "unset keys are left out");
        assert_eq!(serde_yaml::from_str::<AgentOptions>(&text).unwrap(), o);
    }
}
