//! The upgrade controller: one leader among the servers (a Lease) runs a
//! kube-runtime Controller over the `UpgradePlan`s. For each plan it
//!
//! 1. on first sight, reads the selected Nodes and runs the preflight
//!    checks ([`super::preflight`]); a failure ends the plan with the
//!    reasons and no node touched;
//! 2. writes the rows of the rollout, in order ([`super::rollout::rows`]);
//! 3. on every pass, moves each started node on ([`super::rollout::advance`]):
//!    takes its report, writes its next order (stage, then swap), cordons it
//!    between the two and uncordons it at the end;
//! 4. asks [`super::rollout::next`] what to do: starts the next nodes,
//!    waits, pauses, halts on a rollback, or completes;
//! 5. writes the status back (phase, done N/M, the current node), and
//!    records an Event on the plan and on the Node for every change of a
//!    node's phase (reasons `Node<Phase>` and `Upgrade<Phase>`) and on the
//!    plan when it completes, halts or fails its preflight.
//!
//! In HA the preflight also asks etcd: every member a started voter that
//! answers with the same leader.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{EvictParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};

use super::crd::{NodePhase, NodeRow, PlanPhase, Role, UpgradePlan, UpgradePlanStatus};
use super::preflight::{self, NodeFacts};
use super::protocol::{self, ORDER_ANNOTATION};
use super::rollout::{self, Act, Decision};
use super::CORDONED_BY_ANNOTATION;
use crate::kubeclient::{self, leader};
use crate::node::{INIT_ANNOTATION, VERSION_ANNOTATION};
use crate::pki::Pki;
use crate::version::VERSION;

/// The Lease the servers' controllers campaign for.
const LEASE: &str = "k8s-upgrade-controller";
/// A rolling plan is looked at again this often (node executors report
/// through the plan, which also triggers a pass).
const POLL: Duration = Duration::from_secs(5);
const CONTROL_PLANE_LABEL: &str = "node-role.kubernetes.io/control-plane";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

struct Context {
    client: Client,
    recorder: Recorder,
    /// The etcd PKI of an HA server; None on SQLite.
    etcd: Option<Pki>,
    /// The etcd version this binary carries.
    etcd_version: Option<String>,
}

/// What the controller's server brings to it.
pub struct Setup {
    /// The node's name: the Lease's holder identity.
    pub identity: String,
    /// This server's PKI when the cluster runs etcd (HA).
    pub etcd: Option<Pki>,
    /// The etcd version this binary carries.
    pub etcd_version: Option<String>,
}

/// Campaigns for the Lease and, while leading, reconciles every plan;
/// never returns.
pub async fn run(client: Client, setup: Setup) {
    leader::run_controller(client, LEASE, &setup.identity, |client, recorder| {
        let (etcd, etcd_version) = (setup.etcd.clone(), setup.etcd_version.clone());
        async move {
            let plans: Api<UpgradePlan> = Api::all(client.clone());
            Controller::new(plans, watcher::Config::default())
                .run(reconcile, error_policy, Arc::new(Context { client, recorder, etcd, etcd_version }))
                .for_each(|_| async {})
                .await
        }
    })
    .await
}

async fn reconcile(plan: Arc<UpgradePlan>, ctx: Arc<Context>) -> Result<Action, Error> {
    let mut status = plan.status.clone().unwrap_or_default();
    if matches!(status.phase, PlanPhase::PreflightFailed | PlanPhase::Halted | PlanPhase::Complete) {
        return Ok(Action::await_change());
    }
    let before = status.clone();
    if status.nodes.is_empty() {
        let facts = node_facts(&ctx.client, &plan).await?;
        let running = preflight::Running { k8s: VERSION, etcd: ctx.etcd_version.as_deref() };
        let mut problems = preflight::preflight(&plan.spec, &facts, running);
        if let Some(pki) = &ctx.etcd {
            problems.extend(crate::etcd::health::problems(pki).await);
        }
        if !problems.is_empty() {
            status.phase = PlanPhase::PreflightFailed;
            status.message = problems.join("; ");
            tracing::warn!(plan = %plan.name_any(), "preflight failed: {}", status.message);
            status.set_conditions(&Timestamp::now().to_string());
            write_status(&ctx.client, &plan, &status).await?;
            record(&ctx, &plan, &before, &status).await;
            return Ok(Action::await_change());
        }
        status.nodes = rollout::rows(&plan.spec, &facts);
    }
    advance_nodes(&ctx.client, &plan, &mut status).await?;
    let action = step(&plan, &mut status);
    status.set_conditions(&Timestamp::now().to_string());
    write_status(&ctx.client, &plan, &status).await?;
    record(&ctx, &plan, &before, &status).await;
    Ok(action)
}

