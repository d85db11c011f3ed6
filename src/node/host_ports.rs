//! The ports this host listens on, published on its Node for the
//! LoadBalancer controller ([`crate::controllers::servicelb`]): a Service's
//! ingress on a node's address takes the port over on that node (kube-proxy
//! rewrites the traffic before a local socket sees it), so a node listening
//! on the port must be left out.
//!
//! Lifecycle: once the node is Ready, [`follow`] reads the kernel's socket
//! tables every [`INTERVAL`] and writes [`ANNOTATION`] on its own Node when
//! the set changed (the kubelet's identity may change its own Node).
//! Sockets bound to loopback only are left out: the ingress address is the
//! node's, not 127.0.0.1.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{ObjectMeta, Patch, PatchParams};
use kube::{Api, Client};

/// `tcp/22,tcp/6443,udp/8472`: the listening ports, sorted.
pub const ANNOTATION: &str = "k8s.io/host-ports";
const INTERVAL: Duration = Duration::from_secs(15);

/// Publishes this host's listening ports on `node` until stopped.
pub async fn follow(kubelet: Client, node: String) {
    let nodes: Api<Node> = Api::all(kubelet);
    let mut published = String::new();
    loop {
        let now = read();
        if now != published {
            match publish(&nodes, &node, &now).await {
                Ok(()) => published = now,
                Err(e) => tracing::warn!("publishing this host's listening ports on node {node}: {e}"),
            }
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

async fn publish(nodes: &Api<Node>, node: &str, ports: &str) -> Result<(), kube::Error> {
    let patch = Node {
        metadata: ObjectMeta { annotations: Some([(ANNOTATION.to_string(), ports.to_string())].into()), ..Default::default() },
        ..Default::default()
    };
    nodes.patch(node, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}

/// This network namespace's listening ports, as the annotation writes them.
fn read() -> String {
    let mut ports = BTreeSet::new();
    for (file, proto, state) in [("tcp", "tcp", LISTEN), ("tcp6", "tcp", LISTEN), ("udp", "udp", UNCONNECTED), ("udp6", "udp", UNCONNECTED)] {
        if let Ok(table) = std::fs::read_to_string(format!("/proc/net/{file}")) {
            ports.extend(listening(&table, state).into_iter().map(|port| (proto, port)));
        }
    }
    format(&ports)
}

/// The socket states that hold a port for everyone: a listening TCP socket,
/// a bound UDP socket with no peer.
const LISTEN: &str = "0A";
const UNCONNECTED: &str = "07";

/// The local ports of `table` (a /proc/net/{tcp,udp}[6] file) in `state`,
/// bound to an address other than loopback.
fn listening(table: &str, state: &str) -> BTreeSet<u16> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, st) = (fields.get(1)?, fields.get(3)?);
            let (addr, port) = local.split_once(':')?;
            (*st == state && !is_loopback(addr)).then(|| u16::from_str_radix(port, 16).ok())?
        })
        .collect()
}

/// The kernel writes addresses as hex words in host byte order (x86:
/// 127.0.0.1 is `0100007F`; ::1 ends in `01000000`).
fn is_loopback(hex: &str) -> bool {
    match hex.len() {
        8 => u32::from_str_radix(hex, 16).is_ok_and(|a| std::net::Ipv4Addr::from(a.to_ne_bytes()).is_loopback()),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, word) in (0..4).map(|i| u32::from_str_radix(&hex[i * 8..i * 8 + 8], 16).unwrap_or(0)).enumerate() {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word.to_ne_bytes());
            }
            let ip = std::net::Ipv6Addr::from(bytes);
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        _ => false,
    }
}

fn format(ports: &BTreeSet<(&str, u16)>) -> String {
    ports.iter().map(|(proto, port)| format!("{proto}/{port}")).collect::<Vec<_>>().join(",")
}

/// The ports a Node's annotation names, as (protocol, port) with the
/// protocol upper-case as in a Service (`TCP`, `UDP`); None when the node
/// published none.
pub fn parse(annotation: Option<&str>) -> Option<BTreeSet<(String, u16)>> {
    let text = annotation?;
    Some(
        text.split(',')
            .filter_map(|entry| {
                let (proto, port) = entry.trim().split_once('/')?;
                Some((proto.to_ascii_uppercase(), port.parse().ok()?))
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // From a real /proc/net/tcp and tcp6 (x86): sshd on 0.0.0.0:22, the API
    // server on :::6443, a listener on 127.0.0.1:10248, an established
    // connection from 10.99.0.11:40000, the kubelet on ::1:10248.
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 0100007F:2828 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0
   2: 0B00630A:9C40 0C00630A:1A0B 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 100 0 0 10 0
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue
   0: 00000000000000000000000000000000:1925 00000000000000000000000000000000:0000 0A 00000000:00000000
   1: 00000000000000000000000001000000:2828 00000000000000000000000000000000:0000 0A 00000000:00000000
   2: 0000000000000000FFFF00000100007F:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000
";

    #[test]
    fn listening_ports_leave_out_loopback_and_connections() {
        assert_eq!(listening(TCP, LISTEN), [22].into());
        assert_eq!(listening(TCP6, LISTEN), [6437].into(), "::1 and ::ffff:127.0.0.1 are loopback");
        assert!(listening(TCP, UNCONNECTED).is_empty());
    }

    #[test]
    fn the_annotation_round_trips() {
        let ports: BTreeSet<(&str, u16)> = [("tcp", 6443), ("udp", 8472), ("tcp", 22)].into();
        let text = format(&ports);
        assert_eq!(text, "tcp/22,tcp/6443,udp/8472");
        let back = parse(Some(&text)).unwrap();
        assert!(back.contains(&("TCP".to_string(), 22)) && back.contains(&("UDP".to_string(), 8472)) && back.len() == 3);
        assert_eq!(parse(Some("")).unwrap().len(), 0, "a host with no listener published an empty set");
        assert_eq!(parse(None), None);
    }
}
