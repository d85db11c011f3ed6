//! The embedded datastore: etcd's v3 gRPC API over SQLite, the single-node
//! default (as kine is for k3s).
//!
//! Layout: `schema` (the file), `query` (reads), `apply` (writes inside a
//! transaction), `writer` (the one writer thread, group commit), `reader`
//! (the read pool), `counts` (what a paged range's next page counts),
//! `watch` (streams fed by the writer), `lease`, `compact`, `service` (the
//! gRPC services) and `server` (listeners, TLS).

mod apply;
mod compact;
mod counts;
mod errors;
mod keyrange;
mod lease;
pub mod pb;
mod query;
mod quota;
mod reader;
mod schema;
mod server;
mod service;
mod watch;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch as tokio_watch};

pub use schema::{db_path, OpenError};
pub use server::{serve, start, Config, Listen, Running};

/// A consistent copy of the database in `data_dir` written to `dest`
/// (0600), while the writer goes on (SQLite's online backup); returns the
/// revision it holds.
pub fn snapshot_to(data_dir: &std::path::Path, dest: &std::path::Path) -> anyhow::Result<i64> {
    use std::os::unix::fs::PermissionsExt;
    let (file, rev) = schema::snapshot(data_dir)?;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
    // Across filesystems a rename fails: copy then.
    if let Err(e) = file.persist(dest) {
        std::fs::copy(&e.path, dest)?;
        std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(rev)
}

/// Raises the revision of the database in `data_dir` (not running) by
/// `by` and marks everything below the new one compacted: a restored
/// store then never hands out a revision the old one already did, and a
/// client still holding one of those is told to list again (etcdutl's
/// `--bump-revision` with `--mark-compacted`). Returns the new revision.
pub fn bump_revision(data_dir: &std::path::Path, by: i64) -> anyhow::Result<i64> {
    let conn = schema::open_writer(data_dir)?;
    let rev = schema::meta_get(&conn, "rev")?.unwrap_or(1) + by;
    let tx = conn.unchecked_transaction()?;
    schema::meta_set(&tx, "rev", rev)?;
    schema::meta_set(&tx, "compact_rev", rev)?;
    tx.commit()?;
    Ok(rev)
}

/// Every live key (with its value and lease) and the store's revision, read
/// in one transaction straight from the file in `data_dir`: what a single
/// server carries into the etcd of the HA cluster it becomes.
pub fn live_keys(data_dir: &std::path::Path) -> anyhow::Result<(Vec<pb::KeyValue>, i64)> {
    let conn = schema::open_reader(data_dir)?;
    let tx = conn.unchecked_transaction()?;
    let kvs = query::latest(&tx, &keyrange::KeyRange::new(&[0], &[0]))?;
    let rev = schema::meta_get(&tx, "rev")?.unwrap_or(1);
    Ok((kvs, rev))
}

/// The live keys under `prefix` and their values, read straight from the
/// file in `data_dir` (a read-only connection beside the running writer):
/// for tools that look at what is stored, such as `k8s secrets-encrypt status`.
pub fn stored_values(data_dir: &std::path::Path, prefix: &[u8]) -> anyhow::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let conn = schema::open_reader(data_dir)?;
    let kvs = query::latest(&conn, &keyrange::KeyRange::new(prefix, &prefix_end(prefix)))?;
    Ok(kvs.into_iter().map(|kv| (kv.key, kv.value)).collect())
}

/// The end of the range of keys under `prefix` (etcd's convention: its
/// last byte plus one; a prefix that is all 0xff bytes ranges to the end).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

pub use service::ETCD_VERSION as ETCD_API_VERSION;

use lease::Leases;
use reader::Readers;
use writer::{Batch, Progress, Writer, WriterHandle};

/// Batches a stream may fall behind before it catches up from the database.
const HUB_CAPACITY: usize = 4_096;

