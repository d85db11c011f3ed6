//! `up --prune`: nodes of the cluster that the inventory no longer lists
//! are drained, their host is reset over SSH (with the inventory's default
//! SSH settings, at the node's InternalIP), and the Node is deleted. A host
//! that cannot be reached is removed from the cluster all the same (for a
//! server, its etcd member too).

use std::collections::BTreeMap;

use anyhow::Context;

use super::apply::Ctx;
use super::nodes::Node;
use super::plan::Plan;
use super::remote::{self, Remote};
use super::reset;
use crate::inventory::{Host, HostSsh, Inventory, Mode, Role};
use crate::ssh;

const CONTROL_PLANE: &str = "node-role.kubernetes.io/control-plane";

/// How a host that is not in the inventory is reached: the default SSH
/// settings at `address`.
pub fn default_target(inv: &Inventory, name: &str, address: &str) -> anyhow::Result<ssh::Target> {
    let host = Host {
        address: address.to_string(),
        role: Role::Agent,
        name: Some(name.to_string()),
        control_plane_only: false,
        labels: BTreeMap::new(),
        taints: vec![],
        node_ip: None,
        ssh: HostSsh::default(),
        line: 0,
    };
    remote::target(inv, &host)
}

/// Removes every extra node, one at a time; the names removed.
pub async fn prune(ctx: &Ctx<'_>, plan: &Plan, keys: &ssh::Keys) -> anyhow::Result<Vec<String>> {
    let mut done = vec![];
    for node in &plan.extra_nodes {
        ctx.progress.say(&format!("pruning node {} ({})", node.name, node.internal_ip.as_deref().unwrap_or("no address")));
        remove(ctx, plan, keys, node).await.with_context(|| format!("pruning node {}", node.name))?;
        done.push(node.name.clone());
    }
    Ok(done)
}

async fn remove(ctx: &Ctx<'_>, plan: &Plan, keys: &ssh::Keys, node: &Node) -> anyhow::Result<()> {
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
    let reached = match &node.internal_ip {
        Some(ip) => {
            let t = default_target(ctx.inv, &name, ip)?;
            match Remote::connect(format!("{name} ({ip})"), &t, keys).await {
                Ok(r) => {
                    let res = reset::uninstall(&r).await;
                    r.close().await;
                    res?;
                    true
                }
                Err(e) => {
                    ctx.progress.say(&format!("{e:#}; removing it from the cluster without resetting the host"));
                    false
                }
            }
        }
        None => false,
    };
    if !reached && node.labels.contains_key(CONTROL_PLANE) && matches!(plan.mode, Mode::Ha { .. }) {
        first.run(&format!("/usr/local/bin/k8s etcd remove-member {}", remote::quote(&name))).await?;
    }
    first.kubectl(&["delete".into(), "node".into(), name, "--ignore-not-found".into()]).await?;
    Ok(())
}
