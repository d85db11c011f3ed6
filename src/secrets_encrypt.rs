//! `k8s secrets-encrypt status|rotate-keys`, on a server as root: whether
//! Secrets are encrypted at rest (see [`crate::pki::encryption`]), the keys,
//! how many stored Secrets are encrypted (read from the datastore itself);
//! a new key on every server with every Secret rewritten under it
//! ([`crate::encryption`]).

use anyhow::{bail, Context};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;

use crate::encryption::rotation::{self, Cluster, Store};
use crate::host::config::Local;
use crate::host::Layout;
use crate::pki::{encryption, Pki};
use crate::{etcd, kubeclient};

pub async fn status(local: &Local) -> anyhow::Result<()> {
    let layout = Layout::new(&local.data_dir);
    let pki = Pki { dir: layout.pki_dir() };
    let config = pki.encryption_config();
    if !config.exists() {
        println!("secrets encryption: off (no {}; an HA cluster created before k8s encrypted Secrets)", config.display());
        return Ok(());
    }
    let keys = encryption::key_names(&config)?;
    println!("secrets encryption: on (secretbox), config {}", config.display());
    println!("keys: {} (new writes use {})", keys.join(", "), keys[0]);
    if keys.len() > 1 {
        println!("a rotation is part way: `k8s secrets-encrypt rotate-keys` finishes it");
    }
    let stored = store(&layout, &pki).secrets().await.context("reading the stored Secrets")?;
    let encrypted = stored.iter().filter(|(_, v)| v.starts_with(encryption::STORED_PREFIX.as_bytes())).count();
    println!("stored Secrets: {} encrypted, {} not (written before encryption was on)", encrypted, stored.len() - encrypted);
    if let Ok(client) = kubeclient::client(&local.admin_kubeconfig).await {
        print_loaded(&client).await;
    }
    Ok(())
}

/// What each server's API server reports loaded.
async fn print_loaded(client: &kube::Client) {
    let status: Api<ConfigMap> = Api::namespaced(client.clone(), crate::encryption::NAMESPACE);
    if let Ok(Some(data)) = status.get_opt(crate::encryption::LOADED).await.map(|c| c.and_then(|c| c.data)) {
        for (server, hash) in data {
            println!("server {server}: API server loaded {hash}");
        }
    }
}

/// `k8s secrets-encrypt rotate-keys`: a new key on every server, every
/// Secret rewritten under it, the old keys dropped (see
/// [`crate::pki::encryption::Rotation`] for the steps).
pub async fn rotate_keys(local: &Local) -> anyhow::Result<()> {
    let layout = Layout::new(&local.data_dir);
    let pki = Pki { dir: layout.pki_dir() };
    if !pki.encryption_config().exists() {
        bail!("secrets encryption is off here ({} is missing); nothing to rotate", pki.encryption_config().display());
    }
    let api = kubeclient::client(&local.admin_kubeconfig).await.context("k8s secrets-encrypt runs on a server, as root")?;
    let store = store(&layout, &pki);
    let servers = match &store {
        Store::Sqlite(_) => {
            let running = crate::server::status::read(&layout).context("no k8s server is running here; start it first")?;
            vec![running.node]
        }
        Store::Etcd(pki) => servers_in_ha(pki).await?,
    };
    println!("rotating the Secrets encryption key on {} server(s): {}", servers.len(), servers.join(", "));
    rotation::run(&Cluster { api, store, servers, local_file: pki.encryption_config() }).await
}

fn store(layout: &Layout, pki: &Pki) -> Store {
    let db = layout.datastore_dir();
    if db.exists() {
        Store::Sqlite(db)
    } else {
        Store::Etcd(pki.clone())
    }
}

/// Every etcd member's name, once every member is a healthy voter: a
/// server that is down would miss a step and then could not read Secrets.
async fn servers_in_ha(pki: &Pki) -> anyhow::Result<Vec<String>> {
    let problems = etcd::health::problems(pki).await;
    if !problems.is_empty() {
        bail!("a rotation needs every server up, and: {}; bring it back or remove it (k8s etcd remove-member NAME), then run it again", problems.join("; "));
    }
    let local = etcd::Client::connect(&[etcd::LOCAL.to_string()], pki).await?;
    Ok(local.members().await?.into_iter().map(|m| m.name).collect())
}
