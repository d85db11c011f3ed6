//! `up --prune`: nodes of the cluster that the inventory no longer lists
//! are drained, their host is reset over SSH (with the inventory's default
//! SSH settings, at the node's InternalIP), and the Node is deleted; a
//! server's etcd member is removed if it did not leave on reset. etcd
//! members without a node (control-plane-only servers) are reset at their
//! peer address and removed. A host that cannot be reached is removed from
//! the cluster all the same.


use anyhow::Context;

use super::apply::Ctx;
use super::nodes::{self, Member, Node};
use super::plan::Plan;
use super::remote::{self, Remote};
use super::reset;
use crate::inventory::{Host, Inventory, Mode, Role};
use crate::ssh;

const CONTROL_PLANE: &str = "node-role.kubernetes.io/control-plane";

/// How a host that is not in the inventory is reached: the default SSH
/// settings at `address`.
pub fn default_target(inv: &Inventory, name: &str, address: &str) -> anyhow::Result<ssh::Target> {
    let host = Host { name: Some(name.to_string()), ..Host::new(address, Role::Agent) };
    remote::target(inv, &host)
}

/// Removes every extra node, then every extra etcd member, one at a time;
/// the names removed.
pub async fn prune(ctx: &Ctx<'_>, plan: &Plan, keys: &ssh::Keys) -> anyhow::Result<Vec<String>> {
    let mut done = vec![];
    for node in &plan.extra_nodes {
        ctx.progress.say(&format!("pruning node {} ({})", node.name, node.internal_ip.as_deref().unwrap_or("no address")));
        remove_node(ctx, plan, keys, node).await.with_context(|| format!("pruning node {}", node.name))?;
        done.push(node.name.clone());
    }
    for m in &plan.extra_members {
        ctx.progress.say(&format!("pruning etcd member {} ({})", m.name, m.address.as_deref().unwrap_or("no address")));
        reset_host(ctx, keys, &m.name, m.address.as_deref()).await?;
        leave_etcd(ctx.first(plan), &m.name).await.with_context(|| format!("pruning etcd member {}", m.name))?;
        done.push(m.name.clone());
    }
    Ok(done)
}

async fn remove_node(ctx: &Ctx<'_>, plan: &Plan, keys: &ssh::Keys, node: &Node) -> anyhow::Result<()> {
    let first = ctx.first(plan);
    let name = node.name.clone();
    let mut drain: Vec<String> =
        ["drain", &name, "--ignore-daemonsets", "--delete-emptydir-data", "--force", "--timeout=120s"].map(String::from).to_vec();
    if !node.ready {
        // Pods on a dead node never finish terminating; do not wait for them.
        drain.push("--skip-wait-for-delete-timeout=1".into());
    }
    if let Err(e) = first.kubectl(&drain).await {
        if node.ready {
            return Err(e.context("drain failed; the node is left as it was"));
        }
        ctx.progress.say(&format!("{name}: drain incomplete (node not Ready): {e:#}"));
    }
    reset_host(ctx, keys, &name, node.internal_ip.as_deref()).await?;
    if node.labels.contains_key(CONTROL_PLANE) && matches!(plan.mode, Mode::Ha { .. }) {
        leave_etcd(first, &name).await?;
    }
    first.kubectl(&["delete".into(), "node".into(), name, "--ignore-not-found".into()]).await?;
    Ok(())
}

/// `k8s reset` on the host (which, for an HA server, leaves the etcd
/// membership); a host that cannot be reached is only reported.
async fn reset_host(ctx: &Ctx<'_>, keys: &ssh::Keys, name: &str, address: Option<&str>) -> anyhow::Result<()> {
    let Some(address) = address else {
        ctx.progress.say(&format!("{name}: no address known; removing it from the cluster without resetting the host"));
        return Ok(());
    };
    let target = default_target(ctx.inv, name, address)?;
    match Remote::connect(format!("{name} ({address})"), &target, keys).await {
        Ok(r) => {
            let res = reset::uninstall(&r).await;
            r.close().await;
            res
        }
        Err(e) => {
            ctx.progress.say(&format!("{e:#}; removing it from the cluster without resetting the host"));
            Ok(())
        }
    }
}

/// The etcd members, as the first server lists them.
pub async fn members(first: &Remote) -> anyhow::Result<Vec<Member>> {
    Ok(nodes::parse_members(&first.run("/usr/local/bin/k8s etcd members").await?))
}

/// Removes `name` from the etcd membership unless it left already.
async fn leave_etcd(first: &Remote, name: &str) -> anyhow::Result<()> {
    if members(first).await?.iter().any(|m| m.name == name) {
        first.run(&format!("/usr/local/bin/k8s etcd remove-member {}", remote::quote(name))).await?;
    }
    Ok(())
}
