//! From the parsed YAML document to a draft of the typed model: checks
//! structure (known keys, types) and each value's own syntax, and keeps
//! going after a problem so that one run reports them all. Problems carry a
//! field path; `locate` turns it into a line and column afterwards.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::path::Path;

use serde_yaml::Value;

use super::locate::FieldPath;
use super::model::*;
use super::syntax::{self, Cidr};

/// A problem before it has a position.
#[derive(Debug, Clone)]
pub struct Pending {
    pub path: FieldPath,
    /// Point at the key rather than at its value (unknown keys).
    pub at_key: bool,
    pub message: String,
}

/// What `read` could make of the document. Fields that failed their own
/// check are `None` (or flagged) so that the cross-checks in `check` stay
/// quiet about them rather than report a consequence of the same mistake.
#[derive(Debug)]
pub struct Draft {
    pub cluster: ClusterDraft,
    pub ssh: SshDefaults,
    /// `None` when `hosts:` is missing or not a list; an entry is `None`
    /// when it is not a mapping (indices stay those of the file).
    pub hosts: Option<Vec<Option<HostDraft>>>,
    pub options: Options,
}

#[derive(Debug)]
pub struct ClusterDraft {
    pub name: String,
    pub api_address: Option<String>,
    pub api_address_ok: bool,
    pub api_port: u16,
    pub tls_san: Vec<String>,
    pub cluster_cidr: Option<Cidr>,
    pub service_cidr: Option<Cidr>,
    /// Explicit and well-formed.
    pub cluster_dns: Option<IpAddr>,
    pub cluster_dns_given: bool,
    pub cluster_domain: String,
    pub pod_network: PodNetwork,
    pub profile: Profile,
    pub disable: Vec<Addon>,
    pub images: Vec<String>,
    pub registries: Option<String>,
    pub binaries: Vec<(String, String)>,
    pub version: Option<String>,
}

#[derive(Debug)]
pub struct HostDraft {
    pub host: Host,
    pub address_ok: bool,
    pub role_ok: bool,
}

#[derive(Default)]
pub struct Reader {
    pub problems: Vec<Pending>,
}

/// Keys people write by habit (k3sup, k0sctl, Ansible) and what we call them.
const HOST_HINTS: &[(&str, &str)] = &[
    ("disable-agent", "control-plane-only: true (k3s' --disable-agent)"),
    ("ip", "address"),
    ("host", "address"),
    ("ssh-address", "address"),
    ("public-address", "address"),
    ("roles", "role"),
    ("hostname", "name"),
    ("node-name", "name"),
    ("private-address", "node-ip"),
    ("internal-address", "node-ip"),
    ("private-ip", "node-ip"),
    ("node-address", "node-ip"),
    ("user", "ssh: {user: …}"),
    ("port", "ssh: {port: …}"),
    ("identity-file", "ssh: {identity-file: …}"),
    ("key-path", "ssh: {identity-file: …}"),
    ("bastion", "ssh: {bastion: …}"),
    ("node-label", "labels (a mapping: {key: value})"),
    ("node-labels", "labels"),
    ("node-taint", "taints"),
    ("node-taints", "taints"),
];

const SSH_HINTS: &[(&str, &str)] = &[
    ("key", "identity-file"),
    ("key-path", "identity-file"),
    ("keypath", "identity-file"),
    ("private-key", "identity-file"),
    ("identity", "identity-file"),
    ("jump", "bastion"),
    ("jump-host", "bastion"),
    ("proxy-jump", "bastion"),
    ("proxyjump", "bastion"),
    ("strict-host-key-checking", "host-key-checking"),
    ("become", "sudo"),
    ("parallel", "concurrency"),
    ("parallelism", "concurrency"),
    ("username", "user"),
    ("login", "user"),
];

