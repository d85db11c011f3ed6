//! The order of a rollout and what to do next: pure functions from a
//! plan's spec and its node rows to a decision, so the controller's every
//! step can be tested (and printed by a dry run) without a cluster.
//!
//! Servers go first, one at a time, in name order; agents only once every
//! server is committed, `maxUnavailable` at a time. A node that rolled back
//! or failed halts the plan: nothing else is started.

use super::crd::{DrainMode, NodePhase, NodeRow, Role, UpgradePlanSpec};
use super::preflight::{NodeFacts, Version};
use super::protocol::{Order, Report, Step};

/// Time the guard allows beyond the Ready timeout and the soak (a restart).
const DEADLINE_SLACK_SECONDS: u64 = 60;

/// What the controller does next with a plan.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Start these nodes (their rows go from Waiting to Started).
    Start(Vec<String>),
    /// Nodes are in progress and nothing more may start.
    Wait,
    Paused,
    /// A node rolled back or failed: no other node is started.
    Halted { node: String, message: String },
    Complete,
}

/// The rows of a new plan, in rollout order: servers, then agents, each
/// by name. A node already on the target version starts Committed.
pub fn rows(spec: &UpgradePlanSpec, nodes: &[NodeFacts]) -> Vec<NodeRow> {
    let mut sorted: Vec<&NodeFacts> = nodes.iter().collect();
    sorted.sort_by(|a, b| (a.role, &a.name).cmp(&(b.role, &b.name)));
    sorted
        .into_iter()
        .map(|n| {
            let from = n.k8s_version.clone().unwrap_or_default();
            let phase = if from == spec.version { NodePhase::Committed } else { NodePhase::Waiting };
            NodeRow { name: n.name.clone(), role: n.role, from, to: spec.version.clone(), phase, since: String::new(), attempts: 0, message: String::new() }
        })
        .collect()
}

/// The next step of a plan whose nodes are at `rows`.
pub fn next(spec: &UpgradePlanSpec, rows: &[NodeRow]) -> Decision {
    if let Some(r) = rows.iter().find(|r| r.phase.halts()) {
        return Decision::Halted { node: r.name.clone(), message: r.message.clone() };
    }
    if rows.iter().all(|r| r.phase == NodePhase::Committed) {
        return Decision::Complete;
    }
    if spec.paused {
        return Decision::Paused;
    }
    let of = |role: Role| rows.iter().filter(move |r| r.role == role);
    if of(Role::Server).any(|r| r.phase.in_progress()) {
        return Decision::Wait;
    }
    if let Some(server) = of(Role::Server).find(|r| r.phase == NodePhase::Waiting) {
        return Decision::Start(vec![server.name.clone()]);
    }
    let agents = of(Role::Agent).count();
    // Preflight refused a malformed value; 1 keeps a plan edited since safe.
    let limit = max_unavailable(&spec.agents.max_unavailable, agents).unwrap_or(1);
    let busy = of(Role::Agent).filter(|r| r.phase.in_progress()).count();
    let start: Vec<String> = of(Role::Agent)
        .filter(|r| r.phase == NodePhase::Waiting)
        .take(limit.saturating_sub(busy))
        .map(|r| r.name.clone())
        .collect();
    if start.is_empty() { Decision::Wait } else { Decision::Start(start) }
}

/// What the controller knows of a node the plan started.
#[derive(Debug, Default)]
pub struct NodeView {
    /// Where the node may fetch the binary (see [`sources`]).
    pub sources: Vec<String>,
    pub report: Option<Report>,
    pub order: Option<Order>,
    pub cordoned_by_us: bool,
    /// `amd64`, `arm64` (the Node's `nodeInfo.architecture`).
    pub arch: String,
    /// The kubelet's version (the Node's `nodeInfo.kubeletVersion`).
    pub kubelet_version: String,
    /// Pods a drain still waits for on the node, being deleted or not (not
    /// DaemonSets' nor static pods).
    pub evictable: usize,
    /// The row has been Draining for longer than the plan's drain timeout.
    pub drain_overdue: bool,
}

/// What the controller does to a node's objects.
#[derive(Debug, PartialEq, Eq)]
pub enum Act {
    Order(Order),
    Cordon,
    /// Evict the node's pods through the Eviction API (PodDisruptionBudgets
    /// may refuse some; they are asked again on the next pass).
    Evict,
    Uncordon,
    ClearOrder,
}

