//! `k8s agent`: a worker node. It joins through a server's join endpoint
//! with a token, then runs containerd, kubelet, kube-proxy and the pod
//! network, and keeps routes to the other nodes' pod CIDRs.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::components::Supervisor;
use crate::fsutil::write_atomic;
use crate::host::config::{AgentOptions, TokenSource};
use crate::host::{net, paths, Layout};
use crate::join::{self, token::Token, AgentConfig};
use crate::payload::Components;
use crate::{kubeclient, node, upgrade};

pub async fn run(o: AgentOptions) -> anyhow::Result<()> {
    let server = o.server.clone().context("a server to join is required: server (--server, K8S_URL), https://SERVER:9345")?;
    let token = TokenSource::pick(o.token.clone(), o.token_file.clone())?
        .context("a join token is required: token-file (--token-file, K8S_TOKEN_FILE) or token (K8S_TOKEN, --token)")?;
    let token = Token::parse(&token.read()?).with_context(|| token.to_string())?;
    // `o` holds the file's data-dir already, under the flag's.
    let data_dir = crate::host::config::data_dir(o.data_dir.clone(), None);
    let node_name = net::node_name(o.node_name.as_deref())?;
    let node_ip = net::node_ip(o.node_ip)?;
    let kubelet_args = node::kubelet_registration_args(o.kubelet_arg.clone(), &o.node_label, &o.node_taint)?;
    // Checked before anything is created; read again when containerd starts.
    node::registries::Registries::load(Path::new(paths::REGISTRIES))?;
    let layout = Layout::new(&data_dir);
    layout.check_writable()?;
    let _lock = layout.lock()?;
    tracing::info!(node = %node_name, ip = %node_ip, %server, "k8s agent starting");

    let files = AgentFiles::new(&layout);
    let password = join::binding::password(&layout.data_dir().join("agent"))?;
    let cluster = match join::client::join_agent(&server, &token, &node_name, node_ip, &password).await {
        Ok(config) => {
            files.write(&config)?;
            crate::fsutil::write_if_changed(&layout.agent_join_server(), server.as_bytes(), 0o600)?;
            Settings::from(&config)
        }
        // Restarting while the server is away, or with a token rotated
        // since: run with what we have (the error says which).
        Err(e) if files.exist() => {
            tracing::warn!("joining through {server} failed ({e:#}); starting with the credentials from the last join");
            files.read_settings()?
        }
        Err(e) => return Err(e),
    };

    // After the join: a refused token leaves no extracted payload behind.
    let components = {
        let (d, c) = (data_dir.clone(), o.components_dir.clone());
        tokio::task::spawn_blocking(move || Components::locate(&d, c.as_deref())).await??
    };
    let storage_dir = o.default_local_storage_path.clone().unwrap_or_else(|| layout.storage_dir());
    let mut sup = Supervisor::default();
    let stop = crate::signals::terminated();
    tokio::pin!(stop);
    let outcome = tokio::select! {
        result = start(&components, &files, &cluster, &node_name, node_ip, &kubelet_args, &layout, &storage_dir, &mut sup) => Some(result),
        _ = &mut stop => None,
    };
    match outcome {
        Some(Ok(())) => {
            tracing::info!(node = %node_name, "k8s agent ready");
            crate::systemd::notify_ready();
            stop.await;
        }
        Some(Err(e)) => {
            sup.stop_all().await;
            return Err(e);
        }
        None => tracing::info!("stop requested while starting"),
    }
    sup.stop_all().await;
    Ok(())
}

/// The agent's components in start order (see [`crate::components`] for
/// their lifecycle): the API load balancer (with its follower), the node
/// ([`node::bring_up`]), then its upgrade executor.
#[allow(clippy::too_many_arguments)]
async fn start(c: &Components, f: &AgentFiles, cluster: &Settings, node_name: &str, node_ip: IpAddr,
    kubelet_args: &[String], layout: &Layout, storage_dir: &Path, sup: &mut Supervisor) -> anyhow::Result<()> {
    start_balancer(layout, &cluster.api_server, &f.kube_proxy_kubeconfig, sup).await?;
    let settings = node::Settings {
        node_name,
        node_ip,
        cluster_dns: cluster.cluster_dns,
        cluster_domain: &cluster.cluster_domain,
        cluster_cidr: &cluster.cluster_cidr,
        client_ca: &f.ca,
        issued_kubelet_kubeconfig: &f.kubelet_kubeconfig,
        kubelet_cert: &f.kubelet_cert,
        kubelet_key: &f.kubelet_key,
        kube_proxy_kubeconfig: &f.kube_proxy_kubeconfig,
        kubelet_extra_args: kubelet_args,
        pod_network: cluster.pod_network,
        profile: cluster.profile,
        storage_dir,
        network_policy: cluster.network_policy,
    };
    node::start_runtime(sup, c, &layout.node(), cluster.profile).await?;
    node::bring_up(sup, c, &layout.node(), &settings).await?;
    upgrade::executor::Executor {
        kubelet: kubeclient::client(&layout.node().kubelet_kubeconfig).await?,
        kubelet_kubeconfig: layout.node().kubelet_kubeconfig,
        ca: f.ca.clone(),
        node_name: node_name.to_string(),
        host: upgrade::swap::Host::new(Path::new(paths::BINARY), layout.data_dir()),
        unit: paths::AGENT_UNIT,
        server: None,
    }
    .spawn(sup);
    Ok(())
}

