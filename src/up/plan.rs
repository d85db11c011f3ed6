//! From the inventory and every host's facts: what changes where, in which
//! order, and every reason not to start. Pure, so `--dry-run` shows exactly
//! what a run would do and tests can check it without hosts.

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};

use super::facts::{Facts, MIN_FREE_VAR_KIB};
use super::nodes::{Member, Node};
use super::render::{self, Unit};
use crate::host::check;
use crate::inventory::{Host, Inventory, Mode, Role};
use crate::payload::arch_of_machine;
use crate::release::Release;
use crate::upgrade::crd::{NodeRow, UpgradePlanSpec};
use crate::upgrade::preflight::NodeFacts;

/// What `up` uploads from this machine: the k8s binary of each host's
/// architecture (this one, and those `cluster.binaries` or `--binary` name:
/// one release), the image archives of `cluster.images` and the
/// registries.yaml of `cluster.registries`.
#[derive(Debug, Clone)]
pub struct Local {
    /// By Go's name of the architecture (`amd64`, `arm64`).
    pub binaries: BTreeMap<String, Release>,
    pub version: String,
    /// The Kubernetes version of the components it carries.
    pub kubernetes: String,
    /// For every host's images dir (copied where they differ).
    pub images: Vec<std::path::PathBuf>,
    /// For every host's `/etc/k8s/registries.yaml` (written where it
    /// differs), checked here as the node checks it.
    pub registries: Option<LocalFile>,
}

impl Local {
    /// The binary for a host whose `uname -m` says `machine`.
    pub fn binary_for(&self, machine: &str) -> Option<&Release> {
        self.binaries.get(arch_of_machine(machine)?)
    }
}

/// A small file read (and checked) on this machine, written to hosts as is.
#[derive(Clone)]
pub struct LocalFile {
    /// Where it was read, for messages.
    pub path: std::path::PathBuf,
    pub content: Vec<u8>,
    pub sha256: String,
}

impl LocalFile {
    pub fn new(path: std::path::PathBuf, content: Vec<u8>) -> LocalFile {
        use sha2::Digest as _;
        let sha256 = hex::encode(sha2::Sha256::digest(&content));
        LocalFile { path, content, sha256 }
    }
}

/// Its content may be secret (registry passwords): never printed.
impl std::fmt::Debug for LocalFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalFile").field("path", &self.path).field("sha256", &self.sha256).finish_non_exhaustive()
    }
}

/// What the running cluster says, read from the first server when it runs.
#[derive(Debug, Clone, Default)]
pub struct Running {
    pub nodes: Option<Vec<Node>>,
    /// The etcd members (HA).
    pub members: Option<Vec<Member>>,
    /// The join tokens: (servers', agents').
    pub tokens: Option<(String, String)>,
    /// The nodes as the upgrade controller sees them.
    pub upgrade_facts: Option<Vec<NodeFacts>>,
}

/// This binary is another k8s version than nodes of the running cluster
/// run: those nodes are not restarted by `up` but upgraded by the cluster
/// itself (an UpgradePlan: one at a time, health-gated, rolled back on
/// failure); `up` uploads the binary to the servers, hands over, and
/// follows the plan.
#[derive(Debug, Clone, Serialize)]
pub struct Upgrade {
    /// The versions the nodes run now.
    pub from: Vec<String>,
    pub to: String,
    /// The nodes in rollout order, as the controller would start them.
    pub rows: Vec<NodeRow>,
}

/// When a host is worked on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// The first server: starts (or is) the cluster.
    FirstServer,
    /// The other servers of the cluster, one at a time (a restart keeps
    /// etcd's quorum).
    Server,
    /// HA servers with nothing installed, in parallel with each other and
    /// the agents: a joining server is an etcd learner, which counts for no
    /// quorum, and the join endpoint admits one learner at a time (the
    /// others are told to ask again).
    NewServer,
    /// Agents, in parallel.
    Agent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Service {
    /// Active and up to date.
    Keep,
    Start,
    Restart,
}

/// A file `up` writes from this machine's copy (`cluster.registries`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FilePlan {
    /// The inventory names none: the host's file, if any, is left alone.
    None,
    /// The host has the same content, mode 0600.
    Unchanged,
    /// Missing, another content or another mode: written (0600).
    Write,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenPlan {
    /// The host does not join with a token.
    None,
    Unchanged,
    Write,
    /// Read from the first server once it runs.
    AfterFirstServer,
}

