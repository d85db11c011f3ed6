//! `k8s up -i hosts.yaml`: installs and converges a cluster over SSH.
//!
//! connect to every host → gather facts → plan and validate (any problem
//! anywhere: stop before changing anything) → upload this binary → the
//! first server → the other servers one at a time → agents in parallel →
//! every node Ready → labels and taints → `--prune` → the workstation's
//! kubeconfig. Every step compares before it writes, so a second run with
//! the same inventory changes nothing. See docs/up.md.

mod apply;
mod facts;
mod fanout;
mod handover;
mod nodes;
mod plan;
mod progress;
mod prune;
mod remote;
mod render;
mod report;
pub mod reset;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};

use crate::cli::{OutputFormat, UpArgs};
use crate::inventory::Inventory;
use crate::release;
use crate::ssh;
use apply::Ctx;
use facts::Facts;
use plan::{Local, LocalFile, Running};
use progress::{Progress, Style};
use remote::Remote;
use report::{Report, Status};

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let json = args.output == OutputFormat::Json;
    let (mut report, result) = match Inventory::load(&args.inventory) {
        Ok(inv) => up(&args, &inv, json).await,
        Err(e) => {
            let mut report = Report::empty("", None, args.dry_run);
            report.problems = e.problems().iter().map(|p| p.to_string()).collect();
            (report, Err(e.into()))
        }
    };
    report.seconds = started.elapsed().as_secs_f64();
    if let Err(e) = &result {
        report.ok = false;
        report.error = Some(format!("{e:#}"));
    }
    print(&report, json, args.dry_run);
    result
}

/// Connects, then plans and applies; a report in any case (for `--output json`).
async fn up(args: &UpArgs, inv: &Inventory, json: bool) -> (Report, anyhow::Result<()>) {
    let empty = || Report::empty(&inv.cluster.name, Some(inv.mode()), args.dry_run);
    let prepared = async {
        let mut local = local_binaries(inv, &args.binary).await?;
        local.images = image_archives(inv)?;
        local.registries = registries_file(inv)?;
        let mut targets = remote::targets(inv)?;
        // A pruned host is reached with the default settings: its key is
        // prepared (and its passphrase asked) now, before the progress lines.
        if args.prune {
            targets.push(prune_default_target(inv)?);
        }
        let keys = ssh::Keys::prepare(&targets.iter().collect::<Vec<_>>())?;
        targets.truncate(inv.hosts.len());
        anyhow::Ok((local, targets, keys))
    };
    let (local, targets, keys) = match prepared.await {
        Ok(p) => p,
        Err(e) => return (empty(), Err(e)),
    };
    let names: Vec<String> = inv.hosts.iter().map(|h| h.display_name().to_string()).collect();
    let progress = Progress::new(Style::detect(json), &names);
    let concurrency = inv.ssh.concurrency.max(1);
    let remotes = match connect_all(inv, &targets, &keys, &progress, concurrency).await {
        Ok(r) => r,
        Err(e) => return (empty(), Err(e)),
    };
    let (mut report, result) = plan_and_apply(args, inv, &local, &remotes, &keys, &progress, concurrency).await;
    report.images = local.images.iter().filter_map(|f| f.file_name()).map(|n| n.to_string_lossy().into_owned()).collect();
    report.registries = local.registries.as_ref().map(|f| f.path.display().to_string());
    for r in remotes {
        r.close().await;
    }
    progress.clear();
    (report, result)
}

/// `--restore FILE`: an archive `k8s restore` will take, and a first
/// server with no cluster of its own.
fn check_restore(archive: &Path, first: &str, facts: &facts::Facts, problems: &mut Vec<String>) {
    if let Err(e) = crate::backup::archive::read_manifest(archive) {
        problems.push(format!("--restore: {e:#}"));
    }
    if facts.datastore.is_some() {
        problems.push(format!(
            "{first}: --restore needs a first server with no cluster data, and it runs one; `k8s reset -i` first (after `k8s backup`, if its data matters), or run up without --restore"
        ));
    }
}

