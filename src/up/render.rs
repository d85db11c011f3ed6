//! What `up` writes: a host's `/etc/k8s/config.yaml` and unit, and the
//! workstation's kubeconfig. Pure functions of the inventory and the node
//! name, so the same inventory renders byte-identical files (a re-run then
//! finds nothing to change).

use kube::config::{Context, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext};
use serde_yaml::{Mapping, Value};

use crate::host::config::{AgentOptions, PodNetwork, Profile, ServerOptions};
use crate::host::paths;
use crate::inventory::{Host, Inventory, Mode, Role};

pub use crate::host::paths::{BINARY, CONFIG, REGISTRIES, TOKEN};
/// Where image archives go on a host: its default data dir's images dir
/// (`up` writes no data-dir), imported by the node (`node::images`).
pub const IMAGES_DIR: &str = "/var/lib/k8s/images";
pub const HEADER: &str = "# written by k8s up; changes are replaced on the next up\n";

/// A systemd unit `up` installs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unit {
    /// `k8s-server` or `k8s-agent`.
    pub name: &'static str,
    pub path: &'static str,
    pub text: &'static str,
}

pub const SERVER_UNIT: Unit = Unit {
    name: paths::SERVER_UNIT,
    path: "/etc/systemd/system/k8s-server.service",
    text: include_str!("../../systemd/k8s-server.service"),
};

pub const AGENT_UNIT: Unit = Unit {
    name: paths::AGENT_UNIT,
    path: "/etc/systemd/system/k8s-agent.service",
    text: include_str!("../../systemd/k8s-agent.service"),
};

pub fn unit(role: Role) -> Unit {
    match role {
        Role::Server => SERVER_UNIT,
        Role::Agent => AGENT_UNIT,
    }
}

/// Where a host is reached by the other hosts: its `node-ip`, else the
/// address SSH uses.
pub fn cluster_address(host: &Host) -> String {
    host.node_ip.map_or_else(|| host.address.clone(), |ip| ip.to_string())
}

/// The join endpoint joining servers and agents use: the first server's.
pub fn join_url(inv: &Inventory) -> String {
    let a = cluster_address(inv.first_server());
    let port = crate::join::DEFAULT_PORT;
    if a.contains(':') { format!("https://[{a}]:{port}") } else { format!("https://{a}:{port}") }
}

/// Whether `host` is the one that starts the cluster.
pub fn is_first_server(inv: &Inventory, host: &Host) -> bool {
    std::ptr::eq(inv.first_server(), host) || inv.first_server().address == host.address
}

/// `/etc/k8s/config.yaml` for `host`: the options `k8s server` / `k8s
/// agent` read, so its keys are their flag names.
pub fn config(inv: &Inventory, host: &Host, node_name: &str) -> String {
    let body = match host.role {
        Role::Server => serde_yaml::to_string(&server_options(inv, host, node_name)),
        Role::Agent => serde_yaml::to_string(&agent_options(inv, host, node_name)),
    };
    format!("{HEADER}{}", body.expect("options serialize"))
}

fn server_options(inv: &Inventory, host: &Host, node_name: &str) -> ServerOptions {
    let c = &inv.cluster;
    // The host's own address, as SSH reaches it, may be a name or a public
    // IP the server cannot see on its interfaces.
    let mut tls_san = inv.tls_sans();
    if !tls_san.iter().any(|s| s.eq_ignore_ascii_case(&host.address)) {
        tls_san.push(host.address.clone());
    }
    let (node_label, node_taint) = registration(host);
    // In HA the first server starts the etcd cluster and the others join it.
    let ha = matches!(inv.mode(), Mode::Ha { .. });
    let first = is_first_server(inv, host);
    ServerOptions {
        node_name: Some(node_name.to_string()),
        node_ip: host.node_ip,
        tls_san,
        cluster_cidr: Some(c.cluster_cidr.to_string()),
        service_cidr: Some(c.service_cidr.to_string()),
        cluster_dns: Some(c.cluster_dns),
        cluster_domain: Some(c.cluster_domain.clone()),
        // Written only when not the default, so host-gw configs stay as they were.
        pod_network: (c.pod_network != PodNetwork::default()).then_some(c.pod_network),
        profile: (c.profile != Profile::default()).then_some(c.profile),
        https_listen_port: (c.api.port != crate::inventory::DEFAULT_API_PORT).then_some(c.api.port),
        disable_agent: host.control_plane_only,
        disable: c.disable.clone(),
        node_label,
        node_taint,
        cluster_init: ha && first,
        server: (ha && !first).then(|| join_url(inv)),
        token_file: (ha && !first).then(|| TOKEN.into()),
        ..ServerOptions::default()
    }
}

