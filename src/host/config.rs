//! The config file `/etc/k8s/config.yaml`: its keys are the flag names of
//! `k8s server` and `k8s agent`, so one struct per command is both its
//! flags (clap) and its file (serde). `k8s up` writes the file from the
//! same structs, so what it writes is what the host reads.

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
    #[arg(long)]
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
    /// Run the control plane only, without a node.
    #[arg(long)]
    #[serde(default)]
    #[serde(skip_serializing_if = "is_false")]
    pub disable_agent: bool,
    /// Use components from this directory instead of the attached payload.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub components_dir: Option<PathBuf>,
    /// Where to write the admin kubeconfig [default: /etc/k8s/admin.kubeconfig].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_kubeconfig: Option<PathBuf>,
    /// Extra kube-apiserver flags (`name=value`); repeatable.
    #[arg(long)]
    #[serde(default)]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kube_apiserver_arg: Vec<String>,
    /// Extra kubelet flags (`name=value`); repeatable.
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
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// File holding a server join token (from `k8s token create --role server`).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
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
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// File holding the join token (from the server's `k8s token create --role agent`).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// Where state lives [default: /var/lib/k8s].
    #[arg(long)]
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
    /// Extra kubelet flags (`name=value`); repeatable.
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

fn is_false(b: &bool) -> bool {
    !*b
}

/// Flags win over the file: every key the flags set (a value, a non-empty
/// list, a true switch) replaces the file's.
pub fn over<T: Serialize + DeserializeOwned>(flags: T, file: T) -> T {
    use serde_yaml::Value;
    let mapping = |t: &T| match serde_yaml::to_value(t).expect("options serialize") {
        Value::Mapping(m) => m,
        _ => unreachable!("options serialize to a mapping"),
    };
    let mut merged = mapping(&file);
    merged.extend(mapping(&flags));
    serde_yaml::from_value(Value::Mapping(merged)).expect("merged options deserialize")
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