/// Moves one started node's row on: takes the node's report when it is
/// news, then says what the controller does next for it.
///
/// ```text
/// Started/Staging ─(order: stage)─▶ node reports Staged ─▶ cordon ─▶ Cordoned
///   ─▶ Draining (evict until no pod is left; when the drain setting asks) ─(order: swap)─▶ Swapping
///   ─▶ node: Verifying, Soaking ─▶ Committed ─▶ uncordon, order cleared
/// a node reporting RolledBack or Failed: uncordon, order cleared (the plan halts)
/// ```
pub fn advance(plan: &str, spec: &UpgradePlanSpec, row: &mut NodeRow, view: &NodeView) -> Vec<Act> {
    if let Some(r) = view.report.as_ref().filter(|r| r.plan == plan && r.version == row.to) {
        if r.phase.rank() > row.phase.rank() {
            row.phase = r.phase;
            row.message = r.message.clone();
        }
    }
    let Some(sha256) = spec.sha256.get(&view.arch) else {
        row.phase = NodePhase::Failed;
        row.message = format!("the plan has no sha256 for this node's architecture {:?}", view.arch);
        return finish(view);
    };
    let order = |step| Order {
        plan: plan.to_string(),
        version: row.to.clone(),
        sha256: sha256.clone(),
        sources: view.sources.clone(),
        step,
        deadline_seconds: spec.health_gates.node_ready_timeout_seconds + spec.health_gates.soak_seconds + DEADLINE_SLACK_SECONDS,
        soak_seconds: spec.health_gates.soak_seconds,
    };
    let ensure = |want: Order| if view.order.as_ref() == Some(&want) { vec![] } else { vec![Act::Order(want)] };
    match row.phase {
        NodePhase::Waiting => vec![],
        NodePhase::Started | NodePhase::Staging => ensure(order(Step::Stage)),
        NodePhase::Staged => {
            row.phase = NodePhase::Cordoned;
            if view.cordoned_by_us { vec![] } else { vec![Act::Cordon] }
        }
        NodePhase::Cordoned if drains(spec, &view.kubelet_version) => {
            row.phase = NodePhase::Draining;
            vec![Act::Evict]
        }
        NodePhase::Draining if view.evictable > 0 && view.drain_overdue => {
            row.phase = NodePhase::Failed;
            row.message = format!("the drain did not finish in {} s: {} pods left (PodDisruptionBudgets?)", spec.drain.timeout_seconds, view.evictable);
            finish(view)
        }
        NodePhase::Draining if view.evictable > 0 => vec![Act::Evict],
        NodePhase::Cordoned | NodePhase::Draining => {
            row.phase = NodePhase::Swapping;
            ensure(order(Step::Swap))
        }
        NodePhase::Swapping | NodePhase::Verifying | NodePhase::Soaking => ensure(order(Step::Swap)),
        NodePhase::Committed | NodePhase::RolledBack | NodePhase::Failed => finish(view),
    }
}

/// Where nodes fetch the binary: the plan's source, then the join endpoint
/// (same port) of every other server, by address, so a node stages while
/// the source server restarts or is down.
pub fn sources(spec: &UpgradePlanSpec, server_addresses: &[String]) -> Vec<String> {
    let port = spec.source.rsplit_once(':').map(|(_, p)| p.trim_end_matches('/')).unwrap_or("9345");
    let mut all = vec![spec.source.clone()];
    for ip in server_addresses {
        let url = if ip.contains(':') { format!("https://[{ip}]:{port}") } else { format!("https://{ip}:{port}") };
        if !all.contains(&url) {
            all.push(url);
        }
    }
    all
}

/// Whether a node is drained before its swap, not only cordoned: always,
/// never, or (auto) when its kubelet's minor version changes.
pub fn drains(spec: &UpgradePlanSpec, kubelet_version: &str) -> bool {
    let minor = |v: &str| Version::parse(v).ok().map(|v| (v.major, v.minor));
    match spec.drain.mode {
        DrainMode::Always => true,
        DrainMode::CordonOnly => false,
        DrainMode::Auto => minor(kubelet_version) != minor(&spec.kubernetes_version),
    }
}

/// A node's upgrade is over: undo what the plan did to it.
fn finish(view: &NodeView) -> Vec<Act> {
    let mut acts = Vec::new();
    if view.cordoned_by_us {
        acts.push(Act::Uncordon);
    }
    if view.order.is_some() {
        acts.push(Act::ClearOrder);
    }
    acts
}

