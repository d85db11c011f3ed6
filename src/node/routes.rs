//! Routes between nodes' pod networks. host-gw: on a shared L2 segment,
//! each node reaches another node's pod CIDR through that node's IP. vxlan
//! (see [`super::vxlan`]): through a VXLAN device, across any IP network.
//! Both follow the Node objects (pod CIDR, InternalIP).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};

use super::{vxlan, PodNetwork};
use crate::kubeclient::{self, internal_ip};

/// The MTU pods get with host-gw: the bridge plugin's default, which they
/// always had.
const HOST_GW_POD_MTU: u32 = 1500;
/// How often the kernel's routes are checked against the cluster even when
/// no Node changed (someone may have flushed them).
const RESYNC: Duration = Duration::from_secs(60);

/// How this node reaches the other nodes' pods.
pub enum Backend {
    HostGw,
    /// This node's VXLAN device, and the kubelet's API access, which may
    /// publish the device's MAC on this node's Node object (kube-proxy's may not).
    Vxlan { vtep: vxlan::Vtep, kubelet: Client },
}

impl Backend {
    /// Sets up this node's side before its pods start: nothing for host-gw,
    /// the VXLAN device (addressed from `pod_cidr`) for vxlan.
    pub async fn prepare(network: PodNetwork, node_ip: IpAddr, pod_cidr: &str, kubelet_kubeconfig: &Path) -> anyhow::Result<Backend> {
        Ok(match network {
            PodNetwork::HostGw => Backend::HostGw,
            PodNetwork::Vxlan => Backend::Vxlan {
                vtep: vxlan::Vtep::ensure(node_ip, pod_cidr)?,
                kubelet: kubeclient::client(kubelet_kubeconfig).await?,
            },
        })
    }

    /// The pods' MTU: the tunnel's headers come out of it with vxlan.
    pub fn pod_mtu(&self) -> u32 {
        match self {
            Backend::HostGw => HOST_GW_POD_MTU,
            Backend::Vxlan { vtep, .. } => vtep.mtu,
        }
    }
}

/// Keeps this host's routes to other nodes' pod CIDRs in step with the
/// Node objects (a watch: a node added or removed changes routes at once),
/// until the future is dropped. `client` may list and watch Nodes.
pub async fn follow(client: Client, own_node: String, backend: Backend) {
    let mut installed: BTreeMap<String, IpAddr> = BTreeMap::new();
    let nodes: Api<Node> = Api::all(client);
    let mut snapshots = std::pin::pin!(kubeclient::follow(nodes, watcher::Config::default(), Some(RESYNC)));
    while let Some(list) = snapshots.next().await {
        match &backend {
            Backend::HostGw => host_gw(&list, &own_node, &mut installed),
            Backend::Vxlan { vtep, kubelet } => vtep.sync(&list, &own_node, kubelet).await,
        }
    }
}

fn host_gw(list: &[Arc<Node>], own_node: &str, installed: &mut BTreeMap<String, IpAddr>) {
    let wanted = peers(list, own_node);
    for (cidr, via) in &wanted {
        if installed.get(cidr) != Some(via) && ip_route(&["replace", cidr, "via", &via.to_string()]) {
            tracing::info!(%cidr, %via, "pod route added");
        }
    }
    for cidr in installed.keys().filter(|c| !wanted.contains_key(*c)) {
        if ip_route(&["del", cidr]) {
            tracing::info!(%cidr, "pod route removed");
        }
    }
    *installed = wanted;
}

/// Other nodes' pod CIDR → InternalIP.
fn peers(list: &[Arc<Node>], own: &str) -> BTreeMap<String, IpAddr> {
    other_nodes(list, own)
        .filter_map(|node| Some((kubeclient::pod_cidr(node)?, internal_ip(node)?)))
        .collect()
}

/// The Node objects of a list, but this node's.
pub(super) fn other_nodes<'a>(list: &'a [Arc<Node>], own: &'a str) -> impl Iterator<Item = &'a Node> {
    list.iter().map(|n| n.as_ref()).filter(move |node| node.name_any() != own)
}

fn ip_route(args: &[&str]) -> bool {
    match Command::new("ip").arg("route").args(args).output() {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            tracing::warn!("ip route {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
            false
        }
        Err(e) => {
            tracing::warn!("cannot run ip (iproute2): {e}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(json: serde_json::Value) -> Arc<Node> {
        Arc::new(serde_json::from_value(json).unwrap())
    }

    #[test]
    fn peers_skip_self_and_nodes_without_cidr() {
        let list = [
            node(serde_json::json!({"metadata": {"name": "a"}, "spec": {"podCIDR": "10.42.0.0/24"},
             "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}})),
            node(serde_json::json!({"metadata": {"name": "b"}, "spec": {"podCIDR": "10.42.1.0/24"},
             "status": {"addresses": [{"type": "Hostname", "address": "b"}, {"type": "InternalIP", "address": "10.0.0.2"}]}})),
            node(serde_json::json!({"metadata": {"name": "c"}, "spec": {},
             "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.3"}]}})),
        ];
        let peers = peers(&list, "a");
        assert_eq!(peers.len(), 1);
        assert_eq!(peers["10.42.1.0/24"].to_string(), "10.0.0.2");
    }
}
