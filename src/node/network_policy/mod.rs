//! NetworkPolicy enforcement on a node, in iptables' filter table (the
//! rules and why they have their shape: [`rules`]). No extra process, no
//! image, no ipset: every node's `k8s` polices the pods it runs.
//!
//! Lifecycle:
//!
//! - [`follow`] starts with the kubelet, before any pod runs: it watches
//!   Pods, Namespaces and NetworkPolicies (the node identity reads them
//!   through the `k8s:network-policy-node` ClusterRole of the
//!   `network-policy` addon, which a fresh server applies a moment after
//!   its kubelet starts: until the identity may list them [`follow`] waits
//!   quietly, warning only after [`ACCESS_PATIENCE`]) and, once all three are listed and after
//!   every change (gathered for [`SETTLE`]), renders the rules and
//!   installs them in one `iptables-restore` transaction when they differ
//!   from what is installed; every [`RESYNC`] it installs them again, so a
//!   flushed table is repaired.
//! - FORWARD's first rule jumps to our chain, checked at every install (a
//!   rule inserted before ours, kube-proxy's `KUBE-FORWARD` for one, would
//!   accept traffic before the policies see it).
//! - Stopping leaves the rules in place: a restarting node keeps enforcing
//!   the last policies it knew until it knows the current ones.
//! - A cluster that disables the addon (`disable: [network-policy]`) has
//!   every node [`remove`] the jump and the chains at start; `k8s reset`
//!   removes them with kube-proxy's (the `KUBE-` prefix).

pub mod rules;

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::watcher;
use kube::{Api, Client};
use tokio::time::Instant;

use crate::kubeclient;
use rules::MAIN;

/// How long changes are gathered before one install (a Deployment's pods
/// come in a burst).
const SETTLE: Duration = Duration::from_millis(100);
/// How often the rules are installed again even when nothing changed.
const RESYNC: Duration = Duration::from_secs(60);
const JUMP_COMMENT: &str = "k8s network policies";
/// How long the node identity may be refused NetworkPolicies and
/// Namespaces before that is a warning (a fresh server grants it ~0.5 s
/// after its kubelet starts).
const ACCESS_PATIENCE: Duration = Duration::from_secs(30);

/// Enforces the cluster's NetworkPolicies on the pods of `node` until
/// stopped (see the module doc).
pub async fn follow(kubelet: Client, node: String) {
    wait_for_access(&kubelet).await;
    let pods = kubeclient::follow(Api::<Pod>::all(kubelet.clone()), watcher::Config::default(), None).map(Update::Pods);
    let spaces = kubeclient::follow(Api::<Namespace>::all(kubelet.clone()), watcher::Config::default(), None).map(Update::Namespaces);
    let policies = kubeclient::follow(Api::<NetworkPolicy>::all(kubelet), watcher::Config::default(), Some(RESYNC)).map(Update::Policies);
    let mut updates = std::pin::pin!(futures::stream::select(pods, futures::stream::select(spaces, policies)));
    let mut state = State::default();
    let mut installed: Option<(rules::Ruleset, Instant)> = None;
    while let Some(update) = updates.next().await {
        state.take(update);
        // Take what else arrives while the burst settles.
        while let Ok(Some(update)) = tokio::time::timeout(SETTLE, updates.next()).await {
            state.take(update);
        }
        let Some(ruleset) = state.render(&node) else { continue };
        let unchanged = installed.as_ref().is_some_and(|(done, _)| *done == ruleset);
        if unchanged && installed.as_ref().is_some_and(|(_, at)| at.elapsed() < RESYNC) {
            continue;
        }
        match tokio::task::spawn_blocking(move || install(&ruleset).map(|()| ruleset)).await {
            Ok(Ok(ruleset)) => {
                if !unchanged {
                    let (ingress, egress) = ruleset.policed();
                    let rules: usize = ruleset.chains.values().map(Vec::len).sum();
                    tracing::info!(ingress, egress, rules, "network policies installed (pods of this node policed for ingress, egress)");
                }
                installed = Some((ruleset, Instant::now()));
            }
            Ok(Err(e)) => tracing::warn!("installing the network policies: {e:#}"),
            Err(e) => tracing::warn!("installing the network policies: {e}"),
        }
    }
}