/// Everything after connecting: facts, plan, apply, prune, kubeconfig;
/// the report is filled in as far as it got.
#[allow(clippy::too_many_arguments)]
async fn plan_and_apply(
    args: &UpArgs,
    inv: &Inventory,
    local: &Local,
    remotes: &[Remote],
    keys: &ssh::Keys,
    progress: &Progress,
    concurrency: usize,
) -> (Report, anyhow::Result<()>) {
    let facts = match gather_all(remotes, progress, concurrency).await {
        Ok(f) => f,
        Err(e) => return (Report::empty(&inv.cluster.name, Some(inv.mode()), args.dry_run), Err(e)),
    };
    let first = inv.hosts.iter().position(|h| render::is_first_server(inv, h)).expect("an inventory has a server");
    let running = running_cluster(&remotes[first], &facts[first], progress).await;
    let mut plan = plan::plan(inv, &facts, local, &running);
    if let Some(archive) = &args.restore {
        check_restore(archive, &inv.hosts[first].address, &facts[first], &mut plan.problems);
    }
    let mut report = Report::new(&inv.cluster.name, &plan, args.dry_run);
    if !plan.problems.is_empty() {
        for (i, _) in inv.hosts.iter().enumerate() {
            progress.finish(i, false, "not changed");
        }
        let list = plan.problems.join("\n  ");
        return (report, Err(anyhow::anyhow!("nothing was changed; {} problem(s):\n  {list}", plan.problems.len())));
    }
    for (i, h) in report.hosts.iter_mut().enumerate() {
        h.changes = report::planned_changes(&plan.hosts[i]);
        h.changed = !h.changes.is_empty();
    }
    if args.dry_run {
        for h in &plan.hosts {
            progress.finish(h.index, true, "planned");
        }
        return (report, Ok(()));
    }
    for h in report.hosts.iter_mut() {
        (h.changes, h.changed) = (vec![], false);
        progress.step(h.plan.index, "waiting for its turn");
    }
    let extra: Vec<&str> =
        plan.extra_nodes.iter().map(|n| n.name.as_str()).chain(plan.extra_members.iter().map(|m| m.name.as_str())).collect();
    if args.prune && !extra.is_empty() && !args.yes {
        let question = format!("--prune removes {} from the cluster (drain, reset the host, delete). Continue?", extra.join(", "));
        match progress.suspend(|| crate::prompt::confirm(&question, std::io::stderr())) {
            Ok(true) => {}
            Ok(false) => return (report, Err(anyhow::anyhow!("nothing was changed (the prune was not confirmed)"))),
            Err(e) => return (report, Err(e)),
        }
    }

    let ctx = Ctx { inv, remotes, progress, binaries: &local.binaries, concurrency, restore: args.restore.as_deref(), images: &local.images,
        registries: local.registries.as_ref() };
    let mut tokens = running.tokens.clone();
    if plan.upgrade.is_some() {
        let upgraded = match handover::run(&ctx, &plan, local, args).await {
            Ok(names) => names,
            Err(e) => {
                for h in plan.hosts.iter().filter(|h| h.upgrade) {
                    progress.finish(h.index, false, "not upgraded");
                }
                return (report, Err(e));
            }
        };
        // The nodes run the new binary now: look again and plan the rest.
        let facts = match gather_all(remotes, progress, concurrency).await {
            Ok(f) => f,
            Err(e) => return (report, Err(e)),
        };
        let running = running_cluster(&remotes[first], &facts[first], progress).await;
        plan = plan::plan(inv, &facts, local, &running);
        tokens = running.tokens.clone();
        report = Report::new(&inv.cluster.name, &plan, args.dry_run);
        for h in report.hosts.iter_mut().filter(|h| upgraded.contains(&h.name)) {
            h.note("upgraded");
            h.status = Status::Ok;
        }
        if !plan.problems.is_empty() {
            let list = plan.problems.join("\n  ");
            return (report, Err(anyhow::anyhow!("upgraded, but then {} problem(s):\n  {list}", plan.problems.len())));
        }
    }
    let result = async {
        apply::apply(&ctx, &plan, &mut report, tokens).await?;
        if args.prune {
            report.pruned = prune::prune(&ctx, &plan, keys).await?;
        }
        let path = args.kubeconfig_out.clone().unwrap_or_else(|| PathBuf::from(format!("{}.kubeconfig", inv.cluster.name)));
        write_kubeconfig(ctx.first(&plan), inv, &path).await?;
        report.kubeconfig = Some(path.display().to_string());
        anyhow::Ok(())
    }
    .await;
    for h in &report.hosts {
        let i = h.plan.index;
        match h.status {
            Status::Ok if result.is_ok() => {
                progress.finish(i, true, if h.changes.is_empty() { "up to date" } else { "done" })
            }
            Status::Ok => progress.finish(i, true, "done"),
            Status::Failed => {}
            Status::Untouched => progress.finish(i, false, "not changed"),
        }
    }
    (report, result)
}

