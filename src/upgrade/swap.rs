//! The host side of a node's upgrade: the staged binary, the swap, and the
//! guard that puts the previous binary back when the new one does not
//! commit in time.
//!
//! ```text
//!  stage: download ─▶ sha256 ─▶ `<new> version` says the target ─▶ <data-dir>/upgrade/k8s-<version>
//!  swap:  pending.json (from, to, deadline) ─▶ k8s.prev = the running binary ─▶ k8s = the staged one
//!         ─▶ guard timer armed (systemd-run, runs k8s.prev) ─▶ restart
//!  new binary healthy for the soak time ─▶ commit: pending.json removed, timer stopped
//!  deadline passes with pending.json still there ─▶ guard (the previous binary): k8s = k8s.prev,
//!         rolled-back.json written, service restarted on the old binary, which reports RolledBack
//! ```
//!
//! The guard is the previous binary run by systemd, so a new binary that
//! never starts, crash-loops or hangs before Ready cannot stop the
//! rollback. Every step is a rename on one filesystem after an fsync, and
//! the pending file is written first: a crash at any point leaves either
//! the old binary, or the new one with its guard still due.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::fsutil::{sha256_file, write_atomic};

/// The transient systemd unit the guard runs as.
pub const GUARD_UNIT: &str = "k8s-upgrade-guard";
/// How long `<new binary> version` may take.
const VERSION_CHECK_TIMEOUT: Duration = Duration::from_secs(20);

/// An upgrade swapped in and not yet committed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The UpgradePlan that ordered it.
    pub plan: String,
    pub from: String,
    pub to: String,
    /// Seconds since the epoch after which the guard rolls back.
    pub deadline: u64,
    /// The systemd unit that runs `k8s` here (restarted after a rollback).
    pub unit: String,
    /// How long the new binary must stay healthy before it commits.
    pub soak_seconds: u64,
}

/// What the guard did.
#[derive(Debug, PartialEq, Eq)]
pub enum Guard {
    NothingPending,
    /// The deadline is ahead by this many seconds.
    NotYet(u64),
    RolledBack(Pending),
}

/// Where a server keeps the binaries `k8s upgrade apply` staged for the
/// nodes, each under its sha256.
pub fn binaries_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("upgrade/binaries")
}

/// The files of one host's upgrades.
#[derive(Clone)]
pub struct Host {
    /// The binary systemd runs (`/usr/local/bin/k8s`).
    pub binary: PathBuf,
    /// `<data-dir>/upgrade`: staged binaries and the pending and
    /// rolled-back records.
    pub dir: PathBuf,
}

impl Host {
    pub fn new(binary: &Path, data_dir: &Path) -> Host {
        Host { binary: binary.to_path_buf(), dir: data_dir.join("upgrade") }
    }

    /// The binary that ran before the last swap.
    pub fn previous(&self) -> PathBuf {
        sibling(&self.binary, "prev")
    }

    fn pending_file(&self) -> PathBuf {
        self.dir.join("pending.json")
    }

    fn rolled_back_file(&self) -> PathBuf {
        self.dir.join("rolled-back.json")
    }

    /// Checks a downloaded binary (its sha256, and that it runs and says
    /// it is `version`) and keeps it as the staged binary of `version`.
    pub fn stage(&self, downloaded: &Path, sha256: &str, version: &str) -> anyhow::Result<PathBuf> {
        let (actual, _) = sha256_file(downloaded)?;
        if !actual.eq_ignore_ascii_case(sha256) {
            bail!("{} has sha256 {actual}, the plan says {sha256}; the download is damaged or not the planned binary", downloaded.display());
        }
        std::fs::set_permissions(downloaded, std::fs::Permissions::from_mode(0o755))?;
        let said = versions_of(downloaded)?.k8s;
        if said != version {
            bail!("{} says it is k8s {said:?}, the plan says {version}", downloaded.display());
        }
        let staged = self.dir.join(format!("k8s-{version}"));
        std::fs::create_dir_all(&self.dir)?;
        std::fs::rename(downloaded, &staged).with_context(|| format!("cannot move the staged binary to {}", staged.display()))?;
        Ok(staged)
    }

    /// Puts `staged` in place of the binary, keeping the running one as
    /// [`Host::previous`]; `pending` is recorded first, so the guard rolls
    /// back whatever happens next.
    pub fn swap(&self, staged: &Path, pending: &Pending) -> anyhow::Result<()> {
        write_atomic(&self.pending_file(), &serde_json::to_vec(pending)?, 0o600)?;
        let keep = sibling(&self.binary, "prev.tmp");
        let _ = std::fs::remove_file(&keep);
        std::fs::hard_link(&self.binary, &keep).with_context(|| format!("cannot keep {} as the previous binary", self.binary.display()))?;
        rename_synced(&keep, &self.previous())?;
        install(staged, &self.binary)
    }

