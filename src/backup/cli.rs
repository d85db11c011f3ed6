//! `k8s backup [list|prune]` and `k8s restore`: what they print.

use std::path::{Path, PathBuf};

use crate::cli::{BackupArgs, BackupCommand, BackupPlace};
use crate::host::config::ServerOptions;

use super::restore::ConfigOutcome;
use super::Kind;

pub async fn run(args: BackupArgs) -> anyhow::Result<()> {
    match args.command {
        None => make(args.output, args.place).await,
        Some(BackupCommand::List(place)) => list(&Place::resolve(place)?.backups),
        Some(BackupCommand::Prune { keep, place }) => prune(&Place::resolve(place)?.backups, keep),
    }
}

/// The data dir, backup dir and node name: flags, else the server's config file.
struct Place {
    data_dir: PathBuf,
    backups: PathBuf,
    node: String,
}

impl Place {
    fn resolve(given: BackupPlace) -> anyhow::Result<Place> {
        let file: ServerOptions = crate::host::config::load(None)?;
        let data_dir = crate::host::config::data_dir(given.data_dir, file.data_dir);
        let backups = given.backup_dir.or(file.backup_dir).unwrap_or_else(|| super::default_dir(&data_dir));
        let node = crate::host::net::node_name(file.node_name.as_deref())?;
        Ok(Place { data_dir, backups, node })
    }
}

async fn make(output: Option<PathBuf>, place: BackupPlace) -> anyhow::Result<()> {
    let place = Place::resolve(place)?;
    let dest = output.unwrap_or_else(|| super::archive_path(&place.backups, Kind::OnDemand, &place.node));
    let m = super::make(&place.data_dir, &place.node, &dest).await?;
    let size = std::fs::metadata(&dest)?.len();
    println!("backup written: {} ({}, {:?} datastore at revision {}, {} files)", dest.display(), human(size), m.datastore, m.revision, m.files.len());
    println!("it holds the cluster's keys: keep it as safe as the server (it is 0600), and copy it off this host");
    Ok(())
}

fn list(dir: &Path) -> anyhow::Result<()> {
    let all = super::list(dir)?;
    if all.is_empty() {
        println!("no backups in {}", dir.display());
        return Ok(());
    }
    println!("{:<56} {:>9}  {:<20} {:>12}  NODE", "FILE", "SIZE", "CREATED (UTC)", "REVISION");
    for l in all {
        let name = l.path.file_name().unwrap_or_default().to_string_lossy().into_owned();
        match &l.manifest {
            Ok(m) => {
                let created = chrono::DateTime::from_timestamp(m.created as i64, 0).map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_default();
                println!("{name:<56} {:>9}  {created:<20} {:>12}  {}", human(l.size), m.revision, m.node);
            }
            Err(e) => println!("{name:<56} {:>9}  unreadable: {e:#}", human(l.size)),
        }
    }
    Ok(())
}

fn prune(dir: &Path, keep: usize) -> anyhow::Result<()> {
    let mut removed = super::prune(dir, Kind::Scheduled, keep)?;
    removed.extend(super::prune(dir, Kind::OnDemand, keep)?);
    for path in &removed {
        println!("removed {}", path.display());
    }
    println!("{} removed; the newest {keep} of each kind kept in {}", removed.len(), dir.display());
    Ok(())
}

pub fn restore(file: &Path, data_dir: &Path) -> anyhow::Result<()> {
    let r = super::restore::run(file, data_dir)?;
    let created = chrono::DateTime::from_timestamp(r.manifest.created as i64, 0).map(|t| t.to_rfc3339()).unwrap_or_default();
    println!("restored the cluster backed up on {} at {created} (k8s {}), into {}", r.manifest.node, r.manifest.k8s_version, data_dir.display());
    println!("datastore revision {} → {} (older revisions are marked compacted: running clients list again)", r.manifest.revision, r.revision);
    match r.config {
        ConfigOutcome::Written => println!("config: {} written from the backup", crate::host::paths::CONFIG),
        ConfigOutcome::KeptExisting => println!("config: this host's {} kept (the backup's is not used)", crate::host::paths::CONFIG),
        ConfigOutcome::NoneInArchive => {}
    }
    println!("start the server: systemctl start k8s-server (or `k8s server`)");
    Ok(())
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}
