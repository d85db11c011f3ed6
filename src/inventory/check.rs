//! Checks across fields: networks that must not overlap, addresses and
//! names used twice, and the choice of mode from the number of servers.

use std::collections::HashMap;
use std::net::IpAddr;

use super::locate::FieldPath;
use super::model::{Mode, Role, MAX_SERVERS};
use super::read::{Draft, Pending, Reader};
use super::syntax::Cidr;

/// Ports the servers use for something else.
const RESERVED_PORTS: [(u16, &str); 6] = [
    (2379, "etcd's client port"),
    (2380, "etcd's peer port"),
    (10250, "kubelet's port"),
    (10256, "kube-proxy's health port"),
    (10257, "kube-controller-manager's port"),
    (10259, "kube-scheduler's port"),
];

/// Adds the problems to `r` and the warnings to `warnings`; returns the
/// mode when the hosts are complete enough to choose one.
pub fn check(
    d: &Draft,
    r: &mut Reader,
    warnings: &mut Vec<Pending>,
    line_of: &dyn Fn(&FieldPath) -> usize,
) -> Option<Mode> {
    let cluster = FieldPath::default().key("cluster");
    let c = &d.cluster;

    // Networks.
    let mut networks: Vec<(&str, Cidr)> = vec![];
    if let Some(cc) = c.cluster_cidr {
        networks.push(("cluster-cidr", cc));
    }
    if let (Some(cc), Some(sc)) = (c.cluster_cidr, c.service_cidr) {
        let p = cluster.key("service-cidr");
        if cc.network.is_ipv4() != sc.network.is_ipv4() {
            r.error(
                &p,
                format!("{sc} and cluster-cidr {cc} are of different IP families; use IPv4 for both or IPv6 for both"),
            );
        } else if cc.overlaps(&sc) {
            r.error(
                &p,
                format!("{sc} overlaps cluster-cidr {cc}; pods and services need separate networks (defaults: 10.42.0.0/16 and 10.43.0.0/16)"),
            );
        } else {
            networks.push(("service-cidr", sc));
        }
    }
    if let Some(sc) = c.service_cidr {
        let example = sc.nth(10);
        match (c.cluster_dns_given, c.cluster_dns) {
            (false, _) if example.is_none() => r.error(
                &cluster.key("service-cidr"),
                format!("{sc} is too small to hold the cluster DNS address (its 10th address); use a larger network, e.g. a /24"),
            ),
            (true, Some(ip)) => {
                let p = cluster.key("cluster-dns");
                let e = example.map(|e| format!(", e.g. {e}")).unwrap_or_default();
                let last = match sc.network {
                    IpAddr::V4(_) => sc.nth((1u128 << (32 - u32::from(sc.prefix))) - 1),
                    IpAddr::V6(_) => None,
                };
                if !sc.contains(ip) {
                    r.error(&p, format!("{ip} is outside service-cidr {sc}; the DNS service needs an address inside it{e}"));
                } else if ip == sc.network {
                    r.error(&p, format!("{ip} is the network address of {sc}; use another address inside it{e}"));
                } else if Some(ip) == sc.nth(1) {
                    r.error(&p, format!("{ip} is the first address of {sc}, which the `kubernetes` Service takes; use another{e}"));
                } else if ip.is_ipv4() && Some(ip) == last {
                    r.error(&p, format!("{ip} is the broadcast address of {sc}; use another address inside it{e}"));
                }
            }
            _ => {}
        }
    }

    // The API endpoint.
    let api = cluster.key("api");
    if let Some(ip) = c.api_address.as_deref().and_then(|a| a.parse::<IpAddr>().ok()) {
        for (name, net) in &networks {
            if net.contains(ip) {
                r.error(
                    &api.key("address"),
                    format!(
                        "{ip} is inside {name} {net}; the API address must be outside the pod and service networks"
                    ),
                );
            }
        }
    }
    if let Some((_, what)) = RESERVED_PORTS.iter().find(|(p, _)| *p == c.api_port) {
        r.error(&api.key("port"), format!("{} is {what} on the servers; use another port, usually 6443", c.api_port));
    }

    // Hosts.
    let hosts_path = FieldPath::default().key("hosts");
    let Some(hosts) = &d.hosts else { return None };
    if hosts.is_empty() {
        r.error(&hosts_path, "the list is empty; add at least one host with role: server");
        return None;
    }
    let at = |i: usize, key: &str| hosts_path.index(i).key(key);
    let mut addresses: HashMap<String, usize> = HashMap::new();
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut ips: HashMap<IpAddr, (usize, &str)> = HashMap::new();
    for (i, h) in hosts.iter().enumerate() {
        let Some(h) = h else { continue };
        let host = &h.host;
        if h.address_ok {
            let key = match host.address.parse::<IpAddr>() {
                Ok(ip) => ip.to_string(),
                Err(_) => host.address.to_ascii_lowercase(),
            };
            if let Some(&j) = addresses.get(&key) {
                let line = line_of(&hosts_path.index(j));
                r.error(
                    &at(i, "address"),
                    format!("{} is already hosts[{j}] (line {line}); list each machine once", host.address),
                );
            } else {
                addresses.insert(key, i);
            }
        }
        if let Some(name) = host.name.as_deref() {
            if let Some(&j) = names.get(name) {
                let line = line_of(&hosts_path.index(j));
                r.error(
                    &at(i, "name"),
                    format!("{name:?} is already the name of hosts[{j}] (line {line}); node names must be unique"),
                );
            } else {
                names.insert(name, i);
            }
        }
        let mut own: Vec<(IpAddr, &str)> = vec![];
        if let Some(ip) = host.address.parse::<IpAddr>().ok().filter(|_| h.address_ok) {
            own.push((ip, "address"));
        }
        if let Some(ip) = host.node_ip {
            if ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() {
                r.error(
                    &at(i, "node-ip"),
                    format!("{ip} cannot be a node's IP; use an address other hosts reach it at"),
                );
            }
            own.push((ip, "node-ip"));
        }
        for (ip, field) in own {
            for (name, net) in &networks {
                if net.contains(ip) {
                    r.error(
                        &at(i, field),
                        format!(
                            "{ip} is inside {name} {net}; choose a {name} that does not contain the hosts' addresses"
                        ),
                    );
                }
            }
            match ips.get(&ip) {
                Some(&(j, other)) if j != i && !(field == "address" && other == "address") => {
                    let line = line_of(&hosts_path.index(j));
                    r.error(
                        &at(i, field),
                        format!("{ip} is already the {other} of hosts[{j}] (line {line}); each host needs its own IP"),
                    );
                }
                Some(_) => {}
                None => {
                    ips.insert(ip, (i, field));
                }
            }
        }
    }

    // Mode.
    if !hosts.iter().all(|h| h.as_ref().is_some_and(|h| h.role_ok)) {
        return None;
    }
    let hosts: Vec<_> = hosts.iter().flatten().map(|h| &h.host).collect();
    let servers = hosts.iter().filter(|h| h.role == Role::Server).count();
    if !hosts.iter().any(|h| h.is_node()) {
        r.key_error(
            &hosts_path,
            "no host runs workloads: every server is control-plane-only and there is no agent; add an agent or remove control-plane-only from a server",
        );
    }
    let force = FieldPath::default().key("options").key("force-even-servers");
    let mode = match servers {
        0 => {
            r.key_error(
                &hosts_path,
                "no server: a cluster needs a host with role: server (1 for a single server; 3, 5 or 7 for HA)",
            );
            return None;
        }
        1 => Mode::Single,
        n if n > MAX_SERVERS => {
            r.key_error(&hosts_path, too_many(n));
            return None;
        }
        n if n % 2 == 0 && !d.options.force_even_servers => {
            r.key_error(&hosts_path, format!("{}; or set options.force-even-servers: true to go ahead", even(n)));
            return None;
        }
        n if n % 2 == 0 => {
            warnings.push(Pending {
                path: force,
                at_key: true,
                message: format!("{} (going ahead as forced)", even(n)),
            });
            Mode::Ha { servers: n }
        }
        n => Mode::Ha { servers: n },
    };
    if matches!(mode, Mode::Ha { .. }) && c.api_address.is_none() && c.api_address_ok {
        let first = hosts.iter().find(|h| h.role == Role::Server).map(|h| h.address.as_str()).unwrap_or_default();
        warnings.push(Pending {
            path: api.key("address"),
            at_key: true,
            message: format!(
                "not set, so kubeconfigs point at the first server ({first}) only and kubectl stops when it is down; put a load balancer or DNS name in front of the servers and set it"
            ),
        });
    }
    Some(mode)
}

/// Why an even number of servers buys nothing.
fn even(n: usize) -> String {
    let quorum = n / 2 + 1;
    let survive = n - quorum;
    format!(
        "{n} servers is an even count: etcd needs a majority ({quorum} of {n}) to keep working, so {n} servers survive {survive} failed server{}, the same as {} server{}, with one more machine that can fail; use {} or {} servers and make the other hosts agents",
        if survive == 1 { "" } else { "s" },
        n - 1,
        if n - 1 == 1 { "" } else { "s" },
        n - 1,
        n + 1,
    )
}

fn too_many(n: usize) -> String {
    format!(
        "{n} servers is more than {MAX_SERVERS}: every etcd write waits for a majority ({} members), so more servers make writes slower without a useful gain in safety ({MAX_SERVERS} servers already survive 3 failures); use 3, 5 or 7 servers and make the other hosts agents",
        n / 2 + 1
    )
}
