//! Token records in the cluster (Secrets in kube-system), and the two
//! tokens every server writes to disk for `k8s up` and for users:
//! `<data-dir>/server/token` (joins servers) and `.../agent-token`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::core::v1::Secret;
use futures::StreamExt;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client};

use super::token::{secret_name, Record, Role, Token, LABEL};

/// Token records live in kube-system, readable by cluster admins only.
fn secrets(client: &Client) -> Api<Secret> {
    Api::namespaced(client.clone(), "kube-system")
}

pub async fn store(client: &Client, record: &Record) -> anyhow::Result<()> {
    match secrets(client).create(&PostParams::default(), &record.to_secret()).await {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, 409) => anyhow::bail!("a token with id {} exists already", record.id),
        Err(e) => Err(anyhow::Error::new(e).context(format!("storing the record of token {}", record.id))),
    }
}

/// The token records, kept in memory by a watch: the join endpoint checks a
/// token without an API call per try (a wrong token costs nothing but a
/// map lookup).
#[derive(Clone)]
pub struct Cache {
    records: tokio::sync::watch::Receiver<Option<Arc<HashMap<String, Record>>>>,
}

/// How long a check waits for the first list of records.
const FIRST_LIST_TIMEOUT: Duration = Duration::from_secs(15);

impl Cache {
    /// Follows the records (a task that ends with the returned handle).
    pub fn start(client: &Client) -> (Cache, tokio::task::JoinHandle<()>) {
        let (tx, rx) = tokio::sync::watch::channel(None);
        let config = watcher::Config::default().labels(&format!("{LABEL}=true"));
        let follow = crate::kubeclient::follow(secrets(client), config, None);
        let task = tokio::spawn(async move {
            let mut snapshots = std::pin::pin!(follow);
            while let Some(list) = snapshots.next().await {
                let records = list
                    .iter()
                    .filter_map(|s| match Record::from_secret(s) {
                        Ok(r) => Some((r.id.clone(), r)),
                        Err(e) => {
                            tracing::warn!("ignoring a malformed token record: {e:#}");
                            None
                        }
                    })
                    .collect();
                if tx.send(Some(Arc::new(records))).is_err() {
                    return;
                }
            }
        });
        (Cache { records: rx }, task)
    }

    /// The record of token `id`, once the first list has arrived.
    pub async fn find(&self, id: &str) -> anyhow::Result<Option<Record>> {
        let mut rx = self.records.clone();
        let loaded = tokio::time::timeout(FIRST_LIST_TIMEOUT, rx.wait_for(Option::is_some)).await;
        let records = match loaded {
            Ok(Ok(r)) => r.clone().expect("waited for a list"),
            _ => anyhow::bail!("the token records are not loaded yet (is the API server up?)"),
        };
        Ok(records.get(id).cloned())
    }
}

pub async fn list(client: &Client) -> anyhow::Result<Vec<Record>> {
    let list = secrets(client).list(&ListParams::default().labels(&format!("{LABEL}=true"))).await?;
    list.items.iter().map(Record::from_secret).collect()
}

pub async fn revoke(client: &Client, id: &str) -> anyhow::Result<bool> {
    match secrets(client).delete(&secret_name(id), &DeleteParams::default()).await {
        Ok(_) => Ok(true),
        Err(e) if is_status(&e, 404) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == code)
}

/// Creates a token for `role`, stores its record, returns the token.
pub async fn create(client: &Client, ca_pem: &[u8], role: Role, ttl: Option<Duration>, description: &str) -> anyhow::Result<Token> {
    let token = Token::generate(ca_pem);
    store(client, &Record::new(&token, role, ttl, description)).await?;
    Ok(token)
}

pub fn file(data_dir: &Path, role: Role) -> PathBuf {
    data_dir.join("server").join(match role {
        Role::Server => "token",
        Role::Agent => "agent-token",
    })
}

/// Replaces the default token of `role`: a new record, then the file, then
/// the old record revoked, so a failure at any step leaves a token on disk
/// that the cluster accepts. Returns the new token and the old one's id.
pub async fn rotate_default(client: &Client, data_dir: &Path, ca_pem: &[u8], role: Role) -> anyhow::Result<(Token, String)> {
    let path = file(data_dir, role);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}: is this a server's data dir?", path.display()))?;
    let old = Token::parse(&text).with_context(|| format!("{} holds a malformed token", path.display()))?;
    let token = create(client, ca_pem, role, None, "default").await?;
    crate::fsutil::write_atomic(&path, format!("{token}\n").as_bytes(), 0o600)?;
    revoke(client, &old.id).await?;
    Ok((token, old.id))
}

/// Makes sure the default token of `role` exists on disk and in the cluster
/// (a server that lost its datastore re-registers the file's token).
pub async fn ensure_default(client: &Client, data_dir: &Path, ca_pem: &[u8], role: Role) -> anyhow::Result<Token> {
    let path = file(data_dir, role);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let token = Token::parse(&text).with_context(|| format!("{} holds a malformed token", path.display()))?;
        if secrets(client).get_opt(&secret_name(&token.id)).await?.is_none() {
            store(client, &Record::new(&token, role, None, "default")).await?;
        }
        return Ok(token);
    }
    let token = create(client, ca_pem, role, None, "default").await?;
    crate::fsutil::write_atomic(&path, format!("{token}\n").as_bytes(), 0o600)?;
    Ok(token)
}
