//! A node's NetworkPolicies as iptables rules: a pure function ([`render`])
//! from the cluster's Pods, Namespaces and NetworkPolicies to the chains of
//! the filter table that police the pods on this node.
//!
//! ```text
//! FORWARD ─► KUBE-K8S-NP   replies of admitted connections return at once;
//!              -s <pod here> ─► KUBE-K8S-NP-E-<pod>   (pods an Egress policy selects)
//!              -d <pod here> ─► KUBE-K8S-NP-I-<pod>   (pods an Ingress policy selects)
//! KUBE-K8S-NP-{I,E}-<pod>   one RETURN per admitted (peer, port), then REJECT
//! ```
//!
//! Every admitting rule returns, so a packet between two pods of this node
//! passes the sender's egress chain and then the receiver's ingress chain;
//! between nodes each node checks its own pod's side. Peers are pod IPs
//! (selected by `podSelector`/`namespaceSelector`, the pods of any node)
//! and `ipBlock` CIDRs, an `except` turned into the prefixes that remain.
//! A named port resolves on the pod that receives: the policed pod for
//! ingress, each peer pod for egress (an `ipBlock` peer has no named ports).
//! What the node itself sends (the kubelet's probes) never crosses FORWARD:
//! always admitted, as the API asks. IPv4 only, as the pod network is.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::{IPBlock, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::core::{Selector, SelectorExt};
use kube::ResourceExt;
use sha2::{Digest, Sha256};

/// The chain FORWARD jumps to; every chain of ours starts with its name.
pub const MAIN: &str = "KUBE-K8S-NP";

/// The chains of the filter table, each with its rules in order (the
/// arguments after `-A <chain>`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub chains: BTreeMap<String, Vec<String>>,
}

impl Ruleset {
    /// `iptables-restore --noflush` input that makes the filter table hold
    /// exactly these chains of ours: `existing` ones not in the set are
    /// flushed and deleted in the same transaction.
    pub fn restore_input(&self, existing: &BTreeSet<String>) -> String {
        let mut text = String::from("*filter\n");
        for chain in self.chains.keys().chain(existing.iter().filter(|c| !self.chains.contains_key(*c))) {
            text += &format!(":{chain} - [0:0]\n");
        }
        for (chain, rules) in &self.chains {
            for rule in rules {
                text += &format!("-A {chain} {rule}\n");
            }
        }
        for stale in existing.iter().filter(|c| !self.chains.contains_key(*c)) {
            text += &format!("-X {stale}\n");
        }
        text + "COMMIT\n"
    }

    /// How many pods of this node are policed, for ingress and for egress.
    pub fn policed(&self) -> (usize, usize) {
        let count = |dir: Direction| self.chains.keys().filter(|c| c.starts_with(&format!("{MAIN}-{}-", dir.letter()))).count();
        (count(Direction::Ingress), count(Direction::Egress))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    fn letter(self) -> char {
        match self {
            Direction::Ingress => 'I',
            Direction::Egress => 'E',
        }
    }

    /// The match on the other end of the traffic.
    fn peer_flag(self) -> &'static str {
        match self {
            Direction::Ingress => "-s",
            Direction::Egress => "-d",
        }
    }

    /// The match on the policed pod.
    fn own_flag(self) -> &'static str {
        match self {
            Direction::Ingress => "-d",
            Direction::Egress => "-s",
        }
    }

    fn policy_type(self) -> &'static str {
        match self {
            Direction::Ingress => "Ingress",
            Direction::Egress => "Egress",
        }
    }
}

/// A pod that can send or receive: has an IPv4 address, runs in the pod
/// network (not the host's) and has not ended (its IP may be reused).
struct Member<'a> {
    pod: &'a Pod,
    namespace: String,
    name: String,
    labels: &'a BTreeMap<String, String>,
    ip: Ipv4Addr,
}

fn members(pods: &[Arc<Pod>]) -> Vec<Member<'_>> {
    pods.iter()
        .filter_map(|pod| {
            let spec = pod.spec.as_ref()?;
            let status = pod.status.as_ref()?;
            if spec.host_network == Some(true) || matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
                return None;
            }
            let listed = status.pod_ips.iter().flatten().map(|p| p.ip.as_str());
            let ip = listed.chain(status.pod_ip.as_deref()).find_map(|ip| ip.parse::<Ipv4Addr>().ok())?;
            Some(Member { pod, namespace: pod.namespace().unwrap_or_default(), name: pod.name_any(), labels: pod.labels(), ip })
        })
        .collect()
}

