//! Removing history below the compacted revision, in small steps.
//!
//! A Compact request only records the new compacted revision; the writer
//! then deletes superseded rows a window of log ids at a time between
//! write batches, so no step holds the write lock for long, and hands the
//! freed pages back to the filesystem (incremental vacuum).
//!
//! The safety net: when nobody compacts (kube-apiserver normally does every
//! five minutes), the store compacts itself, keeping ten minutes and at
//! least a thousand revisions of history, so the file cannot grow without
//! bound.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rusqlite::Connection;

/// Log ids examined per step.
const STEP_IDS: i64 = 2_000;
/// Pages returned to the filesystem per step.
const VACUUM_PAGES: i64 = 1_000;
const AUTO_RETAIN_TIME: Duration = Duration::from_secs(600);
const AUTO_RETAIN_REVS: i64 = 1_000;
const AUTO_SAMPLE_EVERY: Duration = Duration::from_secs(30);

/// Physical compaction work in progress.
#[derive(Default)]
pub struct Compaction {
    /// Compacted revision being applied, with the next log id to examine and
    /// the last id that can hold rows at or below it.
    job: Option<Job>,
    vacuum_pending: bool,
}

struct Job {
    target: i64,
    cursor: i64,
    end: i64,
}

impl Compaction {
    pub fn start(&mut self, conn: &Connection, target: i64) -> rusqlite::Result<()> {
        let end: Option<i64> =
            conn.query_row("SELECT max(id) FROM log WHERE rev <= ?1", [target], |r| r.get(0))?;
        self.job = Some(Job { target, cursor: 0, end: end.unwrap_or(0) });
        Ok(())
    }

    pub fn pending(&self) -> bool {
        self.job.is_some() || self.vacuum_pending
    }

    /// Does one bounded step in its own transaction. Returns the revision
    /// whose compaction just finished, if one did.
    pub fn step(&mut self, conn: &Connection) -> rusqlite::Result<Option<i64>> {
        let Some(job) = self.job.as_mut() else {
            self.vacuum_step(conn)?;
            return Ok(None);
        };
        let upto = (job.cursor + STEP_IDS).min(job.end);
        // A row goes when a newer row of its key is also at or below the
        // target, or when it is a tombstone strictly below the target (one
        // at the target is kept so a watch from the target still sees it).
        conn.execute(
            "DELETE FROM log WHERE id > ?1 AND id <= ?2 AND rev <= ?3 AND (
                 (deleted = 1 AND rev < ?3) OR
                 EXISTS (SELECT 1 FROM log n WHERE n.key = log.key AND n.id > log.id AND n.rev <= ?3))",
            rusqlite::params![job.cursor, upto, job.target],
        )?;
        job.cursor = upto;
        if job.cursor < job.end {
            return Ok(None);
        }
        let done = job.target;
        self.job = None;
        self.vacuum_pending = true;
        Ok(Some(done))
    }

    fn vacuum_step(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        incremental_vacuum(conn, &format!("PRAGMA incremental_vacuum({VACUUM_PAGES})"))?;
        let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
        self.vacuum_pending = free > 0;
        Ok(())
    }
}

/// Returns every free page to the filesystem and truncates the WAL: the
/// Defragment request.
pub fn defragment(conn: &Connection) -> rusqlite::Result<()> {
    incremental_vacuum(conn, "PRAGMA incremental_vacuum")?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(())
}

/// Remembers which revision was current when, to pick the safety net's
/// compaction target.
#[derive(Default)]
pub struct AutoCompact {
    samples: VecDeque<(Instant, i64)>,
}

impl AutoCompact {
    /// Records the current revision now and then; returns a revision to
    /// compact to when history is older than the retention.
    pub fn tick(&mut self, now: Instant, rev: i64, compacted: i64) -> Option<i64> {
        if self.samples.back().map_or(true, |(t, _)| now.duration_since(*t) >= AUTO_SAMPLE_EVERY) {
            self.samples.push_back((now, rev));
        }
        // Keep only the newest sample that is older than the retention.
        while self.samples.len() > 1
            && now.duration_since(self.samples[1].0) >= AUTO_RETAIN_TIME
        {
            self.samples.pop_front();
        }
        let (t, old_rev) = *self.samples.front()?;
        let target = old_rev.min(rev - AUTO_RETAIN_REVS);
        (now.duration_since(t) >= AUTO_RETAIN_TIME && target > compacted).then_some(target)
    }
}

/// Runs an `incremental_vacuum` pragma to its end: it frees one page per
/// step (each a result row), so a single step (`execute_batch`) frees one.
fn incremental_vacuum(conn: &Connection, pragma: &str) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare(pragma)?;
    let mut rows = stmt.query([])?;
    while rows.next()?.is_some() {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_compact_keeps_ten_minutes_and_a_thousand_revisions() {
        let mut auto = AutoCompact::default();
        let t0 = Instant::now();
        assert_eq!(auto.tick(t0, 5_000, 0), None);
        assert_eq!(auto.tick(t0 + Duration::from_secs(300), 8_000, 0), None);
        // Ten minutes on, history older than the first sample can go.
        assert_eq!(auto.tick(t0 + Duration::from_secs(600), 9_000, 0), Some(5_000));
        assert_eq!(auto.tick(t0 + Duration::from_secs(630), 9_000, 5_000), None);
        // Never closer than a thousand revisions to the head.
        let mut quiet = AutoCompact::default();
        quiet.tick(t0, 1_500, 0);
        assert_eq!(quiet.tick(t0 + Duration::from_secs(601), 1_600, 0), Some(600));
    }
}