/// One host's part of the plan.
#[derive(Debug, Clone, Serialize)]
pub struct HostPlan {
    /// Index into `inventory.hosts`.
    #[serde(skip)]
    pub index: usize,
    pub name: String,
    pub address: String,
    #[serde(serialize_with = "role_name")]
    pub role: Role,
    pub stage: Stage,
    /// The machine's architecture in Go's names (`amd64`, `arm64`): which
    /// of [`Local::binaries`] it gets.
    pub arch: String,
    /// Upload the binary (the installed one differs or is missing).
    pub upload: bool,
    /// The installed `k8s version` line, if any.
    pub installed: Option<String>,
    #[serde(skip)]
    pub config: String,
    /// Changed keys of config.yaml (`+key`, `-key`, `~key`, or `new`); empty: unchanged.
    pub config_changes: Vec<String>,
    #[serde(skip)]
    pub unit: Unit,
    pub unit_changed: bool,
    pub token: TokenPlan,
    /// `/etc/k8s/registries.yaml`; a running node applies a new one
    /// within seconds (`node::registries::watch`), so no restart.
    pub registries: FilePlan,
    pub service: Service,
    /// The host is new to the cluster.
    pub join: bool,
    /// The running service predates its files (an earlier run stopped
    /// before restarting it).
    pub stale: bool,
    /// The node runs another k8s version and is upgraded by the cluster
    /// (see [`Upgrade`]), not uploaded to and restarted.
    pub upgrade: bool,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub mode: Mode,
    /// In the order they are worked on: first server, servers, agents.
    pub hosts: Vec<HostPlan>,
    /// Reasons not to start, each naming its host.
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
    /// Nodes of the cluster that the inventory does not list.
    pub extra_nodes: Vec<Node>,
    /// etcd members that are neither inventory servers nor extra nodes
    /// (control-plane-only servers run no node).
    pub extra_members: Vec<Member>,
    /// The running cluster upgrades itself to this binary first.
    pub upgrade: Option<Upgrade>,
}

/// Roles as the inventory writes them, in JSON.
pub fn role_name<S: Serializer>(role: &Role, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&role.to_string())
}

pub fn node_name(host: &Host, facts: &Facts) -> String {
    host.name.clone().unwrap_or_else(|| facts.hostname.clone())
}

/// `facts[i]` belongs to `inv.hosts[i]`.
pub fn plan(inv: &Inventory, facts: &[Facts], local: &Local, running: &Running) -> Plan {
    let mut problems = vec![];
    let mut warnings: Vec<String> = inv.warnings().iter().map(|w| w.to_string()).collect();
    if let Some(want) = &inv.cluster.version {
        if want.strip_prefix('v').unwrap_or(want) != local.version {
            problems.push(format!(
                "{}: cluster.version is {want}, but this k8s is v{}; run `up` with the k8s binary of release {want}, or change cluster.version",
                inv.file.display(),
                local.version
            ));
        }
    }
    let names: Vec<String> = inv.hosts.iter().zip(facts).map(|(h, f)| node_name(h, f)).collect();
    check_names(inv, &names, &mut problems);
    check_mode(inv, facts, &mut problems);

    let node_names: BTreeMap<&str, &Node> =
        running.nodes.iter().flatten().map(|n| (n.name.as_str(), n)).collect();
    // Nodes of the running cluster on another version upgrade through a plan.
    let upgraded: Vec<bool> = facts
        .iter()
        .zip(&names)
        .map(|(f, name)| f.installed_release().is_some_and(|v| v != local.version) && node_names.contains_key(name.as_str()))
        .collect();
    let upgrade = upgraded.contains(&true).then(|| upgrade_preview(inv, facts, local, running, &mut problems)).flatten();
    let mut hosts = vec![];
    for (index, (host, f)) in inv.hosts.iter().zip(facts).enumerate() {
        let who = super::remote::who(host);
        check_host(&who, host, f, local, upgraded[index], &mut problems, &mut warnings);
        judge_host(&who, inv, host, f, &mut problems, &mut warnings);
        hosts.push(host_plan(inv, index, &names[index], f, local, running, &node_names, upgraded[index]));
    }
    hosts.sort_by_key(|h| (h.stage, h.index));
    let v1: Vec<&str> = inv.hosts.iter().zip(facts).filter(|(_, f)| f.cgroup == 1).map(|(h, _)| h.display_name()).collect();
    if !v1.is_empty() {
        warnings.push(format!("cgroup v1 on {}: kubelet runs with failCgroupV1: false; cgroup v2 is better supported", v1.join(", ")));
    }

    let listed: Vec<&str> = names.iter().map(String::as_str).collect();
    let extra_nodes: Vec<Node> =
        running.nodes.iter().flatten().filter(|n| !listed.contains(&n.name.as_str())).cloned().collect();
    let servers: Vec<&str> =
        inv.hosts.iter().zip(&names).filter(|(h, _)| h.is_server()).map(|(_, n)| n.as_str()).collect();
    let extra_members = running
        .members
        .iter()
        .flatten()
        .filter(|m| !servers.contains(&m.name.as_str()) && !extra_nodes.iter().any(|n| n.name == m.name))
        .cloned()
        .collect();
    Plan { mode: inv.mode(), hosts, problems, warnings, extra_nodes, extra_members, upgrade }
}