const CLUSTER_HINTS: &[(&str, &str)] = &[
    ("api-address", "api: {address: …}"),
    ("https-listen-port", "api: {port: …}"),
    ("api-port", "api: {port: …}"),
    ("server", "api: {address: …}"),
    ("endpoint", "api: {address: …}"),
    ("load-balancer", "api: {address: …}"),
    ("sans", "tls-san"),
    ("san", "tls-san"),
    ("pod-cidr", "cluster-cidr"),
    ("dns", "cluster-dns"),
    ("flannel-backend", "pod-network (host-gw or vxlan)"),
    ("network", "pod-network (host-gw or vxlan)"),
    ("hardening", "profile (standard or cis)"),
    ("disable-components", "disable (a list of built-in addons, like [coredns])"),
    ("kubernetes-version", "version (the k8s binary's version; it decides the Kubernetes version)"),
];

const TOP_HINTS: &[(&str, &str)] = &[
    ("apiversion", "nothing: this is not a k0sctl file; k8s reads cluster, ssh, hosts and options (docs/inventory.md)"),
    ("kind", "nothing: this is not a k0sctl file; k8s reads cluster, ssh, hosts and options (docs/inventory.md)"),
    ("spec", "nothing: this is not a k0sctl file; k8s reads cluster, ssh, hosts and options (docs/inventory.md)"),
    ("metadata", "cluster: {name: …}"),
    ("servers", "hosts, each with role: server"),
    ("agents", "hosts, each with role: agent"),
    ("nodes", "hosts"),
];