/// Knobs with etcd's defaults, settable for tests.
#[derive(Clone, Debug)]
pub struct Tuning {
    pub progress_notify_interval: Duration,
    /// The space quota in bytes (etcd's `--quota-backend-bytes`: 0 means
    /// etcd's default of 2 GiB, a negative value none).
    pub quota_bytes: i64,
    /// Watchers open at once across all streams; more are refused
    /// (created, then canceled with the reason).
    pub max_watchers: usize,
    /// The most a Range answer may hold (keys and values); a larger one is
    /// refused with a hint to page it (`limit`), as etcd's gRPC limit would.
    pub max_response_bytes: usize,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            progress_notify_interval: watch::DEFAULT_PROGRESS_NOTIFY,
            quota_bytes: quota::DEFAULT_BYTES,
            max_watchers: DEFAULT_MAX_WATCHERS,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

/// Watchers at most: far above what an API server opens (one per
/// resource type and a few per client), low enough to bound memory.
pub const DEFAULT_MAX_WATCHERS: usize = 100_000;
/// A Range answer at most: 512 MiB (etcd's gRPC limit is 2 GiB; the API
/// server pages its lists in 500-item chunks).
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 512 << 20;

impl Tuning {
    fn quota(&self) -> i64 {
        if self.quota_bytes == 0 { quota::DEFAULT_BYTES } else { self.quota_bytes }
    }
}

/// Identity reported in response headers and the member list.
#[derive(Clone, Copy, Debug)]
pub struct Ids {
    pub cluster: u64,
    pub member: u64,
}

/// One open datastore: what the gRPC services share.
pub struct Store {
    writer: WriterHandle,
    readers: Arc<Readers>,
    /// What the next pages of paged ranges count (readers only).
    pages: Arc<counts::PageCounts>,
    hub: broadcast::Sender<Arc<Batch>>,
    leases: Arc<Leases>,
    progress: Arc<Progress>,
    physical: tokio_watch::Receiver<i64>,
    ids: Ids,
    /// The NOSPACE alarm (see [`quota`]).
    alarm: Arc<std::sync::atomic::AtomicBool>,
    /// One permit per open watcher (see [`Tuning::max_watchers`]).
    watchers: Arc<tokio::sync::Semaphore>,
    data_dir: PathBuf,
    tuning: Tuning,
    client_urls: Vec<String>,
    /// Set when the server stops: long-lived streams end so clients go.
    closing: tokio_watch::Sender<bool>,
    _lock: std::fs::File,
}

impl Store {
    /// Opens the database in `data_dir` and starts the writer and the
    /// lease-expiry task. Needs a tokio runtime.
    pub fn open(data_dir: PathBuf, tuning: Tuning, client_urls: Vec<String>)
        -> Result<Arc<Store>, OpenError> {
        let lock = schema::lock(&data_dir)?;
        let conn = schema::open_writer(&data_dir)?;
        let path = schema::db_path(&data_dir);
        let sqlite = |source| OpenError::Sqlite { path: path.clone(), source };
        let ids = Ids { cluster: identity(&conn, "cluster_id").map_err(sqlite)?, member: identity(&conn, "member_id").map_err(sqlite)? };
        let (hub, _) = broadcast::channel(HUB_CAPACITY);
        let leases = Arc::new(Leases::default());
        let progress = Arc::new(Progress::default());
        let (physical_tx, physical) = tokio_watch::channel(0);
        let alarm = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let space = writer::Space::new(tuning.quota(), alarm.clone());
        let writer = Writer::new(conn, hub.clone(), leases.clone(), progress.clone(), physical_tx, space)
            .map_err(sqlite)?
            .spawn()
            .map_err(|e| OpenError::DataDir(data_dir.clone(), e))?;
        let store = Arc::new(Store {
            writer,
            readers: Arc::new(Readers::new(data_dir.clone())),
            pages: Arc::default(),
            hub,
            leases,
            progress,
            physical,
            ids,
            alarm,
            watchers: Arc::new(tokio::sync::Semaphore::new(tuning.max_watchers)),
            data_dir,
            tuning,
            client_urls,
            closing: tokio_watch::channel(false).0,
            _lock: lock,
        });
        tokio::spawn(expire_leases(Arc::downgrade(&store)));
        Ok(store)
    }

    /// Ends watch and keep-alive streams (the server is stopping).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.closing.subscribe();
        async move {
            let _ = rx.wait_for(|c| *c).await;
        }
    }

    fn header(&self, revision: i64) -> pb::ResponseHeader {
        pb::ResponseHeader {
            cluster_id: self.ids.cluster,
            member_id: self.ids.member,
            revision,
            raft_term: 1,
        }
    }
}

/// Reads a random id kept in `meta`, creating it on first use.
fn identity(conn: &rusqlite::Connection, name: &str) -> rusqlite::Result<u64> {
    if let Some(id) = schema::meta_get(conn, name)? {
        return Ok(id as u64);
    }
    let mut bytes = [0u8; 8];
    // Ids only need to differ between clusters; the clock is the fallback.
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .is_err()
    {
        bytes = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos() as u64).to_le_bytes();
    }
    let id = (u64::from_le_bytes(bytes) >> 1).max(1) as i64;
    schema::meta_set(conn, name, id)?;
    Ok(id as u64)
}

/// Revokes leases whose deadline passed; their keys' deletions reach
/// watchers like any other delete.
async fn expire_leases(store: std::sync::Weak<Store>) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let Some(store) = store.upgrade() else { return };
        // Submitted together, so the expiries share one commit.
        let expiries = store.leases.expired().into_iter().map(|id| {
            let writer = store.writer.clone();
            async move { (id, writer.submit(writer::Op::LeaseExpire(id)).await) }
        });
        for (id, result) in futures::future::join_all(expiries).await {
            if let Err(e) = result {
                tracing::warn!(lease = id, error = %e.message(), "cannot expire lease yet");
            }
        }
    }
}