    /// The new binary is healthy: nothing to roll back any more. Returns
    /// what was pending, if anything.
    pub fn commit(&self) -> anyhow::Result<Option<Pending>> {
        let pending = self.pending()?;
        if pending.is_some() {
            std::fs::remove_file(self.pending_file())?;
        }
        Ok(pending)
    }

    pub fn pending(&self) -> anyhow::Result<Option<Pending>> {
        read_json(&self.pending_file())
    }

    /// Run by the guard timer (as the previous binary): rolls back when
    /// the pending upgrade's deadline has passed.
    pub fn guard(&self, now: u64) -> anyhow::Result<Guard> {
        let Some(pending) = self.pending()? else { return Ok(Guard::NothingPending) };
        if now < pending.deadline {
            return Ok(Guard::NotYet(pending.deadline - now));
        }
        let back = sibling(&self.binary, "rollback.tmp");
        let _ = std::fs::remove_file(&back);
        std::fs::hard_link(self.previous(), &back).with_context(|| format!("cannot restore {}", self.previous().display()))?;
        rename_synced(&back, &self.binary)?;
        write_atomic(&self.rolled_back_file(), &serde_json::to_vec(&pending)?, 0o600)?;
        std::fs::remove_file(self.pending_file())?;
        Ok(Guard::RolledBack(pending))
    }

    /// The upgrade the guard rolled back, once: the old binary reports it
    /// and then forgets it.
    pub fn take_rollback(&self) -> anyhow::Result<Option<Pending>> {
        let rolled_back = read_json(&self.rolled_back_file())?;
        if rolled_back.is_some() {
            std::fs::remove_file(self.rolled_back_file())?;
        }
        Ok(rolled_back)
    }

    /// The command that arms the guard: a transient systemd timer that
    /// runs the previous binary's `upgrade guard` after `after`.
    pub fn guard_timer(&self, data_dir: &Path, after: Duration) -> Vec<String> {
        vec![
            "systemd-run".into(),
            format!("--unit={GUARD_UNIT}"),
            // Unloaded once it ran, so the next upgrade can arm it again.
            "--collect".into(),
            format!("--on-active={}s", after.as_secs()),
            "--timer-property=AccuracySec=1s".into(),
            self.previous().display().to_string(),
            "upgrade".into(),
            "guard".into(),
            format!("--data-dir={}", data_dir.display()),
            format!("--binary={}", self.binary.display()),
        ]
    }
}

/// `dir/.name.suffix` beside `path`.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("k8s");
    path.with_file_name(format!("{name}.{suffix}"))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| format!("{} is damaged", path.display()))?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Copies `src` beside `dst` (same filesystem), fsyncs it, renames it over
/// `dst` with mode 0755.
pub fn install(src: &Path, dst: &Path) -> anyhow::Result<()> {
    let tmp = sibling(dst, "new.tmp");
    {
        let mut out = File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::io::copy(&mut File::open(src)?, &mut out)?;
        out.set_permissions(std::fs::Permissions::from_mode(0o755))?;
        out.flush()?;
        out.sync_all()?;
    }
    rename_synced(&tmp, dst)
}

