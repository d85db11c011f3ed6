//! The SQLite file behind the datastore: opening, durability settings and
//! the schema.
//!
//! Two tables hold keys. `log` is the history: one row per change, in
//! revision order, which watches replay and point-in-time reads use. `kv`
//! holds one row per live key pointing at its latest `log` row, so reading
//! the newest value of a key or a prefix never scans history (the slow
//! `GROUP BY MAX(id)` of kine).

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create the data directory {0}: {1}")]
    DataDir(PathBuf, std::io::Error),
    #[error("{path} is read-only: the datastore needs to write it (check its permissions and the filesystem's mount options)")]
    ReadOnly { path: PathBuf },
    #[error("{path} is not a valid datastore database ({detail}); move it aside and restore a snapshot, or start with an empty data dir")]
    Corrupt { path: PathBuf, detail: String },
    #[error("{path} was written by a newer datastore (schema {found}, this binary knows {known}); run the newer binary")]
    TooNew { path: PathBuf, found: i64, known: i64 },
    #[error("another datastore is using {0}; stop it first (one process per data dir)")]
    InUse(PathBuf),
    #[error("cannot open {path}: {source}")]
    Sqlite { path: PathBuf, source: rusqlite::Error },
}

const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log (
    id        INTEGER PRIMARY KEY,
    rev       INTEGER NOT NULL,
    key       BLOB    NOT NULL,
    create_rev INTEGER NOT NULL,
    version   INTEGER NOT NULL,
    lease     INTEGER NOT NULL,
    value     BLOB    NOT NULL,
    deleted   INTEGER NOT NULL,
    prev_id   INTEGER
);
CREATE INDEX IF NOT EXISTS log_key_id ON log (key, id);
CREATE INDEX IF NOT EXISTS log_rev ON log (rev);
CREATE TABLE IF NOT EXISTS kv (
    key   BLOB PRIMARY KEY,
    id    INTEGER NOT NULL,
    lease INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_lease ON kv (lease) WHERE lease != 0;
CREATE TABLE IF NOT EXISTS lease (
    id  INTEGER PRIMARY KEY,
    ttl INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
-- A new etcd is at revision 1 before its first write; clients (the
-- apiserver among them) treat revision 0 as invalid.
INSERT OR IGNORE INTO meta (name, value) VALUES ('rev', 1);
";

/// Takes the data dir's lock for this process's lifetime: two writers on
/// one file would hand out the same revisions.
pub fn lock(data_dir: &Path) -> Result<std::fs::File, OpenError> {
    use std::os::unix::io::AsRawFd;
    std::fs::create_dir_all(data_dir).map_err(|e| OpenError::DataDir(data_dir.into(), e))?;
    let path = data_dir.join("datastore.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| OpenError::DataDir(path.clone(), e))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(OpenError::InUse(data_dir.into()));
    }
    Ok(f)
}

/// The datastore holds every Secret: its dir 0700 and its files 0600
/// (SQLite creates the `-wal` and `-shm` files with the database's mode).
/// The database file is created here first, so it is never readable by
/// others, whatever the umask.
fn private(data_dir: &Path, db: &Path) -> Result<(), OpenError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mode = |path: &Path, m: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(m)).map_err(|e| OpenError::DataDir(path.into(), e))
    };
    mode(data_dir, 0o700)?;
    std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(db).map_err(|e| OpenError::DataDir(db.into(), e))?;
    for suffix in ["", "-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", db.display()));
        if file.exists() {
            mode(&file, 0o600)?;
        }
    }
    Ok(())
}

pub fn db_path(data_dir: &Path) -> PathBuf {
    data_dir.join("datastore.db")
}

/// Opens (creating if needed) the database for the single writer, checks its
/// integrity and brings the schema up to date.
pub fn open_writer(data_dir: &Path) -> Result<Connection, OpenError> {
    std::fs::create_dir_all(data_dir).map_err(|e| OpenError::DataDir(data_dir.into(), e))?;
    let path = db_path(data_dir);
    private(data_dir, &path)?;
    let err = |source: rusqlite::Error| classify(&path, source);
    let conn = Connection::open(&path).map_err(err)?;
    // Refuse a file from a newer version before anything writes to it.
    check_version(&conn, &path)?;
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0)).map_err(err)?;
    if pages == 0 {
        // auto_vacuum must be chosen before the first table exists;
        // INCREMENTAL lets compaction hand freed pages back to the
        // filesystem in small steps.
        conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL;").map_err(err)?;
    }
    tune(&conn).map_err(err)?;
    check_integrity(&conn, &path)?;
    migrate(&conn, &path)?;
    Ok(conn)
}