/// The upgrade the cluster would run, as its controller would see it: the
/// rows in order and the preflight checks (the controller, which runs the
/// cluster's current version, checks them again).
fn upgrade_preview(inv: &Inventory, facts: &[Facts], local: &Local, running: &Running, problems: &mut Vec<String>) -> Option<Upgrade> {
    let Some(nodes) = &running.upgrade_facts else {
        problems.push(format!(
            "{}: the cluster runs another k8s version, and its nodes cannot be read to plan the upgrade; see the warning above",
            inv.first_server().address
        ));
        return None;
    };
    let spec = upgrade_spec(local, &inv.first_server().address);
    let first = inv.hosts.iter().position(|h| render::is_first_server(inv, h)).expect("an inventory has a server");
    let controller = facts[first].installed_release().unwrap_or_default();
    // The cluster's etcd version is not known here: its controller checks it.
    let running = crate::upgrade::preflight::Running { k8s: controller, etcd: None };
    for p in crate::upgrade::preflight::preflight(&spec, nodes, running) {
        problems.push(format!("upgrade preflight: {p}"));
    }
    let mut from: Vec<String> = nodes.iter().filter_map(|n| n.k8s_version.clone()).collect();
    from.sort();
    from.dedup();
    Some(Upgrade { from, to: local.version.clone(), rows: crate::upgrade::rollout::rows(&spec, nodes) })
}

/// The plan's spec for this binary (the server that creates the plan sets
/// the source and the gates).
fn upgrade_spec(local: &Local, first_server: &str) -> UpgradePlanSpec {
    UpgradePlanSpec {
        version: local.version.clone(),
        kubernetes_version: local.kubernetes.clone(),
        sha256: local.binaries.iter().map(|(arch, b)| (arch.clone(), b.sha256.clone())).collect(),
        source: format!("https://{first_server}:{}", crate::join::DEFAULT_PORT),
        ..Default::default()
    }
}