/// The node's components reach the API servers through the local load
/// balancer; the server the agent joined through seeds its list, which then
/// follows the live API servers (kube-proxy's identity may watch them).
async fn start_balancer(layout: &Layout, api_server: &str, kube_proxy_kubeconfig: &Path, sup: &mut Supervisor) -> anyhow::Result<()> {
    let (host, port) = join::client::parse_url(api_server)?;
    let seed = tokio::net::lookup_host((host.as_str(), port))
        .await
        .ok()
        .and_then(|mut a| a.next())
        .with_context(|| format!("cannot resolve the API server {api_server}"))?;
    let balancer = node::api_balancer::Balancer::bind(&layout.api_servers_file(), seed).await?;
    let client = kubeclient::client(kube_proxy_kubeconfig).await?;
    sup.spawn("api-load-balancer", move |stop| async move {
        stop.or(balancer.run(client)).await;
        Ok(())
    });
    Ok(())
}

/// The cluster settings an agent runs with.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Settings {
    api_server: String,
    cluster_cidr: String,
    cluster_dns: IpAddr,
    cluster_domain: String,
    /// Files written before pod-network existed lack it: host-gw, what they ran.
    #[serde(default)]
    pod_network: node::PodNetwork,
    /// Files written before profile existed lack it: standard.
    #[serde(default)]
    profile: node::Profile,
    /// Files written before network policies existed lack it: none
    /// enforced, as then.
    #[serde(default)]
    network_policy: bool,
}

impl From<&AgentConfig> for Settings {
    fn from(c: &AgentConfig) -> Settings {
        Settings {
            api_server: c.api_server.clone(),
            cluster_cidr: c.cluster_cidr.clone(),
            cluster_dns: c.cluster_dns,
            cluster_domain: c.cluster_domain.clone(),
            pod_network: c.pod_network,
            profile: c.profile,
            network_policy: c.network_policy,
        }
    }
}

/// Where an agent keeps what it got from the join.
struct AgentFiles {
    ca: PathBuf,
    kubelet_cert: PathBuf,
    kubelet_key: PathBuf,
    kubelet_kubeconfig: PathBuf,
    kube_proxy_kubeconfig: PathBuf,
    settings: PathBuf,
}

impl AgentFiles {
    fn new(layout: &Layout) -> AgentFiles {
        let dir = layout.agent_pki_dir();
        AgentFiles {
            ca: layout.agent_ca(),
            kubelet_cert: dir.join("kubelet.crt"),
            kubelet_key: dir.join("kubelet.key"),
            kubelet_kubeconfig: layout.agent_kubelet_kubeconfig(),
            kube_proxy_kubeconfig: dir.join("kube-proxy.kubeconfig"),
            settings: dir.join("cluster.json"),
        }
    }

    fn exist(&self) -> bool {
        self.settings.exists() && self.kubelet_kubeconfig.exists()
    }

    fn write(&self, c: &AgentConfig) -> anyhow::Result<()> {
        write_atomic(&self.ca, c.ca_pem.as_bytes(), 0o644)?;
        write_atomic(&self.kubelet_cert, c.kubelet_cert_pem.as_bytes(), 0o644)?;
        write_atomic(&self.kubelet_key, c.kubelet_key_pem.as_bytes(), 0o600)?;
        // Through the local load balancer, not the one server joined through.
        let local = |kubeconfig: &str| kubeconfig.replace(&c.api_server, node::api_balancer::LOCAL_URL);
        write_atomic(&self.kubelet_kubeconfig, local(&c.kubelet_kubeconfig).as_bytes(), 0o600)?;
        write_atomic(&self.kube_proxy_kubeconfig, local(&c.kube_proxy_kubeconfig).as_bytes(), 0o600)?;
        let settings = Settings::from(c);
        write_atomic(&self.settings, &serde_json::to_vec(&settings)?, 0o644)
    }

    fn read_settings(&self) -> anyhow::Result<Settings> {
        let text = std::fs::read_to_string(&self.settings).with_context(|| format!("cannot read {}", self.settings.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is damaged; remove it and let the agent join again", self.settings.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(pod_network: node::PodNetwork) -> AgentConfig {
        AgentConfig {
            ca_pem: "ca".into(),
            kubelet_kubeconfig: "kubelet".into(),
            kube_proxy_kubeconfig: "proxy".into(),
            kubelet_cert_pem: "cert".into(),
            kubelet_key_pem: "key".into(),
            api_server: "https://10.0.0.1:6443".into(),
            cluster_cidr: "10.42.0.0/16".into(),
            cluster_dns: "10.43.0.10".parse().unwrap(),
            cluster_domain: "cluster.local".into(),
            pod_network,
            profile: node::Profile::Cis,
            network_policy: true,
        }
    }

    #[test]
    fn settings_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let files = AgentFiles::new(&Layout::new(dir.path()));
        files.write(&answer(node::PodNetwork::Vxlan)).unwrap();
        assert!(files.exist());
        assert_eq!(files.read_settings().unwrap(), Settings::from(&answer(node::PodNetwork::Vxlan)));
    }

    #[test]
    fn settings_from_before_pod_network_mean_host_gw() {
        let dir = tempfile::tempdir().unwrap();
        let files = AgentFiles::new(&Layout::new(dir.path()));
        files.write(&answer(node::PodNetwork::Vxlan)).unwrap();
        let old = r#"{"api_server":"https://10.0.0.1:6443","cluster_cidr":"10.42.0.0/16","cluster_dns":"10.43.0.10","cluster_domain":"cluster.local"}"#;
        std::fs::write(&files.settings, old).unwrap();
        assert_eq!(files.read_settings().unwrap().pod_network, node::PodNetwork::HostGw);
        assert_eq!(files.read_settings().unwrap().profile, node::Profile::Standard);
        assert!(!files.read_settings().unwrap().network_policy);
    }
}
