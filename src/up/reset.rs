//! `k8s reset -i hosts.yaml`: uninstalls k8s from every host of the
//! inventory (after a confirmation): agents first, in parallel, then the
//! servers one at a time, the first server last.

use std::path::Path;

use anyhow::bail;

use super::fanout;
use super::remote::{self, Remote};
use crate::inventory::{Host, Inventory, Role};
use crate::ssh;

/// `k8s reset` stops the service, leaves the etcd membership (an HA
/// server, while its member still runs), and removes the data, units and
/// /etc/k8s; then the binary goes. Without a binary (a half-done install)
/// what `up` wrote is removed all the same.
const UNINSTALL: &str = r#"
set -e
if [ -x /usr/local/bin/k8s ]; then /usr/local/bin/k8s reset --yes >/dev/null; fi
for u in k8s-agent k8s-server; do
  if [ -e /etc/systemd/system/$u.service ]; then timeout 120 systemctl disable --now $u >/dev/null 2>&1 || true; fi
done
rm -f /usr/local/bin/k8s /usr/local/bin/k8s.prev /usr/local/bin/k8s.tmp /etc/systemd/system/k8s-server.service /etc/systemd/system/k8s-agent.service
rm -rf /etc/k8s
if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
"#;

pub async fn uninstall(r: &Remote) -> anyhow::Result<()> {
    r.run(UNINSTALL).await.map(drop)
}

pub async fn run(file: &Path, yes: bool) -> anyhow::Result<()> {
    let inv = Inventory::load(file)?;
    println!("k8s reset -i {}: uninstalls k8s from these hosts and deletes their data (every cluster object is lost):", file.display());
    for h in &inv.hosts {
        println!("  {:<8} {}", h.role.to_string(), remote::who(h));
    }
    if !yes && !crate::prompt::confirm("Continue?", std::io::stdout())? {
        println!("nothing changed");
        return Ok(());
    }
    let targets = remote::targets(&inv)?;
    let keys = ssh::Keys::prepare(&targets.iter().collect::<Vec<_>>()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let concurrency = inv.ssh.concurrency;
    let order = order(&inv);
    let agents: Vec<&Host> = order.iter().copied().filter(|h| h.role == Role::Agent).collect();
    let servers: Vec<&Host> = order.iter().copied().filter(|h| h.role == Role::Server).collect();

    // Agents in parallel, then the servers one at a time (the first server
    // last); every host gets its turn, and each failure is told as it happens.
    let (inv, targets, keys) = (&inv, &targets, &keys);
    let reset = |h| async move {
        let res = reset_host(inv, targets, keys, h).await;
        match &res {
            Ok(()) => println!("{}: reset", remote::who(h)),
            Err(e) => eprintln!("{e:#}"),
        }
        res
    };
    let mut failed = vec![];
    for (hosts, limit) in [(agents, concurrency), (servers, 1)] {
        if let Err(f) = fanout::all(hosts.iter().copied(), limit, reset).await {
            failed.extend(f.failures.iter().map(|(i, _)| remote::who(hosts[*i])));
        }
    }
    if !failed.is_empty() {
        bail!("k8s could not be removed from {}; the other hosts are reset", failed.join(", "));
    }
    Ok(())
}

async fn reset_host(inv: &Inventory, targets: &[ssh::Target], keys: &ssh::Keys, h: &Host) -> anyhow::Result<()> {
    let i = inv.hosts.iter().position(|x| std::ptr::eq(x, h)).expect("a host of the inventory");
    let r = Remote::connect(remote::who(h), &targets[i], keys).await?;
    let res = uninstall(&r).await;
    r.close().await;
    res
}

/// Agents in file order, then servers with the first server last.
fn order(inv: &Inventory) -> Vec<&Host> {
    let mut out: Vec<&Host> = inv.agents().collect();
    out.extend(inv.servers().collect::<Vec<_>>().into_iter().rev());
    out
}