#[allow(clippy::too_many_arguments)]
fn host_plan(
    inv: &Inventory,
    index: usize,
    name: &str,
    f: &Facts,
    local: &Local,
    running: &Running,
    nodes: &BTreeMap<&str, &Node>,
    upgrade: bool,
) -> HostPlan {
    let host = &inv.hosts[index];
    let stage = match host.role {
        Role::Server if render::is_first_server(inv, host) => Stage::FirstServer,
        Role::Server if f.installed_role().is_none() && matches!(inv.mode(), Mode::Ha { .. }) => Stage::NewServer,
        Role::Server => Stage::Server,
        Role::Agent => Stage::Agent,
    };
    let config = render::config(inv, host, name);
    let config_changes = match f.config.as_deref() {
        Some(old) if old == config => vec![],
        old => render::config_changes(old, &config),
    };
    let unit = render::unit(host.role);
    let unit_changed = f.unit_text.get(unit.name).map(String::as_str) != Some(unit.text);
    let joins_with_token = host.role == Role::Agent || (stage != Stage::FirstServer && matches!(inv.mode(), Mode::Ha { .. }));
    let token = match (&running.tokens, joins_with_token) {
        (_, false) => TokenPlan::None,
        (None, true) => TokenPlan::AfterFirstServer,
        (Some((server, agent)), true) => {
            let want = if host.role == Role::Server { server } else { agent };
            if f.token.as_ref() == Some(want) { TokenPlan::Unchanged } else { TokenPlan::Write }
        }
    };
    let binary = local.binary_for(&f.arch);
    let upload = !upgrade && f.installed_sha256.as_deref() != binary.map(|b| b.sha256.as_str());
    let registries = match (&local.registries, &f.registries) {
        (None, _) => FilePlan::None,
        (Some(want), Some(has)) if has.sha256 == want.sha256 && has.mode == REGISTRIES_MODE => FilePlan::Unchanged,
        (Some(_), _) => FilePlan::Write,
    };
    let state = f.units.get(unit.name);
    let active = state.is_some_and(|u| u.is_active());
    let enabled = state.is_some_and(|u| u.enabled == "enabled");
    // Still starting (an earlier run gave up waiting) or between automatic
    // restarts: a restart starts over with the current files.
    let starting = state.is_some_and(|u| u.active == "activating");
    let stale = f.stale(unit.name, &[render::BINARY, render::CONFIG, render::TOKEN]);
    let changed = upload
        || !config_changes.is_empty()
        || unit_changed
        || matches!(token, TokenPlan::Write | TokenPlan::AfterFirstServer);
    let service = match (active, changed || stale, enabled) {
        _ if starting => Service::Restart,
        (false, _, _) => Service::Start,
        (true, true, _) => Service::Restart,
        // `enable --now` on an active unit only enables it.
        (true, false, false) => Service::Start,
        (true, false, true) => Service::Keep,
    };
    let join = f.installed_role().is_none() || (host.is_node() && running.nodes.is_some() && !nodes.contains_key(name));
    HostPlan {
        index,
        name: name.to_string(),
        address: host.address.clone(),
        role: host.role,
        stage,
        arch: arch_of_machine(&f.arch).unwrap_or_default().to_string(),
        upload,
        installed: f.installed_version.clone(),
        config,
        config_changes,
        unit,
        unit_changed,
        token,
        registries,
        service,
        join,
        stale,
        upgrade,
    }
}

/// The mode of the registries.yaml `up` writes: it may hold passwords.
pub const REGISTRIES_MODE: u32 = 0o600;

/// Node names (given or from hostnames) are valid and distinct.
fn check_names(inv: &Inventory, names: &[String], problems: &mut Vec<String>) {
    for (i, (host, name)) in inv.hosts.iter().zip(names).enumerate() {
        if host.name.is_some() {
            continue; // checked with the inventory
        }
        let valid = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        if !valid {
            problems.push(format!(
                "{}: its hostname {name:?} is not a valid node name; set name: for hosts[{i}] (line {})",
                host.address, host.line
            ));
        }
        for (j, other) in names.iter().enumerate().take(i) {
            if other == name {
                problems.push(format!(
                    "{}: node name {name:?} is also that of {} (from its hostname); set name: for hosts[{i}] (line {})",
                    host.address, inv.hosts[j].address, host.line
                ));
            }
        }
    }
}

/// The datastore on the servers matches the mode the inventory asks for.
fn check_mode(inv: &Inventory, facts: &[Facts], problems: &mut Vec<String>) {
    let first = inv.hosts.iter().position(|h| render::is_first_server(inv, h)).expect("an inventory has a server");
    let servers: Vec<usize> = (0..inv.hosts.len()).filter(|&i| inv.hosts[i].is_server()).collect();
    let ha = matches!(inv.mode(), Mode::Ha { .. });
    for &i in &servers {
        let (host, store) = (&inv.hosts[i], facts[i].datastore.as_deref());
        match (ha, store) {
            // A single server restarted with cluster-init moves its SQLite
            // data into etcd (server::store), then the others join it.
            (true, Some("sqlite")) if i == first => {}
            (true, Some("sqlite")) => problems.push(format!(
                "{}: holds a single-server (SQLite) cluster of its own; it cannot join as an HA server. \
                 Run `k8s reset` on it first if its data can go",
                host.address
            )),
            (false, Some("etcd")) => problems.push(format!(
                "{}: runs an HA (etcd) server; an HA cluster cannot become a single server. List 3, 5 or 7 servers",
                host.address
            )),
            _ => {}
        }
    }
    // Pods keep the MTU of the network they started in.
    let want = inv.cluster.pod_network.to_string();
    for &i in &servers {
        let Some(old) = facts[i].config.as_deref().filter(|_| facts[i].datastore.is_some()) else { continue };
        let old: serde_yaml::Value = serde_yaml::from_str(old).unwrap_or_default();
        let had = old.get("pod-network").and_then(|v| v.as_str()).unwrap_or("host-gw");
        if had != want {
            problems.push(format!(
                "{}: the cluster runs pod-network {had}; it cannot change to {want} (pods keep the network they started in); \
                 set cluster.pod-network: {had}",
                inv.hosts[i].address
            ));
        }
    }
    // In HA, a new first server would start a second cluster beside one
    // that the other servers already run.
    if ha && facts[first].datastore.is_none() {
        if let Some(&i) = servers.iter().find(|&&i| facts[i].datastore.is_some()) {
            problems.push(format!(
                "{}: is the first server but is not installed, while {} already runs the cluster; \
                 list an installed server first (the first server starts the cluster, the others join it)",
                inv.hosts[first].address, inv.hosts[i].address
            ));
        }
    }
}

