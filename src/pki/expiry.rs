//! Every certificate a server holds, with its end and what the next start
//! does about it: what `k8s certs check` shows, and what a running server
//! warns about before it is too late.

use std::io;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use time::{Duration, OffsetDateTime};

use super::Lifetimes;
use crate::host::Layout;

/// What a CA near its end says to do (the CA is never renewed by itself).
const ROTATE_CA: &str = "rotate the CA: see docs/certificates.md";

/// One certificate as `check` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub file: PathBuf,
    pub cert: super::Summary,
    /// Whole days (negative once expired).
    pub days_left: i64,
    pub status: Status,
}

/// What the next server start does about a certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Inside the renewal window: re-issued at the next start.
    Renews,
    Expired,
    CaOk,
    /// The kubelet's client cert in its store: the kubelet renews it.
    ByKubelet,
    /// A CA with less than a leaf's lifetime left: leaves it signs would outlive it.
    CaRotate,
    CaExpired,
}

impl Status {
    pub fn of(cert: &super::Summary, lt: &Lifetimes, now: OffsetDateTime) -> Status {
        let left = cert.not_after - now;
        match cert.ca {
            true if left <= Duration::ZERO => Status::CaExpired,
            true if left < lt.leaf => Status::CaRotate,
            true => Status::CaOk,
            false if left <= Duration::ZERO => Status::Expired,
            // The same comparison `pki::ensure` makes at the start.
            false if left < lt.renew_before => Status::Renews,
            false => Status::Ok,
        }
    }

    /// The status of the kubelet's own client cert (renewed through CSRs, not at a start).
    pub fn of_kubelets(cert: &super::Summary, now: OffsetDateTime) -> Status {
        if cert.not_after <= now { Status::Expired } else { Status::ByKubelet }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Renews => "renews at next start",
            Status::Expired => "expired",
            Status::CaOk => "ok (CA)",
            Status::ByKubelet => "ok (the kubelet renews it)",
            Status::CaRotate => ROTATE_CA,
            Status::CaExpired => "expired (CA)",
        }
    }
}

/// Every `*.crt` under the PKI dir, then the client cert of every
/// kubeconfig of the kubeconfig dir and of `admin_kubeconfig` (if present),
/// then the kubelet's current client cert (if this server runs a node).
pub fn check(layout: &Layout, admin_kubeconfig: &Path, lt: &Lifetimes, now: OffsetDateTime) -> anyhow::Result<Vec<Row>> {
    let pki_dir = layout.pki_dir();
    if !pki_dir.is_dir() {
        bail!("{} does not exist: no k8s server has run with this data dir (see --data-dir)", pki_dir.display());
    }
    let mut rows = Vec::new();
    for file in files_with(&pki_dir, "crt", true)? {
        push_row(&mut rows, file, |text| Some(text.to_string()), |cert, now| Status::of(cert, lt, now), now)?;
    }
    let mut kubeconfigs = files_with(&layout.kubeconfig_dir(), "kubeconfig", false)?;
    kubeconfigs.extend(admin_kubeconfig.exists().then(|| admin_kubeconfig.to_path_buf()));
    for file in kubeconfigs {
        push_row(&mut rows, file, super::embedded_client_cert, |cert, now| Status::of(cert, lt, now), now)?;
    }
    let kubelets = layout.node().kubelet_client_current();
    if kubelets.exists() {
        push_row(&mut rows, kubelets, |text| Some(text.to_string()), Status::of_kubelets, now)?;
    }
    Ok(rows)
}

/// Adds the row of `file`, whose certificate `pem` takes out of its text;
/// a file without a readable certificate is told on stderr and skipped.
fn push_row(
    rows: &mut Vec<Row>,
    file: PathBuf,
    pem: fn(&str) -> Option<String>,
    status: impl Fn(&super::Summary, OffsetDateTime) -> Status,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {} (as root?)", file.display()))?;
    let Some(cert) = pem(&text).as_deref().and_then(super::summarize) else {
        eprintln!("warning: {} holds no certificate k8s can read; skipped", file.display());
        return Ok(());
    };
    let (days_left, status) = ((cert.not_after - now).whole_days(), status(&cert, now));
    rows.push(Row { file, cert, days_left, status });
    Ok(())
}

/// The files of `dir` named `*.<ext>` (in its subdirectories too with
/// `recursive`), sorted; none when `dir` does not exist.
fn files_with(dir: &Path, ext: &str, recursive: bool) -> anyhow::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        other => other.with_context(|| format!("cannot list {} (as root?)", dir.display()))?,
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.with_context(|| format!("cannot list {}", dir.display()))?.path();
        if path.is_dir() && recursive {
            files.extend(files_with(&path, ext, true)?);
        } else if path.is_file() && path.extension().is_some_and(|e| e == ext) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// A running server warns this long before a leaf ends (the next start
/// renews it; a server that runs on for a year would not start again).
pub const WARN_BEFORE: Duration = Duration::days(30);

/// The rows a running server warns about: leaves within [`WARN_BEFORE`] of
/// their end or past it, and CAs that need rotating.
pub fn warnings(rows: &[Row], now: OffsetDateTime) -> Vec<&Row> {
    rows.iter()
        .filter(|r| match r.status {
            Status::CaRotate | Status::CaExpired | Status::Expired => true,
            Status::Ok | Status::Renews | Status::ByKubelet => r.cert.not_after - now < WARN_BEFORE,
            Status::CaOk => false,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ca: bool, days: i64, now: OffsetDateTime) -> Row {
        let cert = super::super::Summary { subject_cn: "x".into(), issuer_cn: "ca".into(), not_after: now + Duration::days(days), ca };
        let status = Status::of(&cert, &Lifetimes::DEFAULT, now);
        Row { file: PathBuf::from(format!("{ca}-{days}")), cert, days_left: days, status }
    }

    #[test]
    fn a_running_server_warns_a_month_ahead_and_of_cas_to_rotate() {
        let now = OffsetDateTime::now_utc();
        let rows = [row(false, 200, now), row(false, 100, now), row(false, 20, now), row(false, -2, now), row(true, 3000, now), row(true, 200, now)];
        let warned: Vec<String> = warnings(&rows, now).iter().map(|r| r.file.display().to_string()).collect();
        assert_eq!(warned, ["false-20", "false--2", "true-200"]);
    }
}
