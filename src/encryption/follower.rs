//! Each server's side of the shared encryption config: the desired config
//! (a Secret) written to the local file, and what the local API server
//! loaded reported back (see the module doc for the whole lifecycle).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{ObjectMeta, Patch, PatchParams};
use kube::runtime::watcher;
use kube::Api;

use crate::kubeclient;
use crate::pki::encryption::EncryptionConfig;

/// Looks again this often even without a change (a lost report, a file
/// someone edited by hand).
const RESYNC: Duration = Duration::from_secs(300);

pub struct Follower {
    /// A client of this server's own API server (its metrics tell what it loaded).
    pub api: kube::Client,
    /// This server's name (its node name; in HA its etcd member's name).
    pub server: String,
    pub file: PathBuf,
}

impl Follower {
    pub async fn run(self) {
        let secrets: Api<Secret> = Api::namespaced(self.api.clone(), super::NAMESPACE);
        let config = watcher::Config::default().fields(&format!("metadata.name={}", super::DESIRED));
        let mut desired = kubeclient::follow(secrets, config, Some(RESYNC)).boxed();
        let mut reported = None;
        while let Some(set) = desired.next().await {
            match self.sync(set.first().map(|s| s.as_ref()), &reported).await {
                Ok(hash) => reported = hash,
                Err(e) => tracing::warn!("secrets encryption config: {e:#}"),
            }
        }
    }

    /// Writes the desired config if it differs, then reports what the API
    /// server loaded once it is the file; the hash reported.
    async fn sync(&self, desired: Option<&Secret>, reported: &Option<String>) -> anyhow::Result<Option<String>> {
        let want = match desired.and_then(|s| s.data.as_ref()?.get(super::CONFIG_KEY)) {
            Some(yaml) => Some(self.write(&yaml.0)?),
            None if self.file.exists() => Some(super::hash(&std::fs::read(&self.file)?)),
            // Encryption is off on this cluster (an HA cluster older than it).
            None => None,
        };
        let Some(want) = want else { return Ok(None) };
        let loaded = self.wait_loaded(&want).await?;
        if reported.as_ref() != Some(&loaded) {
            self.report(&loaded).await?;
        }
        Ok(Some(loaded))
    }

    /// Writes `yaml` over the file unless it holds it already; its hash.
    fn write(&self, yaml: &[u8]) -> anyhow::Result<String> {
        let hash = super::hash(yaml);
        if std::fs::read(&self.file).ok().is_some_and(|have| have == yaml) {
            return Ok(hash);
        }
        let origin = PathBuf::from(format!("secret {}/{}", super::NAMESPACE, super::DESIRED));
        let config = EncryptionConfig::parse(yaml, &origin)?;
        crate::fsutil::write_atomic(&self.file, yaml, 0o600)?;
        tracing::info!(keys = config.key_names().join(","), "secrets encryption config changed; the API server loads it within a minute");
        Ok(hash)
    }

    /// Waits until the API server has loaded `want`; what it has loaded
    /// then (the previous config if it did not in time: reported as is, so
    /// a rotation waiting for it says which config this server still has).
    async fn wait_loaded(&self, want: &str) -> anyhow::Result<String> {
        let deadline = tokio::time::Instant::now() + super::RELOAD_TIMEOUT;
        loop {
            let loaded = super::loaded_hash(&self.api).await?.unwrap_or_default();
            if loaded == want || tokio::time::Instant::now() >= deadline {
                if loaded != want {
                    tracing::warn!(file = %self.file.display(), "the API server has not loaded the secrets encryption config in {:?}; see kube-control-plane.log", super::RELOAD_TIMEOUT);
                }
                return Ok(loaded);
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    async fn report(&self, loaded: &str) -> anyhow::Result<()> {
        let status = ConfigMap {
            metadata: ObjectMeta { name: Some(super::LOADED.into()), namespace: Some(super::NAMESPACE.into()), ..Default::default() },
            data: Some([(self.server.clone(), loaded.to_string())].into()),
            ..Default::default()
        };
        // One field manager per server: each owns its own entry.
        let manager = format!("k8s-encryption/{}", self.server);
        let api: Api<ConfigMap> = Api::namespaced(self.api.clone(), super::NAMESPACE);
        api.patch(super::LOADED, &PatchParams::apply(&manager).force(), &Patch::Apply(&status))
            .await
            .with_context(|| format!("reporting the loaded encryption config in configmap {}/{}", super::NAMESPACE, super::LOADED))?;
        tracing::info!(hash = loaded, "secrets encryption config loaded");
        Ok(())
    }
}
