//! Whether every member of the etcd cluster is healthy: what an upgrade
//! checks before it starts (preflight) and after a server restarts on the
//! new binary (full quorum before it commits).

use crate::pki::Pki;

use super::{Client, LOCAL};

/// Every problem with the membership, empty when each member is a started
/// voter that answers Status, knows the same leader and reports no errors.
pub async fn problems(pki: &Pki) -> Vec<String> {
    let local = match Client::connect(&[LOCAL.to_string()], pki).await {
        Ok(c) => c,
        Err(e) => return vec![format!("the local etcd member does not answer: {e:#}")],
    };
    let members = match local.members().await {
        Ok(m) => m,
        Err(e) => return vec![format!("etcd member list: {e:#}")],
    };
    let mut problems = Vec::new();
    let mut leaders = std::collections::BTreeSet::new();
    for m in &members {
        let name = if m.name.is_empty() { format!("{:x} (not started)", m.id) } else { m.name.clone() };
        if m.is_learner {
            problems.push(format!("etcd member {name} is a learner, not yet a voter"));
        }
        let status = match Client::connect(&m.client_ur_ls, pki).await {
            Ok(c) => c.status().await,
            Err(e) => Err(e),
        };
        match status {
            Err(e) => problems.push(format!("etcd member {name} does not answer: {e:#}")),
            Ok(s) if s.leader == 0 => problems.push(format!("etcd member {name} has no leader")),
            Ok(s) if !s.errors.is_empty() => problems.push(format!("etcd member {name} reports: {}", s.errors.join("; "))),
            Ok(s) => {
                leaders.insert(s.leader);
            }
        }
    }
    if leaders.len() > 1 {
        problems.push(format!("etcd members disagree on the leader ({} leaders seen)", leaders.len()));
    }
    problems
}
