//! `up` with a k8s version other than the one the cluster's nodes run
//! does not restart them itself: it hands the rollout to the cluster's own
//! upgrade controller and follows it.
//!
//! ```text
//! upload the binary of each architecture to every installed server's binaries dir
//! (each serves them to the nodes)
//!   ─▶ on the first server: `k8s upgrade apply --binary <each> --output json` (its running,
//!      older binary creates the UpgradePlan: its preflight and skew rules decide)
//!   ─▶ each JSON line: every node's phase on its progress line
//!   ─▶ Complete: go on with the usual converge (config changes, new hosts);
//!      Halted / PreflightFailed: stop with the plan's reason, nothing else changed
//! ```
//!
//! Hosts not in the plan (new hosts, servers without a node) get the
//! binary from the usual converge afterwards.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::apply::Ctx;
use super::fanout;
use super::plan::{Local, Plan};
use super::remote::quote;
use crate::cli::UpArgs;
use crate::inventory::Role;
use crate::upgrade::crd::{NodePhase, UpgradePlanStatus};

/// One line of `k8s upgrade apply --output json`.
#[derive(Deserialize)]
struct Line {
    plan: String,
    status: UpgradePlanStatus,
}

/// Uploads, creates the plan and follows it to its end; an error unless
/// it completed. Returns the nodes that committed.
pub async fn run(ctx: &Ctx<'_>, plan: &Plan, local: &Local, args: &UpArgs) -> anyhow::Result<Vec<String>> {
    let dir = crate::upgrade::swap::binaries_dir(std::path::Path::new(crate::host::paths::DATA_DIR));
    // Where each architecture's binary goes on the servers (by its sha256).
    let binaries: Vec<(&std::path::Path, String)> = local
        .binaries
        .iter()
        .filter(|(arch, _)| plan.hosts.iter().any(|h| &h.arch == *arch))
        .map(|(_, b)| (b.path.as_path(), format!("{}/{}", dir.display(), b.sha256)))
        .collect();
    // Installed servers only: a server that is new to the cluster gets the
    // binary as its own when it joins.
    let servers = plan.hosts.iter().filter(|h| h.role == Role::Server && h.installed.is_some());
    fanout::all(servers, ctx.concurrency, |h| async {
        ctx.progress.step(h.index, "uploading k8s for the upgrade");
        for (file, to) in &binaries {
            ctx.remotes[h.index].upload(file, to).await?;
        }
        anyhow::Ok(true)
    })
    .await
    .map_err(|f| f.under("cannot copy the binary to the servers; no node was upgraded"))?;

    let index: BTreeMap<&str, usize> = plan.hosts.iter().map(|h| (h.name.as_str(), h.index)).collect();
    for h in plan.hosts.iter().filter(|h| h.upgrade) {
        ctx.progress.step(h.index, &format!("upgrade to k8s {}: waiting for its turn", local.version));
    }
    // One --binary per architecture (a server older than arm64 support
    // takes one only; a cluster with one architecture never gives it more).
    let flags: Vec<String> = binaries.iter().map(|(_, to)| format!("--binary {}", quote(to))).collect();
    let cmd = format!(
        "{} upgrade apply {} --output json --ready-timeout {} --soak {} --drain {}",
        crate::host::paths::BINARY,
        flags.join(" "),
        args.ready_timeout,
        args.soak,
        quote(&args.drain)
    );
    let mut last: Option<UpgradePlanStatus> = None;
    let mut name = String::new();
    let mut on_line = |text: &str| {
        let Ok(line) = serde_json::from_str::<Line>(text) else { return };
        for row in &line.status.nodes {
            let Some(&i) = index.get(row.name.as_str()) else { continue };
            let was = last.as_ref().and_then(|s| s.nodes.iter().find(|r| r.name == row.name)).map(|r| r.phase);
            if was != Some(row.phase) {
                ctx.progress.step(i, &describe(row.phase, &row.from, &row.to, &row.message));
            }
        }
        name = line.plan;
        last = Some(line.status);
    };
    let result = ctx.first(plan).run_lines(&cmd, &mut on_line).await;
    let committed = last.iter().flat_map(|s| &s.nodes).filter(|r| r.phase == NodePhase::Committed).map(|r| r.name.clone()).collect();
    match result {
        Ok(()) => Ok(committed),
        Err(e) if name.is_empty() => Err(e.context("the upgrade did not start; no node was changed")),
        Err(e) => Err(e.context(format!("the upgrade plan {name} did not complete; see `k8s upgrade status` on a server"))),
    }
}

/// A node's phase in the words of a progress line.
fn describe(phase: NodePhase, from: &str, to: &str, message: &str) -> String {
    let what = match phase {
        NodePhase::Waiting => "waiting for its turn",
        NodePhase::Started | NodePhase::Staging => "fetching the new binary",
        NodePhase::Staged => "binary checked",
        NodePhase::Cordoned => "cordoned",
        NodePhase::Draining => "draining",
        NodePhase::Swapping => "restarting on the new binary",
        NodePhase::Verifying | NodePhase::Soaking => "checking health",
        NodePhase::Committed => "upgraded",
        NodePhase::RolledBack => "ROLLED BACK",
        NodePhase::Failed => "FAILED",
    };
    let line = format!("upgrade {from} → {to}: {what}");
    if message.is_empty() || !phase.halts() { line } else { format!("{line}: {message}") }
}