/// Statements each connection keeps prepared: the shapes of range
/// (bounds, values, limits, past revisions) and the writer's own, with
/// room to spare (rusqlite's default is 16).
const STATEMENT_CACHE: usize = 64;

/// A connection for concurrent reads; WAL mode gives each read transaction
/// a consistent snapshot while the writer goes on.
pub fn open_reader(data_dir: &Path) -> Result<Connection, OpenError> {
    let path = db_path(data_dir);
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(&path, flags).map_err(|e| classify(&path, e))?;
    // A small private cache each: the OS page cache is shared anyway. (No
    // mmap: compaction truncates the file, which a mapping turns into SIGBUS.)
    conn.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA cache_size = -4096;")
        .map_err(|e| classify(&path, e))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

fn tune(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // WAL with synchronous=FULL fsyncs the log on every commit: an
    // acknowledged write survives kill -9 and power loss. The writer groups
    // concurrent writes into one commit so the fsync is shared.
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        // WAL needs shared memory; without it durability and concurrent
        // reads are not what we promise.
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "journal_mode is {mode}, not wal (does the filesystem support shared memory?)"
        )));
    }
    conn.execute_batch(
        "PRAGMA synchronous = FULL;
         PRAGMA busy_timeout = 5000;
         PRAGMA cache_size = -32768;
         PRAGMA temp_store = MEMORY;
         PRAGMA journal_size_limit = 67108864;
         PRAGMA wal_autocheckpoint = 1000;",
    )
}

fn check_integrity(conn: &Connection, path: &Path) -> Result<(), OpenError> {
    let verdict: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(|e| classify(path, e))?;
    if verdict != "ok" {
        return Err(OpenError::Corrupt { path: path.into(), detail: verdict });
    }
    Ok(())
}

fn check_version(conn: &Connection, path: &Path) -> Result<(), OpenError> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| classify(path, e))?;
    if found > SCHEMA_VERSION {
        return Err(OpenError::TooNew { path: path.into(), found, known: SCHEMA_VERSION });
    }
    Ok(())
}

fn migrate(conn: &Connection, path: &Path) -> Result<(), OpenError> {
    let err = |source: rusqlite::Error| classify(path, source);
    conn.execute_batch(SCHEMA).map_err(err)?;
    conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}")).map_err(err)?;
    Ok(())
}

fn classify(path: &Path, source: rusqlite::Error) -> OpenError {
    use rusqlite::ErrorCode::*;
    match source.sqlite_error_code() {
        Some(ReadOnly) | Some(CannotOpen) if is_read_only(path) => {
            OpenError::ReadOnly { path: path.into() }
        }
        Some(DatabaseCorrupt) | Some(NotADatabase) => {
            OpenError::Corrupt { path: path.into(), detail: source.to_string() }
        }
        _ => OpenError::Sqlite { path: path.into(), source },
    }
}

fn is_read_only(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let target = if path.exists() { path } else { path.parent().unwrap_or(path) };
    let Ok(c_path) = std::ffi::CString::new(target.as_os_str().as_bytes()) else {
        return false;
    };
    // access(2) also reports a read-only mount, which permission bits do not.
    unsafe { libc::access(c_path.as_ptr(), libc::W_OK) != 0 }
}

/// Small integers kept in `meta`.
pub fn meta_get(conn: &Connection, name: &str) -> rusqlite::Result<Option<i64>> {
    use rusqlite::OptionalExtension;
    conn.prepare_cached("SELECT value FROM meta WHERE name = ?1")?.query_row([name], |r| r.get(0)).optional()
}

/// Runs one statement of no parameters (BEGIN, COMMIT, SAVEPOINT, …) from
/// the connection's statement cache rather than parsing it on every request
/// (the writer parsed four per commit: ~4% of its time in a profile; 5% less
/// CPU per put in `make bench` without them).
pub fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

pub fn meta_set(conn: &Connection, name: &str, value: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO meta (name, value) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )?
    .execute(rusqlite::params![name, value])?;
    Ok(())
}

/// Allocated bytes of the database file and the bytes in use.
pub fn sizes(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    Ok((pages * size, (pages - free) * size))
}

/// A consistent copy of the whole store in a temporary file next to it
/// (removed when the returned path is dropped), with its revision.
pub fn snapshot(data_dir: &Path) -> anyhow::Result<(tempfile::TempPath, i64)> {
    let src = open_reader(data_dir)?;
    let file = tempfile::Builder::new().prefix(".snapshot-").tempfile_in(data_dir)?.into_temp_path();
    let mut dst = Connection::open(&file)?;
    // One backup step copies every page under a single read transaction.
    rusqlite::backup::Backup::new(&src, &mut dst)?.step(-1)?;
    let rev = meta_get(&dst, "rev")?.unwrap_or(0);
    drop(dst);
    Ok((file, rev))
}