/// This executable (uploaded as is) for hosts of its architecture, and the
/// binaries `cluster.binaries` and `--binary` name for the others: each
/// checked here (architecture, components, the same release as this one)
/// before any host is touched.
async fn local_binaries(inv: &Inventory, named: &[PathBuf]) -> anyhow::Result<Local> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    // (where it was named, the architecture it was named for, the file)
    let mut files: Vec<(String, Option<String>, PathBuf)> = inv
        .binary_files()
        .map_err(|e| anyhow::anyhow!("{}: cluster.binaries: {e}", inv.file.display()))?
        .into_iter()
        .map(|(arch, path)| (format!("{}: cluster.binaries.{arch}", inv.file.display()), Some(arch), path))
        .collect();
    files.extend(named.iter().map(|p| ("--binary".to_string(), None, p.clone())));
    tokio::task::spawn_blocking(move || {
        let this = release::inspect(&exe).map_err(|e| {
            anyhow::anyhow!("{e:#}; `k8s up` installs this very binary on the hosts of its architecture, so run the one-file build (`make dist` → dist/k8s)")
        })?;
        let mut binaries = BTreeMap::from([(this.arch.to_string(), this.clone())]);
        for (source, expected, path) in files {
            let other = release::inspect(&path).map_err(|e| anyhow::anyhow!("{source}: {e:#}"))?;
            if let Some(arch) = expected.filter(|a| a != other.arch) {
                bail!("{source}: {} is an {} binary, not {arch}", path.display(), other.arch);
            }
            release::check_same_release(&this, &other).map_err(|e| anyhow::anyhow!("{source}: {e:#}"))?;
            match binaries.get(other.arch) {
                Some(known) if known.sha256 != other.sha256 => bail!(
                    "{source}: {} and {} are two different {} binaries; name one per architecture (this one, {}, serves its own)",
                    path.display(),
                    known.path.display(),
                    other.arch,
                    this.path.display()
                ),
                Some(_) => {}
                None => {
                    binaries.insert(other.arch.to_string(), other);
                }
            }
        }
        Ok(Local { version: this.version.clone(), kubernetes: this.kubernetes.clone(), binaries, images: vec![], registries: None })
    })
    .await?
}

/// `cluster.images`, each an existing file here (checked before any host
/// is touched).
fn image_archives(inv: &Inventory) -> anyhow::Result<Vec<PathBuf>> {
    let files = inv.image_archives().map_err(|e| anyhow::anyhow!("{}: cluster.images: {e}", inv.file.display()))?;
    for f in &files {
        match std::fs::metadata(f) {
            Ok(m) if m.is_file() => {}
            Ok(_) => bail!("{}: cluster.images: {} is not a file; give an image archive (.tar or .tar.zst)", inv.file.display(), f.display()),
            Err(e) => bail!("{}: cluster.images: cannot read {}: {e}; give an existing image archive (.tar or .tar.zst)", inv.file.display(), f.display()),
        }
    }
    Ok(files)
}

