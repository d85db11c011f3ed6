//! The end of a run: a table per host (what changed, how long it took) or,
//! with `--output json`, one JSON document (described in docs/up.md).

use std::fmt::Write as _;

use serde::Serialize;

use super::plan::{FilePlan, HostPlan, Plan, Service, Stage, TokenPlan, Upgrade};
use crate::inventory::{Mode, Role};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Converged (changed or not).
    Ok,
    Failed,
    /// Not worked on: an earlier step failed, or `--dry-run`.
    Untouched,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    pub name: String,
    pub address: String,
    #[serde(serialize_with = "super::plan::role_name")]
    pub role: Role,
    pub status: Status,
    /// Whether anything on the host was changed (planned, for `--dry-run`).
    pub changed: bool,
    /// What was changed: `binary`, `config`, `unit`, `token`, `start`, `restart`.
    pub changes: Vec<String>,
    pub error: Option<String>,
    pub seconds: f64,
    pub plan: HostPlan,
}

impl HostReport {
    pub fn new(plan: &HostPlan) -> HostReport {
        HostReport {
            name: plan.name.clone(),
            address: plan.address.clone(),
            role: plan.role,
            status: Status::Untouched,
            changed: false,
            changes: vec![],
            error: None,
            seconds: 0.0,
            plan: plan.clone(),
        }
    }

    pub fn note(&mut self, change: &str) {
        if !self.changes.iter().any(|c| c == change) {
            self.changes.push(change.to_string());
        }
        self.changed = true;
    }
}

/// What a plan would change on a host, in the words of [`HostReport::changes`].
pub fn planned_changes(p: &HostPlan) -> Vec<String> {
    let mut out = vec![];
    if p.upload {
        out.push("binary".into());
    }
    if p.upgrade {
        out.push("upgrade".into());
    }
    if !p.config_changes.is_empty() {
        out.push("config".into());
    }
    if p.unit_changed {
        out.push("unit".into());
    }
    if matches!(p.token, TokenPlan::Write | TokenPlan::AfterFirstServer) {
        out.push("token".into());
    }
    if p.registries == FilePlan::Write {
        out.push("registries".into());
    }
    match p.service {
        Service::Start => out.push("start".into()),
        Service::Restart => out.push("restart".into()),
        Service::Keep => {}
    }
    out
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub cluster: String,
    /// `single` or `ha`; `null` when the inventory could not be read.
    pub mode: Option<&'static str>,
    pub dry_run: bool,
    pub ok: bool,
    /// Why the run failed, naming the host.
    pub error: Option<String>,
    /// Reasons the run did not start (from validation).
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
    /// In the order they are worked on.
    pub hosts: Vec<HostReport>,
    /// Nodes of the cluster missing from the inventory.
    pub extra_nodes: Vec<String>,
    /// etcd members missing from the inventory that are not nodes.
    pub extra_members: Vec<String>,
    /// Nodes removed with `--prune`.
    pub pruned: Vec<String>,
    /// Where the workstation's kubeconfig was written.
    pub kubeconfig: Option<String>,
    /// The upgrade handed to the cluster, as planned.
    pub upgrade: Option<Upgrade>,
    /// The image archives copied to every host's images dir where they differ.
    pub images: Vec<String>,
    /// The registries.yaml (path on this machine) written to every host's
    /// `/etc/k8s/registries.yaml` where it differs.
    pub registries: Option<String>,
    pub seconds: f64,
}

impl Report {
    pub fn new(cluster: &str, plan: &Plan, dry_run: bool) -> Report {
        Report {
            problems: plan.problems.clone(),
            warnings: plan.warnings.clone(),
            hosts: plan.hosts.iter().map(HostReport::new).collect(),
            extra_nodes: plan.extra_nodes.iter().map(|n| n.name.clone()).collect(),
            extra_members: plan.extra_members.iter().map(|m| m.name.clone()).collect(),
            upgrade: plan.upgrade.clone(),
            images: vec![],
            registries: None,
            ..Report::empty(cluster, Some(plan.mode), dry_run)
        }
    }

