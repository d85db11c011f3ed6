//! What a node changes on its host: the kernel settings pods need and
//! the resolv.conf they get.

use std::path::{Path, PathBuf};

/// Kernel settings pods need: forwarding, and bridged traffic seen by
/// iptables (Service NAT for pod-to-pod on the same bridge).
pub fn prepare_network() -> anyhow::Result<()> {
    for (key, value) in [
        ("net/ipv4/ip_forward", "1"),
        ("net/bridge/bridge-nf-call-iptables", "1"),
        ("net/bridge/bridge-nf-call-ip6tables", "1"),
    ] {
        let path = Path::new("/proc/sys").join(key);
        if let Err(e) = std::fs::write(&path, value) {
            // br_netfilter may be absent; kube-proxy then still works for
            // traffic between nodes, so warn rather than fail.
            tracing::warn!(setting = key, error = %e, "cannot set kernel setting");
        }
    }
    Ok(())
}

/// A resolv.conf for pods: the host's, unless it points at a loopback
/// resolver (systemd-resolved, dnsmasq), which pods cannot reach.
pub fn resolv_conf(generated: &Path) -> anyhow::Result<PathBuf> {
    let host = Path::new("/etc/resolv.conf");
    let text = std::fs::read_to_string(host).unwrap_or_default();
    let loopback = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .any(|ns| ns.trim().parse::<std::net::IpAddr>().map_or(false, |ip| ip.is_loopback()));
    if !text.is_empty() && !loopback {
        return Ok(host.into());
    }
    crate::fsutil::write_atomic(generated, b"nameserver 8.8.8.8\n", 0o644)?;
    Ok(generated.into())
}
