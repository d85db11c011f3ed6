//! `k8s upgrade apply|status`, run on a server as root (the admin
//! kubeconfig). `apply` checks the new binary here, keeps it where this
//! server's join endpoint serves it to the nodes, creates the plan, and
//! follows it to its end.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{ListParams, ObjectMeta, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};

use super::crd::{DrainMode, DrainSpec, HealthGates, NodeRow, PlanPhase, UpgradePlan, UpgradePlanSpec, UpgradePlanStatus};
use super::{controller, preflight, rollout, swap};
use crate::host::config::{Local, ServerOptions};
use crate::host::{config, net};
use crate::kubeclient;
use crate::payload::{elf_arch, this_arch};
use crate::release::{self, Release};
use crate::version::VERSION;

/// How `apply` shows its progress: lines for a person, or one JSON object
/// per change of the plan (`{"plan": NAME, "status": {...}}`), which `k8s
/// up` reads as it hands an upgrade over.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

/// What `k8s upgrade apply` asks of the plan besides the binary.
pub struct ApplyOptions {
    pub dry_run: bool,
    pub health_gates: HealthGates,
    pub drain: DrainMode,
    pub output: Output,
}

/// `k8s upgrade apply --binary FILE... [--dry-run]`. When the plan for that
/// version exists already with the same binaries (an earlier run that
/// stopped following it), follows it instead.
pub async fn apply(binaries: &[PathBuf], opts: ApplyOptions, local: &Local) -> anyhow::Result<()> {
    let (native, others) = by_architecture(binaries)?;
    let binary = native.as_path();
    let versions = swap::versions_of(binary)?;
    let kubernetes = versions.kubernetes.with_context(|| {
        format!("{} carries no components (a plain cargo build?); use the one `make dist` builds", binary.display())
    })?;
    let version = versions.k8s;
    let (sha256, size) = crate::fsutil::sha256_file(binary)?;
    // The other architectures' binaries cannot run here: read, and checked
    // to be the same release.
    let this = Release { path: native.clone(), arch: this_arch(), version: version.clone(), kubernetes: kubernetes.clone(), sha256: sha256.clone(), size };
    let mut all = vec![this.clone()];
    for other in others {
        let other = release::inspect(&other)?;
        release::check_same_release(&this, &other)?;
        all.push(other);
    }
    let client = admin(&local.admin_kubeconfig).await?;
    let spec = UpgradePlanSpec {
        version: version.clone(),
        kubernetes_version: kubernetes,
        etcd_version: versions.etcd.unwrap_or_default(),
        sha256: all.iter().map(|r| (r.arch.to_string(), r.sha256.clone())).collect(),
        source: own_join_url()?,
        drain: DrainSpec { mode: opts.drain, ..Default::default() },
        health_gates: opts.health_gates,
        ..Default::default()
    };
    let name = format!("k8s-{version}");
    let plans: Api<UpgradePlan> = Api::all(client.clone());
    if let Some(existing) = plans.get_opt(&name).await? {
        return resume_following(&plans, existing, &spec, opts.output).await;
    }
    let nodes: Api<Node> = Api::all(client.clone());
    let facts: Vec<_> = nodes.list(&ListParams::default()).await?.items.iter().map(controller::facts).collect();
    let own = swap::versions_of(&std::env::current_exe()?)?;
    let running = preflight::Running { k8s: VERSION, etcd: own.etcd.as_deref() };
    let mut problems = preflight::preflight(&spec, &facts, running);
    let etcd = crate::pki::Pki { dir: crate::host::Layout::new(&local.data_dir).pki_dir() };
    if etcd.etcd_ca_cert().exists() {
        problems.extend(crate::etcd::health::problems(&etcd).await);
    }
    if opts.output == Output::Text {
        println!("upgrade to k8s {version} ({}), sha256 {sha256}", spec.kubernetes_version);
        print_rows(&rollout::rows(&spec, &facts));
    }
    if !problems.is_empty() {
        bail!("preflight failed, no node touched:\n  - {}", problems.join("\n  - "));
    }
    if opts.output == Output::Text {
        println!("preflight: ok");
    }
    if opts.dry_run {
        return Ok(());
    }
    let dir = swap::binaries_dir(&local.data_dir);
    std::fs::create_dir_all(&dir)?;
    for r in &all {
        let kept = dir.join(&r.sha256);
        if !kept.exists() {
            swap::install(&r.path, &kept)?;
        }
    }
    let plan = UpgradePlan { metadata: ObjectMeta { name: Some(name.clone()), ..Default::default() }, spec, status: None };
    plans.create(&PostParams::default(), &plan).await?;
    if opts.output == Output::Text {
        println!("plan {name} created; following it (Ctrl-C stops following, not the upgrade)");
    }
    follow(&plans, &name, opts.output).await
}

