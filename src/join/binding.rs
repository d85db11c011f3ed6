//! A node name belongs to the first host that joined with it. Each node
//! keeps a random password (an agent in `<data-dir>/agent/node-password`, a
//! server in `<data-dir>/server/node-password`, 0600); the cluster keeps
//! its sha256 in the Secret `kube-system/node-password.<name>`. A join that
//! asks for a bound name with another password is refused, so an agent
//! token cannot take over a server's (or another agent's) name and its
//! `system:node:<name>` credentials.
//!
//! ```text
//! join (name, password) ─▶ no binding: bind ─▶ credentials
//!                       ─▶ same hash: credentials (the same host again)
//!                       ─▶ other hash: refused ("bound to another host")
//! Node deleted (kubectl delete node, k8s up --prune) ─▶ binding released
//!   by the servers' cleaner (a binding without its Node for 10 minutes goes)
//! k8s reset on the agent ─▶ POST /v1/node/leave ─▶ binding released at once
//! k8s restore ─▶ at the server's first start: every binding but its own released
//!   (the backup's hosts may have been reinstalled since; the first to join takes a name again)
//! ```
//!
//! `k8s reset` on an agent releases its name first (the join endpoint's
//! `POST /v1/node/leave`, with the node's client certificate), then removes
//! its password with the data dir, so the host can join again as new.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Secret};
use k8s_openapi::ByteString;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use sha2::{Digest, Sha256};

const LABEL: &str = "k8s.io/node-password";
const HASH_KEY: &str = "hash";
/// A binding whose Node has been gone this long is released.
const ORPHAN_AFTER: Duration = Duration::from_secs(600);
/// How often the cleaner looks even when no Node changed.
const CLEAN_EVERY: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("node name {0:?} is bound to another host; pick another node-name, or, if that host is gone for good, delete its Node (kubectl delete node {0}) and join again")]
    Taken(String),
    #[error("the node bindings cannot be read or written: {0}")]
    Api(#[from] kube::Error),
}

fn secrets(client: &Client) -> Api<Secret> {
    Api::namespaced(client.clone(), "kube-system")
}

fn secret_name(node: &str) -> String {
    format!("node-password.{node}")
}

fn hash(password: &str) -> String {
    hex::encode(Sha256::digest(password.as_bytes()))
}

/// Binds `node` to `password`, or checks that it is bound to it.
pub async fn check_or_bind(client: &Client, node: &str, password: &str) -> Result<(), BindError> {
    let want = hash(password);
    let api = secrets(client);
    for _ in 0..2 {
        if let Some(secret) = api.get_opt(&secret_name(node)).await? {
            let stored = secret.data.as_ref().and_then(|d| d.get(HASH_KEY)).map(|b| b.0.clone()).unwrap_or_default();
            // Timing tells nothing here: the password is hashed first.
            return if stored == want.as_bytes() {
                Ok(())
            } else {
                Err(BindError::Taken(node.to_string()))
            };
        }
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(secret_name(node)),
                labels: Some([(LABEL.to_string(), "true".to_string())].into()),
                ..Default::default()
            },
            data: Some([(HASH_KEY.to_string(), ByteString(want.clone().into_bytes()))].into()),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &secret).await {
            Ok(_) => {
                tracing::info!(%node, "node name bound to its host");
                return Ok(());
            }
            // Another join of this name won the race: compare with it.
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(BindError::Taken(node.to_string()))
}

/// Releases `node`'s name (the node itself leaving: `k8s reset`).
pub async fn release_name(client: &Client, node: &str) -> Result<(), kube::Error> {
    match secrets(client).delete(&secret_name(node), &DeleteParams::default()).await {
        Ok(_) => {
            tracing::info!(%node, "node name released: the node left");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Releases every name but `keep`'s: a server restored from a backup, at
/// its first start (before its join endpoint serves).
pub async fn release_all_but(client: &Client, keep: &str) -> Result<usize, kube::Error> {
    let api = secrets(client);
    let bound = api.list(&ListParams::default().labels(&format!("{LABEL}=true"))).await?;
    let mut released = 0;
    for secret in bound.items.iter().filter(|s| s.name_any() != secret_name(keep)) {
        match api.delete(&secret.name_any(), &DeleteParams::default()).await {
            Ok(_) => released += 1,
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(released)
}

/// This host's node password under `dir` (made on first use, 0600).
pub fn password(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("node-password");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let text = text.trim().to_string();
        if text.len() >= 32 {
            return Ok(text);
        }
    }
    let password = super::token::random_string(40);
    crate::fsutil::write_atomic(&path, format!("{password}\n").as_bytes(), 0o600)
        .with_context(|| format!("cannot write the node password {}", path.display()))?;
    Ok(password)
}

/// The servers' cleaner: releases the names of Nodes that are gone (an
/// in-process service of every server; deleting twice is harmless).
pub async fn release_orphans(client: Client) {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut snapshots = std::pin::pin!(crate::kubeclient::follow(nodes, watcher::Config::default(), Some(CLEAN_EVERY)));
    while let Some(list) = snapshots.next().await {
        let alive: BTreeSet<String> = list.iter().map(|n| n.name_any()).collect();
        if let Err(e) = release(&client, &alive).await {
            tracing::warn!("node bindings: {e}");
        }
    }
}

async fn release(client: &Client, alive: &BTreeSet<String>) -> Result<(), kube::Error> {
    let api = secrets(client);
    let bound = api.list(&ListParams::default().labels(&format!("{LABEL}=true"))).await?;
    let now = k8s_openapi::jiff::Timestamp::now();
    for secret in bound.items {
        let name = secret.name_any();
        let Some(node) = name.strip_prefix("node-password.") else { continue };
        let age = secret.metadata.creation_timestamp.as_ref().map(|t| now.duration_since(t.0));
        let old = age.is_some_and(|a| a.as_secs() >= ORPHAN_AFTER.as_secs() as i64);
        if !alive.contains(node) && old {
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => tracing::info!(%node, "node name released: its Node is gone"),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_made_once_and_kept_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let first = super::password(dir.path()).unwrap();
        assert!(first.len() >= 32);
        assert_eq!(super::password(dir.path()).unwrap(), first, "the same host keeps its password");
        let mode = std::fs::metadata(dir.path().join("node-password")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_ne!(super::hash(&first), super::hash("another"));
    }
}
