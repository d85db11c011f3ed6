//! The `UpgradePlan` custom resource: what a user asks for (spec) and what
//! the controller and the nodes report (status). Cluster-scoped; the group
//! is our own (`*.k8s.io` is reserved for Kubernetes).

use std::collections::BTreeMap;

use kube::api::{Patch, PatchParams};
use kube::core::crd::CustomResourceExt;
use kube::{Api, Client, CustomResource};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::kubeclient::FIELD_MANAGER;

/// The API group of our own resources and the prefix of our annotations.
pub const GROUP: &str = "upgrade.k8s.local";

#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "upgrade.k8s.local",
    version = "v1alpha1",
    kind = "UpgradePlan",
    status = "UpgradePlanStatus",
    shortname = "upgrade",
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".spec.version"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Done","type":"string","jsonPath":".status.done"}"#,
    printcolumn = r#"{"name":"Node","type":"string","jsonPath":".status.currentNode"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct UpgradePlanSpec {
    /// The `k8s` version every selected node ends on.
    pub version: String,
    /// The Kubernetes version the target binary carries (checked against
    /// the staged binary's own manifest before any node is touched).
    pub kubernetes_version: String,
    /// The etcd version the target binary carries (HA clusters run it; it
    /// may move one minor at a time). Empty: not checked.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub etcd_version: String,
    /// The target binary's sha256, per architecture (`amd64`, `arm64`).
    pub sha256: BTreeMap<String, String>,
    /// The join endpoint that serves the binary to the nodes
    /// (`https://<server>:9345`; `k8s upgrade apply` sets it).
    pub source: String,
    #[serde(default)]
    pub agents: AgentsSpec,
    /// Only nodes with all these labels are upgraded (all nodes when empty).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default)]
    pub drain: DrainSpec,
    #[serde(default)]
    pub health_gates: HealthGates,
    /// A paused plan starts no new node (one in progress finishes).
    #[serde(default)]
    pub paused: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentsSpec {
    /// How many agents may be upgrading at once: a count ("2") or a
    /// percentage of the selected agents ("25%", rounded down, at least 1).
    pub max_unavailable: String,
}

