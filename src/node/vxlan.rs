//! The vxlan pod network, as flannel's vxlan backend builds it: each node
//! has one VXLAN device (VNI 1, UDP 8472, no learning, no multicast) holding
//! the first address of its pod CIDR, and publishes the device's MAC on its
//! Node object. For every other node it keeps
//!
//! - a route: `<peer pod CIDR> via <peer's first address> dev k8s.vxlan onlink`,
//! - an ARP entry: peer's first address → peer's MAC (permanent),
//! - an FDB entry: peer's MAC → the peer's node IP (where the UDP goes).
//!
//! The entries are read back from the kernel on every pass and compared
//! with what the Node objects ask for, so restarts and removed nodes need
//! no memory of what was installed.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::process::Command;
use std::sync::Arc;

use anyhow::{bail, Context};
use k8s_openapi::api::core::v1::Node;
use kube::api::{ObjectMeta, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::Value;

use super::routes::other_nodes;
use crate::kubeclient::{internal_ip, pod_cidr};

pub const DEVICE: &str = "k8s.vxlan";
/// Where each node publishes its device's MAC.
pub const MAC_ANNOTATION: &str = "k8s.io/vxlan-mac";
const VNI: u64 = 1;
/// The Linux kernel's VXLAN port (flannel's too), not IANA's 4789.
const PORT: u64 = 8472;

/// This node's end of the tunnel.
#[derive(Debug)]
pub struct Vtep {
    pub mac: String,
    /// The device's MTU: the node IP's interface's, less the encapsulation.
    pub mtu: u32,
}

impl Vtep {
    /// Creates the device on the node IP's interface (or keeps the one a
    /// previous run made, so running pods keep their peers' entries) and
    /// gives it the first address of `pod_cidr`.
    pub fn ensure(node_ip: IpAddr, pod_cidr: &str) -> anyhow::Result<Vtep> {
        let (ifname, underlying_mtu) = interface_of(node_ip)?;
        // Outer IPv4 + UDP + VXLAN + inner Ethernet headers; IPv6's is 20 bytes longer.
        let mtu = underlying_mtu.saturating_sub(if node_ip.is_ipv4() { 50 } else { 70 });
        let current = ip_json(&["-d", "link", "show", "dev", DEVICE]).ok();
        let reusable = current.as_ref().is_some_and(|link| matches_config(&link[0], node_ip, &ifname));
        if current.is_some() && !reusable {
            tracing::info!(device = DEVICE, "recreating the VXLAN device: its settings differ");
            ip(&["link", "del", DEVICE])?;
        }
        if !reusable {
            let (local, vni, port) = (node_ip.to_string(), VNI.to_string(), PORT.to_string());
            ip(&["link", "add", DEVICE, "type", "vxlan", "id", &vni, "local", &local, "dev", &ifname, "dstport", &port, "nolearning"])?;
        }
        ip(&["link", "set", DEVICE, "mtu", &mtu.to_string(), "up"])?;
        set_address(first_address(pod_cidr)?)?;
        let link = ip_json(&["link", "show", "dev", DEVICE])?;
        let mac = link[0]["address"].as_str().context("ip link shows no MAC for the VXLAN device")?.to_string();
        tracing::info!(device = DEVICE, %mac, mtu, dev = %ifname, "VXLAN device ready");
        Ok(Vtep { mac, mtu })
    }

    /// One pass: publishes this node's MAC if its Node object lacks it, and
    /// brings the kernel's entries in line with the other nodes.
    pub async fn sync(&self, nodes: &[Arc<Node>], own_node: &str, kubelet: &Client) {
        if let Err(e) = self.publish(nodes, own_node, kubelet).await {
            tracing::warn!("publishing the VXLAN MAC on node {own_node}: {e:#}");
        }
        let present = match Entries::present() {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("reading the VXLAN entries: {e:#}");
                return;
            }
        };
        for cmd in plan(&present, &Entries::wanted(nodes, own_node)) {
            match run(&cmd) {
                Ok(_) => tracing::info!(command = %cmd.join(" "), "pod network updated"),
                Err(e) => tracing::warn!("{e:#}"),
            }
        }
    }

    async fn publish(&self, nodes: &[Arc<Node>], own_node: &str, kubelet: &Client) -> anyhow::Result<()> {
        let Some(own) = nodes.iter().find(|n| n.name_any() == own_node) else { return Ok(()) };
        if own.annotations().get(MAC_ANNOTATION) == Some(&self.mac) {
            return Ok(());
        }
        let patch = Node {
            metadata: ObjectMeta {
                annotations: Some([(MAC_ANNOTATION.to_string(), self.mac.clone())].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let nodes: Api<Node> = Api::all(kubelet.clone());
        nodes.patch(own_node, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        tracing::info!(mac = %self.mac, "VXLAN MAC published on the node");
        Ok(())
    }
}

/// Whether an existing device is the one `ensure` would create.
fn matches_config(link: &Value, node_ip: IpAddr, ifname: &str) -> bool {
    let info = &link["linkinfo"];
    let data = &info["info_data"];
    info["info_kind"] == "vxlan"
        && data["id"] == VNI
        && data["port"] == PORT
        && data["learning"] == false
        && data["link"] == ifname
        && data["local"].as_str().and_then(|l| l.parse().ok()) == Some(node_ip)
}

/// The interface holding `ip`, and its MTU.
fn interface_of(ip: IpAddr) -> anyhow::Result<(String, u32)> {
    let links = ip_json(&["addr", "show"])?;
    let link = links.as_array().into_iter().flatten().find(|l| {
        l["addr_info"].as_array().into_iter().flatten().any(|a| a["local"].as_str().and_then(|s| s.parse().ok()) == Some(ip))
    });
    let Some(link) = link else {
        bail!("no network interface of this host has the node IP {ip}; set node-ip to one of its addresses (`ip addr` lists them)");
    };
    let name = link["ifname"].as_str().context("ip addr shows an interface without a name")?;
    let mtu = link["mtu"].as_u64().context("ip addr shows no MTU")?;
    Ok((name.to_string(), mtu as u32))
}

/// The device holds `addr` alone (a pod CIDR that changed leaves no old address).
fn set_address(addr: IpAddr) -> anyhow::Result<()> {
    let links = ip_json(&["addr", "show", "dev", DEVICE])?;
    let stale: Vec<String> = links[0]["addr_info"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["scope"] != "link" && a["local"].as_str().and_then(|s| s.parse().ok()) != Some(addr))
        .filter_map(|a| Some(format!("{}/{}", a["local"].as_str()?, a["prefixlen"].as_u64()?)))
        .collect();
    for old in stale {
        ip(&["addr", "del", &old, "dev", DEVICE])?;
    }
    let bits = if addr.is_ipv4() { 32 } else { 128 };
    ip(&["addr", "replace", &format!("{addr}/{bits}"), "dev", DEVICE])?;
    Ok(())
}

/// A pod CIDR's first (network) address: the node's address on the device.
fn first_address(cidr: &str) -> anyhow::Result<IpAddr> {
    let (addr, _) = crate::host::net::parse_cidr(cidr).with_context(|| format!("pod CIDR {cidr:?} is not a CIDR"))?;
    Ok(addr)
}

/// The device's entries towards the other nodes.
#[derive(Debug, Default, PartialEq)]
struct Entries {
    /// Pod CIDR → the peer's first address (the gateway).
    routes: BTreeMap<String, IpAddr>,
    /// Peer's first address → its MAC (ARP).
    neighbours: BTreeMap<IpAddr, String>,
    /// Peer's MAC → its node IP (FDB).
    fdb: BTreeMap<String, IpAddr>,
}

impl Entries {
    /// What the Node objects ask for: every other node with a pod CIDR, an
    /// InternalIP and a published MAC (a node that has not published yet
    /// is added on a later pass).
    fn wanted(nodes: &[Arc<Node>], own_node: &str) -> Entries {
        let mut e = Entries::default();
        for node in other_nodes(nodes, own_node) {
            let mac = node.annotations().get(MAC_ANNOTATION).and_then(|m| normalized_mac(m));
            let (Some(cidr), Some(node_ip), Some(mac)) = (pod_cidr(node), internal_ip(node), mac) else { continue };
            let Ok(gateway) = first_address(&cidr) else { continue };
            e.routes.insert(cidr, gateway);
            e.neighbours.insert(gateway, mac.clone());
            e.fdb.insert(mac, node_ip);
        }
        e
    }

    /// What the kernel has on the device (permanent ARP entries and FDB
    /// entries with a destination: the ones this module makes).
    fn present() -> anyhow::Result<Entries> {
        let parse_ip = |v: &Value| v.as_str().and_then(|s| s.parse::<IpAddr>().ok());
        let mut e = Entries::default();
        for r in json_list(ip_json(&["route", "show", "dev", DEVICE])?) {
            if let (Some(dst), Some(gw)) = (r["dst"].as_str(), parse_ip(&r["gateway"])) {
                e.routes.insert(dst.to_string(), gw);
            }
        }
        for n in json_list(ip_json(&["neigh", "show", "dev", DEVICE])?) {
            let permanent = n["state"].as_array().is_some_and(|s| s.iter().any(|s| s == "PERMANENT"));
            if let (true, Some(ip), Some(mac)) = (permanent, parse_ip(&n["dst"]), n["lladdr"].as_str().and_then(normalized_mac)) {
                e.neighbours.insert(ip, mac);
            }
        }
        for f in json_list(json_output("bridge", &["-j", "fdb", "show", "dev", DEVICE])?) {
            if let (Some(mac), Some(dst)) = (f["mac"].as_str().and_then(normalized_mac), parse_ip(&f["dst"])) {
                e.fdb.insert(mac, dst);
            }
        }
        Ok(e)
    }
}

/// The commands that turn `present` into `wanted`: removals first (so an
/// entry that moved is not removed after it was added), then additions in
/// the order traffic needs them (FDB, ARP, route).
fn plan(present: &Entries, wanted: &Entries) -> Vec<Vec<String>> {
    let mut cmds: Vec<Vec<String>> = Vec::new();
    let mut add = |args: &[&str]| cmds.push(args.iter().map(|s| s.to_string()).collect());
    for cidr in present.routes.keys().filter(|c| !wanted.routes.contains_key(*c)) {
        add(&["ip", "route", "del", cidr, "dev", DEVICE]);
    }
    for ip in present.neighbours.keys().filter(|ip| !wanted.neighbours.contains_key(*ip)) {
        add(&["ip", "neigh", "del", &ip.to_string(), "dev", DEVICE]);
    }
    for (mac, dst) in present.fdb.iter().filter(|(mac, _)| !wanted.fdb.contains_key(*mac)) {
        add(&["bridge", "fdb", "del", mac, "dev", DEVICE, "dst", &dst.to_string(), "self"]);
    }
    for (mac, dst) in wanted.fdb.iter().filter(|(mac, dst)| present.fdb.get(*mac) != Some(*dst)) {
        add(&["bridge", "fdb", "replace", mac, "dev", DEVICE, "dst", &dst.to_string(), "self", "permanent"]);
    }
    for (ip, mac) in wanted.neighbours.iter().filter(|(ip, mac)| present.neighbours.get(*ip) != Some(*mac)) {
        add(&["ip", "neigh", "replace", &ip.to_string(), "lladdr", mac, "dev", DEVICE, "nud", "permanent"]);
    }
    for (cidr, gw) in wanted.routes.iter().filter(|(cidr, gw)| present.routes.get(*cidr) != Some(*gw)) {
        add(&["ip", "route", "replace", cidr, "via", &gw.to_string(), "dev", DEVICE, "onlink"]);
    }
    cmds
}

/// `aa:bb:cc:dd:ee:ff` in lower case, or None if `s` is not a MAC.
fn normalized_mac(s: &str) -> Option<String> {
    let parts: Vec<&str> = s.split(':').collect();
    let ok = parts.len() == 6 && parts.iter().all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()));
    ok.then(|| s.to_ascii_lowercase())
}

fn json_list(v: Value) -> Vec<Value> {
    match v {
        Value::Array(items) => items,
        _ => Vec::new(),
    }
}

fn ip(args: &[&str]) -> anyhow::Result<String> {
    run(&[&["ip"], args].concat())
}

fn ip_json(args: &[&str]) -> anyhow::Result<Value> {
    json_output("ip", &[&["-j"], args].concat())
}

fn json_output(program: &str, args: &[&str]) -> anyhow::Result<Value> {
    let out = run(&[&[program], args].concat())?;
    // Some iproute2 versions print nothing rather than [] for no entries.
    if out.trim().is_empty() {
        return Ok(Value::Array(Vec::new()));
    }
    serde_json::from_str(&out).with_context(|| format!("{program} {}: unexpected output", args.join(" ")))
}

/// Runs `cmd` (program first); its stdout, or an error with its stderr.
fn run<S: AsRef<str>>(cmd: &[S]) -> anyhow::Result<String> {
    let (program, args) = cmd.split_first().expect("a command has a program");
    let line = cmd.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(" ");
    let out = Command::new(program.as_ref())
        .args(args.iter().map(AsRef::as_ref))
        .output()
        .with_context(|| format!("cannot run {} (iproute2)", program.as_ref()))?;
    if !out.status.success() {
        bail!("{line}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, cidr: Option<&str>, ip: &str, mac: Option<&str>) -> Arc<Node> {
        let mut n = json!({"metadata": {"name": name}, "status": {"addresses": [
            {"type": "Hostname", "address": name}, {"type": "InternalIP", "address": ip}]}});
        if let Some(c) = cidr {
            n["spec"] = json!({"podCIDR": c});
        }
        if let Some(m) = mac {
            n["metadata"]["annotations"] = json!({MAC_ANNOTATION: m});
        }
        Arc::new(serde_json::from_value(n).unwrap())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn wanted_covers_other_nodes_that_published_a_mac() {
        let list = [
            node("a", Some("10.42.0.0/24"), "192.168.1.1", Some("02:00:00:00:00:0a")),
            node("b", Some("10.42.1.0/24"), "192.168.2.2", Some("02:00:00:00:00:0B")),
            node("c", Some("10.42.2.0/24"), "192.168.3.3", None),
            node("d", None, "192.168.4.4", Some("02:00:00:00:00:0d")),
            node("e", Some("10.42.4.0/24"), "192.168.5.5", Some("not-a-mac")),
        ];
        let e = Entries::wanted(&list, "a");
        assert_eq!(e.routes, BTreeMap::from([("10.42.1.0/24".to_string(), ip("10.42.1.0"))]));
        assert_eq!(e.neighbours, BTreeMap::from([(ip("10.42.1.0"), "02:00:00:00:00:0b".to_string())]));
        assert_eq!(e.fdb, BTreeMap::from([("02:00:00:00:00:0b".to_string(), ip("192.168.2.2"))]));
    }

    fn entries(peers: &[(&str, &str, &str, &str)]) -> Entries {
        let mut e = Entries::default();
        for (cidr, gw, mac, node_ip) in peers {
            e.routes.insert(cidr.to_string(), ip(gw));
            e.neighbours.insert(ip(gw), mac.to_string());
            e.fdb.insert(mac.to_string(), ip(node_ip));
        }
        e
    }

    fn lines(cmds: Vec<Vec<String>>) -> Vec<String> {
        cmds.into_iter().map(|c| c.join(" ")).collect()
    }

    #[test]
    fn a_new_peer_gets_fdb_then_arp_then_route() {
        let wanted = entries(&[("10.42.1.0/24", "10.42.1.0", "02:00:00:00:00:0b", "192.168.2.2")]);
        assert_eq!(lines(plan(&Entries::default(), &wanted)), [
            "bridge fdb replace 02:00:00:00:00:0b dev k8s.vxlan dst 192.168.2.2 self permanent",
            "ip neigh replace 10.42.1.0 lladdr 02:00:00:00:00:0b dev k8s.vxlan nud permanent",
            "ip route replace 10.42.1.0/24 via 10.42.1.0 dev k8s.vxlan onlink",
        ]);
    }

    #[test]
    fn nothing_to_do_when_in_step() {
        let e = entries(&[("10.42.1.0/24", "10.42.1.0", "02:00:00:00:00:0b", "192.168.2.2")]);
        assert!(plan(&e, &entries(&[("10.42.1.0/24", "10.42.1.0", "02:00:00:00:00:0b", "192.168.2.2")])).is_empty());
    }

    #[test]
    fn a_removed_node_loses_its_entries() {
        let present = entries(&[
            ("10.42.1.0/24", "10.42.1.0", "02:00:00:00:00:0b", "192.168.2.2"),
            ("10.42.2.0/24", "10.42.2.0", "02:00:00:00:00:0c", "192.168.3.3"),
        ]);
        let wanted = entries(&[("10.42.1.0/24", "10.42.1.0", "02:00:00:00:00:0b", "192.168.2.2")]);
        assert_eq!(lines(plan(&present, &wanted)), [
            "ip route del 10.42.2.0/24 dev k8s.vxlan",
            "ip neigh del 10.42.2.0 dev k8s.vxlan",
            "bridge fdb del 02:00:00:00:00:0c dev k8s.vxlan dst 192.168.3.3 self",
        ]);
    }

    #[test]
    fn a_peer_with_a_new_device_or_address_is_updated_in_place() {
        // The peer recreated its device (new MAC) and moved to another IP:
        // the old MAC's FDB entry goes, the route stays as it was.
        let present = entries(&[("10.42.1.0/24", "10.42.1.0", "02:00:00:00:00:0b", "192.168.2.2")]);
        let wanted = entries(&[("10.42.1.0/24", "10.42.1.0", "02:00:00:00:00:bb", "192.168.9.9")]);
        assert_eq!(lines(plan(&present, &wanted)), [
            "bridge fdb del 02:00:00:00:00:0b dev k8s.vxlan dst 192.168.2.2 self",
            "bridge fdb replace 02:00:00:00:00:bb dev k8s.vxlan dst 192.168.9.9 self permanent",
            "ip neigh replace 10.42.1.0 lladdr 02:00:00:00:00:bb dev k8s.vxlan nud permanent",
        ]);
    }

    #[test]
    fn an_existing_device_is_kept_only_with_our_settings() {
        let link = json!({"linkinfo": {"info_kind": "vxlan", "info_data":
            {"id": 1, "local": "10.99.0.11", "link": "eth0", "port": 8472, "learning": false}}});
        assert!(matches_config(&link, ip("10.99.0.11"), "eth0"));
        assert!(!matches_config(&link, ip("10.99.0.12"), "eth0"), "node IP changed");
        assert!(!matches_config(&link, ip("10.99.0.11"), "eth1"), "interface changed");
        let mut learning = link.clone();
        learning["linkinfo"]["info_data"]["learning"] = json!(true);
        assert!(!matches_config(&learning, ip("10.99.0.11"), "eth0"));
        let mut other_port = link;
        other_port["linkinfo"]["info_data"]["port"] = json!(4789);
        assert!(!matches_config(&other_port, ip("10.99.0.11"), "eth0"));
    }

    #[test]
    fn macs_are_checked_and_lower_cased() {
        assert_eq!(normalized_mac("02:AB:00:00:00:0F").as_deref(), Some("02:ab:00:00:00:0f"));
        assert_eq!(normalized_mac("02:ab:00:00:00"), None);
        assert_eq!(normalized_mac("02:ab:00:00:00:0g"), None);
    }
}
