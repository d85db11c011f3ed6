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

/// The kernel settings the kubelet checks, with the values it wants
/// (kubelet's `setupKernelTunables`). With `protectKernelDefaults` it
/// refuses to start when one differs instead of setting it.
const KUBELET_KERNEL_DEFAULTS: [(&str, &str); 6] = [
    ("vm/overcommit_memory", "1"),
    ("vm/panic_on_oom", "0"),
    ("kernel/panic", "10"),
    ("kernel/panic_on_oops", "1"),
    ("kernel/keys/root_maxkeys", "1000000"),
    ("kernel/keys/root_maxbytes", "25000000"),
];

/// The `cis` profile's preflight for `protectKernelDefaults`: sets what the
/// kubelet would have set, so choosing the profile is the consent; a value
/// that cannot be set is named, with its fix, before the kubelet starts.
pub fn kernel_defaults() -> anyhow::Result<()> {
    kernel_defaults_in(Path::new("/proc/sys"))
}

fn kernel_defaults_in(proc_sys: &Path) -> anyhow::Result<()> {
    let mut wrong = Vec::new();
    for (key, want) in KUBELET_KERNEL_DEFAULTS {
        let path = proc_sys.join(key);
        let now = std::fs::read_to_string(&path).unwrap_or_default();
        if now.trim() == want {
            continue;
        }
        if let Err(e) = std::fs::write(&path, want) {
            let name = key.replace('/', ".");
            wrong.push(format!("{name} is {:?}, the kubelet needs {want} ({e})", now.trim()));
        }
    }
    if !wrong.is_empty() {
        anyhow::bail!(
            "profile cis: the kubelet runs with protectKernelDefaults and these kernel settings are wrong and cannot be set: {}; \
             set them in /etc/sysctl.d/90-kubelet.conf and run `sysctl --system`, as root on the host",
            wrong.join("; ")
        );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_defaults_are_set_and_unsettable_ones_named() {
        let dir = tempfile::tempdir().unwrap();
        for (key, _) in KUBELET_KERNEL_DEFAULTS {
            let path = dir.path().join(key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, "0\n").unwrap();
        }
        kernel_defaults_in(dir.path()).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("kernel/panic")).unwrap(), "10");
        // A setting that cannot be written (here: its file is a directory).
        std::fs::remove_file(dir.path().join("kernel/panic")).unwrap();
        std::fs::create_dir(dir.path().join("kernel/panic")).unwrap();
        let e = kernel_defaults_in(dir.path()).unwrap_err().to_string();
        assert!(e.contains("kernel.panic is \"\", the kubelet needs 10"), "{e}");
        assert!(e.contains("/etc/sysctl.d"), "{e}");
        assert!(!e.contains("overcommit"), "settings already right are not named: {e}");
    }
}