/// `cluster.registries`, read and checked here with the node's own parser
/// (`node::registries`), before any host is touched: a file the nodes
/// would refuse is refused now, naming its line.
fn registries_file(inv: &Inventory) -> anyhow::Result<Option<LocalFile>> {
    let Some(path) = inv.registries_file().map_err(|e| anyhow::anyhow!("{}: cluster.registries: {e}", inv.file.display()))? else {
        return Ok(None);
    };
    let content = std::fs::read(&path).map_err(|e| {
        anyhow::anyhow!("{}: cluster.registries: cannot read {}: {e}; give an existing registries.yaml (docs/registries.md)", inv.file.display(), path.display())
    })?;
    let text = String::from_utf8(content.clone())
        .map_err(|_| anyhow::anyhow!("{}: cluster.registries: {} is not UTF-8 text", inv.file.display(), path.display()))?;
    crate::node::registries::Registries::parse(&path, &text)
        .map_err(|e| anyhow::anyhow!("{}: cluster.registries: {e}", inv.file.display()))?;
    Ok(Some(LocalFile::new(path, content)))
}

/// The SSH settings a pruned host is reached with (the defaults): only its
/// keys matter before the run, so any address does.
fn prune_default_target(inv: &Inventory) -> anyhow::Result<ssh::Target> {
    prune::default_target(inv, "pruned nodes", &inv.first_server().address)
}

/// Connects to every host (at most `concurrency` at once); any failure
/// stops the run before anything changed, naming every host that failed.
async fn connect_all(
    inv: &Inventory,
    targets: &[ssh::Target],
    keys: &ssh::Keys,
    progress: &Progress,
    concurrency: usize,
) -> anyhow::Result<Vec<Remote>> {
    let connect = |i: usize| async move {
        progress.step(i, "connecting");
        let r = Remote::connect(remote::who(&inv.hosts[i]), &targets[i], keys).await;
        match &r {
            Ok(_) => progress.step(i, "connected"),
            Err(_) => {
                progress.step(i, "cannot connect");
                progress.finish(i, false, "cannot connect");
            }
        }
        r
    };
    match fanout::all(0..inv.hosts.len(), concurrency, connect).await {
        Ok(remotes) => Ok(remotes),
        Err(mut failed) => {
            for r in std::mem::take(&mut failed.done) {
                r.close().await;
            }
            progress.clear();
            Err(failed.under("cannot reach every host; nothing was changed"))
        }
    }
}

/// Gathers every host's facts (at most `concurrency` at once); any failure
/// stops the run before anything changed, naming every host that failed.
async fn gather_all(remotes: &[Remote], progress: &Progress, concurrency: usize) -> anyhow::Result<Vec<Facts>> {
    let gather_one = |(i, r)| async move {
        progress.step(i, "gathering facts");
        let f = gather(r).await;
        match &f {
            Ok(_) => progress.step(i, "checked"),
            Err(_) => progress.finish(i, false, "cannot gather facts"),
        }
        f
    };
    fanout::all(remotes.iter().enumerate(), concurrency, gather_one)
        .await
        .map_err(|failed| failed.under("cannot inspect every host; nothing was changed"))
}

async fn gather(r: &Remote) -> anyhow::Result<Facts> {
    let mut f = Facts::parse(&r.run(&facts::script()).await?);
    f.config = r.read(render::CONFIG).await?;
    f.token = r.read(render::TOKEN).await?;
    for unit in [render::SERVER_UNIT, render::AGENT_UNIT] {
        if let Some(text) = r.read(unit.path).await? {
            f.unit_text.insert(unit.name.to_string(), text);
        }
    }
    Ok(f)
}

