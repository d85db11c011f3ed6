//! `k8s secrets-encrypt status|rotate-keys`, on a server as root: whether
//! Secrets are encrypted at rest (see [`crate::pki::encryption`]), the keys,
//! and (on a single SQLite server) how many stored Secrets are encrypted;
//! a new key with every Secret rewritten under it.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};

use crate::host::{paths, Layout};
use crate::kubeclient;
use crate::pki::{encryption, Pki};

pub fn status(data_dir: &Path) -> anyhow::Result<()> {
    let layout = Layout::new(data_dir);
    let pki = Pki { dir: layout.pki_dir() };
    let config = pki.encryption_config();
    if !config.exists() {
        println!("secrets encryption: off (no {}; an HA cluster created before k8s encrypted Secrets)", config.display());
        return Ok(());
    }
    let keys = encryption::key_names(&config)?;
    println!("secrets encryption: on (secretbox), config {}", config.display());
    println!("keys: {} (new writes use {})", keys.join(", "), keys[0]);
    let db = layout.datastore_dir();
    if !db.exists() {
        println!("stored Secrets: not counted (the datastore is etcd; its values are read through the API server only)");
        return Ok(());
    }
    let stored = crate::datastore::stored_values(&db, b"/registry/secrets/")?;
    let encrypted = stored.iter().filter(|(_, v)| v.starts_with(encryption::STORED_PREFIX.as_bytes())).count();
    println!("stored Secrets: {} encrypted, {} not (written before encryption was on)", encrypted, stored.len() - encrypted);
    Ok(())
}

/// How long the API server may take to pick up a changed config (it
/// reloads it by itself; a probe Secret tells when).
const RELOAD_TIMEOUT: Duration = Duration::from_secs(240);
const PROBE: &str = "k8s-encryption-probe";

/// `k8s secrets-encrypt rotate-keys`, on a single server: a new key first
/// (the old ones still read), wait until the API server writes with it,
/// rewrite every Secret (so each is stored under the new key), check the
/// stored values, then drop the old keys.
///
/// In HA every server's config would have to change together: not yet.
pub async fn rotate_keys(data_dir: &Path) -> anyhow::Result<()> {
    let layout = Layout::new(data_dir);
    let pki = Pki { dir: layout.pki_dir() };
    let db = layout.datastore_dir();
    if !pki.encryption_config().exists() {
        bail!("secrets encryption is off here ({} is missing); nothing to rotate", pki.encryption_config().display());
    }
    if !db.exists() {
        bail!("rotating keys in an HA cluster (every server's config at once) is not supported yet; the keys stay as they are");
    }
    let client = kubeclient::client(Path::new(paths::ADMIN_KUBECONFIG)).await.context("k8s secrets-encrypt runs on a server, as root")?;
    let name = encryption::add_key(&pki)?;
    println!("new key {name} written first; waiting for the API server to write with it");
    let prefix = format!("{}{name}:", encryption::STORED_PREFIX);
    wait_for_key(&client, &db, &prefix).await?;
    let rewritten = rewrite_all(&client).await?;
    println!("{rewritten} Secrets rewritten");
    let stored = crate::datastore::stored_values(&db, b"/registry/secrets/")?;
    let stale: Vec<String> = stored
        .iter()
        .filter(|(_, v)| !v.starts_with(prefix.as_bytes()))
        .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
        .collect();
    if !stale.is_empty() {
        bail!("{} Secrets are not stored under the new key yet ({}); the old keys are kept; run it again", stale.len(), stale.join(", "));
    }
    let dropped = encryption::drop_old_keys(&pki)?;
    println!("every stored Secret is under {name}; old keys dropped: {}", dropped.join(", "));
    Ok(())
}

/// Writes a probe Secret until its stored value is under the new key.
async fn wait_for_key(client: &kube::Client, db: &Path, prefix: &str) -> anyhow::Result<()> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "kube-system");
    let key = format!("/registry/secrets/kube-system/{PROBE}");
    let deadline = tokio::time::Instant::now() + RELOAD_TIMEOUT;
    loop {
        let probe = Secret {
            metadata: ObjectMeta { name: Some(PROBE.into()), ..Default::default() },
            string_data: Some([("at".to_string(), format!("{:?}", std::time::SystemTime::now()))].into()),
            ..Default::default()
        };
        secrets.patch(PROBE, &PatchParams::apply(kubeclient::FIELD_MANAGER).force(), &Patch::Apply(&probe)).await?;
        let stored = crate::datastore::stored_values(db, key.as_bytes())?;
        if stored.first().is_some_and(|(_, v)| v.starts_with(prefix.as_bytes())) {
            secrets.delete(PROBE, &DeleteParams::default()).await?;
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            let _ = secrets.delete(PROBE, &DeleteParams::default()).await;
            bail!("the API server did not pick up the new key within {RELOAD_TIMEOUT:?}; the old keys are kept, nothing else changed");
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Writes every Secret back unchanged, so the API server stores it under
/// the first key; one that changed meanwhile was written under it anyway.
async fn rewrite_all(client: &kube::Client) -> anyhow::Result<usize> {
    let all: Api<Secret> = Api::all(client.clone());
    let mut count = 0;
    for secret in all.list(&ListParams::default()).await?.items {
        let ns = secret.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
        match api.replace(&secret.name_any(), &PostParams::default(), &secret).await {
            Ok(_) => count += 1,
            // Changed or deleted since the list: written under the new key, or gone.
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(count)
}
