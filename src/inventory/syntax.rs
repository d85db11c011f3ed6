//! Syntax of the values in `hosts.yaml`: addresses, names, labels, taints,
//! CIDRs, bastions (durations are [`crate::duration`]'s, shared with the
//! command line). Pure functions; each error is one sentence that says what
//! is wrong and, where it helps, what to write instead.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::model::{Bastion, Taint, TaintEffect};

/// An IP network like `10.42.0.0/16`, with its host bits zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub network: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        if s.contains(',') {
            return Err(format!(
                "{s:?} lists several networks; dual-stack is not supported, give one network like 10.42.0.0/16"
            ));
        }
        let Some((ip, bits)) = s.split_once('/') else {
            return Err(format!("{s:?} is not a CIDR: add the prefix length, e.g. {s}/16"));
        };
        let ip: IpAddr = ip.trim().parse().map_err(|_| format!("{s:?} is not a CIDR: {ip:?} is not an IP address"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = match bits.trim().parse() {
            Ok(p) if p <= max => p,
            _ => return Err(format!("{s:?} is not a CIDR: the prefix length must be a number from 0 to {max}")),
        };
        let network = mask(ip, prefix);
        if network != ip {
            return Err(format!("{s:?} has host bits set; the network is {network}/{prefix}"));
        }
        Ok(Cidr { network, prefix })
    }

    fn bits(&self) -> u32 {
        if self.network.is_ipv4() {
            32
        } else {
            128
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.network.is_ipv4() && mask(ip, self.prefix) == self.network
    }

    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.contains(other.network) || other.contains(self.network)
    }

    /// The `n`-th address of the network (0 is the network address), if the
    /// network is large enough to have it.
    pub fn nth(&self, n: u128) -> Option<IpAddr> {
        let host_bits = self.bits() - u32::from(self.prefix);
        if host_bits < 128 && n >> host_bits != 0 {
            return None;
        }
        Some(match self.network {
            IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) + n as u32)),
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) + n)),
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let m = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) };
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & m))
        }
        IpAddr::V6(v6) => {
            let m = if prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(prefix)) };
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & m))
        }
    }
}

pub fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.parse().map_err(|_| format!("{s:?} is not an IP address"))
}

/// An address to connect to: an IP or a DNS name (never with a user or a
/// port: those have their own keys).
pub fn check_address(s: &str, port_key: &str, user_key: Option<&str>) -> Result<(), String> {
    if s.is_empty() {
        return Err("is empty; give an IP address or a host name".into());
    }
    if let Some((user, _)) = s.split_once('@') {
        return Err(match user_key {
            Some(k) => format!("{s:?} contains a user; write the address alone and set {k}: {user}"),
            None => format!("{s:?} contains a user; write the address alone"),
        });
    }
    if s.contains("://") {
        return Err(format!("{s:?}: write the address alone, without a scheme"));
    }
    if s.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    if s.starts_with('[') && s.ends_with(']') && s[1..s.len() - 1].parse::<Ipv6Addr>().is_ok() {
        return Err(format!("{s:?}: write the IPv6 address without brackets"));
    }
    if let Some((host, port)) = s.rsplit_once(':') {
        if !host.contains(':') && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{s:?} contains a port; write the address alone and set {port_key}: {port}"));
        }
        return Err(format!("{s:?} is not a valid IPv6 address"));
    }
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(format!("{s:?} is not a valid IPv4 address"));
    }
    check_hostname(s)
}

/// A DNS host name (RFC 1123; any case; no trailing dot).
pub fn check_hostname(s: &str) -> Result<(), String> {
    if s.len() > 253 {
        return Err(format!("{s:?} is longer than 253 characters"));
    }
    for label in s.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!(
                "{s:?} is not an IP address or a host name (letters, digits and '-', in dot-separated parts that do not start or end with '-')"
            ));
        }
    }
    Ok(())
}

