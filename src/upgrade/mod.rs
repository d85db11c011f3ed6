//! Self-upgrade: the cluster rolls itself to a new `k8s` binary, one node
//! at a time, health-gated. The parts and their contract:
//!
//! ```text
//!  user ── UpgradePlan (crd) ──▶ controller (leader among the servers)
//!                                 │ preflight: spec, nodes Ready, skew rules (preflight)
//!                                 │ rows in rollout order (rollout::rows)
//!                                 │ each pass: rollout::next → start / wait / pause / halt / complete
//!                                 ▼
//!                       row: Waiting ─▶ Started ─▶ (node executor) Staging ─▶ Cordoned ─▶ Draining
//!                            ─▶ Swapping ─▶ Verifying ─▶ Soaking ─▶ Committed
//!                                         └────────▶ RolledBack | Failed  (the plan halts)
//! ```
//!
//! Every node publishes the `k8s` version it runs (the Node annotation
//! [`crate::node::VERSION_ANNOTATION`]), so a rollout whose Kubernetes
//! version does not change is still visible and verifiable.
//!
//! The controller and a node's executor talk through the node's own Node
//! object ([`protocol`]): the controller orders (stage, then swap), the
//! node reports. Nodes fetch the binary from a server's join endpoint (the
//! plan's source first, then every other server; a server that staged it
//! serves it too). `k8s up` with a new binary hands over to a plan
//! (`up::handover`).

pub mod cli;
pub mod controller;
pub mod crd;
pub mod executor;
pub mod guard;
pub mod preflight;
pub mod protocol;
pub mod rollout;
pub mod swap;

/// Set on a Node a plan cordoned, so that only those are uncordoned and a
/// node cordoned by someone else fails the preflight.
pub const CORDONED_BY_ANNOTATION: &str = "upgrade.k8s.local/cordoned-by";
