//! The cluster as the first server shows it: its Nodes (`kubectl get nodes
//! -o json`) and, in HA, its etcd members (`k8s etcd members`); and what
//! `up` converges through the API: labels and taints (the kubelet applies
//! its own only when it registers, and may not set `kubernetes.io` ones).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1 as api;
use serde::Deserialize;

use crate::inventory::Host;
use crate::upgrade::preflight::NodeFacts;

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    pub ready: bool,
    pub internal_ip: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// As `key[=value]:Effect`.
    pub taints: Vec<String>,
    /// Keys of labels and taints an earlier `up` set (see [`MANAGED`]).
    pub managed: Vec<String>,
}

/// An annotation listing the label keys (`label:KEY`) and taints
/// (`taint:KEY:EFFECT`) `up` applied, so that removing one from the
/// inventory removes it from the node, while labels and taints others set
/// are left alone.
pub const MANAGED: &str = "k8s.up/managed";

/// `kubectl get nodes -o json`: a NodeList (only its items matter here).
#[derive(Deserialize)]
struct NodeList {
    items: Option<Vec<api::Node>>,
}

pub fn parse(json: &str) -> Result<Vec<Node>, String> {
    Ok(items(json)?.into_iter().map(node).collect())
}

/// The same list as the upgrade controller reads it (versions, roles, readiness).
pub fn parse_upgrade_facts(json: &str) -> Result<Vec<NodeFacts>, String> {
    Ok(items(json)?.iter().map(crate::upgrade::controller::facts).collect())
}

fn items(json: &str) -> Result<Vec<api::Node>, String> {
    let list: NodeList = serde_json::from_str(json).map_err(|e| format!("kubectl get nodes: not JSON: {e}"))?;
    list.items.ok_or_else(|| "kubectl get nodes: no items".to_string())
}

/// What `up` needs of a Node.
fn node(n: api::Node) -> Node {
    let meta = n.metadata;
    let status = n.status.unwrap_or_default();
    let managed = meta.annotations.as_ref().and_then(|a| a.get(MANAGED));
    Node {
        name: meta.name.unwrap_or_default(),
        ready: status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True"),
        internal_ip: status.addresses.into_iter().flatten().find(|a| a.type_ == "InternalIP").map(|a| a.address),
        taints: n.spec.and_then(|s| s.taints).into_iter().flatten().map(taint).collect(),
        managed: managed.map_or_else(Vec::new, |m| m.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect()),
        labels: meta.labels.unwrap_or_default(),
    }
}

/// `key[=value]:Effect`, as `kubectl taint` and the inventory write it.
fn taint(t: api::Taint) -> String {
    match t.value.filter(|v| !v.is_empty()) {
        Some(v) => format!("{}={v}:{}", t.key, t.effect),
        None => format!("{}:{}", t.key, t.effect),
    }
}

/// An etcd member of an HA cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub name: String,
    /// The host of its peer URL.
    pub address: Option<String>,
}

/// `k8s etcd members`: `NAME ID ROLE PEER CLIENT` columns after a header;
/// a member that has not started yet has no name and is left out.
pub fn parse_members(text: &str) -> Vec<Member> {
    text.lines()
        .skip(1)
        .filter(|l| !l.starts_with(char::is_whitespace))
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            let peer = fields.get(3)?.split(',').next()?;
            let host = peer.split_once("://").map_or(peer, |(_, h)| h);
            let host = host.rsplit_once(':').map_or(host, |(h, _)| h).trim_matches(['[', ']']);
            Some(Member { name: fields[0].to_string(), address: (!host.is_empty()).then(|| host.to_string()) })
        })
        .collect()
}

/// `kubectl` argument lists that bring a node's labels and taints to what
/// the inventory says; empty when it already is.
pub fn label_commands(host: &Host, node: &Node) -> Vec<Vec<String>> {
    let name = &node.name;
    let want_labels: BTreeMap<&str, &str> = host.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let want_taints: Vec<String> = host.taints.iter().map(|t| t.to_string()).collect();
    let taint_id = |t: &str| {
        // key[=value]:Effect → key:Effect (a taint's identity)
        let (kv, effect) = t.rsplit_once(':').unwrap_or((t, ""));
        format!("{}:{effect}", kv.split('=').next().unwrap_or(kv))
    };
    let mut managed: Vec<String> = want_labels.keys().map(|k| format!("label:{k}")).collect();
    managed.extend(want_taints.iter().map(|t| format!("taint:{}", taint_id(t))));
    managed.sort();

    let mut label_args: Vec<String> = want_labels
        .iter()
        .filter(|(k, v)| node.labels.get(**k).map(String::as_str) != Some(**v))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut taint_args: Vec<String> = want_taints.iter().filter(|t| !node.taints.contains(t)).cloned().collect();
    for old in &node.managed {
        if managed.contains(old) {
            continue;
        }
        if let Some(k) = old.strip_prefix("label:") {
            if node.labels.contains_key(k) {
                label_args.push(format!("{k}-"));
            }
        } else if let Some(id) = old.strip_prefix("taint:") {
            if node.taints.iter().any(|t| taint_id(t) == id) {
                taint_args.push(format!("{id}-"));
            }
        }
    }
    let mut managed_now = node.managed.clone();
    managed_now.sort();
    let mut out = vec![];
    if !label_args.is_empty() {
        let mut args = vec!["label".to_string(), "--overwrite".into(), format!("node/{name}")];
        args.extend(label_args);
        out.push(args);
    }
    if managed_now != managed {
        out.push(vec![
            "annotate".into(),
            "--overwrite".into(),
            format!("node/{name}"),
            format!("{MANAGED}={}", managed.join(",")),
        ]);
    }
    if !taint_args.is_empty() {
        let mut args = vec!["taint".to_string(), "--overwrite".into(), format!("node/{name}")];
        args.extend(taint_args);
        out.push(args);
    }
    out
}
