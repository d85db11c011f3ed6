//! Carrying out a plan: upload in parallel → the first server → the other
//! servers of the cluster one at a time → new servers and agents in
//! parallel → every node Ready → labels and taints. A failure stops the run
//! before the next stage, so hosts not yet reached stay as they were.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::fanout;
use super::nodes::{self, Node};
use super::plan::{FilePlan, HostPlan, LocalFile, Plan, Service, Stage, TokenPlan, REGISTRIES_MODE};
use super::progress::Progress;
use super::remote::Remote;
use super::render;
use super::report::{HostReport, Report, Status};
use crate::inventory::{Inventory, Role};
use crate::release::Release;

/// How long every node may take to be Ready once its service runs.
const READY_TIMEOUT: Duration = Duration::from_secs(300);

pub struct Ctx<'a> {
    pub inv: &'a Inventory,
    /// Indexed like `inv.hosts`.
    pub remotes: &'a [Remote],
    pub progress: &'a Progress,
    /// The k8s binary of each architecture (`HostPlan::arch`).
    pub binaries: &'a BTreeMap<String, Release>,
    pub concurrency: usize,
    /// A backup archive to restore on the first server before it starts.
    pub restore: Option<&'a Path>,
    /// Image archives for every host's images dir.
    pub images: &'a [std::path::PathBuf],
    /// The registries.yaml the plan writes where it says [`FilePlan::Write`].
    pub registries: Option<&'a LocalFile>,
}

impl Ctx<'_> {
    pub fn first(&self, plan: &Plan) -> &Remote {
        &self.remotes[plan.hosts[0].index]
    }
}

/// Runs every stage; `report` records each host's outcome as it goes.
pub async fn apply(ctx: &Ctx<'_>, plan: &Plan, report: &mut Report, tokens: Option<(String, String)>) -> anyhow::Result<()> {
    upload_all(ctx, plan, report).await?;

    let first = &plan.hosts[0];
    apply_host(ctx, first, None, &mut report.hosts[0]).await?;
    let tokens = match tokens {
        Some(t) => t,
        None => read_tokens(ctx.first(plan)).await?,
    };
    let token_for = |h: &HostPlan| match (h.token, h.role) {
        (TokenPlan::None, _) => None,
        (_, Role::Server) => Some(tokens.0.clone()),
        (_, Role::Agent) => Some(tokens.1.clone()),
    };

    // One at a time, each Ready before the next: etcd keeps its quorum
    // while a member restarts.
    for (i, h) in plan.hosts.iter().enumerate().filter(|(_, h)| h.stage == Stage::Server) {
        apply_host(ctx, h, token_for(h), &mut report.hosts[i]).await?;
        if ctx.inv.hosts[h.index].is_node() {
            wait_ready(ctx, plan, &[h]).await?;
        }
    }

    // Learners and agents count for no quorum (Stage::NewServer).
    let joining = plan.hosts.iter().zip(report.hosts.iter_mut()).filter(|(h, _)| matches!(h.stage, Stage::NewServer | Stage::Agent));
    fanout::all(joining, ctx.concurrency, |(h, r)| apply_host(ctx, h, token_for(h), r)).await.map_err(|f| f.lines())?;

    let nodes: Vec<&HostPlan> = plan.hosts.iter().filter(|h| ctx.inv.hosts[h.index].is_node()).collect();
    let nodes = wait_ready(ctx, plan, &nodes).await?;
    apply_labels(ctx, plan, &nodes, report).await
}

/// Uploads this binary where it differs, the image archives where they
/// differ and registries.yaml where the plan writes it, in parallel; nothing
/// else changes yet. The archives and registries.yaml are in place before a
/// node starts, so its first start imports and renders them.
async fn upload_all(ctx: &Ctx<'_>, plan: &Plan, report: &mut Report) -> anyhow::Result<()> {
    let todo = plan
        .hosts
        .iter()
        .zip(report.hosts.iter_mut())
        .filter(|(h, _)| h.upload || !ctx.images.is_empty() || h.registries == FilePlan::Write);
    fanout::all(todo, ctx.concurrency, |(h, r)| upload(ctx, h, r)).await.map_err(|f| f.lines())?;
    Ok(())
}