/// Events for what changed between `before` and `after`: each node whose
/// phase moved (on the plan, naming the node, and on the Node), and the
/// plan's end. Best effort: an Event that cannot be written is logged.
async fn record(ctx: &Context, plan: &UpgradePlan, before: &UpgradePlanStatus, after: &UpgradePlanStatus) {
    let plan_ref = plan.object_ref(&());
    let was = |name: &str| before.nodes.iter().find(|r| r.name == name).map(|r| r.phase);
    for row in after.nodes.iter().filter(|r| was(&r.name) != Some(r.phase) && r.phase != NodePhase::Waiting) {
        let node_ref = node_reference(&row.name);
        let note = node_note(row);
        let on_plan = event(row.phase, format!("Node{:?}", row.phase), format!("node {}: {note}", row.name), Some(node_ref.clone()));
        let on_node = event(row.phase, format!("Upgrade{:?}", row.phase), format!("plan {}: {note}", plan.name_any()), Some(plan_ref.clone()));
        publish(ctx, &on_plan, &plan_ref).await;
        publish(ctx, &on_node, &node_ref).await;
    }
    if after.phase != before.phase {
        let (reason, warn) = match after.phase {
            PlanPhase::Complete => ("Completed", false),
            PlanPhase::Halted => ("Halted", true),
            PlanPhase::PreflightFailed => ("PreflightFailed", true),
            PlanPhase::Paused => ("Paused", false),
            _ => return,
        };
        let type_ = if warn { EventType::Warning } else { EventType::Normal };
        let note = if after.message.is_empty() { format!("{} nodes on k8s {}", after.done, plan.spec.version) } else { after.message.clone() };
        let ev = Event { type_, reason: reason.into(), note: Some(truncate(note)), action: "Upgrade".into(), secondary: None };
        publish(ctx, &ev, &plan_ref).await;
    }
}

fn node_note(row: &NodeRow) -> String {
    let what = format!("k8s {} → {}", if row.from.is_empty() { "?" } else { &row.from }, row.to);
    if row.message.is_empty() { what } else { format!("{what}: {}", row.message) }
}

fn event(phase: NodePhase, reason: String, note: String, secondary: Option<k8s_openapi::api::core::v1::ObjectReference>) -> Event {
    let type_ = if phase.halts() { EventType::Warning } else { EventType::Normal };
    Event { type_, reason, note: Some(truncate(note)), action: "Upgrade".into(), secondary }
}

/// Events take at most 1 kB of note.
fn truncate(mut note: String) -> String {
    if note.len() > 1000 {
        let mut end = 1000;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
    }
    note
}

fn node_reference(name: &str) -> k8s_openapi::api::core::v1::ObjectReference {
    k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: Some(name.into()),
        // Nodes' events are found by their name as uid (as the kubelet writes them).
        uid: Some(name.into()),
        ..Default::default()
    }
}

async fn publish(ctx: &Context, ev: &Event, reference: &k8s_openapi::api::core::v1::ObjectReference) {
    if let Err(e) = ctx.recorder.publish(ev, reference).await {
        tracing::warn!(reason = %ev.reason, "cannot record an Event: {e}");
    }
}

