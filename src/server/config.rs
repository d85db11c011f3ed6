//! `k8s server` settings resolved: the options of `/etc/k8s/config.yaml`
//! and the flags (see [`crate::host::config`]) with every default applied
//! and checked.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};

use crate::host::config::{Addon, PodNetwork, Profile, ServerOptions, TokenSource};
use crate::host::net::{next_address, parse_cidr};
use crate::host::paths;

/// Where the cluster's state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datastore {
    /// SQLite behind our etcd API: one server.
    Sqlite,
    /// The carried etcd, started as a new cluster (`cluster-init`).
    EtcdInit,
    /// The carried etcd, joining the cluster of `server` with `token`.
    EtcdJoin { server: String, token: TokenSource },
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
    pub profile: Profile,
    pub disable_agent: bool,
    /// Built-in addons not deployed.
    pub disable: Vec<Addon>,
    /// Where this node's local-path volumes go.
    pub storage_dir: PathBuf,
    pub components_dir: Option<PathBuf>,
    pub admin_kubeconfig: PathBuf,
    pub admin_kubeconfig_mode: u32,
    pub kube_apiserver_arg: Vec<String>,
    pub kubelet_arg: Vec<String>,
    pub datastore: Datastore,
    pub backups: crate::backup::Schedule,
}

impl Config {
    /// Applies the defaults to `o` and checks it.
    pub fn resolve(o: ServerOptions) -> anyhow::Result<Config> {
        let node_ip = crate::host::net::node_ip(o.node_ip)?;
        let cluster_cidr = o.cluster_cidr.unwrap_or_else(|| "10.42.0.0/16".into());
        let service_cidr = o.service_cidr.unwrap_or_else(|| "10.43.0.0/16".into());
        for (flag, cidr) in [("cluster-cidr", &cluster_cidr), ("service-cidr", &service_cidr)] {
            parse_cidr(cidr).with_context(|| format!("{flag}: {cidr:?} is not a CIDR like 10.42.0.0/16"))?;
        }
        let advertise = o.advertise_address.unwrap_or(node_ip);
        if advertise.is_loopback() || advertise.is_unspecified() {
            bail!("the API server must advertise a routable address, not {advertise}; set node-ip or advertise-address");
        }
        let kube_apiserver_arg = crate::host::config::extra_args("kube-apiserver-arg", o.kube_apiserver_arg)?;
        let datastore = datastore_choice(o.cluster_init, o.server, TokenSource::pick(o.token, o.token_file)?)?;
        // `o` holds the file's data-dir already, under the flag's.
        let data_dir = crate::host::config::data_dir(o.data_dir, None);
        let backup_dir = o.backup_dir.unwrap_or_else(|| crate::backup::default_dir(&data_dir));
        let storage_dir = o.default_local_storage_path.unwrap_or_else(|| crate::host::Layout::new(&data_dir).storage_dir());
        let backups = crate::backup::Schedule::parse(o.backup_schedule.as_deref(), o.backup_retention, backup_dir)?;
        let kubelet_arg = crate::node::kubelet_registration_args(o.kubelet_arg, &o.node_label, &o.node_taint)?;
        Ok(Config {
            data_dir,
            node_name: crate::host::net::node_name(o.node_name.as_deref())?,
            node_ip,
            bind_address: o.bind_address.unwrap_or(IpAddr::from([0, 0, 0, 0])),
            port: o.https_listen_port.unwrap_or(6443),
            join_port: o.join_port.unwrap_or(crate::join::DEFAULT_PORT),
            advertise_address: advertise,
            tls_san: o.tls_san,
            cluster_cidr,
            service_cidr,
            cluster_dns: o.cluster_dns.unwrap_or(IpAddr::from([10, 43, 0, 10])),
            cluster_domain: o.cluster_domain.unwrap_or_else(|| "cluster.local".into()),
            pod_network: o.pod_network.unwrap_or_default(),
            profile: o.profile.unwrap_or_default(),
            disable_agent: o.disable_agent,
            disable: o.disable,
            storage_dir,
            components_dir: o.components_dir,
            admin_kubeconfig: o.write_kubeconfig.unwrap_or_else(|| paths::ADMIN_KUBECONFIG.into()),
            admin_kubeconfig_mode: o.write_kubeconfig_mode.map_or(0o600, |m| m.0),
            kube_apiserver_arg,
            kubelet_arg,
            datastore,
            backups,
        })
    }
}

fn datastore_choice(init: bool, server: Option<String>, token: Option<TokenSource>) -> anyhow::Result<Datastore> {
    match (init, server, token) {
        (true, Some(_), _) => bail!("cluster-init starts a new cluster and server joins an existing one; give one of them"),
        (true, None, _) => Ok(Datastore::EtcdInit),
        (false, Some(server), Some(token)) => Ok(Datastore::EtcdJoin { server, token }),
        (false, Some(_), None) => bail!(
            "joining a server needs a server token (`k8s token create --role server` on a server): token-file (--token-file, K8S_TOKEN_FILE) or token (K8S_TOKEN, --token)"
        ),
        (false, None, _) => Ok(Datastore::Sqlite),
    }
}