/// A plan of that name exists: follow it when it rolls the same binary,
/// otherwise say what to do.
async fn resume_following(plans: &Api<UpgradePlan>, existing: UpgradePlan, spec: &UpgradePlanSpec, output: Output) -> anyhow::Result<()> {
    let name = existing.name_any();
    let status = existing.status.clone().unwrap_or_default();
    if existing.spec.sha256 != spec.sha256 {
        bail!("an UpgradePlan {name} exists already for another binary of that version; delete it first (k8s kubectl delete upgradeplan {name})");
    }
    match status.phase {
        PlanPhase::Halted | PlanPhase::PreflightFailed => bail!(
            "the UpgradePlan {name} for this binary ended {:?}: {}; fix that, then delete the plan (k8s kubectl delete upgradeplan {name}) and run again",
            status.phase, status.message
        ),
        _ => {
            if output == Output::Text {
                println!("plan {name} for this binary exists already ({:?}); following it", status.phase);
            }
            follow(plans, &name, output).await
        }
    }
}

/// `k8s upgrade status`: every plan and its nodes (`json`: the plans as
/// the API has them, `{"plans": [...]}`).
pub async fn status(json: bool, admin_kubeconfig: &Path) -> anyhow::Result<()> {
    let plans: Api<UpgradePlan> = Api::all(admin(admin_kubeconfig).await?);
    let list = plans.list(&ListParams::default()).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"plans": list.items}))?);
        return Ok(());
    }
    if list.items.is_empty() {
        println!("no upgrade plans");
    }
    for plan in &list.items {
        let status = plan.status.clone().unwrap_or_default();
        println!("{} → k8s {}: {:?} {} {}", plan.name_any(), plan.spec.version, status.phase, status.done, status.message);
        print_rows(&status.nodes);
    }
    Ok(())
}

/// `k8s upgrade pause|resume [PLAN]`: a paused plan starts no new node (one
/// in progress finishes). Without a name: the one plan still running.
pub async fn set_paused(name: Option<String>, paused: bool, admin_kubeconfig: &Path) -> anyhow::Result<()> {
    let plans: Api<UpgradePlan> = Api::all(admin(admin_kubeconfig).await?);
    let name = match name {
        Some(n) => n,
        None => running_plan(&plans).await?,
    };
    let mut plan = plans.get_opt(&name).await?.with_context(|| format!("no UpgradePlan {name}; see `k8s upgrade status`"))?;
    plan.spec.paused = paused;
    // The resourceVersion read above makes this a compare-and-swap.
    plans.replace(&name, &PostParams::default(), &plan).await?;
    println!("plan {name} {}", if paused { "paused: no new node starts" } else { "resumed" });
    Ok(())
}

async fn running_plan(plans: &Api<UpgradePlan>) -> anyhow::Result<String> {
    let list = plans.list(&ListParams::default()).await?;
    let ended = |p: &UpgradePlan| {
        matches!(p.status.as_ref().map(|s| s.phase), Some(PlanPhase::Complete | PlanPhase::Halted | PlanPhase::PreflightFailed))
    };
    let running: Vec<String> = list.items.iter().filter(|p| !ended(p)).map(|p| p.name_any()).collect();
    match &running[..] {
        [one] => Ok(one.clone()),
        [] => bail!("no upgrade plan is running"),
        many => bail!("several plans are running ({}); name one", many.join(", ")),
    }
}

/// Prints each change of the plan until it ends; an error unless it completed.
async fn follow(plans: &Api<UpgradePlan>, name: &str, output: Output) -> anyhow::Result<()> {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = std::pin::pin!(kubeclient::follow(plans.clone(), config, Some(Duration::from_secs(30))));
    let mut last = String::new();
    while let Some(list) = events.next().await {
        let Some(plan) = list.first() else { bail!("the plan {name} was deleted") };
        let status = plan.status.clone().unwrap_or_default();
        let line = match output {
            Output::Text => summary(&status),
            Output::Json => serde_json::json!({"plan": name, "status": status}).to_string(),
        };
        if line != last {
            println!("{line}");
            last = line;
        }
        match status.phase {
            PlanPhase::Complete => return Ok(()),
            PlanPhase::Halted | PlanPhase::PreflightFailed => bail!("the upgrade stopped: {}", status.message),
            _ => {}
        }
    }
    bail!("lost the plan {name}")
}