/// Applies the next decision to `status`; how soon to look again.
fn step(plan: &UpgradePlan, status: &mut UpgradePlanStatus) -> Action {
    let decision = rollout::next(&plan.spec, &status.nodes);
    let action = match decision {
        Decision::Start(names) => {
            let now = Timestamp::now().to_string();
            for row in status.nodes.iter_mut().filter(|r| names.contains(&r.name)) {
                tracing::info!(plan = %plan.name_any(), node = %row.name, to = %row.to, "node upgrade started");
                row.phase = NodePhase::Started;
                row.since = now.clone();
                row.attempts += 1;
            }
            status.phase = PlanPhase::Rolling;
            status.message.clear();
            Action::requeue(POLL)
        }
        Decision::Wait => {
            status.phase = PlanPhase::Rolling;
            Action::requeue(POLL)
        }
        Decision::Paused => {
            status.phase = PlanPhase::Paused;
            Action::await_change()
        }
        Decision::Halted { node, message } => {
            status.phase = PlanPhase::Halted;
            status.message = format!("node {node} did not upgrade: {message}; no other node was started");
            Action::await_change()
        }
        Decision::Complete => {
            status.phase = PlanPhase::Complete;
            status.message.clear();
            Action::await_change()
        }
    };
    let committed = status.nodes.iter().filter(|r| r.phase == NodePhase::Committed).count();
    status.done = format!("{committed}/{}", status.nodes.len());
    status.current_node = status.nodes.iter().filter(|r| r.phase.in_progress()).map(|r| r.name.as_str()).collect::<Vec<_>>().join(",");
    action
}

/// Moves every started node on (see [`rollout::advance`]) and does what
/// that asks of the node's objects.
async fn advance_nodes(client: &Client, plan: &UpgradePlan, status: &mut UpgradePlanStatus) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let all = nodes.list(&ListParams::default()).await?.items;
    let servers: Vec<String> = all
        .iter()
        .filter(|n| n.labels().contains_key(CONTROL_PLANE_LABEL))
        .filter_map(|n| kubeclient::internal_ip(n).map(|ip| ip.to_string()))
        .collect();
    let sources = rollout::sources(&plan.spec, &servers);
    let name = plan.name_any();
    for row in status.nodes.iter_mut().filter(|r| r.phase != NodePhase::Waiting) {
        let Some(node) = all.iter().find(|n| n.name_any() == row.name) else {
            row.phase = NodePhase::Failed;
            row.message = "the Node is gone".into();
            continue;
        };
        let info = node.status.as_ref().and_then(|s| s.node_info.as_ref());
        // Listed once per pass: the count decides, and the evictions use it.
        let drain_pods = match row.phase {
            NodePhase::Cordoned | NodePhase::Draining => evictable(client, &row.name).await?,
            _ => Vec::new(),
        };
        let view = rollout::NodeView {
            sources: sources.clone(),
            report: protocol::report_of(node),
            order: protocol::order_of(node),
            cordoned_by_us: node.annotations().get(CORDONED_BY_ANNOTATION) == Some(&name),
            arch: info.map(|i| i.architecture.clone()).unwrap_or_default(),
            kubelet_version: info.map(|i| i.kubelet_version.clone()).unwrap_or_default(),
            evictable: drain_pods.len(),
            drain_overdue: row.phase == NodePhase::Draining && overdue(&row.since, plan.spec.drain.timeout_seconds),
        };
        let before = row.phase;
        for act in rollout::advance(&name, &plan.spec, row, &view) {
            match act {
                Act::Evict => evict(client, &row.name, &drain_pods).await?,
                act => {
                    nodes.patch(&row.name, &PatchParams::default(), &Patch::Merge(&node_patch(&name, act))).await?;
                }
            }
        }
        if row.phase != before {
            tracing::info!(plan = %name, node = %row.name, phase = ?row.phase, "node upgrade: {}", row.message);
            row.since = Timestamp::now().to_string();
        }
    }
    Ok(())
}