fn rename_synced(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::rename(from, to).with_context(|| format!("cannot rename {} to {}", from.display(), to.display()))?;
    let dir = to.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// What `<binary> version` says it is.
pub struct Versions {
    /// From its `k8s <version>` line.
    pub k8s: String,
    /// From its `kubernetes: <version>` line; None without an attached payload.
    pub kubernetes: Option<String>,
    /// From its `etcd <version>` part line; None without an attached payload.
    pub etcd: Option<String>,
}

/// Runs `<binary> version` (bounded in time) and reads its versions.
pub fn versions_of(binary: &Path) -> anyhow::Result<Versions> {
    let mut child = std::process::Command::new(binary)
        .arg("version")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("{} does not run", binary.display()))?;
    let deadline = std::time::Instant::now() + VERSION_CHECK_TIMEOUT;
    while child.try_wait()?.is_none() {
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            bail!("{} version did not answer in {VERSION_CHECK_TIMEOUT:?}", binary.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut out = String::new();
    child.stdout.take().context("no stdout")?.read_to_string(&mut out)?;
    let field = |prefix: &str| out.lines().find_map(|l| l.strip_prefix(prefix)).map(|v| v.trim().to_string());
    let k8s = field("k8s ").with_context(|| format!("{} is not a k8s binary (`version` printed {:?})", binary.display(), out.trim()))?;
    let etcd = out.lines().find_map(|l| {
        let mut words = l.split_whitespace();
        (words.next() == Some("etcd")).then(|| words.next()).flatten().map(str::to_string)
    });
    Ok(Versions { k8s, kubernetes: field("kubernetes: "), etcd })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn version_of(binary: &Path) -> anyhow::Result<String> {
        Ok(versions_of(binary)?.k8s)
    }

    /// A stand-in binary: a script that says it is k8s `version`.
    fn fake_binary(path: &Path, version: &str) -> String {
        let script = format!("#!/bin/sh\necho 'k8s {version}'\n");
        std::fs::write(path, &script).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
        hex::encode(Sha256::digest(script.as_bytes()))
    }

    #[test]
    fn versions_come_from_the_version_output() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("k8s");
        let out = "k8s 0.2.0\ndatastore: etcd v3 API 3.6 over SQLite 3.46\nkubernetes: v1.37.2\n  containerd                 v2.4.2\n  etcd                       v3.6.16\n";
        std::fs::write(&bin, format!("#!/bin/sh\nprintf '{out}'\n")).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let v = versions_of(&bin).unwrap();
        assert_eq!((v.k8s.as_str(), v.kubernetes.as_deref(), v.etcd.as_deref()), ("0.2.0", Some("v1.37.2"), Some("v3.6.16")));
    }

    fn setup() -> (tempfile::TempDir, Host) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        let host = Host::new(&dir.path().join("bin/k8s"), &dir.path().join("data"));
        fake_binary(&host.binary, "0.1.0");
        (dir, host)
    }

    fn pending(deadline: u64) -> Pending {
        Pending { plan: "p".into(), from: "0.1.0".into(), to: "0.2.0".into(), deadline, unit: "k8s-server".into(), soak_seconds: 30 }
    }

    #[test]
    fn stage_checks_the_hash_and_the_version() {
        let (dir, host) = setup();
        let download = dir.path().join("download");
        let sha = fake_binary(&download, "0.2.0");
        let err = host.stage(&download, &"0".repeat(64), "0.2.0").unwrap_err();
        assert!(format!("{err:#}").contains("sha256"), "{err:#}");
        let err = host.stage(&download, &sha, "0.3.0").unwrap_err();
        assert!(format!("{err:#}").contains("says it is k8s \"0.2.0\""), "{err:#}");
        let staged = host.stage(&download, &sha, "0.2.0").unwrap();
        assert_eq!(staged, host.dir.join("k8s-0.2.0"));
        assert_eq!(version_of(&staged).unwrap(), "0.2.0");
    }

    #[test]
    fn swap_then_commit_keeps_the_new_binary() {
        let (dir, host) = setup();
        let download = dir.path().join("download");
        let sha = fake_binary(&download, "0.2.0");
        let staged = host.stage(&download, &sha, "0.2.0").unwrap();
        host.swap(&staged, &pending(100)).unwrap();
        assert_eq!(version_of(&host.binary).unwrap(), "0.2.0");
        assert_eq!(version_of(&host.previous()).unwrap(), "0.1.0");
        assert_eq!(host.guard(50).unwrap(), Guard::NotYet(50));
        assert_eq!(host.commit().unwrap(), Some(pending(100)));
        assert_eq!(host.guard(500).unwrap(), Guard::NothingPending, "committed: the guard does nothing");
        assert_eq!(version_of(&host.binary).unwrap(), "0.2.0");
    }

    #[test]
    fn the_guard_restores_the_previous_binary_after_the_deadline() {
        let (dir, host) = setup();
        let download = dir.path().join("download");
        let sha = fake_binary(&download, "0.2.0");
        let staged = host.stage(&download, &sha, "0.2.0").unwrap();
        host.swap(&staged, &pending(100)).unwrap();
        assert_eq!(host.guard(100).unwrap(), Guard::RolledBack(pending(100)));
        assert_eq!(version_of(&host.binary).unwrap(), "0.1.0");
        assert_eq!(host.pending().unwrap(), None);
        assert_eq!(host.take_rollback().unwrap(), Some(pending(100)), "the old binary learns what was rolled back");
        assert_eq!(host.take_rollback().unwrap(), None, "once");
    }

    #[test]
    fn the_guard_timer_runs_the_previous_binary() {
        let host = Host::new(Path::new("/usr/local/bin/k8s"), Path::new("/var/lib/k8s"));
        let cmd = host.guard_timer(Path::new("/var/lib/k8s"), Duration::from_secs(330)).join(" ");
        assert_eq!(cmd, "systemd-run --unit=k8s-upgrade-guard --collect --on-active=330s --timer-property=AccuracySec=1s \
            /usr/local/bin/k8s.prev upgrade guard --data-dir=/var/lib/k8s --binary=/usr/local/bin/k8s");
    }
}
