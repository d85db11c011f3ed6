//! Facts about the host and the few kernel settings a node needs.

use std::path::{Path, PathBuf};

/// The cgroup version of the host: kubelet ≥ 1.35 refuses v1 unless told
/// otherwise, and many edge hosts still run v1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cgroups {
    V1,
    V2,
}

pub fn cgroups() -> Cgroups {
    // On a unified (v2) host the root holds cgroup.controllers.
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() { Cgroups::V2 } else { Cgroups::V1 }
}

/// Whether systemd is PID 1 (it then owns cgroups; kubelet and runc should
/// use the systemd driver there only when cgroups are v2 and delegated).
pub fn systemd_is_init() -> bool {
    Path::new("/run/systemd/system").exists()
}

/// Whether this process may raise resource limits and lower OOM scores
/// (CAP_SYS_RESOURCE in its bounding set); containers and some VMs drop it.
pub fn has_sys_resource() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .map_or(true, |caps| caps & (1 << CAP_SYS_RESOURCE) != 0)
}

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
