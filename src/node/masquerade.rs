//! Source NAT for pods: traffic leaving the cluster network takes the
//! node's address; traffic to other pods keeps the pod's own (the bridge
//! plugin's ipMasq would also hide pod IPs from pods on other nodes).

use std::process::Command;

use anyhow::bail;

/// Our chain in the nat table. The KUBE- prefix puts it with kube-proxy's
/// rules, which `k8s reset` removes.
const CHAIN: &str = "KUBE-K8S-POD-MASQ";

pub fn install(pod_cidr: &str, cluster_cidr: &str) -> anyhow::Result<()> {
    // Creating an existing chain fails harmlessly; flushing makes reruns exact.
    let _ = iptables(&["-N", CHAIN], true);
    iptables(&["-F", CHAIN], false)?;
    iptables(&["-A", CHAIN, "-d", cluster_cidr, "-j", "RETURN"], false)?;
    iptables(&["-A", CHAIN, "-d", "224.0.0.0/4", "-j", "RETURN"], false)?;
    iptables(&["-A", CHAIN, "-j", "MASQUERADE", "--random-fully"], false)?;
    let jump = ["POSTROUTING", "-s", pod_cidr, "-j", CHAIN];
    if iptables(&[&["-C"], &jump[..]].concat(), true).is_err() {
        iptables(&[&["-A"], &jump[..]].concat(), false)?;
    }
    Ok(())
}

fn iptables(args: &[&str], quiet: bool) -> anyhow::Result<()> {
    let out = Command::new("iptables").args(["-w", "5", "-t", "nat"]).args(args).output()?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if !quiet {
            tracing::warn!("iptables -t nat {}: {}", args.join(" "), err.trim());
        }
        bail!("iptables -t nat {} failed: {}", args.join(" "), err.trim());
    }
    Ok(())
}