async fn upload(ctx: &Ctx<'_>, h: &HostPlan, r: &mut HostReport) -> anyhow::Result<()> {
    let t = Instant::now();
    let res = upload_files(ctx, h, r).await;
    ctx.progress.step(h.index, "uploaded; waiting for its turn");
    r.seconds += t.elapsed().as_secs_f64();
    match res {
        Ok(()) => Ok(()),
        Err(e) => {
            r.status = Status::Failed;
            r.error = Some(format!("{e:#}"));
            ctx.progress.finish(h.index, false, "upload failed");
            Err(e)
        }
    }
}

async fn upload_files(ctx: &Ctx<'_>, h: &HostPlan, r: &mut HostReport) -> anyhow::Result<()> {
    let remote = &ctx.remotes[h.index];
    if h.upload {
        ctx.progress.step(h.index, "uploading k8s");
        let binary = ctx.binaries.get(&h.arch).with_context(|| format!("{}: no k8s binary for {}", h.name, h.arch))?;
        if remote.upload(&binary.path, render::BINARY).await? {
            r.note("binary");
        }
    }
    if h.registries == FilePlan::Write {
        let file = ctx.registries.context("the plan writes registries.yaml, but there is no file to write")?;
        ctx.progress.step(h.index, "writing registries.yaml");
        remote.write(render::REGISTRIES, &file.content, REGISTRIES_MODE).await?;
        r.note("registries");
    }
    for archive in ctx.images {
        let name = archive.file_name().and_then(|n| n.to_str()).context("an image archive's file name")?;
        ctx.progress.step(h.index, &format!("uploading {name}"));
        if remote.upload_data(archive, &format!("{}/{name}", render::IMAGES_DIR)).await? {
            r.note("images");
        }
    }
    Ok(())
}

/// One host: token, config and unit, then start or restart its service
/// when something changed (or it is not running); its report and progress
/// line tell how it went.
async fn apply_host(ctx: &Ctx<'_>, h: &HostPlan, token: Option<String>, r: &mut HostReport) -> anyhow::Result<()> {
    let t = Instant::now();
    let res = write_and_start(ctx, h, token, r).await;
    r.seconds += t.elapsed().as_secs_f64();
    match &res {
        Ok(()) => {
            r.status = Status::Ok;
            let last = if r.changes.is_empty() { "up to date".to_string() } else { r.changes.join(", ") };
            ctx.progress.step(h.index, &format!("{last}; waiting for the others"));
        }
        Err(e) => {
            r.status = Status::Failed;
            r.error = Some(format!("{e:#}"));
            ctx.progress.finish(h.index, false, "failed");
        }
    }
    res
}

/// Writes the token, config and unit where they differ, then starts or
/// restarts the service as the plan says (or as the writes require).
async fn write_and_start(ctx: &Ctx<'_>, h: &HostPlan, token: Option<String>, r: &mut HostReport) -> anyhow::Result<()> {
    let remote = &ctx.remotes[h.index];
    let p = |s: &str| ctx.progress.step(h.index, s);
    p("writing config");
    remote.run("mkdir -p /etc/k8s && chmod 0755 /etc/k8s").await?;
    let mut changed = r.changes.iter().any(|c| c == "binary");
    if let Some(token) = token {
        if remote.write(render::TOKEN, token.as_bytes(), 0o600).await? {
            r.note("token");
            changed = true;
        }
    }
    if remote.write(render::CONFIG, h.config.as_bytes(), 0o600).await? {
        r.note("config");
        changed = true;
    }
    // 0600 like every file k8s writes (the CIS Benchmark's 4.1.1).
    if remote.write(h.unit.path, h.unit.text.as_bytes(), 0o600).await? {
        r.note("unit");
        changed = true;
        remote.run("systemctl daemon-reload").await?;
    }
    if let (Some(archive), Stage::FirstServer) = (ctx.restore, h.stage) {
        restore(remote, archive, &p).await?;
        r.note("restored");
        changed = true;
    }
    // A service that was not running starts with the new files anyway.
    let restart = h.service == Service::Restart || (changed && h.service == Service::Keep);
    if restart || h.service == Service::Start {
        let verb = if restart { "restart" } else { "start" };
        p(&format!("{verb}ing {}", h.unit.name));
        remote.start(h.unit.name, restart).await?;
        r.note(verb);
    }
    Ok(())
}

