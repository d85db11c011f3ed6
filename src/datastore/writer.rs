//! The single writer: one thread owns the write connection and applies
//! requests in batches. Requests that arrive while a commit is in flight
//! share the next transaction and its fsync (group commit); each keeps its
//! own revision and its own outcome (a failing one is rolled back to its
//! savepoint without touching the others). Events go to watchers only
//! after the commit is durable.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection};
use tokio::sync::{broadcast, oneshot, watch};
use tonic::Status;

use super::apply::Applier;
use super::compact::{self, AutoCompact, Compaction};
use super::errors;
use super::keyrange::KeyRange;
use super::lease::{self, Leases};
use super::pb::{
    DeleteRangeRequest, DeleteRangeResponse, Event, PutRequest, PutResponse, TxnRequest,
    TxnResponse,
};
use super::query::{self, Revs};
use super::quota::{self, Admit};
use super::schema;

/// Requests per transaction at most.
const MAX_BATCH: usize = 512;
/// While writes keep coming, compaction still gets a step this often.
const COMPACT_EVERY: Duration = Duration::from_millis(20);

pub enum Op {
    Put(PutRequest),
    Delete(DeleteRangeRequest),
    Txn(TxnRequest),
    Compact(i64),
    LeaseGrant { id: i64, ttl: i64 },
    LeaseRevoke(i64),
    /// Revoke a lease whose deadline passed, unless a keep-alive came since.
    LeaseExpire(i64),
    Defragment,
    /// Clear the NOSPACE alarm (see [`quota`]).
    AlarmDisarm,
}

pub enum Done {
    Put(PutResponse),
    Delete(DeleteRangeResponse),
    Txn(TxnResponse),
    Compacted,
    LeaseGranted { id: i64, ttl: i64 },
    LeaseRevoked,
    Defragmented,
    AlarmDisarmed,
}

/// The outcome of one request and the store revision after it.
pub struct Reply {
    pub rev: i64,
    pub done: Done,
}

/// All events of one revision, as watchers receive them.
pub struct Batch {
    pub rev: i64,
    pub events: Vec<Event>,
}

struct Job {
    op: Op,
    reply: oneshot::Sender<Result<Reply, Status>>,
    /// Its share of the queue's bytes, given back once it is answered
    /// (None: the writer's own jobs).
    _queued: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// What the requests waiting for the writer may hold at most, in KiB: past
/// it, submitting waits (backpressure on the clients) instead of the queue
/// growing without bound. A request is at most 1.5 MiB, so one always fits.
pub const QUEUE_KIB: u32 = 256 * 1024;

impl Op {
    /// The request's size in KiB (at least 1), its share of the queue.
    fn queue_kib(&self) -> u32 {
        use prost::Message;
        let bytes = match self {
            Op::Put(r) => r.encoded_len(),
            Op::Delete(r) => r.encoded_len(),
            Op::Txn(r) => r.encoded_len(),
            _ => 0,
        };
        (bytes / 1024).max(1).min(QUEUE_KIB as usize) as u32
    }
}

/// Revisions other tasks may read without a database round trip.
#[derive(Default)]
pub struct Progress {
    /// Newest revision that is durable and published to watchers.
    pub committed: AtomicI64,
    pub compacted: AtomicI64,
}

#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<Job>,
    queue: Arc<tokio::sync::Semaphore>,
}

