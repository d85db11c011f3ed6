//! Membership changes: admitting a joining server as a learner (on an
//! existing member), promoting it once it has caught up (by the joiner),
//! and leaving (on reset) or removing a lost server (by name).

use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::{Client, LOCAL};
use crate::datastore::pb::Member;
use crate::pki::Pki;

/// What a joining server needs to start its member.
pub struct Admission {
    /// `name=peer-url,…` of every member, the new one included.
    pub initial_cluster: String,
    /// Client URLs of the voting members (where the joiner promotes itself).
    pub endpoints: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    /// etcd cannot take a member right now: it keeps one learner at a
    /// time (another server is joining), and refuses a change while a
    /// member has been connected for less than 5 s (its strict
    /// reconfiguration check: a server that has just joined or restarted).
    #[error("the cluster cannot take a new member right now (another server is joining, one has just joined or restarted, or the servers cannot reach each other); try again in a few seconds")]
    Busy,
    #[error("{0}")]
    Refused(String),
    #[error("{0:#}")]
    Etcd(anyhow::Error),
}

/// Adds `name` at `peer_url` as a learner. A joiner has no data, so an
/// earlier, unfinished attempt of the same server (a learner or a member
/// that never started, at the same peer URL) is removed first.
pub async fn admit(pki: &Pki, name: &str, peer_url: &str) -> Result<Admission, AdmitError> {
    let client = Client::connect(&[LOCAL.to_string()], pki).await.map_err(AdmitError::Etcd)?;
    for m in client.members().await.map_err(AdmitError::Etcd)? {
        let same_url = m.peer_ur_ls.iter().any(|u| u == peer_url);
        if m.name == name && !same_url {
            return Err(AdmitError::Refused(format!(
                "a server named {name} is already an etcd member at {}; reset that server first (k8s reset) or give this one another node name",
                m.peer_ur_ls.join(",")
            )));
        }
        if same_url {
            tracing::warn!(member = %m.name, id = m.id, "removing the earlier etcd member of a server that joins again");
            client.remove(m.id).await.map_err(AdmitError::Etcd)?;
        }
    }
    let (member_id, members) = client.add_learner(peer_url).await.map_err(|e| {
        let text = format!("{e:#}");
        if text.contains("too many learner") || text.contains("unhealthy cluster") { AdmitError::Busy } else { AdmitError::Etcd(e) }
    })?;
    tracing::info!(%name, %peer_url, "etcd learner added");
    Ok(Admission {
        initial_cluster: initial_cluster(&members, member_id, name),
        endpoints: voting_endpoints(&members),
    })
}

fn initial_cluster(members: &[Member], new_id: u64, new_name: &str) -> String {
    members
        .iter()
        .filter_map(|m| {
            let name = if m.id == new_id { new_name } else { m.name.as_str() };
            Some(format!("{name}={}", m.peer_ur_ls.first()?))
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn voting_endpoints(members: &[Member]) -> Vec<String> {
    members.iter().filter(|m| !m.is_learner).flat_map(|m| m.client_ur_ls.iter().cloned()).collect()
}

/// Promotes the local member if it is a learner, once etcd says it has
/// caught up with the leader. `others` are voting members' client URLs.
pub async fn promote_self(pki: &Pki, local: &Client, others: &[String], timeout: Duration) -> anyhow::Result<()> {
    let status = local.status().await?;
    if !status.is_learner {
        return Ok(());
    }
    let id = status.header.map(|h| h.member_id).context("etcd status has no member id")?;
    let deadline = Instant::now() + timeout;
    loop {
        let outcome = match Client::connect(others, pki).await {
            Ok(c) => c.promote(id).await.map_err(|s| s.message().to_string()),
            Err(e) => Err(format!("{e:#}")),
        };
        match outcome {
            Ok(()) => {
                tracing::info!(id, "etcd member promoted to voting member");
                return Ok(());
            }
            Err(why) if Instant::now() >= deadline => bail!("cannot promote this etcd learner within {timeout:?}: {why}"),
            Err(why) => tracing::debug!("promotion not yet possible: {why}"),
        }
        // Not more often: asking every 250 ms made e2e/ha.sh's three servers
        // ready in 30.7 and 30.8 s against 23.6 s at 1 s (2026-12-06).
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Removes the local member from the cluster (before its data is deleted).
/// A last member has nobody to tell and stays. The request goes through
/// another member: etcd refuses a removal from a member that was connected
/// to its peers only briefly (it cannot yet vouch for their health), which
/// is common right after a restart; it is retried for the same reason.
pub async fn leave(pki: &Pki, timeout: Duration) -> anyhow::Result<()> {
    let local = Client::connect(&[LOCAL.to_string()], pki).await?;
    let id = local.status().await?.header.map(|h| h.member_id).context("etcd status has no member id")?;
    let members = local.members().await?;
    if members.len() <= 1 {
        return Ok(());
    }
    let others: Vec<String> = members.iter().filter(|m| m.id != id).flat_map(|m| m.client_ur_ls.iter().cloned()).collect();
    let deadline = Instant::now() + timeout;
    loop {
        let outcome = match Client::connect(&others, pki).await {
            Ok(c) => c.remove(id).await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => {
                tracing::info!(id, "left the etcd cluster");
                return Ok(());
            }
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(e) => tracing::debug!("leaving etcd: {e:#}; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Removes the member named `name` (a server that is gone for good).
pub async fn remove_by_name(pki: &Pki, name: &str) -> anyhow::Result<()> {
    let local = Client::connect(&[LOCAL.to_string()], pki).await?;
    let members = local.members().await?;
    let Some(m) = members.iter().find(|m| m.name == name) else {
        let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
        bail!("no etcd member is named {name}; members: {}", names.join(", "));
    };
    local.remove(m.id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, name: &str, learner: bool) -> Member {
        Member {
            id,
            name: name.into(),
            peer_ur_ls: vec![format!("https://10.0.0.{id}:2380")],
            client_ur_ls: if name.is_empty() { vec![] } else { vec![format!("https://10.0.0.{id}:2379")] },
            is_learner: learner,
        }
    }

    #[test]
    fn the_new_member_is_named_in_the_initial_cluster() {
        let members = [member(1, "cp-1", false), member(2, "cp-2", false), member(3, "", true)];
        assert_eq!(
            initial_cluster(&members, 3, "cp-3"),
            "cp-1=https://10.0.0.1:2380,cp-2=https://10.0.0.2:2380,cp-3=https://10.0.0.3:2380"
        );
        assert_eq!(voting_endpoints(&members), ["https://10.0.0.1:2379", "https://10.0.0.2:2379"]);
    }
}
