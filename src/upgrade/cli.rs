//! `k8s upgrade apply|status`, run on a server as root (the admin
//! kubeconfig). `apply` checks the new binary here, keeps it where this
//! server's join endpoint serves it to the nodes, creates the plan, and
//! follows it to its end.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{ListParams, ObjectMeta, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};

use super::crd::{DrainMode, DrainSpec, HealthGates, NodeRow, PlanPhase, UpgradePlan, UpgradePlanSpec, UpgradePlanStatus};
use super::{controller, preflight, rollout, swap};
use crate::host::config::ServerOptions;
use crate::host::{config, net, paths};
use crate::kubeclient;
use crate::version::VERSION;

/// `k8s upgrade apply --binary FILE [--dry-run]`.
pub async fn apply(binary: &Path, dry_run: bool, health_gates: HealthGates, drain: DrainMode, data_dir: &Path)
    -> anyhow::Result<()> {
    let versions = swap::versions_of(binary)?;
    let kubernetes = versions.kubernetes.with_context(|| {
        format!("{} carries no components (a plain cargo build?); use the one `make dist` builds", binary.display())
    })?;
    let version = versions.k8s;
    let (sha256, _) = crate::fsutil::sha256_file(binary)?;
    let client = admin().await?;
    let spec = UpgradePlanSpec {
        version: version.clone(),
        kubernetes_version: kubernetes,
        sha256: [(arch().to_string(), sha256.clone())].into(),
        source: own_join_url()?,
        drain: DrainSpec { mode: drain, ..Default::default() },
        health_gates,
        ..Default::default()
    };
    let nodes: Api<Node> = Api::all(client.clone());
    let facts: Vec<_> = nodes.list(&ListParams::default()).await?.items.iter().map(controller::facts).collect();
    let problems = preflight::preflight(&spec, &facts, VERSION);
    println!("upgrade to k8s {version} ({}), sha256 {sha256}", spec.kubernetes_version);
    print_rows(&rollout::rows(&spec, &facts));
    if !problems.is_empty() {
        bail!("preflight failed, no node touched:\n  - {}", problems.join("\n  - "));
    }
    println!("preflight: ok");
    if dry_run {
        return Ok(());
    }
    let binaries = swap::binaries_dir(data_dir);
    std::fs::create_dir_all(&binaries)?;
    swap::install(binary, &binaries.join(&sha256))?;
    let name = format!("k8s-{version}");
    let plan = UpgradePlan { metadata: ObjectMeta { name: Some(name.clone()), ..Default::default() }, spec, status: None };
    let plans: Api<UpgradePlan> = Api::all(client);
    plans.create(&PostParams::default(), &plan).await.map_err(|e| match e {
        kube::Error::Api(s) if s.code == 409 => anyhow::anyhow!("an UpgradePlan {name} exists already; see `k8s upgrade status`"),
        e => e.into(),
    })?;
    println!("plan {name} created; following it (Ctrl-C stops following, not the upgrade)");
    follow(&plans, &name).await
}

/// `k8s upgrade status`: every plan and its nodes.
pub async fn status() -> anyhow::Result<()> {
    let plans: Api<UpgradePlan> = Api::all(admin().await?);
    let list = plans.list(&ListParams::default()).await?;
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
pub async fn set_paused(name: Option<String>, paused: bool) -> anyhow::Result<()> {
    let plans: Api<UpgradePlan> = Api::all(admin().await?);
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
async fn follow(plans: &Api<UpgradePlan>, name: &str) -> anyhow::Result<()> {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = std::pin::pin!(kubeclient::follow(plans.clone(), config, Some(Duration::from_secs(30))));
    let mut last = String::new();
    while let Some(list) = events.next().await {
        let Some(plan) = list.first() else { bail!("the plan {name} was deleted") };
        let status = plan.status.clone().unwrap_or_default();
        let line = summary(&status);
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

async fn admin() -> anyhow::Result<Client> {
    kubeclient::client(Path::new(paths::ADMIN_KUBECONFIG)).await.context("k8s upgrade runs on a server, as root")
}

/// Kubernetes' name for this machine's architecture.
fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
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