impl WriterHandle {
    pub async fn submit(&self, op: Op) -> Result<Reply, Status> {
        let (reply, rx) = oneshot::channel();
        let stopped = || Status::unavailable("etcdserver: the datastore is shutting down");
        let queued = self.queue.clone().acquire_many_owned(op.queue_kib()).await.map_err(|_| stopped())?;
        self.tx.send(Job { op, reply, _queued: Some(queued) }).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

pub struct Writer {
    conn: Connection,
    revs: Revs,
    hub: broadcast::Sender<Arc<Batch>>,
    leases: Arc<Leases>,
    progress: Arc<Progress>,
    /// Revision up to which history has physically been removed.
    physical: watch::Sender<i64>,
    compaction: Compaction,
    auto: AutoCompact,
    last_step: Instant,
    next_lease: i64,
    /// The space quota in bytes (negative: none) and the NOSPACE alarm.
    space: Space,
}

/// The database's size against its quota (see [`quota`]).
pub struct Space {
    pub quota: i64,
    pub alarm: Arc<AtomicBool>,
    /// The file's size after the last commit, plus what was admitted since.
    size: i64,
    page_size: i64,
}

impl Space {
    pub fn new(quota: i64, alarm: Arc<AtomicBool>) -> Space {
        Space { quota, alarm, size: 0, page_size: 0 }
    }

    /// The file's size now: one cheap pragma after each commit (the page
    /// size never changes).
    fn measure(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        if self.page_size == 0 {
            self.page_size = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        }
        let pages: i64 = conn.prepare_cached("PRAGMA page_count")?.query_row([], |r| r.get(0))?;
        self.size = pages * self.page_size;
        Ok(())
    }
}

/// What a request does to in-memory lease deadlines once its commit lands.
enum LeaseChange {
    Start(i64, i64),
    Forget(i64),
}

impl Writer {
    pub fn new(
        conn: Connection,
        hub: broadcast::Sender<Arc<Batch>>,
        leases: Arc<Leases>,
        progress: Arc<Progress>,
        physical: watch::Sender<i64>,
        mut space: Space,
    ) -> rusqlite::Result<Writer> {
        let revs = query::revs(&conn)?;
        space.alarm.store(schema::meta_get(&conn, quota::ALARM_META)? == Some(1), Ordering::SeqCst);
        space.measure(&conn)?;
        progress.committed.store(revs.current, Ordering::SeqCst);
        progress.compacted.store(revs.compacted, Ordering::SeqCst);
        let mut stored = conn.prepare("SELECT id, ttl FROM lease")?;
        for row in stored.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))? {
            let (id, ttl) = row?;
            leases.start(id, ttl);
        }
        drop(stored);
        let mut compaction = Compaction::default();
        // A compaction cut short by a restart resumes from the start.
        compaction.start(&conn, revs.compacted)?;
        let next_lease = lease_id_seed();
        Ok(Writer {
            conn,
            revs,
            hub,
            leases,
            progress,
            physical,
            compaction,
            auto: AutoCompact::default(),
            last_step: Instant::now(),
            next_lease,
            space,
        })
    }

    /// Starts the writer thread; it ends when every handle is dropped.
    pub fn spawn(self) -> std::io::Result<WriterHandle> {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new().name("datastore-writer".into()).spawn(move || self.run(rx))?;
        Ok(WriterHandle { tx, queue: Arc::new(tokio::sync::Semaphore::new(QUEUE_KIB as usize)) })
    }