/// A policy with its selector parsed; `None` for one whose selector does
/// not parse (the API server validates them, so only a newer operator
/// could write one): it selects nothing, and is logged by the caller.
struct Policy<'a> {
    id: String,
    namespace: String,
    selector: Selector,
    policy: &'a NetworkPolicy,
}

impl<'a> Policy<'a> {
    fn parse(policy: &'a NetworkPolicy) -> Option<Policy<'a>> {
        let spec = policy.spec.as_ref()?;
        let namespace = policy.namespace().unwrap_or_default();
        Some(Policy { id: format!("{namespace}/{}", policy.name_any()), namespace, selector: selector(spec.pod_selector.as_ref().unwrap_or(&LabelSelector::default()))?, policy })
    }

    /// Whether it affects `dir`: its `policyTypes`, or (when the API
    /// server did not default them) Ingress always and Egress when it has
    /// egress rules, as the API says.
    fn affects(&self, dir: Direction) -> bool {
        let Some(spec) = self.policy.spec.as_ref() else { return false };
        match spec.policy_types.as_deref() {
            Some(types) if !types.is_empty() => types.iter().any(|t| t == dir.policy_type()),
            _ => dir == Direction::Ingress || spec.egress.as_ref().is_some_and(|e| !e.is_empty()),
        }
    }

    /// Each rule of `dir` as (peers, ports); `None` means "any".
    fn rules(&self, dir: Direction) -> Vec<Rule<'a>> {
        let Some(spec) = self.policy.spec.as_ref() else { return Vec::new() };
        match dir {
            Direction::Ingress => spec.ingress.iter().flatten().map(|r| (nonempty(&r.from), nonempty(&r.ports))).collect(),
            Direction::Egress => spec.egress.iter().flatten().map(|r| (nonempty(&r.to), nonempty(&r.ports))).collect(),
        }
    }
}

/// A rule's peers and ports; `None` means "any".
type Rule<'a> = (Option<&'a [NetworkPolicyPeer]>, Option<&'a [NetworkPolicyPort]>);

/// An absent or empty list: "any" (`None`).
fn nonempty<T>(v: &Option<Vec<T>>) -> Option<&[T]> {
    v.as_deref().filter(|v| !v.is_empty())
}

fn selector(s: &LabelSelector) -> Option<Selector> {
    Selector::try_from(s.clone()).ok()
}

/// The other end of a rule.
enum Peer<'m, 'a> {
    Any,
    Pod(&'m Member<'a>),
    Net(Net),
}

/// An IPv4 prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Net {
    addr: u32,
    len: u8,
}

impl Net {
    fn parse(cidr: &str) -> Option<Net> {
        let (addr, len) = cidr.split_once('/')?;
        let (addr, len) = (u32::from(addr.parse::<Ipv4Addr>().ok()?), len.parse::<u8>().ok().filter(|l| *l <= 32)?);
        Some(Net { addr: addr & Net::mask(len), len })
    }

    fn mask(len: u8) -> u32 {
        if len == 0 { 0 } else { u32::MAX << (32 - len) }
    }

    fn contains(self, other: Net) -> bool {
        other.len >= self.len && other.addr & Net::mask(self.len) == self.addr
    }

    fn halves(self) -> [Net; 2] {
        let len = self.len + 1;
        [Net { addr: self.addr, len }, Net { addr: self.addr | (1 << (32 - len)), len }]
    }
}

impl std::fmt::Display for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.addr), self.len)
    }
}

/// `net` without the `except` prefixes, as the fewest prefixes.
fn subtract(net: Net, except: &[Net]) -> Vec<Net> {
    if except.iter().any(|e| e.contains(net)) {
        return Vec::new();
    }
    if !except.iter().any(|e| net.contains(*e)) {
        return vec![net];
    }
    net.halves().into_iter().flat_map(|half| subtract(half, except)).collect()
}