/// `maxUnavailable` over `agents` agents: a count, or a percentage rounded
/// down; at least 1 either way, so a rollout always moves.
pub fn max_unavailable(text: &str, agents: usize) -> Result<usize, String> {
    let text = text.trim();
    let n = match text.strip_suffix('%') {
        Some(pct) => {
            let pct: usize = pct.parse().map_err(|_| format!("{text:?} is neither a count nor a percentage"))?;
            if pct > 100 {
                return Err(format!("{text:?} is over 100%"));
            }
            agents * pct / 100
        }
        None => text.parse().map_err(|_| format!("{text:?} is neither a count nor a percentage"))?,
    };
    Ok(n.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(name: &str, role: Role, version: &str) -> NodeFacts {
        NodeFacts::healthy(name, role, version)
    }

    fn spec(max_unavailable: &str) -> UpgradePlanSpec {
        let mut s = UpgradePlanSpec { version: "0.2.0".into(), kubernetes_version: "v1.37.1".into(), ..Default::default() };
        s.agents.max_unavailable = max_unavailable.into();
        s
    }

    fn cluster(spec: &UpgradePlanSpec) -> Vec<NodeRow> {
        let nodes = [
            facts("a2", Role::Agent, "0.1.0"),
            facts("s2", Role::Server, "0.1.0"),
            facts("a1", Role::Agent, "0.1.0"),
            facts("s1", Role::Server, "0.1.0"),
            facts("a3", Role::Agent, "0.2.0"),
            facts("a4", Role::Agent, "0.1.0"),
        ];
        rows(spec, &nodes)
    }

    fn set(rows: &mut [NodeRow], name: &str, phase: NodePhase) {
        rows.iter_mut().find(|r| r.name == name).unwrap().phase = phase;
    }

    fn start(names: &[&str]) -> Decision {
        Decision::Start(names.iter().map(|n| n.to_string()).collect())
    }

    #[test]
    fn servers_one_at_a_time_then_agents_max_unavailable_at_a_time() {
        let spec = spec("2");
        let mut rows = cluster(&spec);
        let order: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(order, ["s1", "s2", "a1", "a2", "a3", "a4"]);
        assert_eq!(rows[4].phase, NodePhase::Committed, "a3 is already on the target");
        assert_eq!(next(&spec, &rows), start(&["s1"]));
        set(&mut rows, "s1", NodePhase::Verifying);
        assert_eq!(next(&spec, &rows), Decision::Wait, "one server at a time");
        set(&mut rows, "s1", NodePhase::Committed);
        assert_eq!(next(&spec, &rows), start(&["s2"]));
        set(&mut rows, "s2", NodePhase::Committed);
        assert_eq!(next(&spec, &rows), start(&["a1", "a2"]));
        set(&mut rows, "a1", NodePhase::Draining);
        set(&mut rows, "a2", NodePhase::Committed);
        assert_eq!(next(&spec, &rows), start(&["a4"]), "one slot free");
        set(&mut rows, "a1", NodePhase::Committed);
        set(&mut rows, "a4", NodePhase::Committed);
        assert_eq!(next(&spec, &rows), Decision::Complete);
    }

    #[test]
    fn a_rollback_halts_and_pause_stops_new_starts() {
        let mut spec = spec("1");
        let mut rows = cluster(&spec);
        spec.paused = true;
        assert_eq!(next(&spec, &rows), Decision::Paused);
        spec.paused = false;
        set(&mut rows, "s1", NodePhase::RolledBack);
        rows[0].message = "not Ready after 300 s".into();
        assert_eq!(next(&spec, &rows), Decision::Halted { node: "s1".into(), message: "not Ready after 300 s".into() });
    }

    #[test]
    fn a_node_goes_stage_cordon_swap_commit_uncordon() {
        let mut spec = spec("1");
        spec.sha256 = [("amd64".to_string(), "ab".to_string())].into();
        spec.source = "https://10.0.0.1:9345".into();
        let mut row = cluster(&spec).remove(0);
        row.phase = NodePhase::Started;
        let sources = sources(&spec, &["10.0.0.2".into(), "10.0.0.1".into(), "fd00::3".into()]);
        assert_eq!(sources, ["https://10.0.0.1:9345", "https://10.0.0.2:9345", "https://[fd00::3]:9345"]);
        let mut view = NodeView { arch: "amd64".into(), kubelet_version: "v1.37.1".into(), sources, ..Default::default() };
        let acts = advance("p", &spec, &mut row, &view);
        let Some(Act::Order(stage)) = acts.first() else { panic!("{acts:?}") };
        assert_eq!((stage.step, stage.deadline_seconds, stage.sha256.as_str()), (Step::Stage, 300 + 30 + 60, "ab"));
        assert_eq!(stage.sources.len(), 3);
        view.order = Some(stage.clone());
        assert!(advance("p", &spec, &mut row, &view).is_empty(), "the order stands");
        let report = |phase| Some(Report { plan: "p".into(), version: "0.2.0".into(), phase, message: String::new() });
        view.report = report(NodePhase::Staged);
        assert_eq!(advance("p", &spec, &mut row, &view), [Act::Cordon]);
        assert_eq!(row.phase, NodePhase::Cordoned);
        view.cordoned_by_us = true;
        let acts = advance("p", &spec, &mut row, &view);
        assert!(matches!(&acts[..], [Act::Order(o)] if o.step == Step::Swap), "{acts:?}");
        assert_eq!(row.phase, NodePhase::Swapping, "a stale Staged report does not take the row back");
        view.report = Some(Report { plan: "other".into(), ..report(NodePhase::Committed).unwrap() });
        advance("p", &spec, &mut row, &view);
        assert_eq!(row.phase, NodePhase::Swapping, "another plan's report is not ours");
        view.report = report(NodePhase::Committed);
        assert_eq!(advance("p", &spec, &mut row, &view), [Act::Uncordon, Act::ClearOrder]);
        assert_eq!(row.phase, NodePhase::Committed);
        view.arch = "riscv64".into();
        let mut other = cluster(&spec).remove(1);
        other.phase = NodePhase::Started;
        advance("p", &spec, &mut other, &view);
        assert_eq!(other.phase, NodePhase::Failed);
    }

    #[test]
    fn a_drain_evicts_until_no_pod_is_left_or_fails_when_overdue() {
        let mut spec = spec("1");
        spec.sha256 = [("amd64".to_string(), "ab".to_string())].into();
        spec.drain.mode = DrainMode::Always;
        let mut row = cluster(&spec).remove(0);
        row.phase = NodePhase::Cordoned;
        let mut view = NodeView { arch: "amd64".into(), kubelet_version: "v1.37.1".into(), evictable: 3, cordoned_by_us: true, ..Default::default() };
        assert_eq!(advance("p", &spec, &mut row, &view), [Act::Evict]);
        assert_eq!(row.phase, NodePhase::Draining);
        assert_eq!(advance("p", &spec, &mut row, &view), [Act::Evict], "pods left: evict again");
        view.evictable = 0;
        let acts = advance("p", &spec, &mut row, &view);
        assert!(matches!(&acts[..], [Act::Order(o)] if o.step == Step::Swap), "{acts:?}");
        row.phase = NodePhase::Draining;
        view.evictable = 2;
        view.drain_overdue = true;
        assert_eq!(advance("p", &spec, &mut row, &view), [Act::Uncordon]);
        assert_eq!(row.phase, NodePhase::Failed);
        assert!(row.message.contains("2 pods left"), "{}", row.message);
    }

    #[test]
    fn auto_drains_only_when_the_kubelet_minor_changes() {
        let mut spec = spec("1");
        spec.drain.mode = DrainMode::Auto;
        spec.kubernetes_version = "v1.37.2".into();
        assert!(!drains(&spec, "v1.37.1"));
        assert!(drains(&spec, "v1.36.4"));
        spec.drain.mode = DrainMode::CordonOnly;
        assert!(!drains(&spec, "v1.36.4"));
    }

    #[test]
    fn max_unavailable_counts_and_percentages() {
        assert_eq!(max_unavailable("2", 10), Ok(2));
        assert_eq!(max_unavailable("25%", 10), Ok(2));
        assert_eq!(max_unavailable("10%", 3), Ok(1), "at least one");
        assert_eq!(max_unavailable("0", 3), Ok(1), "at least one");
        assert!(max_unavailable("150%", 3).is_err());
        assert!(max_unavailable("two", 3).is_err());
    }
}