/// The host check's findings (`k8s check-config`, run during facts): a
/// failure is a problem, a warning a warning; what `check_host` already
/// judges with `up`'s own figures (the architecture, the free space) and
/// the cgroup version (one warning for all hosts) are left out.
fn judge_host(who: &str, inv: &Inventory, host: &Host, f: &Facts, problems: &mut Vec<String>, warnings: &mut Vec<String>) {
    let server = host.role == Role::Server;
    let want = check::Want {
        server,
        etcd: server && matches!(inv.mode(), Mode::Ha { .. }),
        vxlan: inv.cluster.pod_network == crate::host::config::PodNetwork::Vxlan,
        // The binaries of one release are linked alike (make dist: statically).
        static_binary: check::Want::STATIC,
    };
    for finding in check::judge(&f.checks, want) {
        if matches!(finding.check.as_str(), "architecture" | "disk" | "cgroup version") {
            continue;
        }
        let line = format!("{who}: {}: {}", finding.check, finding.detail);
        match finding.level {
            check::Level::Fail => problems.push(line),
            check::Level::Warn => warnings.push(line),
            check::Level::Ok => {}
        }
    }
}

fn check_host(who: &str, host: &Host, f: &Facts, local: &Local, upgrade: bool, problems: &mut Vec<String>, warnings: &mut Vec<String>) {
    let binary = local.binary_for(&f.arch);
    match (arch_of_machine(&f.arch), binary) {
        (_, Some(_)) => {}
        (Some(arch), None) => problems.push(format!(
            "{who}: the machine is {} ({arch}) and no k8s binary for {arch} is given; build one (make dist ARCH={arch}) and name it in the inventory's cluster.binaries.{arch} or with --binary",
            f.arch
        )),
        (None, None) => problems.push(format!(
            "{who}: the machine is {}; k8s is built for amd64 (x86_64) and arm64 (aarch64)",
            if f.arch.is_empty() { "of an unknown architecture" } else { &f.arch }
        )),
    }
    if !f.systemd {
        problems.push(format!("{who}: systemd is not running (no /run/systemd/system); k8s up installs systemd units"));
    }
    let want = render::unit(host.role).name;
    if let Some(installed) = f.installed_role() {
        if installed != want {
            problems.push(format!(
                "{who}: is installed as {}, the inventory makes it {}; run `k8s reset` on it first, or keep its role",
                installed.trim_start_matches("k8s-"),
                host.role
            ));
        }
    }
    let size = binary.map_or(0, |b| b.size);
    let upload = upgrade || f.installed_sha256.as_deref() != binary.map(|b| b.sha256.as_str());
    // The new binary is written beside the old one before it replaces it.
    if let Some(free) = f.free_bin_kib.filter(|_| upload && binary.is_some()) {
        if free * 1024 < size + (16 << 20) {
            problems.push(format!(
                "{who}: {} MiB free in /usr/local/bin, the k8s binary needs {} MiB",
                free / 1024,
                size / (1 << 20) + 16
            ));
        }
    }
    if let Some(free) = f.free_var_kib.filter(|_| f.installed_role().is_none()) {
        if free < MIN_FREE_VAR_KIB {
            problems.push(format!(
                "{who}: {} MiB free in /var/lib, k8s needs {} MiB for its components, images and state",
                free / 1024,
                MIN_FREE_VAR_KIB / 1024
            ));
        }
    }
    if let (Some(installed), true) = (f.installed_release(), upload && !upgrade) {
        if installed != local.version {
            warnings.push(format!("{who}: k8s {installed} is replaced by {}", local.version));
        }
    }
}
