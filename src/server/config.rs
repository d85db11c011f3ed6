//! `k8s server` settings: `/etc/k8s/config.yaml` (every key is also a
//! flag, with the flag's name), then flags, which win; then defaults.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use serde::Deserialize;

use crate::node::PodNetwork;

pub const DEFAULT_CONFIG: &str = "/etc/k8s/config.yaml";

/// Every setting, as a flag and as a config-file key. All optional here;
/// `resolve` applies the defaults.
#[derive(Args, Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Options {
    /// Where state lives [default: /var/lib/k8s].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Node name [default: the hostname].
    #[arg(long)]
    pub node_name: Option<String>,
    /// The node's IP [default: the address of the default-route interface].
    #[arg(long)]
    pub node_ip: Option<IpAddr>,
    /// Address the API server listens on [default: 0.0.0.0].
    #[arg(long)]
    pub bind_address: Option<IpAddr>,
    /// API server port [default: 6443].
    #[arg(long)]
    pub https_listen_port: Option<u16>,
    /// Port of the join endpoint agents and servers join through [default: 9345].
    #[arg(long)]
    pub join_port: Option<u16>,
    /// Address advertised to the cluster [default: the node IP].
    #[arg(long)]
    pub advertise_address: Option<IpAddr>,
    /// Extra names or IPs for the API server certificate; repeatable.
    #[arg(long)]
    #[serde(default)]
    pub tls_san: Vec<String>,
    /// Pod network [default: 10.42.0.0/16].
    #[arg(long)]
    pub cluster_cidr: Option<String>,
    /// Service network [default: 10.43.0.0/16].
    #[arg(long)]
    pub service_cidr: Option<String>,
    /// Cluster DNS service IP [default: 10.43.0.10].
    #[arg(long)]
    pub cluster_dns: Option<IpAddr>,
    /// Cluster domain [default: cluster.local].
    #[arg(long)]
    pub cluster_domain: Option<String>,
    /// How pods reach pods on other nodes: host-gw (routes via the node IPs;
    /// nodes on one L2 segment) or vxlan (an overlay on UDP 8472; nodes in
    /// different networks). The whole cluster's; agents receive it on joining [default: host-gw].
    #[arg(long, value_enum)]
    pub pod_network: Option<PodNetwork>,
    /// Run the control plane only, without a node.
    #[arg(long)]
    #[serde(default)]
    pub disable_agent: bool,
    /// Use components from this directory instead of the attached payload.
    #[arg(long)]
    pub components_dir: Option<PathBuf>,
    /// Where to write the admin kubeconfig [default: /etc/k8s/admin.kubeconfig].
    #[arg(long)]
    pub write_kubeconfig: Option<PathBuf>,
    /// Extra kube-apiserver flags (`name=value`); repeatable.
    #[arg(long)]
    #[serde(default)]
    pub kube_apiserver_arg: Vec<String>,
    /// Extra kubelet flags (`name=value`); repeatable.
    #[arg(long)]
    #[serde(default)]
    pub kubelet_arg: Vec<String>,
    /// Node labels at registration (`key=value`); repeatable.
    #[arg(long)]
    #[serde(default)]
    pub node_label: Vec<String>,
    /// Node taints at registration (`key=value:Effect`); repeatable.
    #[arg(long)]
    #[serde(default)]
    pub node_taint: Vec<String>,
    /// Start a new HA cluster: the datastore is etcd (the carried one),
    /// which other servers join.
    #[arg(long)]
    #[serde(default)]
    pub cluster_init: bool,
    /// Join the HA cluster of this server's join endpoint: https://HOST:9345.
    #[arg(long)]
    pub server: Option<String>,
    /// File holding a server join token (from `k8s token create --role server`).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
}

/// Where the cluster's state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datastore {
    /// SQLite behind our etcd API: one server.
    Sqlite,
    /// The carried etcd, started as a new cluster (`cluster-init`).
    EtcdInit,
    /// The carried etcd, joining the cluster of `server` with the token in `token_file`.
    EtcdJoin { server: String, token_file: PathBuf },
}

/// Settings with every default applied and checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub node_name: String,
    pub node_ip: IpAddr,
    pub bind_address: IpAddr,
    pub port: u16,
    pub join_port: u16,
    pub advertise_address: IpAddr,
    pub tls_san: Vec<String>,
    pub cluster_cidr: String,
    pub service_cidr: String,
    pub cluster_dns: IpAddr,
    pub cluster_domain: String,
    pub pod_network: PodNetwork,
    pub disable_agent: bool,
    pub components_dir: Option<PathBuf>,
    pub admin_kubeconfig: PathBuf,
    pub kube_apiserver_arg: Vec<String>,
    pub kubelet_arg: Vec<String>,
    pub datastore: Datastore,
}

