//! Joining a cluster: a server serves an HTTPS join endpoint; an agent
//! presents a join token and receives what it needs to run a node: the
//! cluster CA, its kubelet and kube-proxy credentials, and the cluster's
//! network settings. In an HA cluster another server presents a server
//! token and receives the cluster's CAs and service-account key, and is
//! added to etcd as a learner.
//!
//! The token pins the CA: the joiner fetches `/cacerts` first, checks its
//! sha256 against the token, and only then, over a connection that trusts
//! that CA alone, sends the token's secret.

pub mod cli;
pub mod client;
pub mod binding;
pub mod server;
mod throttle;
pub mod token;
pub mod tokens;

use serde::{Deserialize, Serialize};

/// Port of the join endpoint (the same as RKE2's supervisor).
pub const DEFAULT_PORT: u16 = 9345;

/// No Debug: it carries the token.
#[derive(Serialize, Deserialize)]
pub struct AgentRequest {
    pub token: String,
    pub node_name: String,
    pub node_ip: std::net::IpAddr,
    /// This host's node password ([`binding`]): the name is bound to it.
    #[serde(default)]
    pub node_password: String,
}

/// Everything an agent needs to run its node.
#[derive(Serialize, Deserialize)]
pub struct AgentConfig {
    pub ca_pem: String,
    pub kubelet_kubeconfig: String,
    pub kube_proxy_kubeconfig: String,
    pub kubelet_cert_pem: String,
    pub kubelet_key_pem: String,
    pub api_server: String,
    pub cluster_cidr: String,
    pub cluster_dns: std::net::IpAddr,
    pub cluster_domain: String,
    /// Absent from the answers of servers that predate it: host-gw, the
    /// only pod network they had.
    #[serde(default)]
    pub pod_network: crate::host::config::PodNetwork,
    /// Absent from older servers' answers: standard.
    #[serde(default)]
    pub profile: crate::host::config::Profile,
    /// Whether nodes enforce NetworkPolicies. Absent from older servers'
    /// answers, which grant nodes no access to them: no.
    #[serde(default)]
    pub network_policy: bool,
}

/// No Debug: it carries the token.
#[derive(Serialize, Deserialize)]
pub struct ServerRequest {
    pub token: String,
    pub node_name: String,
    pub node_ip: std::net::IpAddr,
}

/// Everything a joining server needs: the shared PKI files (relative to
/// the PKI dir → PEM), its place in etcd and the cluster's settings, which
/// must match its own. No Debug: it carries CA keys.
#[derive(Serialize, Deserialize)]
pub struct ServerBundle {
    pub files: std::collections::BTreeMap<String, String>,
    pub initial_cluster: String,
    pub etcd_endpoints: Vec<String>,
    pub cluster_cidr: String,
    pub service_cidr: String,
    pub cluster_dns: std::net::IpAddr,
    pub cluster_domain: String,
    /// Absent from older servers' bundles: host-gw.
    #[serde(default)]
    pub pod_network: crate::host::config::PodNetwork,    /// Absent from older servers' bundles: standard.
    #[serde(default)]
    pub profile: crate::host::config::Profile,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_without_pod_network_means_host_gw() {
        let mut answer = serde_json::json!({
            "ca_pem": "", "kubelet_kubeconfig": "", "kube_proxy_kubeconfig": "", "kubelet_cert_pem": "",
            "kubelet_key_pem": "", "api_server": "https://10.0.0.1:6443", "cluster_cidr": "10.42.0.0/16",
            "cluster_dns": "10.43.0.10", "cluster_domain": "cluster.local",
        });
        let old: AgentConfig = serde_json::from_value(answer.clone()).unwrap();
        assert_eq!(old.pod_network, crate::host::config::PodNetwork::HostGw);
        answer["pod_network"] = "vxlan".into();
        let new: AgentConfig = serde_json::from_value(answer).unwrap();
        assert_eq!(new.pod_network, crate::host::config::PodNetwork::Vxlan);
    }
}
