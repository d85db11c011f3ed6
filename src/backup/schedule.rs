//! Scheduled backups: every server makes a `scheduled-…` archive at each
//! time of its `backup-schedule` and keeps the newest `backup-retention`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;

use super::Kind;

/// k3s's default: every 12 hours.
pub const DEFAULT_CRON: &str = "0 */12 * * *";
pub const DEFAULT_RETENTION: usize = 5;

#[derive(Clone, Debug)]
pub struct Schedule {
    /// None: `backup-schedule: off`.
    pub cron: Option<croner::Cron>,
    pub retention: usize,
    pub dir: PathBuf,
}

impl Schedule {
    /// From the settings: a cron expression (five fields, or six with
    /// seconds first) or `off`; at least one archive kept.
    pub fn parse(cron: Option<&str>, retention: Option<usize>, dir: PathBuf) -> anyhow::Result<Schedule> {
        let spec = cron.unwrap_or(DEFAULT_CRON).trim();
        let cron = match spec {
            "off" => None,
            _ => Some(spec.parse::<croner::Cron>().map_err(|e| {
                anyhow::anyhow!("backup-schedule: {spec:?} is not a cron schedule ({e}); for example \"0 */12 * * *\" (every 12 hours), or off")
            })?),
        };
        let retention = retention.unwrap_or(DEFAULT_RETENTION);
        if retention == 0 {
            bail!("backup-retention: 0 would delete every backup as soon as it is made; keep at least 1 (or set backup-schedule: off)");
        }
        Ok(Schedule { cron, retention, dir })
    }

    /// How long until the next backup is due; None when off.
    fn until_next(&self) -> Option<Duration> {
        let now = chrono::Utc::now();
        let next = self.cron.as_ref()?.find_next_occurrence(&now, false).ok()?;
        Some((next - now).to_std().unwrap_or_default())
    }

    /// Makes the scheduled archives until stopped (an in-process service).
    pub async fn run(self, data_dir: PathBuf, node: String) {
        while let Some(wait) = self.until_next() {
            tokio::time::sleep(wait).await;
            let dest = super::archive_path(&self.dir, Kind::Scheduled, &node);
            match super::make(&data_dir, &node, &dest).await {
                Ok(m) => tracing::info!(file = %dest.display(), revision = m.revision, "scheduled backup made"),
                Err(e) => tracing::warn!("scheduled backup {}: {e:#}", dest.display()),
            }
            match super::prune(&self.dir, Kind::Scheduled, self.retention) {
                Ok(removed) if !removed.is_empty() => tracing::info!(removed = removed.len(), keep = self.retention, "old scheduled backups removed"),
                Ok(_) => {}
                Err(e) => tracing::warn!("pruning scheduled backups in {}: {e:#}", self.dir.display()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_parse_with_clear_errors() {
        let dir = PathBuf::from("/b");
        let s = Schedule::parse(None, None, dir.clone()).unwrap();
        assert!(s.cron.is_some() && s.retention == 5);
        let wait = s.until_next().unwrap();
        assert!(wait <= Duration::from_secs(12 * 3600), "{wait:?}");
        let fast = Schedule::parse(Some("*/2 * * * * *"), Some(2), dir.clone()).unwrap();
        assert!(fast.until_next().unwrap() <= Duration::from_secs(2));
        assert!(Schedule::parse(Some("off"), None, dir.clone()).unwrap().until_next().is_none());
        let err = Schedule::parse(Some("every day"), None, dir.clone()).unwrap_err().to_string();
        assert!(err.contains("backup-schedule") && err.contains("0 */12 * * *"), "{err}");
        assert!(Schedule::parse(None, Some(0), dir).unwrap_err().to_string().contains("at least 1"));
    }
}