impl Options {
    /// `self` (flags) wins over `file`.
    pub fn over(self, file: Options) -> Options {
        fn pick<T>(flag: Option<T>, file: Option<T>) -> Option<T> {
            flag.or(file)
        }
        fn list(flag: Vec<String>, file: Vec<String>) -> Vec<String> {
            if flag.is_empty() { file } else { flag }
        }
        Options {
            data_dir: pick(self.data_dir, file.data_dir),
            node_name: pick(self.node_name, file.node_name),
            node_ip: pick(self.node_ip, file.node_ip),
            bind_address: pick(self.bind_address, file.bind_address),
            https_listen_port: pick(self.https_listen_port, file.https_listen_port),
            join_port: pick(self.join_port, file.join_port),
            advertise_address: pick(self.advertise_address, file.advertise_address),
            tls_san: list(self.tls_san, file.tls_san),
            cluster_cidr: pick(self.cluster_cidr, file.cluster_cidr),
            service_cidr: pick(self.service_cidr, file.service_cidr),
            cluster_dns: pick(self.cluster_dns, file.cluster_dns),
            cluster_domain: pick(self.cluster_domain, file.cluster_domain),
            pod_network: pick(self.pod_network, file.pod_network),
            disable_agent: self.disable_agent || file.disable_agent,
            components_dir: pick(self.components_dir, file.components_dir),
            write_kubeconfig: pick(self.write_kubeconfig, file.write_kubeconfig),
            kube_apiserver_arg: list(self.kube_apiserver_arg, file.kube_apiserver_arg),
            kubelet_arg: list(self.kubelet_arg, file.kubelet_arg),
            node_label: list(self.node_label, file.node_label),
            node_taint: list(self.node_taint, file.node_taint),
            cluster_init: self.cluster_init || file.cluster_init,
            server: pick(self.server, file.server),
            token_file: pick(self.token_file, file.token_file),
        }
    }

    pub fn resolve(self) -> anyhow::Result<Config> {
        let node_ip = match self.node_ip {
            Some(ip) => ip,
            None => default_route_ip().context("cannot find this host's IP; pass --node-ip")?,
        };
        let cluster_cidr = self.cluster_cidr.unwrap_or_else(|| "10.42.0.0/16".into());
        let service_cidr = self.service_cidr.unwrap_or_else(|| "10.43.0.0/16".into());
        for (flag, cidr) in [("cluster-cidr", &cluster_cidr), ("service-cidr", &service_cidr)] {
            parse_cidr(cidr).with_context(|| format!("{flag}: {cidr:?} is not a CIDR like 10.42.0.0/16"))?;
        }
        let advertise = self.advertise_address.unwrap_or(node_ip);
        if advertise.is_loopback() || advertise.is_unspecified() {
            bail!("the API server must advertise a routable address, not {advertise}; set node-ip or advertise-address");
        }
        for arg in self.kube_apiserver_arg.iter().chain(&self.kubelet_arg) {
            if !arg.contains('=') {
                bail!("extra component argument {arg:?} must look like name=value");
            }
        }
        let datastore = datastore_choice(self.cluster_init, self.server, self.token_file)?;
        let kubelet_arg = kubelet_registration_args(self.kubelet_arg, &self.node_label, &self.node_taint)?;
        Ok(Config {
            data_dir: self.data_dir.unwrap_or_else(|| "/var/lib/k8s".into()),
            node_name: match self.node_name {
                Some(n) => n,
                None => hostname()?,
            }
            .to_lowercase(),
            node_ip,
            bind_address: self.bind_address.unwrap_or(IpAddr::from([0, 0, 0, 0])),
            port: self.https_listen_port.unwrap_or(6443),
            join_port: self.join_port.unwrap_or(crate::join::DEFAULT_PORT),
            advertise_address: advertise,
            tls_san: self.tls_san,
            cluster_cidr,
            service_cidr,
            cluster_dns: self.cluster_dns.unwrap_or(IpAddr::from([10, 43, 0, 10])),
            cluster_domain: self.cluster_domain.unwrap_or_else(|| "cluster.local".into()),
            pod_network: self.pod_network.unwrap_or_default(),
            disable_agent: self.disable_agent,
            components_dir: self.components_dir,
            admin_kubeconfig: self.write_kubeconfig.unwrap_or_else(|| crate::kubectl::ADMIN_KUBECONFIG.into()),
            kube_apiserver_arg: self.kube_apiserver_arg,
            kubelet_arg,
            datastore,
        })
    }
}

fn datastore_choice(init: bool, server: Option<String>, token_file: Option<PathBuf>) -> anyhow::Result<Datastore> {
    match (init, server, token_file) {
        (true, Some(_), _) => bail!("cluster-init starts a new cluster and server joins an existing one; give one of them"),
        (true, None, _) => Ok(Datastore::EtcdInit),
        (false, Some(server), Some(token_file)) => Ok(Datastore::EtcdJoin { server, token_file }),
        (false, Some(_), None) => bail!("joining a server needs token-file (a server token from `k8s token create --role server` on a server)"),
        (false, None, _) => Ok(Datastore::Sqlite),
    }
}

