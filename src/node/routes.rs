//! Routes between nodes' pod networks, host-gw style: on a shared L2
//! segment, each node reaches another node's pod CIDR through that node's
//! IP. The routes follow the Node objects (pod CIDR, InternalIP).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;

use crate::kubeapi::Api;

/// Keeps this host's routes to other nodes' pod CIDRs in step with the
/// cluster, until the task is dropped.
pub async fn follow(api: Api, own_node: String) {
    let mut installed: BTreeMap<String, IpAddr> = BTreeMap::new();
    loop {
        match api.get("/api/v1/nodes").await {
            Ok(Some(list)) => {
                let wanted = peers(&list, &own_node);
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
                installed = wanted;
            }
            Ok(None) => {}
            Err(e) => tracing::debug!("listing nodes for routes: {e:#}"),
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Other nodes' pod CIDR → InternalIP.
fn peers(list: &serde_json::Value, own: &str) -> BTreeMap<String, IpAddr> {
    let mut out = BTreeMap::new();
    for node in list["items"].as_array().into_iter().flatten() {
        if node["metadata"]["name"] == own {
            continue;
        }
        let cidr = node.pointer("/spec/podCIDR").and_then(|c| c.as_str());
        let ip = node.pointer("/status/addresses").and_then(|a| a.as_array()).and_then(|addrs| {
            addrs.iter().find(|a| a["type"] == "InternalIP").and_then(|a| a["address"].as_str()?.parse().ok())
        });
        if let (Some(cidr), Some(ip)) = (cidr, ip) {
            out.insert(cidr.to_string(), ip);
        }
    }
    out
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