/// An ipBlock's prefixes; an IPv6 block (or a broken one) has none here.
fn block(b: &IPBlock) -> Vec<Net> {
    let except: Vec<Net> = b.except.iter().flatten().filter_map(|e| Net::parse(e)).collect();
    Net::parse(&b.cidr).map(|net| subtract(net, &except)).unwrap_or_default()
}

/// What a rule's peer list selects, seen from a policy in `namespace`.
fn peers<'m, 'a>(list: Option<&[NetworkPolicyPeer]>, namespace: &str, members: &'m [Member<'a>],
    namespaces: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<Peer<'m, 'a>> {
    let Some(list) = list else { return vec![Peer::Any] };

    let mut out = Vec::new();
    for peer in list {
        if let Some(b) = &peer.ip_block {
            out.extend(block(b).into_iter().map(Peer::Net));
            continue;
        }
        let pods = peer.pod_selector.as_ref().map(selector);
        let spaces = peer.namespace_selector.as_ref().map(selector);
        if matches!(pods, Some(None)) || matches!(spaces, Some(None)) {
            continue;
        }
        let selected = |m: &Member| {
            let in_space = match &spaces {
                Some(Some(s)) => namespaces.get(&m.namespace).is_some_and(|labels| s.matches(labels)),
                _ => m.namespace == namespace,
            };
            in_space && pods.as_ref().and_then(Option::as_ref).is_none_or(|s| s.matches(m.labels))
        };
        out.extend(members.iter().filter(|m| selected(m)).map(Peer::Pod));
    }
    out
}

/// A port match: protocol, and a range (`None`: every port).
#[derive(Debug, PartialEq)]
struct Ports {
    protocol: &'static str,
    range: Option<(i32, i32)>,
}

/// A policy port as matches; a named one resolves on `on`'s containers (no
/// pod, or no container port of that name and protocol: nothing).
fn ports(p: &NetworkPolicyPort, on: Option<&Pod>) -> Vec<Ports> {
    let protocol = match p.protocol.as_deref().unwrap_or("TCP") {
        "TCP" => "tcp",
        "UDP" => "udp",
        "SCTP" => "sctp",
        _ => return Vec::new(),
    };
    match &p.port {
        None => vec![Ports { protocol, range: None }],
        Some(IntOrString::Int(n)) => vec![Ports { protocol, range: Some((*n, p.end_port.unwrap_or(*n).max(*n))) }],
        Some(IntOrString::String(name)) => {
            let containers = on.and_then(|pod| pod.spec.as_ref()).map(|s| s.containers.as_slice()).unwrap_or_default();
            let named = containers.iter().flat_map(|c| c.ports.iter().flatten());
            named
                .filter(|cp| cp.name.as_deref() == Some(name) && cp.protocol.as_deref().unwrap_or("TCP").eq_ignore_ascii_case(protocol))
                .map(|cp| Ports { protocol, range: Some((cp.container_port, cp.container_port)) })
                .collect()
        }
    }
}

fn is_named(p: &NetworkPolicyPort) -> bool {
    matches!(p.port, Some(IntOrString::String(_)))
}

/// One admitting rule.
fn admit(dir: Direction, peer: Option<Net>, ports: Option<&Ports>, policy: &str) -> String {
    let mut rule = String::new();
    if let Some(net) = peer {
        rule += &format!("{} {net} ", dir.peer_flag());
    }
    if let Some(p) = ports {
        rule += &format!("-p {} ", p.protocol);
        match p.range {
            Some((a, b)) if a == b => rule += &format!("-m {} --dport {a} ", p.protocol),
            Some((a, b)) => rule += &format!("-m {} --dport {a}:{b} ", p.protocol),
            None => {}
        }
    }
    rule + &format!("-m comment --comment \"{policy}\" -j RETURN")
}