/// `k8s restore` of `archive` on the first server, before it starts (the
/// config `up` wrote stays; the archive's is not used).
async fn restore(remote: &Remote, archive: &Path, p: &dyn Fn(&str)) -> anyhow::Result<()> {
    const DIR: &str = "/var/lib/k8s-restore";
    p("uploading the backup");
    let file = remote.upload_private(archive, DIR, "backup.tar.zst").await?;
    p("restoring the backup");
    let out = remote.run(&format!("{} restore {file}; rc=$?; rm -rf {DIR}; exit $rc", render::BINARY)).await;
    out.with_context(|| format!("restoring {}", archive.display()))?;
    Ok(())
}

/// The join tokens the first server keeps: (servers', agents').
pub async fn read_tokens(first: &Remote) -> anyhow::Result<(String, String)> {
    let read = |path: std::path::PathBuf| async move {
        let path = path.display().to_string();
        first.read(&path).await?.filter(|t| !t.trim().is_empty()).with_context(|| {
            format!("{}: {path} is missing although k8s-server runs; see `journalctl -u k8s-server`", first.who)
        })
    };
    let layout = crate::host::Layout::new(std::path::Path::new(crate::host::paths::DATA_DIR));
    Ok((read(layout.server_token()).await?, read(layout.agent_token()).await?))
}

/// The cluster's nodes, as the first server sees them.
pub async fn get_nodes(first: &Remote) -> anyhow::Result<Vec<Node>> {
    nodes::parse(&nodes_json(first).await?).map_err(|e| anyhow::anyhow!("{}: {e}", first.who))
}

/// `kubectl get nodes -o json` on the first server.
pub async fn nodes_json(first: &Remote) -> anyhow::Result<String> {
    first.kubectl(&["get".into(), "nodes".into(), "-o".into(), "json".into()]).await
}

/// Waits until the nodes of `want` are registered and Ready; all nodes.
async fn wait_ready(ctx: &Ctx<'_>, plan: &Plan, want: &[&HostPlan]) -> anyhow::Result<Vec<Node>> {
    for h in want {
        ctx.progress.step(h.index, "waiting for the node to be Ready");
    }
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let nodes = get_nodes(ctx.first(plan)).await?;
        let ready = |h: &HostPlan| nodes.iter().any(|n| n.name == h.name && n.ready);
        let waiting: Vec<&&HostPlan> = want.iter().filter(|h| !ready(h)).collect();
        if waiting.is_empty() {
            return Ok(nodes);
        }
        if Instant::now() > deadline {
            let names: Vec<String> = waiting.iter().map(|h| format!("{} ({})", h.name, h.address)).collect();
            bail!(
                "not Ready after {} s: {}; see `k8s kubectl describe node NAME` on {} and `journalctl -u k8s-agent -u k8s-server` on the host",
                READY_TIMEOUT.as_secs(),
                names.join(", "),
                ctx.first(plan).who
            );
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Labels and taints through the API (see [`nodes::label_commands`]).
async fn apply_labels(ctx: &Ctx<'_>, plan: &Plan, nodes: &[Node], report: &mut Report) -> anyhow::Result<()> {
    for (i, h) in plan.hosts.iter().enumerate() {
        let host = &ctx.inv.hosts[h.index];
        let Some(node) = nodes.iter().find(|n| n.name == h.name) else { continue };
        let commands = nodes::label_commands(host, node);
        if commands.is_empty() {
            continue;
        }
        ctx.progress.step(h.index, "labels and taints");
        for args in &commands {
            ctx.first(plan).kubectl(args).await.with_context(|| format!("node {}: labels and taints", h.name))?;
        }
        report.hosts[i].note("labels");
    }
    Ok(())
}