impl Default for AgentsSpec {
    fn default() -> AgentsSpec {
        AgentsSpec { max_unavailable: "1".into() }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DrainMode {
    /// Drain when the kubelet's minor version changes, else cordon only.
    #[default]
    Auto,
    Always,
    CordonOnly,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrainSpec {
    #[serde(default)]
    pub mode: DrainMode,
    /// How long evictions may take before the node fails its upgrade.
    pub timeout_seconds: u64,
}

impl Default for DrainSpec {
    fn default() -> DrainSpec {
        DrainSpec { mode: DrainMode::Auto, timeout_seconds: 300 }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthGates {
    /// How long a restarted node may take to be Ready on the new version
    /// before it rolls back.
    pub node_ready_timeout_seconds: u64,
    /// How long a node must stay healthy on the new version before it is
    /// committed and the next one starts.
    pub soak_seconds: u64,
}

impl Default for HealthGates {
    fn default() -> HealthGates {
        HealthGates { node_ready_timeout_seconds: 300, soak_seconds: 30 }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpgradePlanStatus {
    pub phase: PlanPhase,
    // Written even when empty: the status is merge-patched, and an absent
    // field would keep its old value.
    /// Why the plan is where it is (the failed preflight checks, the
    /// node that rolled back).
    #[serde(default)]
    pub message: String,
    /// "committed/selected", for `kubectl get`.
    #[serde(default)]
    pub done: String,
    /// The node being upgraded, if any.
    #[serde(default)]
    pub current_node: String,
    /// One row per selected node, in rollout order.
    #[serde(default)]
    pub nodes: Vec<NodeRow>,
    /// `Preflight`, `Progressing`, `Complete`, `Degraded` (see
    /// [`UpgradePlanStatus::set_conditions`]).
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// A condition as Kubernetes writes them (`kubectl wait --for=condition=Complete`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True` or `False`.
    pub status: String,
    pub reason: String,
    #[serde(default)]
    pub message: String,
    /// When `status` last changed (RFC 3339).
    pub last_transition_time: String,
}

impl UpgradePlanStatus {
    /// Derives the conditions from the phase; a condition's transition time
    /// moves only when its status does.
    pub fn set_conditions(&mut self, now: &str) {
        let p = self.phase;
        let preflight_failed = p == PlanPhase::PreflightFailed;
        let want = [
            ("Preflight", p != PlanPhase::Pending && !preflight_failed, if preflight_failed { "PreflightFailed" } else { "Passed" }),
            ("Progressing", p == PlanPhase::Rolling, phase_reason(p)),
            ("Complete", p == PlanPhase::Complete, phase_reason(p)),
            ("Degraded", p == PlanPhase::Halted, phase_reason(p)),
        ];
        let message = self.message.clone();
        for (type_, on, reason) in want {
            if type_ == "Preflight" && p == PlanPhase::Pending {
                continue; // not checked yet
            }
            let status = if on { "True" } else { "False" }.to_string();
            match self.conditions.iter_mut().find(|c| c.type_ == type_) {
                Some(c) => {
                    if c.status != status {
                        c.last_transition_time = now.to_string();
                    }
                    c.status = status;
                    c.reason = reason.to_string();
                    c.message = message.clone();
                }
                None => self.conditions.push(Condition {
                    type_: type_.to_string(),
                    status,
                    reason: reason.to_string(),
                    message: message.clone(),
                    last_transition_time: now.to_string(),
                }),
            }
        }
    }
}

fn phase_reason(p: PlanPhase) -> &'static str {
    match p {
        PlanPhase::Pending => "Pending",
        PlanPhase::PreflightFailed => "PreflightFailed",
        PlanPhase::Rolling => "Rolling",
        PlanPhase::Paused => "Paused",
        PlanPhase::Halted => "Halted",
        PlanPhase::Complete => "Complete",
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PlanPhase {
    #[default]
    Pending,
    /// A preflight check failed: no node was touched.
    PreflightFailed,
    Rolling,
    Paused,
    /// A node rolled back or failed: no other node is started.
    Halted,
    Complete,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeRow {
    pub name: String,
    pub role: Role,
    /// The `k8s` version the node ran when the plan reached it.
    pub from: String,
    pub to: String,
    pub phase: NodePhase,
    /// When the node entered `phase` (RFC 3339).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub since: String,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Server,
    Agent,
}

/// A node's way through a plan, in order (see [`NodePhase::rank`]). The
/// controller starts a node, cordons it once `Staged` and orders the swap;
/// the node's executor reports the rest, up to `Committed` (or
/// `RolledBack`/`Failed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum NodePhase {
    Waiting,
    Started,
    Staging,
    /// The binary is downloaded and checked on the node.
    Staged,
    Cordoned,
    Draining,
    Swapping,
    Verifying,
    Soaking,
    Committed,
    RolledBack,
    Failed,
}

impl NodePhase {
    /// Between started and committed: the node counts as unavailable.
    pub fn in_progress(self) -> bool {
        !matches!(self, NodePhase::Waiting | NodePhase::Committed | NodePhase::RolledBack | NodePhase::Failed)
    }

    /// The plan cannot go on past a node in this phase.
    pub fn halts(self) -> bool {
        matches!(self, NodePhase::RolledBack | NodePhase::Failed)
    }

    /// Where the phase comes on a node's way (the ends last), so a report
    /// older than what the controller already did is not taken back.
    pub fn rank(self) -> u8 {
        self as u8
    }
}

/// Installs (or updates) the CustomResourceDefinition, by server-side apply.
pub async fn install(client: &Client) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = UpgradePlan::crd();
    let name = crd.metadata.name.clone().unwrap_or_default();
    crds.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&crd)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_definition_is_cluster_scoped_with_status_and_columns() {
        let crd = UpgradePlan::crd();
        assert_eq!(crd.metadata.name.as_deref(), Some("upgradeplans.upgrade.k8s.local"));
        assert_eq!(crd.spec.scope, "Cluster");
        let version = &crd.spec.versions[0];
        assert!(version.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some());
        let columns: Vec<&str> = version.additional_printer_columns.iter().flatten().map(|c| c.name.as_str()).collect();
        assert_eq!(columns, ["Version", "Phase", "Done", "Node", "Age"]);
    }

    #[test]
    fn a_minimal_plan_gets_the_defaults() {
        let spec: UpgradePlanSpec = serde_json::from_value(serde_json::json!({
            "version": "0.2.0", "kubernetesVersion": "v1.37.2", "sha256": {"amd64": "ab"}, "source": "https://10.0.0.1:9345",
        }))
        .unwrap();
        assert_eq!(spec.agents.max_unavailable, "1");
        assert_eq!(spec.drain, DrainSpec { mode: DrainMode::Auto, timeout_seconds: 300 });
        assert_eq!(spec.health_gates, HealthGates { node_ready_timeout_seconds: 300, soak_seconds: 30 });
        assert!(!spec.paused);
    }

    #[test]
    fn conditions_follow_the_phase_and_keep_their_transition_times() {
        let mut s = UpgradePlanStatus::default();
        s.set_conditions("t0");
        assert!(s.conditions.iter().all(|c| c.type_ != "Preflight"), "not checked yet");
        s.phase = PlanPhase::Rolling;
        s.set_conditions("t1");
        let get = |s: &UpgradePlanStatus, t: &str| s.conditions.iter().find(|c| c.type_ == t).cloned().unwrap();
        assert_eq!((get(&s, "Preflight").status.as_str(), get(&s, "Progressing").status.as_str()), ("True", "True"));
        s.set_conditions("t2");
        assert_eq!(get(&s, "Progressing").last_transition_time, "t1", "no change, no new time");
        s.phase = PlanPhase::Halted;
        s.message = "node s1 did not upgrade".into();
        s.set_conditions("t3");
        let degraded = get(&s, "Degraded");
        assert_eq!((degraded.status.as_str(), degraded.reason.as_str(), degraded.last_transition_time.as_str()), ("True", "Halted", "t3"));
        assert_eq!(degraded.message, "node s1 did not upgrade");
        assert_eq!((get(&s, "Progressing").status.as_str(), get(&s, "Complete").status.as_str()), ("False", "False"));
        let mut f = UpgradePlanStatus { phase: PlanPhase::PreflightFailed, ..Default::default() };
        f.set_conditions("t");
        assert_eq!((get(&f, "Preflight").status.as_str(), get(&f, "Preflight").reason.as_str()), ("False", "PreflightFailed"));
    }
}