/// A value's type, for "expected X, found Y".
fn kind(v: &Value) -> String {
    match v {
        Value::Null => "nothing".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the text {s:?}"),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

/// The known keys of one mapping, each with its path.
pub struct Fields<'v> {
    path: FieldPath,
    entries: Vec<(&'v str, &'v Value)>,
}

impl<'v> Fields<'v> {
    /// A key's value and path; a key written with no value counts as absent.
    fn get(&self, key: &str) -> Option<(&'v Value, FieldPath)> {
        self.entries.iter().find(|(k, v)| *k == key && !v.is_null()).map(|(_, v)| (*v, self.path.key(key)))
    }
}

impl Reader {
    pub fn error(&mut self, path: &FieldPath, message: impl Into<String>) {
        self.problems.push(Pending { path: path.clone(), at_key: false, message: message.into() });
    }

    pub fn key_error(&mut self, path: &FieldPath, message: impl Into<String>) {
        self.problems.push(Pending { path: path.clone(), at_key: true, message: message.into() });
    }

    /// A mapping with only `known` keys; an unknown key is reported (with a
    /// hint) and skipped. An empty value counts as an empty mapping.
    fn fields<'v>(
        &mut self,
        v: &'v Value,
        path: &FieldPath,
        what: &str,
        known: &[&str],
        hints: &[(&str, &str)],
    ) -> Option<Fields<'v>> {
        let map = match v {
            Value::Null => return Some(Fields { path: path.clone(), entries: vec![] }),
            Value::Mapping(m) => m,
            other => {
                self.error(
                    path,
                    format!("expected {what} (a mapping with keys like {}), found {}", known[0], kind(other)),
                );
                return None;
            }
        };
        let mut entries = vec![];
        for (k, val) in map {
            let Value::String(k) = k else {
                self.error(path, format!("the key {} is not text; the keys here are: {}", kind(k), known.join(", ")));
                continue;
            };
            if known.contains(&k.as_str()) {
                entries.push((k.as_str(), val));
                continue;
            }
            let normalized = k.to_ascii_lowercase().replace('_', "-");
            let hint = hints
                .iter()
                .find(|(from, _)| *from == normalized)
                .map(|(_, to)| format!("; write {to}"))
                .or_else(|| syntax::closest(k, known).map(|c| format!("; did you mean {c}?")))
                .unwrap_or_else(|| format!("; the keys here are: {}", known.join(", ")));
            self.key_error(&path.key(k), format!("unknown key{hint}"));
        }
        Some(Fields { path: path.clone(), entries })
    }

    fn string(&mut self, v: &Value, path: &FieldPath, what: &str) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(_) | Value::Bool(_) => {
                self.error(path, format!("expected {what} (text), found {}; put it in quotes", kind(v)));
                None
            }
            other => {
                self.error(path, format!("expected {what} (text), found {}", kind(other)));
                None
            }
        }
    }

    /// A string checked by `check`.
    fn checked(
        &mut self,
        v: &Value,
        path: &FieldPath,
        what: &str,
        check: impl FnOnce(&str) -> Result<(), String>,
    ) -> Option<String> {
        let s = self.string(v, path, what)?;
        match check(&s) {
            Ok(()) => Some(s),
            Err(e) => {
                self.error(path, e);
                None
            }
        }
    }

    fn parsed<T>(
        &mut self,
        v: &Value,
        path: &FieldPath,
        what: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let s = self.string(v, path, what)?;
        match parse(&s) {
            Ok(t) => Some(t),
            Err(e) => {
                self.error(path, e);
                None
            }
        }
    }

    fn boolean(&mut self, v: &Value, path: &FieldPath) -> Option<bool> {
        match v {
            Value::Bool(b) => Some(*b),
            other => {
                self.error(path, format!("expected true or false, found {}", kind(other)));
                None
            }
        }
    }

    fn port(&mut self, v: &Value, path: &FieldPath) -> Option<u16> {
        match v.as_u64() {
            Some(p @ 1..=65535) => Some(p as u16),
            _ if v.is_number() => {
                self.error(path, format!("{} is not a port number from 1 to 65535", kind(v)));
                None
            }
            _ => {
                self.error(path, format!("expected a port number from 1 to 65535, found {}", kind(v)));
                None
            }
        }
    }

    /// One of `choices`; `hints` map habits from other tools to ours.
    fn choice<T: Copy>(
        &mut self,
        v: &Value,
        path: &FieldPath,
        choices: &[(&str, T)],
        hints: &[(&str, &str)],
    ) -> Option<T> {
        let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
        let list = names.join(", ");
        let Value::String(s) = v else {
            let hint =
                hints.iter().find(|(from, _)| *from == v_text(v)).map(|(_, to)| format!("; {to}")).unwrap_or_default();
            self.error(path, format!("expected one of {list}, found {}{hint}", kind(v)));
            return None;
        };
        if let Some((_, t)) = choices.iter().find(|(n, _)| *n == s) {
            return Some(*t);
        }
        let lower = s.to_ascii_lowercase();
        let hint = hints
            .iter()
            .find(|(from, _)| *from == lower)
            .map(|(_, to)| format!("; {to}"))
            .or_else(|| syntax::closest(s, &names).map(|c| format!("; did you mean {c}?")))
            .unwrap_or_default();
        self.error(path, format!("{s:?} is not one of {list}{hint}"));
        None
    }

    fn string_list<'v>(&mut self, v: &'v Value, path: &FieldPath, what: &str) -> Vec<(&'v str, FieldPath)> {
        let items = match v {
            Value::Sequence(items) => items,
            Value::String(s) => {
                self.error(path, format!("expected a list of {what}; write [{s}]"));
                return vec![];
            }
            other => {
                self.error(path, format!("expected a list of {what}, found {}", kind(other)));
                return vec![];
            }
        };
        let mut out = vec![];
        for (i, item) in items.iter().enumerate() {
            let p = path.index(i);
            match item {
                Value::String(s) => out.push((s.as_str(), p)),
                other => self.error(&p, format!("expected {what} (text), found {}", kind(other))),
            }
        }
        out
    }

    pub fn read(&mut self, doc: &Value, base_dir: &Path) -> Draft {
        let root = FieldPath::default();
        let top = self.fields(doc, &root, "the inventory", &["cluster", "ssh", "hosts", "options"], TOP_HINTS);
        let get = |k: &str| top.as_ref().and_then(|t| t.get(k));
        let cluster = self.cluster(get("cluster"));
        let ssh = self.ssh_defaults(get("ssh"), base_dir);
        let options = self.options(get("options"));
        let hosts = match get("hosts") {
            Some((v, path)) => self.hosts(v, &path),
            None => {
                if top.is_some() {
                    self.error(
                        &root,
                        "no hosts: list the machines under hosts:, e.g. `hosts: [{address: 10.0.0.11, role: server}]`",
                    );
                }
                None
            }
        };
        Draft { cluster, ssh, hosts, options }
    }

    fn cluster(&mut self, section: Option<(&Value, FieldPath)>) -> ClusterDraft {
        let mut c = ClusterDraft {
            name: DEFAULT_CLUSTER_NAME.into(),
            api_address: None,
            api_address_ok: true,
            api_port: DEFAULT_API_PORT,
            tls_san: vec![],
            cluster_cidr: Some(Cidr::parse(DEFAULT_CLUSTER_CIDR).expect("valid default")),
            service_cidr: Some(Cidr::parse(DEFAULT_SERVICE_CIDR).expect("valid default")),
            cluster_dns: None,
            cluster_dns_given: false,
            cluster_domain: DEFAULT_CLUSTER_DOMAIN.into(),
            pod_network: PodNetwork::default(),
            profile: Profile::default(),
            disable: vec![],
            images: vec![],
            registries: None,
            binaries: vec![],
            version: None,
        };
        let Some((v, path)) = section else { return c };
        let known = [
            "name",
            "api",
            "tls-san",
            "cluster-cidr",
            "service-cidr",
            "cluster-dns",
            "cluster-domain",
            "pod-network",
            "profile",
            "disable",
            "images",
            "registries",
            "binaries",
            "version",
        ];
        let Some(f) = self.fields(v, &path, "the cluster settings", &known, CLUSTER_HINTS) else {
            return c;
        };
        if let Some((v, p)) = f.get("name") {
            let check = |s: &str| {
                if syntax::is_dns_label(s) {
                    Ok(())
                } else {
                    Err(format!(
                        "{s:?} is not a cluster name: lower-case letters, digits and '-', at most 63, starting and ending with a letter or digit"
                    ))
                }
            };
            if let Some(s) = self.checked(v, &p, "a cluster name", check) {
                c.name = s;
            }
        }
        if let Some((v, p)) = f.get("api") {
            if let Value::String(s) = v {
                self.error(&p, format!("expected a mapping; write api: {{address: {s}}} (and port: if not 6443)"));
            } else if let Some(api) = self.fields(v, &p, "the API endpoint", &["address", "port"], &[]) {
                if let Some((v, p)) = api.get("address") {
                    c.api_address =
                        self.checked(v, &p, "an address", |s| syntax::check_address(s, "cluster.api.port", None));
                    c.api_address_ok = c.api_address.is_some();
                }
                if let Some((v, p)) = api.get("port") {
                    if let Some(port) = self.port(v, &p) {
                        c.api_port = port;
                    }
                }
            }
        }
        if let Some((v, p)) = f.get("tls-san") {
            for (s, p) in self.string_list(v, &p, "names or IPs") {
                match syntax::check_san(s) {
                    Ok(()) => c.tls_san.push(s.to_string()),
                    Err(e) => self.error(&p, e),
                }
            }
        }
        for (key, slot) in [("cluster-cidr", &mut c.cluster_cidr), ("service-cidr", &mut c.service_cidr)] {
            if let Some((v, p)) = f.get(key) {
                *slot = self.parsed(v, &p, "a CIDR like 10.42.0.0/16", Cidr::parse);
            }
        }
        if let Some((v, p)) = f.get("cluster-dns") {
            c.cluster_dns_given = true;
            c.cluster_dns = self.parsed(v, &p, "an IP address", syntax::parse_ip);
        }
        if let Some((v, p)) = f.get("cluster-domain") {
            let check = |s: &str| {
                if syntax::is_dns_subdomain(s) {
                    Ok(())
                } else {
                    Err(format!("{s:?} is not a DNS domain like cluster.local"))
                }
            };
            if let Some(s) = self.checked(v, &p, "a DNS domain", check) {
                c.cluster_domain = s;
            }
        }
        if let Some((v, p)) = f.get("pod-network") {
            let hints = [("flannel", "write vxlan (flannel's default backend) or host-gw")];
            let choices = [("host-gw", PodNetwork::HostGw), ("vxlan", PodNetwork::Vxlan)];
            if let Some(n) = self.choice(v, &p, &choices, &hints) {
                c.pod_network = n;
            }
        }
        if let Some((v, p)) = f.get("profile") {
            let hints = [("cis-1.23", "write cis"), ("hardened", "write cis")];
            if let Some(profile) = self.choice(v, &p, &[("standard", Profile::Standard), ("cis", Profile::Cis)], &hints) {
                c.profile = profile;
            }
        }
        if let Some((v, p)) = f.get("disable") {
            c.disable = self.addons(v, &p);
        }
        if let Some((v, p)) = f.get("images") {
            c.images = self.image_archives(v, &p);
        }
        if let Some((v, p)) = f.get("registries") {
            c.registries = self.checked(v, &p, "the path of a registries.yaml", syntax::check_path);
        }
        if let Some((v, p)) = f.get("binaries") {
            c.binaries = self.binaries(v, &p);
        }
        if let Some((v, p)) = f.get("version") {
            c.version = self.checked(v, &p, "a version like v0.1.0", syntax::check_version);
        }
        c
    }

    /// `binaries`: the k8s binary on this machine for each architecture's
    /// hosts (`amd64: dist/k8s`, `arm64: dist/k8s-arm64`).
    fn binaries(&mut self, v: &Value, path: &FieldPath) -> Vec<(String, String)> {
        let hints = [("x86_64", "write amd64"), ("x86-64", "write amd64"), ("aarch64", "write arm64"), ("arm", "k8s is built for amd64 and arm64")];
        let Some(f) = self.fields(v, path, "the k8s binary of each architecture", &["amd64", "arm64"], &hints) else {
            return vec![];
        };
        let mut out = vec![];
        for arch in ["amd64", "arm64"] {
            if let Some((v, p)) = f.get(arch) {
                if let Some(file) = self.checked(v, &p, "the path of a k8s binary", syntax::check_path) {
                    out.push((arch.to_string(), file));
                }
            }
        }
        out
    }

    /// `images`: image archives on this machine for every host's images dir,
    /// each named by a file name no other has (they share one directory).
    fn image_archives(&mut self, v: &Value, path: &FieldPath) -> Vec<String> {
        let mut out: Vec<String> = vec![];
        for (s, p) in self.string_list(v, path, "image archive paths (.tar or .tar.zst)") {
            let name = Path::new(s).file_name().and_then(|n| n.to_str()).unwrap_or("");
            if let Err(e) = syntax::check_path(s) {
                self.error(&p, e);
            } else if !(name.ends_with(".tar") || name.ends_with(".tar.zst")) || name.starts_with('.') {
                self.error(&p, format!("{s:?} is not an image archive: a .tar (OCI layout or `docker save`) or .tar.zst file"));
            } else if out.iter().any(|o| Path::new(o).file_name() == Path::new(s).file_name()) {
                self.error(&p, format!("{s:?}: another archive has the file name {name}; the hosts keep them in one directory"));
            } else {
                out.push(s.to_string());
            }
        }
        out
    }

    /// `disable`: a list of built-in addons, each named once.
    fn addons(&mut self, v: &Value, path: &FieldPath) -> Vec<Addon> {
        use clap::ValueEnum;
        let names: Vec<(String, Addon)> =
            Addon::value_variants().iter().filter_map(|a| Some((a.to_possible_value()?.get_name().to_string(), *a))).collect();
        let choices: Vec<(&str, Addon)> = names.iter().map(|(n, a)| (n.as_str(), *a)).collect();
        let hints = [("traefik", "k8s deploys no ingress controller: there is nothing to disable")];
        let Value::Sequence(items) = v else {
            self.error(path, format!("expected a list of addons like [coredns], found {}", kind(v)));
            return vec![];
        };
        let mut out = vec![];
        for (i, item) in items.iter().enumerate() {
            if let Some(addon) = self.choice(item, &path.index(i), &choices, &hints) {
                if !out.contains(&addon) {
                    out.push(addon);
                }
            }
        }
        out
    }

    fn ssh_defaults(&mut self, section: Option<(&Value, FieldPath)>, base_dir: &Path) -> SshDefaults {
        let mut d = SshDefaults { base_dir: base_dir.to_path_buf(), ..SshDefaults::default() };
        let Some((v, path)) = section else { return d };
        let known = [
            "user",
            "port",
            "identity-file",
            "bastion",
            "host-key-checking",
            "sudo",
            "timeout",
            "concurrency",
            "known-hosts",
        ];
        let Some(f) = self.fields(v, &path, "the SSH settings", &known, SSH_HINTS) else {
            return d;
        };
        let common = self.ssh_common(&f);
        d.user_written = common.user.is_some();
        d.port_written = common.port.is_some();
        d.user = common.user.unwrap_or(d.user);
        d.port = common.port.unwrap_or(d.port);
        d.identity_file = common.identity_file;
        d.bastion = match common.bastion {
            BastionChoice::Via(b) => Some(b),
            BastionChoice::Inherit | BastionChoice::Direct => None,
        };
        d.host_key_checking = common.host_key_checking.unwrap_or(d.host_key_checking);
        d.sudo = common.sudo.unwrap_or(d.sudo);
        d.timeout = common.timeout.unwrap_or(d.timeout);
        if let Some((v, p)) = f.get("concurrency") {
            match v.as_u64() {
                Some(n) if n >= 1 => d.concurrency = n as usize,
                _ => self.error(&p, format!("expected a whole number of hosts, 1 or more, found {}", kind(v))),
            }
        }
        if let Some((v, p)) = f.get("known-hosts") {
            d.known_hosts = self.checked(v, &p, "a file path", syntax::check_path);
        }
        d
    }

    /// The SSH keys a host may set too.
    fn ssh_common(&mut self, f: &Fields) -> HostSsh {
        let mut s = HostSsh::default();
        if let Some((v, p)) = f.get("user") {
            s.user = self.checked(v, &p, "a user name", syntax::check_user);
        }
        if let Some((v, p)) = f.get("port") {
            s.port = self.port(v, &p);
        }
        if let Some((v, p)) = f.get("identity-file") {
            s.identity_file = self.checked(v, &p, "a file path", syntax::check_path);
        }
        if let Some((v, p)) = f.get("bastion") {
            s.bastion = self.bastion(v, &p);
        }
        if let Some((v, p)) = f.get("host-key-checking") {
            let hints = [
                ("no", "host keys are always checked; accept-new trusts a host the first time it is seen"),
                ("off", "host keys are always checked; accept-new trusts a host the first time it is seen"),
                ("false", "host keys are always checked; accept-new trusts a host the first time it is seen"),
                ("true", "write strict"),
                ("yes", "write strict"),
            ];
            s.host_key_checking = self.choice(
                v,
                &p,
                &[("strict", HostKeyChecking::Strict), ("accept-new", HostKeyChecking::AcceptNew)],
                &hints,
            );
        }
        if let Some((v, p)) = f.get("sudo") {
            let hints = [("true", "write always (or auto: only when the user is not root)"), ("false", "write never")];
            s.sudo =
                self.choice(v, &p, &[("auto", Sudo::Auto), ("always", Sudo::Always), ("never", Sudo::Never)], &hints);
        }
        if let Some((v, p)) = f.get("timeout") {
            s.timeout = match v {
                Value::Number(n) => {
                    self.error(&p, format!("{n} has no unit; write {n}s for seconds"));
                    None
                }
                _ => self.parsed(v, &p, "a duration like 10s", crate::duration::parse),
            };
        }
        s
    }

    /// `user@host:port`, a mapping, or `none`.
    fn bastion(&mut self, v: &Value, path: &FieldPath) -> BastionChoice {
        match v {
            Value::String(s) if s == "none" => BastionChoice::Direct,
            Value::String(_) => match self.parsed(v, path, "a bastion", syntax::parse_bastion) {
                Some(b) => BastionChoice::Via(b),
                None => BastionChoice::Inherit,
            },
            Value::Mapping(_) => {
                let known = ["address", "user", "port", "identity-file"];
                let Some(f) = self.fields(v, path, "a bastion", &known, SSH_HINTS) else {
                    return BastionChoice::Inherit;
                };
                let mut b = Bastion { address: String::new(), port: None, user: None, identity_file: None };
                let mut ok = true;
                match f.get("address") {
                    Some((v, p)) => match self.checked(v, &p, "an address", |s| {
                        syntax::check_address(s, "bastion.port", Some("bastion.user"))
                    }) {
                        Some(a) => b.address = a,
                        None => ok = false,
                    },
                    None => {
                        self.error(path, "the bastion has no address; add address: jump.example.com");
                        ok = false;
                    }
                }
                if let Some((v, p)) = f.get("user") {
                    b.user = self.checked(v, &p, "a user name", syntax::check_user);
                }
                if let Some((v, p)) = f.get("port") {
                    b.port = self.port(v, &p);
                }
                if let Some((v, p)) = f.get("identity-file") {
                    b.identity_file = self.checked(v, &p, "a file path", syntax::check_path);
                }
                if ok {
                    BastionChoice::Via(b)
                } else {
                    BastionChoice::Inherit
                }
            }
            other => {
                self.error(
                    path,
                    format!("expected a bastion like admin@jump:22 (or a mapping), found {}", kind(other)),
                );
                BastionChoice::Inherit
            }
        }
    }

    fn options(&mut self, section: Option<(&Value, FieldPath)>) -> Options {
        let mut o = Options::default();
        let Some((v, path)) = section else { return o };
        let Some(f) = self.fields(v, &path, "options", &["force-even-servers"], &[]) else {
            return o;
        };
        if let Some((v, p)) = f.get("force-even-servers") {
            o.force_even_servers = self.boolean(v, &p).unwrap_or(false);
        }
        o
    }

    fn hosts(&mut self, v: &Value, path: &FieldPath) -> Option<Vec<Option<HostDraft>>> {
        let Value::Sequence(items) = v else {
            self.error(
                path,
                format!("expected a list of hosts (each line starting with `- address: …`), found {}", kind(v)),
            );
            return None;
        };
        Some(items.iter().enumerate().map(|(i, item)| self.host(item, &path.index(i))).collect())
    }

    fn host(&mut self, v: &Value, path: &FieldPath) -> Option<HostDraft> {
        let known = ["address", "role", "name", "control-plane-only", "labels", "taints", "node-ip", "ssh"];
        if let Value::String(s) = v {
            self.error(path, format!("expected a host mapping; write `- {{address: {s}, role: server}}` or `- address: {s}` with `role:` below"));
            return None;
        }
        let f = self.fields(v, path, "a host", &known, HOST_HINTS)?;
        let mut host = Host::new("", Role::Agent);
        let mut address_ok = false;
        match f.get("address") {
            Some((v, p)) => {
                if let Some(a) =
                    self.checked(v, &p, "an address", |s| syntax::check_address(s, "ssh.port", Some("ssh.user")))
                {
                    host.address = a;
                    address_ok = true;
                }
            }
            None => self.error(path, "no address: add the IP or name SSH connects to, e.g. address: 10.0.0.11"),
        }
        let mut role_ok = false;
        match f.get("role") {
            Some((v, p)) => {
                let hints = [
                    ("master", "write server"),
                    ("controller", "write server (k0sctl's controller)"),
                    ("control-plane", "write server"),
                    ("controlplane", "write server"),
                    ("controller+worker", "write server (servers are nodes too unless control-plane-only: true)"),
                    ("single", "write server"),
                    ("worker", "write agent"),
                    ("node", "write agent"),
                ];
                if let Some(r) = self.choice(v, &p, &[("server", Role::Server), ("agent", Role::Agent)], &hints) {
                    host.role = r;
                    role_ok = true;
                }
            }
            None => self.error(path, "no role: add role: server or role: agent"),
        }
        if let Some((v, p)) = f.get("name") {
            host.name = self.checked(v, &p, "a node name", syntax::check_node_name);
        }
        if let Some((v, p)) = f.get("control-plane-only") {
            host.control_plane_only = self.boolean(v, &p).unwrap_or(false);
            if host.control_plane_only && role_ok && host.role == Role::Agent {
                self.error(&p, "only a server can be control-plane-only; an agent is always a node (remove the key or make it role: server)");
            }
        }
        let no_node = role_ok && host.role == Role::Server && host.control_plane_only;
        if let Some((v, p)) = f.get("labels") {
            if no_node {
                self.key_error(
                    &p,
                    "a control-plane-only server is not a node, so it has no labels; remove them or control-plane-only",
                );
            } else {
                host.labels = self.labels(v, &p);
            }
        }
        if let Some((v, p)) = f.get("taints") {
            if no_node {
                self.key_error(
                    &p,
                    "a control-plane-only server is not a node, so it has no taints; remove them or control-plane-only",
                );
            } else {
                host.taints = self.taints(v, &p);
            }
        }
        if let Some((v, p)) = f.get("node-ip") {
            host.node_ip = self.parsed(v, &p, "an IP address", syntax::parse_ip);
        }
        if let Some((v, p)) = f.get("ssh") {
            let known = ["user", "port", "identity-file", "bastion", "host-key-checking", "sudo", "timeout"];
            let hints: Vec<(&str, &str)> = SSH_HINTS
                .iter()
                .copied()
                .chain([
                    ("concurrency", "it in the top-level ssh: (it applies to the whole run)"),
                    ("known-hosts", "it in the top-level ssh: (one file for all hosts)"),
                ])
                .collect();
            if let Some(sf) = self.fields(v, &p, "SSH settings", &known, &hints) {
                host.ssh = self.ssh_common(&sf);
            }
        }
        Some(HostDraft { host, address_ok, role_ok })
    }

    fn labels(&mut self, v: &Value, path: &FieldPath) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let map = match v {
            Value::Mapping(m) => m,
            Value::Sequence(_) => {
                self.error(path, "expected a mapping of labels, found a list; write labels: {zone: a, disk: ssd}");
                return out;
            }
            other => {
                self.error(path, format!("expected a mapping of labels like {{zone: a}}, found {}", kind(other)));
                return out;
            }
        };
        for (k, val) in map {
            let Value::String(k) = k else {
                self.error(path, format!("the label key {} is not text; put it in quotes", kind(k)));
                continue;
            };
            let p = path.key(k);
            let mut ok = true;
            if let Err(e) = syntax::check_label_key(k) {
                self.key_error(&p, e);
                ok = false;
            }
            let value = match val {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                Value::Bool(_) | Value::Number(_) => {
                    self.error(&p, format!("label values are text, found {}; put it in quotes", kind(val)));
                    continue;
                }
                other => {
                    self.error(&p, format!("expected a label value (text), found {}", kind(other)));
                    continue;
                }
            };
            if let Err(e) = syntax::check_label_value(k, &value) {
                self.error(&p, e);
                ok = false;
            }
            if ok {
                out.insert(k.clone(), value);
            }
        }
        out
    }

    fn taints(&mut self, v: &Value, path: &FieldPath) -> Vec<Taint> {
        let mut out: Vec<Taint> = vec![];
        let mut seen = HashSet::new();
        if let Value::Sequence(items) = v {
            if items.iter().any(Value::is_mapping) {
                self.error(path, "write each taint as text key[=value]:Effect, e.g. - dedicated=edge:NoSchedule");
                return out;
            }
        }
        for (s, p) in self.string_list(v, path, "taints like dedicated=edge:NoSchedule") {
            match syntax::parse_taint(s) {
                Ok(t) => {
                    if !seen.insert((t.key.clone(), t.effect)) {
                        self.error(
                            &p,
                            format!(
                                "a taint with key {:?} and effect {:?} is already listed; keep one",
                                t.key, t.effect
                            ),
                        );
                    } else {
                        out.push(t);
                    }
                }
                Err(e) => self.error(&p, e),
            }
        }
        out
    }
}

fn v_text(v: &Value) -> String {
    match v {
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}