/// The chain of a policed pod for one direction: `None` when no policy of
/// that direction selects it (then everything passes).
fn pod_chain(dir: Direction, own: &Member, policies: &[Policy], members: &[Member],
    namespaces: &BTreeMap<String, BTreeMap<String, String>>) -> Option<Vec<String>> {
    let selecting: Vec<&Policy> = policies
        .iter()
        .filter(|p| p.namespace == own.namespace && p.affects(dir) && p.selector.matches(own.labels))
        .collect();
    if selecting.is_empty() {
        return None;
    }
    let mut rules = BTreeSet::new();
    for policy in selecting {
        for (peer_list, port_list) in policy.rules(dir) {
            for peer in peers(peer_list, &policy.namespace, members, namespaces) {
                let Some(port_list) = port_list else {
                    rules.insert(admit(dir, peer_net(&peer), None, &policy.id));
                    continue;
                };
                for port in port_list {
                    for (net, matched) in resolve(dir, &peer, port, own, members) {
                        rules.insert(admit(dir, net, Some(&matched), &policy.id));
                    }
                }
            }
        }
    }
    let mut chain: Vec<String> = rules.into_iter().collect();
    chain.push(format!("-m comment --comment \"{}/{}: no policy admits it\" -j REJECT", own.namespace, own.name));
    Some(chain)
}

fn peer_net(peer: &Peer) -> Option<Net> {
    match peer {
        Peer::Any => None,
        Peer::Pod(m) => Some(Net { addr: u32::from(m.ip), len: 32 }),
        Peer::Net(n) => Some(*n),
    }
}

/// (peer prefix, port match) pairs for one peer and one policy port: a
/// named port resolves on the receiving pod, which for egress is the peer,
/// so "any peer" with a named egress port means every pod that has it.
fn resolve(dir: Direction, peer: &Peer, port: &NetworkPolicyPort, own: &Member, members: &[Member]) -> Vec<(Option<Net>, Ports)> {
    let with = |net: Option<Net>, on: Option<&Pod>| ports(port, on).into_iter().map(move |p| (net, p));
    match (dir, peer) {
        (Direction::Ingress, _) => with(peer_net(peer), Some(own.pod)).collect(),
        (Direction::Egress, Peer::Any) if is_named(port) => {
            members.iter().flat_map(|m| with(peer_net(&Peer::Pod(m)), Some(m.pod))).collect()
        }
        (Direction::Egress, Peer::Pod(m)) => with(peer_net(peer), Some(m.pod)).collect(),
        (Direction::Egress, _) => with(peer_net(peer), None).collect(),
    }
}

/// The chain name of `pod`'s policing in `dir` (a hash keeps it within
/// iptables' 28 characters).
fn chain_name(dir: Direction, m: &Member) -> String {
    let hash = hex::encode(Sha256::digest(format!("{}/{}", m.namespace, m.name)));
    format!("{MAIN}-{}-{}", dir.letter(), &hash[..12])
}

/// The rules that enforce every NetworkPolicy on the pods of `node` (see
/// the module doc), and the ids of policies whose selectors do not parse.
pub fn render(node: &str, pods: &[Arc<Pod>], namespaces: &[Arc<Namespace>], policies: &[Arc<NetworkPolicy>]) -> (Ruleset, Vec<String>) {
    let members = members(pods);
    let labels: BTreeMap<String, BTreeMap<String, String>> =
        namespaces.iter().map(|ns| (ns.name_any(), ns.labels().clone())).collect();
    let parsed: Vec<Option<Policy>> = policies.iter().map(|p| Policy::parse(p)).collect();
    let broken = policies.iter().zip(&parsed).filter(|(_, p)| p.is_none()).map(|(p, _)| format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any())).collect();
    let policies: Vec<Policy> = parsed.into_iter().flatten().collect();
    let mut ruleset = Ruleset::default();
    let mut jumps = Vec::new();
    let here = members.iter().filter(|m| m.pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node));
    for own in here {
        for dir in [Direction::Egress, Direction::Ingress] {
            if let Some(rules) = pod_chain(dir, own, &policies, &members, &labels) {
                let chain = chain_name(dir, own);
                jumps.push(format!("{} {}/32 -m comment --comment \"{}/{}\" -j {chain}", dir.own_flag(), own.ip, own.namespace, own.name));
                ruleset.chains.insert(chain, rules);
            }
        }
    }
    let mut main = Vec::new();
    if !jumps.is_empty() {
        main.push("-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN".to_string());
        main.extend(jumps);
    }
    ruleset.chains.insert(MAIN.to_string(), main);
    (ruleset, broken)
}

#[cfg(test)]
mod tests;
