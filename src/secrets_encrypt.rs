//! `k8s secrets-encrypt status`, on a server as root: whether Secrets are
//! encrypted at rest (see [`crate::pki::encryption`]), the keys, and (on a
//! single SQLite server) how many stored Secrets each key covers.

use std::path::Path;

use crate::host::Layout;
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
