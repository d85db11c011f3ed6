//! `k8s upgrade guard`: what the guard timer runs (see [`super::swap`]).
//! It is the previous binary, so it works whatever the new one does.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;

use super::swap::{Guard, Host};

pub fn run(data_dir: &Path, binary: &Path) -> anyhow::Result<()> {
    let host = Host::new(binary, data_dir);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    match host.guard(now)? {
        Guard::NothingPending => tracing::info!("upgrade guard: the upgrade was committed; nothing to do"),
        Guard::NotYet(secs) => tracing::info!("upgrade guard: the deadline is {secs} s ahead; nothing to do yet"),
        Guard::RolledBack(p) => {
            tracing::warn!(from = %p.to, to = %p.from, unit = %p.unit, "upgrade guard: k8s {} did not commit in time; the previous binary is back, restarting", p.to);
            // A unit that crash-looped may have hit its start limit.
            let _ = std::process::Command::new("systemctl").args(["reset-failed", &p.unit]).status();
            let status = std::process::Command::new("systemctl")
                .args(["restart", &p.unit])
                .status()
                .context("cannot run systemctl")?;
            anyhow::ensure!(status.success(), "systemctl restart {} failed ({status}); the previous binary is in place at {}", p.unit, binary.display());
        }
    }
    Ok(())
}