/// The pods a drain waits for on `node`: all but DaemonSets' (they would
/// come back at once), static pods (the kubelet owns them) and finished
/// ones; those being deleted count until they are gone.
async fn evictable(client: &Client, node: &str) -> Result<Vec<Pod>, kube::Error> {
    let pods: Api<Pod> = Api::all(client.clone());
    let on_node = pods.list(&ListParams::default().fields(&format!("spec.nodeName={node}"))).await?;
    Ok(on_node
        .items
        .into_iter()
        .filter(|p| !p.annotations().contains_key("kubernetes.io/config.mirror"))
        .filter(|p| !p.owner_references().iter().any(|o| o.kind == "DaemonSet"))
        .filter(|p| !matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed")))
        .collect())
}

/// Asks the Eviction API to evict those of `pods` (on `node`) not already
/// going; a refusal (a PodDisruptionBudget: 429) is asked again on the next
/// pass.
async fn evict(client: &Client, node: &str, pods: &[Pod]) -> Result<(), kube::Error> {
    for pod in pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
        let namespace: Api<Pod> = Api::namespaced(client.clone(), pod.metadata.namespace.as_deref().unwrap_or("default"));
        match namespace.evict(&pod.name_any(), &EvictParams::default()).await {
            Ok(_) => tracing::info!(%node, pod = %pod.name_any(), "evicted"),
            Err(kube::Error::Api(s)) if s.code == 429 || s.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Whether a phase entered at `since` (RFC 3339) is older than `secs`.
fn overdue(since: &str, secs: u64) -> bool {
    since.parse::<Timestamp>().is_ok_and(|t| Timestamp::now().as_second() - t.as_second() > secs as i64)
}

/// The merge patch of a Node that carries out `act`. Removing an
/// annotation needs a null in the patch, which a typed Node cannot hold:
/// those patches are written as JSON.
fn node_patch(plan: &str, act: Act) -> serde_json::Value {
    match act {
        Act::Order(order) => serde_json::json!({"metadata": {"annotations": {
            ORDER_ANNOTATION: serde_json::to_string(&order).unwrap_or_default()}}}),
        Act::Cordon => serde_json::json!({
            "metadata": {"annotations": {CORDONED_BY_ANNOTATION: plan}},
            "spec": {"unschedulable": true}}),
        Act::Uncordon => serde_json::json!({
            "metadata": {"annotations": {CORDONED_BY_ANNOTATION: null}},
            "spec": {"unschedulable": null}}),
        Act::ClearOrder => serde_json::json!({"metadata": {"annotations": {ORDER_ANNOTATION: null}}}),
        Act::Evict => unreachable!("evictions are not Node patches"),
    }
}

fn error_policy(plan: Arc<UpgradePlan>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(plan = %plan.name_any(), "reconcile: {error}");
    Action::requeue(POLL)
}

/// The Nodes the plan selects, as the preflight and the rollout see them.
async fn node_facts(client: &Client, plan: &UpgradePlan) -> Result<Vec<NodeFacts>, kube::Error> {
    let selector: Vec<String> = plan.spec.node_selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let nodes: Api<Node> = Api::all(client.clone());
    let list = nodes.list(&ListParams::default().labels(&selector.join(","))).await?;
    Ok(list.items.iter().map(facts).collect())
}

/// What the preflight and the rollout read of a Node.
pub fn facts(node: &Node) -> NodeFacts {
    let labels = node.labels();
    let annotations = node.annotations();
    let unschedulable = node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
    let info = node.status.as_ref().and_then(|s| s.node_info.as_ref());
    NodeFacts {
        name: node.name_any(),
        role: if labels.contains_key(CONTROL_PLANE_LABEL) { Role::Server } else { Role::Agent },
        ready: kubeclient::node_ready(node),
        cordoned_by_others: unschedulable && !annotations.contains_key(CORDONED_BY_ANNOTATION),
        k8s_version: annotations.get(VERSION_ANNOTATION).cloned(),
        kubelet_version: info.map(|i| i.kubelet_version.clone()).unwrap_or_default(),
        arch: info.map(|i| i.architecture.clone()).unwrap_or_default(),
        systemd: annotations.get(INIT_ANNOTATION).is_some_and(|i| i == "systemd"),
    }
}

async fn write_status(client: &Client, plan: &UpgradePlan, status: &UpgradePlanStatus) -> Result<(), kube::Error> {
    let plans: Api<UpgradePlan> = Api::all(client.clone());
    // The status subresource takes only the status of what it is sent.
    let patch = UpgradePlan { metadata: Default::default(), spec: plan.spec.clone(), status: Some(status.clone()) };
    plans.patch_status(&plan.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}
