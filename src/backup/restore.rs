//! `k8s restore FILE`: a backup put back on a host that holds no cluster
//! data, checked whole before anything is put in place (see the module doc).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::archive::{self, Datastore, Manifest};
use crate::fsutil::set_mode;
use crate::host::{paths, Layout};

/// How far a restored store's revision is raised: past any revision the
/// old cluster can have handed out after the backup (etcd's documented
/// choice for `--bump-revision`).
const REVISION_BUMP: i64 = 1_000_000_000;

pub struct Restored {
    pub manifest: Manifest,
    pub revision: i64,
    /// Whether the archive's config file was put in place (not when the host had one).
    pub config: ConfigOutcome,
}

pub enum ConfigOutcome {
    Written,
    KeptExisting,
    NoneInArchive,
}

pub fn run(file: &Path, data_dir: &Path) -> anyhow::Result<Restored> {
    let layout = Layout::new(data_dir);
    refuse_over_a_cluster(&layout)?;
    archive::read_manifest(file)?;
    layout.check_writable()?;
    // Held while restoring: no server starts on half the data.
    let _lock = layout.lock().context("a restore replaces a cluster's data: stop k8s and run `k8s reset` first. Nothing changed")?;
    let staging = tempfile::Builder::new().prefix(".restore-").tempdir_in(data_dir)?;
    let manifest = archive::unpack_verified(file, staging.path())?;
    // Checked whole: now put in place (what fails from here is the disk:
    // `k8s reset`, then run it again).
    for dir in ["pki", "server"] {
        let from = staging.path().join(dir);
        if from.exists() {
            set_mode(&from, 0o700)?;
            std::fs::rename(&from, data_dir.join(dir)).with_context(|| format!("moving {dir} into {}", data_dir.display()))?;
        }
    }
    // The server's first start releases the node names the backup bound.
    std::fs::write(layout.restored_marker(), manifest.created.to_string())?;
    let config = put_config(&staging.path().join("config.yaml"))?;
    let revision = match manifest.datastore {
        Datastore::Sqlite => restore_sqlite(&layout, &staging.path().join("datastore/datastore.db"))?,
        Datastore::Etcd => restore_etcd(&layout, &staging.path().join("etcd/snapshot.db"), manifest.revision)?,
    };
    Ok(Restored { manifest, revision, config })
}

/// The SQLite file in place, its revision raised; the new revision.
fn restore_sqlite(layout: &Layout, snapshot: &Path) -> anyhow::Result<i64> {
    let db_dir = layout.datastore_dir();
    std::fs::create_dir_all(&db_dir)?;
    set_mode(&db_dir, 0o700)?;
    let db = crate::datastore::db_path(&db_dir);
    std::fs::rename(snapshot, &db).with_context(|| format!("moving the datastore to {}", db.display()))?;
    crate::datastore::bump_revision(&db_dir, REVISION_BUMP)
}

/// A new one-member etcd from the snapshot, for this host's name and
/// address; the other servers join it again after a `k8s reset`. The new
/// revision.
fn restore_etcd(layout: &Layout, snapshot: &Path, revision: i64) -> anyhow::Result<i64> {
    let options: crate::host::config::ServerOptions = crate::host::config::load(None)?;
    let components = crate::payload::Components::locate(layout.data_dir(), options.components_dir.as_deref())?;
    let target = crate::etcd::seed::Target {
        components: &components,
        k8s_data_dir: layout.data_dir(),
        name: &crate::host::net::node_name(options.node_name.as_deref())?,
        ip: crate::host::net::node_ip(options.node_ip)?,
    };
    crate::etcd::seed::from_snapshot(&target, snapshot, REVISION_BUMP)?;
    Ok(revision + REVISION_BUMP)
}

/// A restore replaces a cluster's data: never over the data of a cluster
/// this host holds (a running server or agent has such data; the lock
/// taken next covers one that just started).
fn refuse_over_a_cluster(layout: &Layout) -> anyhow::Result<()> {
    let held: Vec<PathBuf> = [layout.pki_dir(), layout.datastore_dir(), crate::etcd::data_dir(layout.data_dir()), layout.agent_pki_dir()]
        .into_iter()
        .filter(|p| p.exists())
        .collect();
    if !held.is_empty() {
        let names: Vec<String> = held.iter().map(|p| p.display().to_string()).collect();
        bail!("this host holds a cluster's data ({}); `k8s reset` removes it (back it up first with `k8s backup` if it matters). Nothing changed", names.join(", "));
    }
    Ok(())
}

fn put_config(from: &Path) -> anyhow::Result<ConfigOutcome> {
    if !from.exists() {
        return Ok(ConfigOutcome::NoneInArchive);
    }
    if Path::new(paths::CONFIG).exists() {
        return Ok(ConfigOutcome::KeptExisting);
    }
    let text = std::fs::read(from)?;
    crate::fsutil::write_atomic(Path::new(paths::CONFIG), &text, 0o600)?;
    Ok(ConfigOutcome::Written)
}

