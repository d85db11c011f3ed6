//! Backups of a server and their restore.
//!
//! ```text
//! k8s backup            on a server: one archive (archive.rs: tar + zstd, 0600, manifest first) of
//!                       a consistent datastore snapshot (SQLite's online backup, or an etcd snapshot
//!                       from the local member), the PKI (with the Secrets encryption config), the
//!                       server's tokens and node password (<data-dir>/server) and /etc/k8s/config.yaml
//! schedule              every server, in process: at each time of `backup-schedule` (cron, default
//!                       every 12 h) a `scheduled-…` archive in `backup-dir`, keeping `backup-retention`
//! k8s backup list|prune the archives in the backup dir, newest last; prune keeps the newest of each kind
//! k8s restore FILE      on a host with no cluster data and no server running: the archive is unpacked
//!                       and checked file by file first; then the PKI, tokens, datastore (its revision
//!                       raised past any the old cluster handed out, the older ones compacted, so
//!                       watchers relist instead of missing changes; HA: a new one-member etcd from
//!                       the snapshot) and the config are put in place;
//!                       `k8s server` then brings back the same cluster (same CA, tokens, objects)
//! ```
//!
//! An HA (etcd) backup restores into a new one-member etcd
//! ([`crate::etcd::seed`]); the other servers join it again.

pub mod archive;
pub mod cli;
pub mod restore;
pub mod schedule;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::host::{paths, Layout};
use crate::pki::Pki;
use archive::{About, Datastore, Manifest, Source};

pub use schedule::Schedule;

/// Why an archive was made; its file name starts with this.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    OnDemand,
    Scheduled,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::OnDemand => "on-demand",
            Kind::Scheduled => "scheduled",
        }
    }
}

/// The default backup dir.
pub fn default_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("backups")
}

/// `<dir>/<kind>-<node>-<UTC time>.tar.zst`
pub fn archive_path(dir: &Path, kind: Kind, node: &str) -> PathBuf {
    let now = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    dir.join(format!("{}-{node}-{now}.tar.zst", kind.prefix()))
}

/// Makes an archive of the server whose data is in `data_dir` at `dest`.
pub async fn make(data_dir: &Path, node: &str, dest: &Path) -> anyhow::Result<Manifest> {
    let layout = Layout::new(data_dir);
    let pki = Pki { dir: layout.pki_dir() };
    if !pki.ca_cert().exists() {
        bail!("{} holds no server's data (no {}); run `k8s backup` on a server, or name its data dir with --data-dir", data_dir.display(), pki.ca_cert().display());
    }
    // The snapshot sits beside the data until it is in the archive.
    let snapshot = tempfile::Builder::new().prefix(".backup-snapshot-").tempfile_in(data_dir)?.into_temp_path();
    let (datastore, revision, name) = if layout.datastore_dir().exists() {
        let (db, dest) = (layout.datastore_dir(), snapshot.to_path_buf());
        let rev = tokio::task::spawn_blocking(move || crate::datastore::snapshot_to(&db, &dest)).await??;
        (Datastore::Sqlite, rev, "datastore/datastore.db")
    } else if crate::etcd::has_data(data_dir) {
        let etcd = crate::etcd::Client::connect(&[crate::etcd::LOCAL.to_string()], &pki).await.context("the etcd snapshot comes from this server's member: is `k8s server` running?")?;
        (Datastore::Etcd, etcd.snapshot_to(&snapshot).await?, "etcd/snapshot.db")
    } else {
        bail!("{} holds no datastore (SQLite or etcd); is it a server's data dir?", data_dir.display());
    };
    let mut sources = vec![Source { name: name.into(), file: snapshot.to_path_buf() }];
    sources.extend(files_under(&pki.dir, "pki", &[])?);
    // The live datastore files are not copied: the snapshot is the datastore.
    sources.extend(files_under(&data_dir.join("server"), "server", &[layout.datastore_dir()])?);
    if Path::new(paths::CONFIG).exists() {
        sources.push(Source { name: "config.yaml".into(), file: paths::CONFIG.into() });
    }
    let about = About { node: node.to_string(), cluster: cluster_id(&pki)?, datastore, revision };
    let dest = dest.to_path_buf();
    tokio::task::spawn_blocking(move || archive::write(&dest, about, &sources)).await?
}

/// Which cluster a PKI belongs to: the sha256 of its CA certificate.
pub fn cluster_id(pki: &Pki) -> anyhow::Result<String> {
    Ok(crate::fsutil::sha256_file(&pki.ca_cert())?.0)
}

/// Every regular file under `dir` but those under `skip`, named
/// `<prefix>/<relative path>`.
fn files_under(dir: &Path, prefix: &str, skip: &[PathBuf]) -> anyhow::Result<Vec<Source>> {
    let mut out = Vec::new();
    if !dir.exists() {
        return Ok(out);
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() && !skip.contains(&entry.path()) {
                stack.push(entry.path());
            } else if kind.is_file() {
                let rel = entry.path().strip_prefix(dir).expect("under dir").to_string_lossy().into_owned();
                out.push(Source { name: format!("{prefix}/{rel}"), file: entry.path() });
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// An archive in a backup dir.
pub struct Listed {
    pub path: PathBuf,
    pub size: u64,
    pub manifest: anyhow::Result<Manifest>,
}

/// The archives in `dir`, oldest first (by name: kind, node, time).
pub fn list(dir: &Path) -> anyhow::Result<Vec<Listed>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    for entry in entries {
        let path = entry?.path();
        if path.to_string_lossy().ends_with(".tar.zst") && kind_of(&path).is_some() {
            let size = std::fs::metadata(&path)?.len();
            out.push(Listed { manifest: archive::read_manifest(&path), path, size });
        }
    }
    out.sort_by_key(|l| (l.manifest.as_ref().map(|m| m.created).unwrap_or(0), l.path.clone()));
    Ok(out)
}

fn kind_of(path: &Path) -> Option<Kind> {
    let name = path.file_name()?.to_str()?;
    [Kind::OnDemand, Kind::Scheduled].into_iter().find(|k| name.starts_with(&format!("{}-", k.prefix())))
}

/// Removes all but the newest `keep` archives of `kind` in `dir`; the removed.
pub fn prune(dir: &Path, kind: Kind, keep: usize) -> anyhow::Result<Vec<PathBuf>> {
    let of_kind: Vec<PathBuf> = list(dir)?.into_iter().map(|l| l.path).filter(|p| kind_of(p) == Some(kind)).collect();
    let remove = of_kind.len().saturating_sub(keep);
    let mut removed = Vec::new();
    for path in of_kind.into_iter().take(remove) {
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        removed.push(path);
    }
    Ok(removed)
}
