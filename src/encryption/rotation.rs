//! A key rotation across every server: each step of
//! [`crate::pki::encryption::Rotation`] published in the desired config and
//! loaded by every API server before the next; every Secret rewritten and
//! its stored value checked before the old keys go.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::ByteString;
use kube::api::{ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};

use crate::kubeclient;
use crate::pki::encryption::{self, EncryptionConfig, Rotation, STORED_PREFIX};
use crate::pki::Pki;

/// Where Secrets are stored, read directly to check how they are stored.
pub enum Store {
    /// The single server's SQLite datastore (its data dir).
    Sqlite(PathBuf),
    /// The local member of the carried etcd.
    Etcd(Pki),
}

impl Store {
    /// Every stored Secret's key and stored value.
    pub async fn secrets(&self) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        const PREFIX: &[u8] = b"/registry/secrets/";
        let stored = match self {
            Store::Sqlite(db) => crate::datastore::stored_values(db, PREFIX)?,
            Store::Etcd(pki) => crate::etcd::Client::connect(&[crate::etcd::LOCAL.to_string()], pki).await?.values_under(PREFIX).await?,
        };
        Ok(stored.into_iter().map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), v)).collect())
    }
}

pub struct Cluster {
    /// An admin client.
    pub api: kube::Client,
    pub store: Store,
    /// Every server's name: each must load every step.
    pub servers: Vec<String>,
    /// This server's config file: the desired config when none is published yet.
    pub local_file: PathBuf,
}

/// Rotates the keys, continuing a rotation that stopped part way.
pub async fn run(cluster: &Cluster) -> anyhow::Result<()> {
    let mut desired = current(cluster).await?;
    let steps = if cluster.servers.len() > 1 { 3 } else { 2 };
    loop {
        let step = desired.rotation(cluster.servers.len());
        if let Rotation::DropOld(name) = &step {
            let rewritten = rewrite_all(&cluster.api).await?;
            println!("{rewritten} Secrets rewritten");
            check_stored(cluster, name).await?;
            println!("every stored Secret is under {name}");
        }
        let (next, name) = desired.apply(&step)?;
        let dropped: Vec<String> = desired.key_names().into_iter().filter(|k| !next.key_names().contains(k)).collect();
        publish(&cluster.api, &next).await?;
        let (number, what) = match &step {
            Rotation::AddReader => (1, format!("new key {name} readable")),
            Rotation::AddWriter | Rotation::MakeWriter(_) => (steps - 1, format!("new key {name} used for writes")),
            Rotation::DropOld(_) => (steps, format!("old keys dropped ({})", dropped.join(", "))),
        };
        println!("step {number}/{steps}: {what}; waiting for every server's API server to load it");
        wait_loaded(cluster, &next, &format!("step {number}/{steps} ({what})")).await?;
        println!("step {number}/{steps} loaded by {}", cluster.servers.join(", "));
        if matches!(step, Rotation::DropOld(_)) {
            return Ok(());
        }
        desired = next;
    }
}

/// The published config, loaded everywhere; or, before the first
/// rotation, this server's file once every server reports the same.
async fn current(cluster: &Cluster) -> anyhow::Result<EncryptionConfig> {
    let secrets: Api<Secret> = Api::namespaced(cluster.api.clone(), super::NAMESPACE);
    let published = secrets.get_opt(super::DESIRED).await?;
    let origin = PathBuf::from(format!("secret {}/{}", super::NAMESPACE, super::DESIRED));
    let config = match published.as_ref().and_then(|s| s.data.as_ref()?.get(super::CONFIG_KEY)) {
        Some(yaml) => EncryptionConfig::parse(&yaml.0, &origin)?,
        None => {
            let config = encryption::read(&cluster.local_file)?;
            // Every server must start from the same keys: this file.
            wait_loaded(cluster, &config, "the current config (before the rotation starts)").await?;
            publish(&cluster.api, &config).await?;
            return Ok(config);
        }
    };
    wait_loaded(cluster, &config, "the current config (before the next step)").await?;
    Ok(config)
}

async fn publish(api: &kube::Client, config: &EncryptionConfig) -> anyhow::Result<()> {
    let secret = Secret {
        metadata: ObjectMeta { name: Some(super::DESIRED.into()), namespace: Some(super::NAMESPACE.into()), ..Default::default() },
        data: Some([(super::CONFIG_KEY.to_string(), ByteString(config.to_yaml()))].into()),
        ..Default::default()
    };
    let secrets: Api<Secret> = Api::namespaced(api.clone(), super::NAMESPACE);
    secrets
        .patch(super::DESIRED, &PatchParams::apply(kubeclient::FIELD_MANAGER).force(), &Patch::Apply(&secret))
        .await
        .with_context(|| format!("publishing the encryption config in secret {}/{}", super::NAMESPACE, super::DESIRED))?;
    Ok(())
}

/// Waits until every server reports `config` loaded (see the follower).
async fn wait_loaded(cluster: &Cluster, config: &EncryptionConfig, what: &str) -> anyhow::Result<()> {
    let want = super::hash(&config.to_yaml());
    let status: Api<ConfigMap> = Api::namespaced(cluster.api.clone(), super::NAMESPACE);
    let deadline = tokio::time::Instant::now() + super::RELOAD_TIMEOUT + Duration::from_secs(30);
    loop {
        let loaded = status.get_opt(super::LOADED).await?.and_then(|c| c.data).unwrap_or_default();
        let behind: Vec<String> = cluster
            .servers
            .iter()
            .filter(|s| loaded.get(*s) != Some(&want))
            .map(|s| match loaded.get(s) {
                Some(other) => format!("{s} (has {})", short(other)),
                None => format!("{s} (has reported nothing)"),
            })
            .collect();
        if behind.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "not every server loaded {what}, {} (see configmap {}/{}): {}; is `k8s server` running there? see its kube-control-plane.log. \
                 Every Secret stays readable where the rotation stopped; run `k8s secrets-encrypt rotate-keys` again to continue from there",
                short(&want),
                super::NAMESPACE,
                super::LOADED,
                behind.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min("sha256:".len() + 12)]
}

/// Writes every Secret back unchanged, so the API server stores it under
/// the first key; one that changed meanwhile was written under it anyway.
async fn rewrite_all(api: &kube::Client) -> anyhow::Result<usize> {
    let all: Api<Secret> = Api::all(api.clone());
    let mut count = 0;
    for secret in all.list(&ListParams::default()).await?.items {
        let ns = secret.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Secret> = Api::namespaced(api.clone(), &ns);
        match api.replace(&secret.name_any(), &PostParams::default(), &secret).await {
            Ok(_) => count += 1,
            // Changed or deleted since the list: written under the new key, or gone.
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(count)
}

/// Every stored Secret under `key`, read from the datastore itself.
async fn check_stored(cluster: &Cluster, key: &str) -> anyhow::Result<()> {
    let prefix = format!("{STORED_PREFIX}{key}:");
    let stale: Vec<String> =
        cluster.store.secrets().await?.into_iter().filter(|(_, v)| !v.starts_with(prefix.as_bytes())).map(|(k, _)| k).collect();
    if !stale.is_empty() {
        bail!("{} Secrets are not stored under the new key yet ({}); the old keys are kept; run it again", stale.len(), stale.join(", "));
    }
    Ok(())
}
