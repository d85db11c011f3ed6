//! Routes between nodes' pod networks. host-gw: on a shared L2 segment,
//! each node reaches another node's pod CIDR through that node's IP. vxlan
//! (see [`super::vxlan`]): through a VXLAN device, across any IP network.
//! Both follow the Node objects (pod CIDR, InternalIP).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::{vxlan, PodNetwork};
use crate::kubeapi::Api;

/// The MTU pods get with host-gw: the bridge plugin's default, which they
/// always had.
const HOST_GW_POD_MTU: u32 = 1500;

/// How this node reaches the other nodes' pods.
pub enum Backend {
    HostGw,
    /// This node's VXLAN device, and the kubelet's API access, which may
    /// publish the device's MAC on this node's Node object (kube-proxy's may not).
    Vxlan { vtep: vxlan::Vtep, kubelet_api: Api },
}

impl Backend {
    /// Sets up this node's side before its pods start: nothing for host-gw,
    /// the VXLAN device (addressed from `pod_cidr`) for vxlan.
    pub fn prepare(network: PodNetwork, node_ip: IpAddr, pod_cidr: &str, kubelet_kubeconfig: &Path) -> anyhow::Result<Backend> {
        Ok(match network {
            PodNetwork::HostGw => Backend::HostGw,
            PodNetwork::Vxlan => Backend::Vxlan {
                vtep: vxlan::Vtep::ensure(node_ip, pod_cidr)?,
                kubelet_api: Api::from_kubeconfig(kubelet_kubeconfig)?,
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
/// cluster, until the task is dropped.
pub async fn follow(api: Api, own_node: String, backend: Backend) {
    let mut installed: BTreeMap<String, IpAddr> = BTreeMap::new();
    loop {
        match api.get("/api/v1/nodes").await {
            Ok(Some(list)) => match &backend {
                Backend::HostGw => host_gw(&list, &own_node, &mut installed),
                Backend::Vxlan { vtep, kubelet_api } => vtep.sync(&list, &own_node, kubelet_api).await,
            },
            Ok(None) => {}
            Err(e) => tracing::debug!("listing nodes for routes: {e:#}"),
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

fn host_gw(list: &serde_json::Value, own_node: &str, installed: &mut BTreeMap<String, IpAddr>) {
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
fn peers(list: &serde_json::Value, own: &str) -> BTreeMap<String, IpAddr> {
    other_nodes(list, own)
        .filter_map(|node| Some((pod_cidr(node)?.to_string(), internal_ip(node)?)))
        .collect()
}

/// The Node objects of a list, but this node's.
pub(super) fn other_nodes<'a>(list: &'a serde_json::Value, own: &'a str) -> impl Iterator<Item = &'a serde_json::Value> {
    list["items"].as_array().into_iter().flatten().filter(move |node| node["metadata"]["name"] != own)
}

pub(super) fn pod_cidr(node: &serde_json::Value) -> Option<&str> {
    node.pointer("/spec/podCIDR")?.as_str()
}

pub(super) fn internal_ip(node: &serde_json::Value) -> Option<IpAddr> {
    let addrs = node.pointer("/status/addresses")?.as_array()?;
    addrs.iter().find(|a| a["type"] == "InternalIP")?["address"].as_str()?.parse().ok()
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
    #[test]
    fn peers_skip_self_and_nodes_without_cidr() {
        let list = serde_json::json!({"items": [
            {"metadata": {"name": "a"}, "spec": {"podCIDR": "10.42.0.0/24"},
             "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}},
            {"metadata": {"name": "b"}, "spec": {"podCIDR": "10.42.1.0/24"},
             "status": {"addresses": [{"type": "Hostname", "address": "b"}, {"type": "InternalIP", "address": "10.0.0.2"}]}},
            {"metadata": {"name": "c"}, "spec": {},
             "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.3"}]}},
        ]});
        let peers = super::peers(&list, "a");
        assert_eq!(peers.len(), 1);
        assert_eq!(peers["10.42.1.0/24"].to_string(), "10.0.0.2");
    }
}