fn summary(status: &UpgradePlanStatus) -> String {
    let nodes: Vec<String> = status.nodes.iter().map(|r| format!("{} {:?}", r.name, r.phase)).collect();
    format!("{:?} {}: {}", status.phase, status.done, nodes.join(", "))
}

fn print_rows(rows: &[NodeRow]) {
    println!("  {:<24} {:<7} {:<10} {:<10} PHASE", "NODE", "ROLE", "FROM", "TO");
    for r in rows {
        println!("  {:<24} {:<7} {:<10} {:<10} {:?} {}", r.name, format!("{:?}", r.role).to_lowercase(), r.from, r.to, r.phase, r.message);
    }
}

async fn admin(kubeconfig: &Path) -> anyhow::Result<Client> {
    kubeclient::client(kubeconfig).await.context("k8s upgrade runs on a server, as root")
}

/// This machine's binary (run to check it) and the others, one per
/// architecture, from their ELF headers. One binary alone is this
/// machine's: running it says whether it is.
fn by_architecture(binaries: &[PathBuf]) -> anyhow::Result<(PathBuf, Vec<PathBuf>)> {
    if let [only] = binaries {
        return Ok((only.clone(), vec![]));
    }
    let mut seen: Vec<(&'static str, &PathBuf)> = vec![];
    for b in binaries {
        let mut header = [0u8; 64];
        let n = std::fs::File::open(b).and_then(|mut f| std::io::Read::read(&mut f, &mut header)).with_context(|| format!("cannot read {}", b.display()))?;
        let a = elf_arch(&header[..n]).with_context(|| format!("{} is not a Linux executable for amd64 or arm64", b.display()))?;
        if let Some((_, first)) = seen.iter().find(|(s, _)| *s == a) {
            bail!("{} and {} are both {a} binaries; give one per architecture", first.display(), b.display());
        }
        seen.push((a, b));
    }
    let native = seen.iter().position(|(a, _)| *a == this_arch()).with_context(|| {
        format!("no --binary is for this server's architecture ({}); give it too, it is checked here by running it", this_arch())
    })?;
    let native = seen.remove(native).1.clone();
    Ok((native, seen.into_iter().map(|(_, b)| b.clone()).collect()))
}

/// This server's join endpoint, from its config file (as `k8s server`
/// resolves it: advertise-address, else node-ip, else the default route's).
fn own_join_url() -> anyhow::Result<String> {
    let o: ServerOptions = config::load(None)?;
    let node_ip = net::node_ip(o.node_ip)?;
    let ip = o.advertise_address.unwrap_or(node_ip);
    let port = o.join_port.unwrap_or(crate::join::DEFAULT_PORT);
    Ok(match ip {
        std::net::IpAddr::V6(v6) => format!("https://[{v6}]:{port}"),
        v4 => format!("https://{v4}:{port}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file with just an ELF header for `machine` (0x3e amd64, 0xb7 arm64).
    fn elf(dir: &Path, name: &str, machine: u8) -> PathBuf {
        let mut header = [0u8; 64];
        header[..4].copy_from_slice(b"\x7fELF");
        header[18] = machine;
        let path = dir.join(name);
        std::fs::write(&path, header).unwrap();
        path
    }

    #[test]
    fn one_binary_per_architecture_this_machines_run() {
        let dir = tempfile::tempdir().unwrap();
        let (native_machine, other_machine) = if this_arch() == "amd64" { (0x3e, 0xb7) } else { (0xb7, 0x3e) };
        let native = elf(dir.path(), "k8s", native_machine);
        let other = elf(dir.path(), "k8s-other", other_machine);
        // One alone is taken as this machine's (running it tells).
        assert_eq!(by_architecture(std::slice::from_ref(&other)).unwrap(), (other.clone(), vec![]));
        assert_eq!(by_architecture(&[other.clone(), native.clone()]).unwrap(), (native.clone(), vec![other.clone()]));
        let twice = by_architecture(&[native.clone(), elf(dir.path(), "again", native_machine)]).unwrap_err().to_string();
        assert!(twice.contains(&format!("are both {} binaries", this_arch())), "{twice}");
        let script = dir.path().join("script");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        let none = by_architecture(&[other.clone(), script]).unwrap_err().to_string();
        assert!(none.contains("is not a Linux executable for amd64 or arm64"), "{none}");
        let two_others = by_architecture(&[other, elf(dir.path(), "k8s-third", other_machine)]).unwrap_err().to_string();
        assert!(two_others.contains("are both"), "{two_others}");
    }
}