    /// A run that stopped before it had a plan.
    pub fn empty(cluster: &str, mode: Option<Mode>, dry_run: bool) -> Report {
        Report {
            cluster: cluster.to_string(),
            mode: mode.map(|m| match m {
                Mode::Single => "single",
                Mode::Ha { .. } => "ha",
            }),
            dry_run,
            ok: true,
            error: None,
            problems: vec![],
            warnings: vec![],
            hosts: vec![],
            extra_nodes: vec![],
            extra_members: vec![],
            pruned: vec![],
            kubeconfig: None,
            upgrade: None,
            images: vec![],
            registries: None,
            seconds: 0.0,
        }
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the report serializes")
    }

    /// The summary after a run.
    pub fn table(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .hosts
            .iter()
            .map(|h| {
                let changes = if h.changes.is_empty() { "-".to_string() } else { h.changes.join(", ") };
                let status = match h.status {
                    Status::Ok => "ok",
                    Status::Failed => "FAILED",
                    Status::Untouched => "untouched",
                };
                vec![h.name.clone(), h.address.clone(), h.role.to_string(), status.into(), changes, format!("{:.1}s", h.seconds)]
            })
            .collect();
        table(&["HOST", "ADDRESS", "ROLE", "RESULT", "CHANGED", "TIME"], &rows)
    }

    /// The plan, for `--dry-run` (a REGISTRIES column when the inventory
    /// sets `cluster.registries`).
    pub fn plan_table(&self) -> String {
        let registries = self.hosts.iter().any(|h| h.plan.registries != FilePlan::None);
        let rows: Vec<Vec<String>> = self
            .hosts
            .iter()
            .map(|h| {
                let p = &h.plan;
                let binary = match (p.upload, &p.installed) {
                    _ if p.upgrade => "upgrade (by the cluster)".to_string(),
                    (false, _) => "same".to_string(),
                    (true, None) => "upload".to_string(),
                    (true, Some(v)) => format!("upload (over {})", v.trim_start_matches("k8s ")),
                };
                let config = match p.config_changes.as_slice() {
                    [] => "same".to_string(),
                    c => c.join(" "),
                };
                let token = match p.token {
                    TokenPlan::None => "-",
                    TokenPlan::Unchanged => "same",
                    TokenPlan::Write => "write",
                    TokenPlan::AfterFirstServer => "write (from the first server)",
                };
                let service = match (p.service, p.join) {
                    (Service::Keep, _) => "keep",
                    (Service::Start, true) if p.stage == Stage::FirstServer => "start (new cluster)",
                    (Service::Start, true) => "start (joins)",
                    (Service::Start, false) => "start",
                    (Service::Restart, _) if p.stale && !p.upload && p.config_changes.is_empty() => "restart (outdated)",
                    (Service::Restart, _) => "restart",
                };
                let mut row = vec![
                    p.name.clone(),
                    p.address.clone(),
                    p.role.to_string(),
                    binary,
                    config,
                    if p.unit_changed { "write".into() } else { "same".into() },
                    token.into(),
                ];
                if registries {
                    row.push(match p.registries {
                        FilePlan::None => "-".into(),
                        FilePlan::Unchanged => "same".into(),
                        FilePlan::Write => "write".into(),
                    });
                }
                row.push(service.into());
                row
            })
            .collect();
        let mut head = vec!["HOST", "ADDRESS", "ROLE", "BINARY", "CONFIG", "UNIT", "TOKEN"];
        if registries {
            head.push("REGISTRIES");
        }
        head.push("SERVICE");
        table(&head, &rows)
    }
}

impl Upgrade {
    /// The rollout, for `--dry-run`.
    pub fn table(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| vec![r.name.clone(), format!("{:?}", r.role).to_lowercase(), r.from.clone(), r.to.clone(), format!("{:?}", r.phase)])
            .collect();
        table(&["NODE", "ROLE", "FROM", "TO", "PHASE"], &rows)
    }
}

/// Left-aligned columns, two spaces apart.
fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: Vec<&str>| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:w$}  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut out, head.to_vec());
    for r in rows {
        line(&mut out, r.iter().map(String::as_str).collect());
    }
    out
}