/// A DNS-1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A DNS-1123 subdomain: dot-separated labels, at most 253 characters.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// A Kubernetes node name.
pub fn check_node_name(s: &str) -> Result<(), String> {
    if is_dns_subdomain(s) {
        return Ok(());
    }
    let lower = s.to_ascii_lowercase();
    if lower != s && is_dns_subdomain(&lower) {
        return Err(format!("{s:?} has capital letters; node names are lower case: {lower}"));
    }
    Err(format!(
        "{s:?} is not a valid node name (lower-case letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters)"
    ))
}

/// A SAN for the API server certificate: an IP, a host name, or a
/// wildcard name like `*.example.com`.
pub fn check_san(s: &str) -> Result<(), String> {
    if s.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    check_hostname(s.strip_prefix("*.").unwrap_or(s))
}

/// `name` part of a label key, or a non-empty label value: at most 63
/// characters, alphanumerics with `-`, `_`, `.` inside.
fn is_label_name(s: &str) -> bool {
    let ok_inner = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.';
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(ok_inner)
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

/// A label (or taint) key: `[prefix/]name`, Kubernetes' "qualified name".
pub fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        if p.is_empty() || !is_dns_subdomain(p) {
            return Err(format!(
                "key {key:?}: the prefix {p:?} must be a lower-case DNS subdomain like example.com (at most 253 characters)"
            ));
        }
    }
    if !is_label_name(name) {
        return Err(format!(
            "key {key:?}: the name {name:?} must be 1-63 characters: letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

pub fn check_label_value(key: &str, value: &str) -> Result<(), String> {
    if value.is_empty() || is_label_name(value) {
        return Ok(());
    }
    Err(format!(
        "the value {value:?} of {key:?} must be at most 63 characters: letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
    ))
}

/// Label prefixes a kubelet may set on its own node (`--node-labels`); other
/// `kubernetes.io` / `k8s.io` labels are refused by the NodeRestriction
/// admission plugin and must be applied through the API.
pub fn kubelet_may_set(key: &str) -> bool {
    let Some((prefix, _)) = key.split_once('/') else {
        return true;
    };
    let restricted = |ns: &str| prefix == ns || prefix.ends_with(&format!(".{ns}"));
    if !restricted("kubernetes.io") && !restricted("k8s.io") {
        return true;
    }
    const ALLOWED: [&str; 8] = [
        "kubernetes.io/hostname",
        "kubernetes.io/instance-type",
        "kubernetes.io/os",
        "kubernetes.io/arch",
        "beta.kubernetes.io/instance-type",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/arch",
        "node.kubernetes.io/instance-type",
    ];
    let allowed_ns = |ns: &str| prefix == ns || prefix.ends_with(&format!(".{ns}"));
    ALLOWED.contains(&key)
        || key.starts_with("topology.kubernetes.io/")
        || key.starts_with("failure-domain.beta.kubernetes.io/")
        || allowed_ns("kubelet.kubernetes.io")
        || allowed_ns("node.kubernetes.io")
}

/// `key[=value]:Effect`.
pub fn parse_taint(s: &str) -> Result<Taint, String> {
    let shape = "must look like key[=value]:Effect, e.g. dedicated=edge:NoSchedule";
    let Some((kv, effect)) = s.rsplit_once(':') else {
        return Err(format!("{s:?} {shape}"));
    };
    let effect = match effect {
        "NoSchedule" => TaintEffect::NoSchedule,
        "PreferNoSchedule" => TaintEffect::PreferNoSchedule,
        "NoExecute" => TaintEffect::NoExecute,
        other => {
            let hint = ["NoSchedule", "PreferNoSchedule", "NoExecute"]
                .into_iter()
                .find(|e| e.eq_ignore_ascii_case(other))
                .map(|e| format!(" (write {e})"))
                .unwrap_or_default();
            return Err(format!(
                "{s:?}: the effect {other:?} is not one of NoSchedule, PreferNoSchedule, NoExecute{hint}"
            ));
        }
    };
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (kv, None),
    };
    if key.is_empty() {
        return Err(format!("{s:?} has no key; it {shape}"));
    }
    check_label_key(key).map_err(|e| format!("taint {s:?}: {e}"))?;
    if let Some(v) = value {
        check_label_value(key, v).map_err(|e| format!("taint {s:?}: {e}"))?;
    }
    Ok(Taint { key: key.to_string(), value: value.map(str::to_string), effect })
}

/// `v1.2.3`, `1.2.3`, `v1.2.3-rc.1`, `v1.2.3+build`.
pub fn check_version(s: &str) -> Result<(), String> {
    let v = s.strip_prefix('v').unwrap_or(s);
    let (core, extra) = match v.find(['-', '+']) {
        Some(i) => (&v[..i], &v[i + 1..]),
        None => (v, ""),
    };
    let parts: Vec<&str> = core.split('.').collect();
    let numeric = parts.len() == 3 && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let extra_ok = extra.bytes().all(|b| b.is_ascii_alphanumeric() || b"-+.".contains(&b));
    if numeric && extra_ok && (v.len() == core.len() || !extra.is_empty()) {
        Ok(())
    } else {
        Err(format!("{s:?} is not a version like v0.1.0"))
    }
}

/// An SSH user name: anything printable without spaces, `@` or `:`.
pub fn check_user(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("is empty; give a user name like root".into());
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control() || c == '@' || c == ':') {
        return Err(format!("{s:?} is not a user name (no spaces, '@' or ':')"));
    }
    Ok(())
}

/// `[user@]host[:port]`, with `[v6]` brackets when a port follows an IPv6
/// address.
pub fn parse_bastion(s: &str) -> Result<Bastion, String> {
    let shape = "must look like [user@]host[:port], e.g. admin@jump.example.com:22";
    let (user, hostport) = match s.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, s),
    };
    if let Some(u) = user {
        check_user(u).map_err(|e| format!("bastion {s:?}: user {e}"))?;
    }
    let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
        let Some((h, after)) = inner.split_once(']') else {
            return Err(format!("bastion {s:?} {shape}"));
        };
        if h.parse::<Ipv6Addr>().is_err() {
            return Err(format!("bastion {s:?}: {h:?} is not an IPv6 address"));
        }
        match after {
            "" => (h, None),
            p => match p.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None => return Err(format!("bastion {s:?} {shape}")),
            },
        }
    } else if hostport.matches(':').count() > 1 {
        (hostport, None) // a bare IPv6 address
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(format!("bastion {s:?} has no host; it {shape}"));
    }
    if host.parse::<IpAddr>().is_err() {
        check_hostname(host).map_err(|e| format!("bastion {s:?}: {e}"))?;
    }
    let port = match port {
        None => None,
        Some(p) => Some(parse_port(p).map_err(|e| format!("bastion {s:?}: port {e}"))?),
    };
    Ok(Bastion { address: host.to_string(), port, user: user.map(str::to_string), identity_file: None })
}

pub fn parse_port(s: &str) -> Result<u16, String> {
    match s.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
        _ => Err(format!("{s:?} is not a port number from 1 to 65535")),
    }
}

/// A path as written in the inventory: `~` and `~/…` are expanded at use;
/// `~user/…` is not supported.
pub fn check_path(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("is empty; give a file path".into());
    }
    if s.starts_with('~') && s != "~" && !s.starts_with("~/") {
        return Err(format!("{s:?}: only ~/ (your home) is expanded, not ~user; write the full path"));
    }
    Ok(())
}

/// Edit distance, for "did you mean" hints.
pub fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb { prev } else { 1 + prev.min(cur).min(row[j]) };
            prev = cur;
        }
    }
    row[b.len()]
}

/// The closest of `choices` to `word`, if it is close enough to be a typo.
pub fn closest<'a>(word: &str, choices: &[&'a str]) -> Option<&'a str> {
    let word = word.to_ascii_lowercase().replace('_', "-");
    choices
        .iter()
        .map(|c| (distance(&word, c), *c))
        .filter(|(d, c)| *d <= (c.len() / 3).clamp(1, 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}