fn agent_options(inv: &Inventory, host: &Host, node_name: &str) -> AgentOptions {
    let (node_label, node_taint) = registration(host);
    AgentOptions {
        server: Some(join_url(inv)),
        token_file: Some(TOKEN.into()),
        node_name: Some(node_name.to_string()),
        node_ip: host.node_ip,
        node_label,
        node_taint,
        ..AgentOptions::default()
    }
}

/// What a node registers with: the labels kubelet may set itself
/// (`node-label`; `up` sets the others through the API) and the taints
/// (`node-taint`); nothing for a control-plane-only server.
fn registration(host: &Host) -> (Vec<String>, Vec<String>) {
    if !host.is_node() {
        return (vec![], vec![]);
    }
    let labels = host.kubelet_labels().iter().map(|(k, v)| format!("{k}={v}")).collect();
    (labels, host.taints.iter().map(|t| t.to_string()).collect())
}

/// The keys that differ between an installed config and the new one, as
/// `+key`, `-key` and `~key` (values are not shown: they may be long, and
/// the reader has the inventory).
pub fn config_changes(old: Option<&str>, new: &str) -> Vec<String> {
    let parse = |t: &str| serde_yaml::from_str::<Mapping>(t).unwrap_or_default();
    let new = parse(new);
    let Some(old) = old else {
        return vec!["new".into()];
    };
    let old = parse(old);
    let name = |k: &Value| k.as_str().unwrap_or("?").to_string();
    let mut out = vec![];
    for (k, v) in &new {
        match old.get(k) {
            None => out.push(format!("+{}", name(k))),
            Some(o) if o != v => out.push(format!("~{}", name(k))),
            Some(_) => {}
        }
    }
    out.extend(old.keys().filter(|k| !new.contains_key(*k)).map(|k| format!("-{}", name(k))));
    if out.is_empty() {
        // Same keys and values, other bytes (comments, layout).
        out.push("~format".into());
    }
    out
}

/// The workstation's kubeconfig from a server's admin kubeconfig: the
/// server URL becomes `api_url`; the cluster, user and context take the
/// cluster's name, so several clusters' files can be merged.
pub fn workstation_kubeconfig(admin: &str, cluster: &str, api_url: &str) -> Result<String, String> {
    let admin: Kubeconfig = serde_yaml::from_str(admin).map_err(|e| format!("the admin kubeconfig is not YAML: {e}"))?;
    let missing = |what: &str| format!("the admin kubeconfig has no {what}");
    let mut server = admin.clusters.into_iter().next().and_then(|c| c.cluster).ok_or_else(|| missing("clusters[0].cluster"))?;
    let user = admin.auth_infos.into_iter().next().and_then(|u| u.auth_info).ok_or_else(|| missing("users[0].user"))?;
    server.server = Some(api_url.to_string());
    let name = cluster.to_string();
    let context = Context { cluster: name.clone(), user: Some(name.clone()), ..Context::default() };
    let out = Kubeconfig {
        api_version: Some("v1".into()),
        kind: Some("Config".into()),
        clusters: vec![NamedCluster { name: name.clone(), cluster: Some(server), ..NamedCluster::default() }],
        contexts: vec![NamedContext { name: name.clone(), context: Some(context), ..NamedContext::default() }],
        current_context: Some(name.clone()),
        auth_infos: vec![NamedAuthInfo { name, auth_info: Some(user), ..NamedAuthInfo::default() }],
        ..Kubeconfig::default()
    };
    serde_yaml::to_string(&out).map_err(|e| e.to_string())
}
