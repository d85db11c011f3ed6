//! Token records in the cluster (Secrets in kube-system), and the two
//! tokens every server writes to disk for `k8s up` and for users:
//! `<data-dir>/server/token` (joins servers) and `.../agent-token`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use super::token::{secret_name, Record, Role, Token, LABEL};
use crate::kubeapi::Api;

const SECRETS: &str = "/api/v1/namespaces/kube-system/secrets";

pub async fn store(api: &Api, record: &Record) -> anyhow::Result<()> {
    if !api.create(SECRETS, &record.to_secret()).await? {
        anyhow::bail!("a token with id {} exists already", record.id);
    }
    Ok(())
}

pub async fn find(api: &Api, id: &str) -> anyhow::Result<Option<Record>> {
    match api.get(&format!("{SECRETS}/{}", secret_name(id))).await? {
        Some(secret) => Ok(Some(Record::from_secret(&secret)?)),
        None => Ok(None),
    }
}

pub async fn list(api: &Api) -> anyhow::Result<Vec<Record>> {
    let list = api.get(&format!("{SECRETS}?labelSelector={LABEL}%3Dtrue")).await?.unwrap_or_default();
    list["items"].as_array().into_iter().flatten().map(Record::from_secret).collect()
}

pub async fn revoke(api: &Api, id: &str) -> anyhow::Result<bool> {
    api.delete(&format!("{SECRETS}/{}", secret_name(id))).await
}

/// Creates a token for `role`, stores its record, returns the token.
pub async fn create(api: &Api, ca_pem: &[u8], role: Role, ttl: Option<Duration>, description: &str) -> anyhow::Result<Token> {
    let token = Token::generate(ca_pem);
    store(api, &Record::new(&token, role, ttl, description)).await?;
    Ok(token)
}

pub fn file(data_dir: &Path, role: Role) -> PathBuf {
    data_dir.join("server").join(match role {
        Role::Server => "token",
        Role::Agent => "agent-token",
    })
}

/// Makes sure the default token of `role` exists on disk and in the cluster
/// (a server that lost its datastore re-registers the file's token).
pub async fn ensure_default(api: &Api, data_dir: &Path, ca_pem: &[u8], role: Role) -> anyhow::Result<Token> {
    let path = file(data_dir, role);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let token = Token::parse(&text).with_context(|| format!("{} holds a malformed token", path.display()))?;
        if find(api, &token.id).await?.is_none() {
            store(api, &Record::new(&token, role, None, "default")).await?;
        }
        return Ok(token);
    }
    let token = create(api, ca_pem, role, None, "default").await?;
    crate::fsutil::write_atomic(&path, format!("{token}\n").as_bytes(), 0o600)?;
    Ok(token)
}