    fn run(mut self, rx: mpsc::Receiver<Job>) {
        loop {
            let wait = if self.compaction.pending() { Duration::ZERO } else { Duration::from_secs(1) };
            match rx.recv_timeout(wait) {
                Ok(first) => {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    self.commit_batch(batch);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            self.housekeeping();
        }
    }

    fn commit_batch(&mut self, mut batch: Vec<Job>) {
        // Defragmenting checkpoints the WAL, which cannot happen inside a
        // transaction: it runs on its own, before the rest of the batch.
        while let Some(pos) = batch.iter().position(|j| matches!(j.op, Op::Defragment)) {
            let job = batch.remove(pos);
            let result = compact::defragment(&self.conn)
                .map(|()| Reply { rev: self.revs.current, done: Done::Defragmented })
                .map_err(|e| errors::storage(&e));
            let _ = self.space.measure(&self.conn); // on failure the estimate stands
            let _ = job.reply.send(result);
        }
        if batch.is_empty() {
            return;
        }
        let start = self.revs;
        let mut results = Vec::with_capacity(batch.len());
        let mut published = Vec::new();
        let mut lease_changes = Vec::new();
        let outcome = (|| -> rusqlite::Result<()> {
            schema::exec(&self.conn, "BEGIN IMMEDIATE")?;
            for job in &batch {
                if let Err(status) = self.admit(&job.op)? {
                    results.push(Err(status));
                    continue;
                }
                schema::exec(&self.conn, "SAVEPOINT op")?;
                let before = lease_changes.len();
                match self.apply(&job.op, &mut lease_changes) {
                    Ok((done, events)) => {
                        schema::exec(&self.conn, "RELEASE op")?;
                        if !events.is_empty() {
                            self.revs.current += 1;
                            published.push(Batch { rev: self.revs.current, events });
                        }
                        results.push(Ok(Reply { rev: self.revs.current, done }));
                    }
                    Err(status) => {
                        self.conn.execute_batch("ROLLBACK TO op; RELEASE op")?;
                        lease_changes.truncate(before);
                        results.push(Err(status));
                    }
                }
            }
            schema::meta_set(&self.conn, "rev", self.revs.current)?;
            schema::meta_set(&self.conn, "compact_rev", self.revs.compacted)?;
            schema::exec(&self.conn, "COMMIT")
        })();

        if let Err(e) = outcome {
            let _ = self.conn.execute_batch("ROLLBACK");
            tracing::error!(error = %e, "datastore commit failed; the batch is rejected");
            self.revs = start;
            let status = errors::storage(&e);
            for job in batch {
                let _ = job.reply.send(Err(status.clone()));
            }
            return;
        }
        let _ = self.space.measure(&self.conn); // on failure the estimate stands
        self.after_commit(published, lease_changes);
        for (job, result) in batch.into_iter().zip(results) {
            let _ = job.reply.send(result);
        }
    }

    /// The quota's word on `op` (inside the batch's transaction, which
    /// also records a newly raised alarm).
    fn admit(&mut self, op: &Op) -> rusqlite::Result<Result<(), Status>> {
        let Some(cost) = quota::cost(op) else { return Ok(Ok(())) };
        match quota::admit(cost, self.space.size, self.space.quota, self.space.alarm.load(Ordering::SeqCst)) {
            Admit::Yes => {
                self.space.size += cost;
                Ok(Ok(()))
            }
            Admit::Refused => Ok(Err(errors::no_space())),
            Admit::Exceeded => {
                schema::meta_set(&self.conn, quota::ALARM_META, 1)?;
                self.space.alarm.store(true, Ordering::SeqCst);
                tracing::warn!(
                    size = self.space.size,
                    quota = self.space.quota,
                    "datastore: space quota reached, NOSPACE alarm raised; writes that add data are refused until compaction, \
                     defragmentation and `etcdctl alarm disarm`"
                );
                Ok(Err(errors::no_space()))
            }
        }
    }

    fn after_commit(&mut self, published: Vec<Batch>, lease_changes: Vec<LeaseChange>) {
        for change in lease_changes {
            match change {
                LeaseChange::Start(id, ttl) => self.leases.start(id, ttl),
                LeaseChange::Forget(id) => self.leases.forget(id),
            }
        }
        for batch in published {
            // No receivers is fine: nobody is watching.
            let _ = self.hub.send(Arc::new(batch));
        }
        self.progress.committed.store(self.revs.current, Ordering::SeqCst);
        let compacted = self.revs.compacted;
        if self.progress.compacted.swap(compacted, Ordering::SeqCst) != compacted {
            if let Err(e) = self.compaction.start(&self.conn, compacted) {
                tracing::error!(error = %e, "cannot plan compaction; will retry on the next one");
            }
        }
    }

    fn apply(&mut self, op: &Op, leases: &mut Vec<LeaseChange>) -> Result<(Done, Vec<Event>), Status> {
        let storage = |e: rusqlite::Error| errors::storage(&e);
        let mut a = Applier::new(&self.conn, self.revs);
        let done = match op {
            Op::Put(r) => Done::Put(a.put(r)?),
            Op::Delete(r) => Done::Delete(a.delete(r)?),
            Op::Txn(r) => Done::Txn(a.txn(r)?),
            Op::LeaseRevoke(id) | Op::LeaseExpire(id) => {
                if matches!(op, Op::LeaseExpire(_)) && !self.leases.is_expired(*id) {
                    return Ok((Done::LeaseRevoked, Vec::new()));
                }
                let removed =
                    self.conn.execute("DELETE FROM lease WHERE id = ?1", [id]).map_err(storage)?;
                if removed == 0 {
                    leases.push(LeaseChange::Forget(*id));
                    return match op {
                        Op::LeaseExpire(_) => Ok((Done::LeaseRevoked, Vec::new())),
                        _ => Err(errors::lease_not_found()),
                    };
                }
                for key in query::lease_keys(&self.conn, *id).map_err(storage)? {
                    a.delete_range(&KeyRange::Single(key))?;
                }
                leases.push(LeaseChange::Forget(*id));
                Done::LeaseRevoked
            }
            Op::Defragment => unreachable!("defragment runs outside batches"),
            Op::AlarmDisarm => {
                schema::meta_set(&self.conn, quota::ALARM_META, 0).map_err(storage)?;
                self.space.alarm.store(false, Ordering::SeqCst);
                tracing::info!("datastore: NOSPACE alarm disarmed");
                return Ok((Done::AlarmDisarmed, Vec::new()));
            }
            Op::Compact(rev) => {
                if *rev <= self.revs.compacted {
                    return Err(errors::compacted());
                }
                if *rev > self.revs.current {
                    return Err(errors::future_rev());
                }
                self.revs.compacted = *rev;
                return Ok((Done::Compacted, Vec::new()));
            }
            Op::LeaseGrant { id, ttl } => {
                let (id, ttl) = self.grant(*id, *ttl)?;
                leases.push(LeaseChange::Start(id, ttl));
                return Ok((Done::LeaseGranted { id, ttl }, Vec::new()));
            }
        };
        Ok((done, a.events))
    }

    fn grant(&mut self, requested: i64, ttl: i64) -> Result<(i64, i64), Status> {
        if ttl > lease::MAX_TTL {
            return Err(errors::lease_ttl_too_large());
        }
        let ttl = ttl.max(lease::MIN_TTL);
        let id = if requested != 0 {
            if lease_exists(&self.conn, requested)? {
                return Err(errors::lease_exists());
            }
            requested
        } else {
            loop {
                self.next_lease = (self.next_lease + 1) & i64::MAX;
                if self.next_lease != 0 && !lease_exists(&self.conn, self.next_lease)? {
                    break self.next_lease;
                }
            }
        };
        self.conn
            .execute("INSERT INTO lease (id, ttl) VALUES (?1, ?2)", params![id, ttl])
            .map_err(|e| errors::storage(&e))?;
        Ok((id, ttl))
    }

    /// Compaction steps and the safety net, between batches.
    fn housekeeping(&mut self) {
        let now = Instant::now();
        if let Some(target) = self.auto.tick(now, self.revs.current, self.revs.compacted) {
            tracing::info!(revision = target, "nobody compacted recently; compacting history");
            self.compact_now(target);
        }
        if !self.compaction.pending() || now.duration_since(self.last_step) < COMPACT_EVERY {
            return;
        }
        self.last_step = now;
        match self.compaction.step(&self.conn) {
            Ok(Some(done)) => {
                self.physical.send_replace(done);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "compaction step failed; retrying"),
        }
    }

    fn compact_now(&mut self, target: i64) {
        let (reply, _) = oneshot::channel();
        self.commit_batch(vec![Job { op: Op::Compact(target), reply, _queued: None }]);
    }
}

fn lease_exists(conn: &Connection, id: i64) -> Result<bool, Status> {
    conn.query_row("SELECT count(*) FROM lease WHERE id = ?1", [id], |r| r.get::<_, i64>(0))
        .map(|n| n > 0)
        .map_err(|e| errors::storage(&e))
}

/// Lease ids start from the clock so ids are not reused across restarts.
fn lease_id_seed() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    ((now.as_millis() as i64) << 16) & i64::MAX
}