/// Returns once the node identity may list NetworkPolicies and Namespaces
/// (the watchers would log every refusal as a warning); after
/// [`ACCESS_PATIENCE`] it warns once and keeps trying.
async fn wait_for_access(kubelet: &Client) {
    let started = Instant::now();
    let mut warned = false;
    let one = kube::api::ListParams::default().limit(1);
    loop {
        let policies = Api::<NetworkPolicy>::all(kubelet.clone()).list_metadata(&one).await;
        let spaces = Api::<Namespace>::all(kubelet.clone()).list_metadata(&one).await;
        match policies.and(spaces) {
            Ok(_) => return,
            Err(e) if !warned && started.elapsed() > ACCESS_PATIENCE => {
                tracing::warn!("this node may not list NetworkPolicies and Namespaces yet ({e}); is the network-policy addon's ClusterRole applied? waiting");
                warned = true;
            }
            Err(e) => tracing::debug!("waiting to list NetworkPolicies and Namespaces: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

enum Update {
    Pods(Vec<std::sync::Arc<Pod>>),
    Namespaces(Vec<std::sync::Arc<Namespace>>),
    Policies(Vec<std::sync::Arc<NetworkPolicy>>),
}

#[derive(Default)]
struct State {
    pods: Option<Vec<std::sync::Arc<Pod>>>,
    namespaces: Option<Vec<std::sync::Arc<Namespace>>>,
    policies: Option<Vec<std::sync::Arc<NetworkPolicy>>>,
    reported: Vec<String>,
}

impl State {
    fn take(&mut self, update: Update) {
        match update {
            Update::Pods(p) => self.pods = Some(p),
            Update::Namespaces(n) => self.namespaces = Some(n),
            Update::Policies(p) => self.policies = Some(p),
        }
    }

    /// The rules, once all three kinds are listed; a policy whose selector
    /// does not parse is logged once.
    fn render(&mut self, node: &str) -> Option<rules::Ruleset> {
        let (Some(pods), Some(spaces), Some(policies)) = (&self.pods, &self.namespaces, &self.policies) else { return None };
        let (ruleset, broken) = rules::render(node, pods, spaces, policies);
        if !broken.is_empty() && broken != self.reported {
            tracing::warn!(policies = ?broken, "network policies with selectors that do not parse select nothing");
        }
        self.reported = broken;
        Some(ruleset)
    }
}

/// Makes our chains exactly `ruleset` (one transaction) and FORWARD's
/// first rule the jump to them.
fn install(ruleset: &rules::Ruleset) -> anyhow::Result<()> {
    restore(&ruleset.restore_input(&our_chains()?))?;
    first_in_forward()
}

/// Removes the jump and every chain of ours (the addon is disabled).
pub fn remove() -> anyhow::Result<()> {
    let existing = our_chains()?;
    if existing.is_empty() {
        return Ok(());
    }
    while iptables(&jump_rule("-D"))? {}
    restore(&rules::Ruleset::default().restore_input(&existing))?;
    tracing::info!("network policies disabled: their rules removed");
    Ok(())
}

/// The chains of ours the filter table holds now.
fn our_chains() -> anyhow::Result<BTreeSet<String>> {
    let out = Command::new("iptables-save").args(["-t", "filter"]).output().context("running iptables-save")?;
    if !out.status.success() {
        bail!("iptables-save -t filter: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix(':')?.split(' ').next())
        .filter(|chain| *chain == MAIN || chain.starts_with(&format!("{MAIN}-")))
        .map(str::to_string)
        .collect())
}

fn restore(input: &str) -> anyhow::Result<()> {
    let mut child = Command::new("iptables-restore")
        .args(["-w", "5", "--noflush"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running iptables-restore")?;
    child.stdin.take().context("iptables-restore's stdin")?.write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("iptables-restore: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Puts the jump to our chain first in FORWARD (moving it there when
/// another rule came before it).
fn first_in_forward() -> anyhow::Result<()> {
    let out = Command::new("iptables").args(["-w", "5", "-S", "FORWARD"]).output().context("running iptables -S FORWARD")?;
    let listing = String::from_utf8_lossy(&out.stdout);
    let first = listing.lines().find(|l| l.starts_with("-A FORWARD "));
    if first.is_some_and(|l| l.ends_with(&format!("-j {MAIN}"))) {
        return Ok(());
    }
    while iptables(&jump_rule("-D"))? {}
    let mut insert = jump_rule("-I");
    insert.insert(2, "1".into());
    if !iptables(&insert)? {
        bail!("cannot insert the jump to {MAIN} into FORWARD");
    }
    Ok(())
}

fn jump_rule(op: &str) -> Vec<String> {
    [op, "FORWARD", "-m", "comment", "--comment", JUMP_COMMENT, "-j", MAIN].map(String::from).to_vec()
}

/// Runs `iptables -w 5 <args>`: whether it succeeded (a rule to delete
/// that is not there fails quietly).
fn iptables(args: &[String]) -> anyhow::Result<bool> {
    let out = Command::new("iptables").args(["-w", "5"]).args(args).output().context("running iptables")?;
    Ok(out.status.success())
}