/// `node-label`/`node-taint` become kubelet's registration flags, which
/// the agent shares (`k8s agent` has the same keys).
pub fn kubelet_registration_args(mut args: Vec<String>, labels: &[String], taints: &[String]) -> anyhow::Result<Vec<String>> {
    for l in labels {
        if !l.contains('=') {
            bail!("node-label {l:?} must look like key=value");
        }
    }
    for t in taints {
        let effect = t.rsplit_once(':').map(|(_, e)| e);
        if !matches!(effect, Some("NoSchedule" | "PreferNoSchedule" | "NoExecute")) {
            bail!("node-taint {t:?} must look like key[=value]:Effect, Effect one of NoSchedule, PreferNoSchedule, NoExecute");
        }
    }
    if !labels.is_empty() {
        args.push(format!("node-labels={}", labels.join(",")));
    }
    if !taints.is_empty() {
        args.push(format!("register-with-taints={}", taints.join(",")));
    }
    Ok(args)
}

impl Config {
    /// The first address of the service network: the `kubernetes` Service.
    pub fn api_service_ip(&self) -> IpAddr {
        let (net, _) = parse_cidr(&self.service_cidr).expect("checked in resolve");
        match net {
            IpAddr::V4(v4) => IpAddr::V4((u32::from(v4) + 1).into()),
            IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) + 1).into()),
        }
    }
}

/// Reads a config file whose keys are flag names; a missing default file
/// is not an error, a missing named one is.
pub fn load_file<T: serde::de::DeserializeOwned + Default>(path: &Path, explicit: bool) -> anyhow::Result<T> {
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

pub fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (ip, bits) = s.split_once('/')?;
    let ip: IpAddr = ip.parse().ok()?;
    let bits: u8 = bits.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((ip, bits))
}

pub fn hostname() -> anyhow::Result<String> {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname").context("reading the hostname")?;
    Ok(h.trim().to_string())
}

/// The source address the kernel picks for the default route (a UDP
/// "connect" sends nothing).
pub fn default_route_ip() -> anyhow::Result<IpAddr> {
    let sock = std::net::UdpSocket::bind("0.0.0.0:0")?;
    sock.connect("192.0.2.255:9").context("no default route")?;
    Ok(sock.local_addr()?.ip())
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
    fn flags_win_over_the_file() {
        let f = write("node-name: from-file\ncluster-dns: 10.43.0.20\ntls-san: [a.example]\n");
        let file = load_file::<Options>(f.path(), true).unwrap();
        let flags = Options { node_name: Some("from-flag".into()), node_ip: Some("10.0.0.5".parse().unwrap()), ..Default::default() };
        let c = flags.over(file).resolve().unwrap();
        assert_eq!(c.node_name, "from-flag");
        assert_eq!(c.cluster_dns.to_string(), "10.43.0.20");
        assert_eq!(c.tls_san, vec!["a.example"]);
        assert_eq!(c.api_service_ip().to_string(), "10.43.0.1");
        assert_eq!(c.port, 6443);
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_the_line() {
        let f = write("node-name: n1\nnode-nmae: typo\n");
        let err = load_file::<Options>(f.path(), true).unwrap_err().to_string();
        assert!(err.contains(":2:") && err.contains("node-nmae"), "{err}");
        let f = write("https-listen-port: lots\n");
        let err = load_file::<Options>(f.path(), true).unwrap_err().to_string();
        assert!(err.contains(":1:") && err.contains("https-listen-port"), "{err}");
    }

    #[test]
    fn pod_network_defaults_to_host_gw_and_reads_vxlan() {
        let ip = Some("10.0.0.5".parse().unwrap());
        assert_eq!(Options { node_ip: ip, ..Default::default() }.resolve().unwrap().pod_network, PodNetwork::HostGw);
        let f = write("pod-network: vxlan\n");
        let file = load_file::<Options>(f.path(), true).unwrap();
        assert_eq!(Options { node_ip: ip, ..Default::default() }.over(file).resolve().unwrap().pod_network, PodNetwork::Vxlan);
        let f = write("cluster-domain: example.org\npod-network: wireguard\n");
        let err = load_file::<Options>(f.path(), true).unwrap_err().to_string();
        assert!(err.contains(":2:") && err.contains("host-gw") && err.contains("vxlan"), "{err}");
    }

    #[test]
    fn missing_default_file_is_fine_but_a_named_one_is_not() {
        assert!(load_file::<Options>(Path::new("/nonexistent/config.yaml"), false).is_ok());
        assert!(load_file::<Options>(Path::new("/nonexistent/config.yaml"), true).is_err());
    }

    #[test]
    fn bad_cidr_is_refused() {
        let o = Options { cluster_cidr: Some("10.42.0.0".into()), node_ip: Some("10.0.0.5".parse().unwrap()), ..Default::default() };
        assert!(o.resolve().unwrap_err().to_string().contains("cluster-cidr"));
    }
}
