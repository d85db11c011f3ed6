//! What the controller and a node's executor tell each other: two
//! annotations holding JSON on the node's own Node object. The controller
//! (cluster admin) writes the order; the executor writes its report with
//! the kubelet's identity, which may change only its own Node (the Node
//! authorizer), so a node can neither read another node's order nor report
//! for it.

use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use serde::{Deserialize, Serialize};

use super::crd::NodePhase;

pub const ORDER_ANNOTATION: &str = "upgrade.k8s.local/order";
pub const REPORT_ANNOTATION: &str = "upgrade.k8s.local/report";

/// The controller's order to one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub plan: String,
    pub version: String,
    /// The binary's sha256 for this node's architecture.
    pub sha256: String,
    /// Where the binary is served, tried in order: the plan's source
    /// first, then every other server's join endpoint (`https://<server>:9345`).
    pub sources: Vec<String>,
    pub step: Step,
    /// How long the new binary has to become Ready and pass the soak before
    /// the guard rolls back.
    pub deadline_seconds: u64,
    pub soak_seconds: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    /// Download and check the binary; report `Staged`.
    Stage,
    /// The node is cordoned (and drained): swap, restart, verify, commit.
    Swap,
}

/// A node's report on the order it works on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub plan: String,
    pub version: String,
    pub phase: NodePhase,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

pub fn order_of(node: &Node) -> Option<Order> {
    annotation(node, ORDER_ANNOTATION)
}

pub fn report_of(node: &Node) -> Option<Report> {
    annotation(node, REPORT_ANNOTATION)
}

/// A malformed annotation reads as none: the writer writes it again.
fn annotation<T: serde::de::DeserializeOwned>(node: &Node, key: &str) -> Option<T> {
    serde_json::from_str(node.annotations().get(key)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_and_reports_round_trip_through_annotations() {
        let order = Order {
            plan: "p".into(),
            version: "0.2.0".into(),
            sha256: "ab".into(),
            sources: vec!["https://10.0.0.1:9345".into()],
            step: Step::Swap,
            deadline_seconds: 330,
            soak_seconds: 30,
        };
        let report = Report { plan: "p".into(), version: "0.2.0".into(), phase: NodePhase::Staged, message: String::new() };
        let mut node = Node::default();
        node.metadata.annotations = Some([
            (ORDER_ANNOTATION.to_string(), serde_json::to_string(&order).unwrap()),
            (REPORT_ANNOTATION.to_string(), serde_json::to_string(&report).unwrap()),
        ].into());
        assert_eq!(order_of(&node), Some(order));
        assert_eq!(report_of(&node), Some(report));
        node.metadata.annotations = Some([(ORDER_ANNOTATION.to_string(), "{not json".to_string())].into());
        assert_eq!(order_of(&node), None);
    }
}
