//! The host's name and addresses, and CIDR arithmetic.

use std::net::IpAddr;

use anyhow::Context;

/// `10.42.0.0/16` → (10.42.0.0, 16); None if it is not a CIDR.
pub fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (ip, bits) = s.split_once('/')?;
    let ip: IpAddr = ip.parse().ok()?;
    let bits: u8 = bits.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((ip, bits))
}

/// The address after `ip` (the first host of a network, the `kubernetes` Service).
pub fn next_address(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4((u32::from(v4) + 1).into()),
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) + 1).into()),
    }
}

/// The kernel's host name, as node names default to it (lower case).
pub fn hostname() -> anyhow::Result<String> {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname").context("reading the hostname")?;
    Ok(h.trim().to_lowercase())
}

/// The source address the kernel picks for the default route (a UDP
/// "connect" sends nothing).
pub fn default_route_ip() -> anyhow::Result<IpAddr> {
    let sock = std::net::UdpSocket::bind("0.0.0.0:0")?;
    sock.connect("192.0.2.255:9").context("no default route")?;
    Ok(sock.local_addr()?.ip())
}

/// The node name: the one given, else the host name; lower case either way
/// (Node names are DNS labels).
pub fn node_name(given: Option<&str>) -> anyhow::Result<String> {
    let name = match given {
        Some(n) => n.to_lowercase(),
        None => hostname()?,
    };
    check_node_name(&name).map_err(|e| anyhow::anyhow!("{e}; set node-name to one"))?;
    Ok(name)
}

/// A node name as Kubernetes accepts it (an RFC 1123 subdomain: lower-case
/// letters, digits, '-' and '.', at most 253 characters), and so nothing
/// else in a certificate: no wildcard, no IP address, no empty label.
pub fn check_node_name(name: &str) -> Result<&str, String> {
    let label_ok = |l: &str| {
        !l.is_empty() && l.len() <= 63 && !l.starts_with('-') && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if name.len() > 253 || !name.split('.').all(label_ok) || name.parse::<IpAddr>().is_ok() {
        return Err(format!("{name:?} is not a valid node name (lower-case letters, digits, '-' and '.', at most 253 characters)"));
    }
    Ok(name)
}

/// The node IP: the one given, else the default route's source address.
pub fn node_ip(given: Option<IpAddr>) -> anyhow::Result<IpAddr> {
    match given {
        Some(ip) => Ok(ip),
        None => default_route_ip().context("cannot find this host's IP; pass --node-ip"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn node_names_are_dns_names_only() {
        for ok in ["node-1", "a", "worker.example.com", "n0"] {
            assert!(super::check_node_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "*", "*.example.com", "Node", "-a", "a-", "a..b", "10.0.0.1", "a b", &"x".repeat(64)] {
            assert!(super::check_node_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cidrs() {
        assert_eq!(super::parse_cidr("10.42.0.0/16").unwrap().1, 16);
        assert!(super::parse_cidr("10.42.0.0").is_none());
        assert!(super::parse_cidr("10.42.0.0/33").is_none());
        assert_eq!(super::next_address("10.43.0.0".parse().unwrap()).to_string(), "10.43.0.1");
    }
}