/// The nodes and join tokens of the cluster, when the first server runs.
async fn running_cluster(first: &Remote, f: &Facts, progress: &Progress) -> Running {
    if !f.units.get(render::SERVER_UNIT.name).is_some_and(|u| u.is_active()) {
        return Running::default();
    }
    let listed = async {
        let json = apply::nodes_json(first).await?;
        let parsed = nodes::parse(&json).and_then(|n| Ok((n, nodes::parse_upgrade_facts(&json)?)));
        parsed.map_err(|e| anyhow::anyhow!("{}: {e}", first.who))
    };
    let (nodes, upgrade_facts) = match listed.await {
        Ok((n, u)) => (Some(n), Some(u)),
        Err(e) => {
            progress.say(&format!("warning: cannot list the cluster's nodes: {e:#}"));
            (None, None)
        }
    };
    let members = match f.datastore.as_deref() {
        Some("etcd") => match prune::members(first).await {
            Ok(m) => Some(m),
            Err(e) => {
                progress.say(&format!("warning: cannot list the etcd members: {e:#}"));
                None
            }
        },
        _ => None,
    };
    Running { nodes, members, tokens: apply::read_tokens(first).await.ok(), upgrade_facts }
}

/// The admin kubeconfig of the first server, pointed at the API address.
async fn write_kubeconfig(first: &Remote, inv: &Inventory, path: &Path) -> anyhow::Result<()> {
    let admin = first
        .read(crate::host::paths::ADMIN_KUBECONFIG)
        .await?
        .with_context(|| format!("{}: {} is missing", first.who, crate::host::paths::ADMIN_KUBECONFIG))?;
    let text = render::workstation_kubeconfig(&admin, &inv.cluster.name, &inv.api_url())
        .map_err(|e| anyhow::anyhow!("{}: {}: {e}", first.who, crate::host::paths::ADMIN_KUBECONFIG))?;
    crate::fsutil::write_if_changed(path, text.as_bytes(), 0o600)
        .with_context(|| format!("cannot write the kubeconfig {}", path.display()))?;
    Ok(())
}

fn print(report: &Report, json: bool, dry_run: bool) {
    if json {
        println!("{}", report.json());
        return;
    }
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    if report.hosts.is_empty() {
        return;
    }
    if dry_run {
        if report.problems.is_empty() {
            println!("plan for cluster {} ({} mode); --dry-run: nothing was changed", report.cluster, report.mode.unwrap_or("?"));
            print!("{}", report.plan_table());
            if let Some(file) = &report.registries {
                println!("registries.yaml for every host's {} (written where it differs, mode 0600): {file}", render::REGISTRIES);
            }
            if !report.images.is_empty() {
                println!("image archives for every host's {} (copied where they differ): {}", render::IMAGES_DIR, report.images.join(", "));
            }
            if let Some(u) = &report.upgrade {
                println!(
                    "the cluster upgrades itself from k8s {} to {}, one node at a time, servers first (UpgradePlan k8s-{}):",
                    u.from.join(", "),
                    u.to,
                    u.to
                );
                print!("{}", u.table());
                println!("preflight: ok");
            }
        }
    } else if report.problems.is_empty() {
        print!("{}", report.table());
    }
    if !report.extra_nodes.is_empty() && report.pruned.is_empty() {
        eprintln!(
            "warning: nodes not in the inventory: {}; `k8s up --prune` removes them",
            report.extra_nodes.join(", ")
        );
    }
    if !report.extra_members.is_empty() && report.pruned.is_empty() {
        eprintln!(
            "warning: etcd members (servers) not in the inventory: {}; `k8s up --prune` removes them",
            report.extra_members.join(", ")
        );
    }
    if !report.pruned.is_empty() {
        println!("pruned: {}", report.pruned.join(", "));
    }
    if let (true, Some(kc)) = (report.ok, &report.kubeconfig) {
        println!("cluster {} is up ({:.1} s); kubeconfig: {kc}", report.cluster, report.seconds);
        println!("  kubectl --kubeconfig {kc} get nodes");
    }
}