impl Config {
    /// Under the cis profile the SQLite datastore's socket takes TLS with
    /// client certificates from etcd's CA: the CIS Benchmark wants the API
    /// server's datastore connection authenticated by certificates (1.2.23,
    /// 1.2.26), not only by the socket's file mode.
    pub fn datastore_tls(&self) -> bool {
        self.datastore == Datastore::Sqlite && self.profile == Profile::Cis
    }

    /// The first address of the service network: the `kubernetes` Service.
    pub fn api_service_ip(&self) -> IpAddr {
        let (net, _) = parse_cidr(&self.service_cidr).expect("checked in resolve");
        next_address(net)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::config::{load_file, over};

    fn write(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    fn ip() -> Option<IpAddr> {
        Some("10.0.0.5".parse().unwrap())
    }

    #[test]
    fn flags_win_over_the_file() {
        let f = write("node-name: from-file\ncluster-dns: 10.43.0.20\ntls-san: [a.example]\ndisable-agent: true\n");
        let file = load_file::<ServerOptions>(f.path(), true).unwrap();
        let flags = ServerOptions { node_name: Some("From-Flag".into()), node_ip: ip(), ..Default::default() };
        let c = Config::resolve(over(flags, file)).unwrap();
        assert_eq!(c.node_name, "from-flag");
        assert_eq!(c.cluster_dns.to_string(), "10.43.0.20");
        assert_eq!(c.tls_san, vec!["a.example"]);
        assert!(c.disable_agent, "a switch the file sets stays set");
        assert_eq!(c.api_service_ip().to_string(), "10.43.0.1");
        assert_eq!(c.port, 6443);
        let flags = ServerOptions { tls_san: vec!["b.example".into()], node_ip: ip(), ..Default::default() };
        let file = load_file::<ServerOptions>(f.path(), true).unwrap();
        assert_eq!(Config::resolve(over(flags, file)).unwrap().tls_san, vec!["b.example"], "a list the flags give replaces the file's");
    }

    #[test]
    fn pod_network_defaults_to_host_gw_and_reads_vxlan() {
        assert_eq!(Config::resolve(ServerOptions { node_ip: ip(), ..Default::default() }).unwrap().pod_network, PodNetwork::HostGw);
        let f = write("pod-network: vxlan\n");
        let file = load_file::<ServerOptions>(f.path(), true).unwrap();
        let o = over(ServerOptions { node_ip: ip(), ..Default::default() }, file);
        assert_eq!(Config::resolve(o).unwrap().pod_network, PodNetwork::Vxlan);
    }

    #[test]
    fn joining_takes_the_token_or_its_file() {
        use crate::host::config::Secret;
        let join = |token: Option<&str>, token_file: Option<&str>| {
            let o = ServerOptions {
                server: Some("https://s1:9345".into()),
                token: token.map(|t| Secret::from(t.to_string())),
                token_file: token_file.map(PathBuf::from),
                node_ip: ip(),
                ..Default::default()
            };
            Config::resolve(o).map(|c| c.datastore).map_err(|e| e.to_string())
        };
        let given = TokenSource::Given(Secret::from("K10x".to_string()));
        assert_eq!(join(Some("K10x"), None), Ok(Datastore::EtcdJoin { server: "https://s1:9345".into(), token: given }));
        let file = TokenSource::File("/etc/k8s/token".into());
        assert_eq!(join(None, Some("/etc/k8s/token")), Ok(Datastore::EtcdJoin { server: "https://s1:9345".into(), token: file }));
        let err = join(None, None).unwrap_err();
        assert!(err.contains("token-file (--token-file, K8S_TOKEN_FILE) or token (K8S_TOKEN, --token)"), "{err}");
        let err = join(Some("K10x"), Some("/etc/k8s/token")).unwrap_err();
        assert!(err.contains("both token and token-file"), "{err}");
    }

    #[test]
    fn the_admin_kubeconfig_is_0600_unless_told() {
        let c = Config::resolve(ServerOptions { node_ip: ip(), ..Default::default() }).unwrap();
        assert_eq!((c.admin_kubeconfig.to_str(), c.admin_kubeconfig_mode), (Some("/etc/k8s/admin.kubeconfig"), 0o600));
        let f = write("write-kubeconfig: /root/k8s.yaml\nwrite-kubeconfig-mode: \"0644\"\n");
        let o = over(ServerOptions { node_ip: ip(), ..Default::default() }, load_file::<ServerOptions>(f.path(), true).unwrap());
        let c = Config::resolve(o).unwrap();
        assert_eq!((c.admin_kubeconfig.to_str(), c.admin_kubeconfig_mode), (Some("/root/k8s.yaml"), 0o644));
    }

    #[test]
    fn bad_cidr_is_refused() {
        let o = ServerOptions { cluster_cidr: Some("10.42.0.0".into()), node_ip: ip(), ..Default::default() };
        assert!(Config::resolve(o).unwrap_err().to_string().contains("cluster-cidr"));
    }
}
